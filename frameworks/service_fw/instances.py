"""Instances: the tasks the service framework runs for its apps (pure, mutable records).

An ``Instance`` is one task of one app version, from the moment the engine decides to launch it
(its record is stored before the launch, so a restart never forgets or duplicates it) until its
terminal status update has been handled. The engine changes it in place as status updates
arrive; ``to_json``/``from_json`` give the stored record (kind ``instance``, key the task id).

States are Mesos task state names (``TASK_STAGING`` ... ``TASK_FINISHED``); ``healthy`` is the
agent's latest health verdict (None: no health checks, or no verdict yet).

Usage::

    inst = Instance(task_id="shop_web.9f0c...", app_id="/shop/web", version=v, agent_id="a1",
                    hostname="h1", host_ports=(31001,), staged_at=now)
    inst.active        # True: not terminal, not being killed
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mensa.proto.states import TERMINAL_STATE_NAMES

KIND_INSTANCE = "instance"

RUNNING = "TASK_RUNNING"
STAGING = "TASK_STAGING"
UNREACHABLE = "TASK_UNREACHABLE"


@dataclass(slots=True)
class Instance:
    """One task of an app (see the module docstring)."""

    task_id: str
    app_id: str
    version: str  # the app version this instance runs
    agent_id: str = ""
    hostname: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    host_ports: tuple[int, ...] = ()
    state: str = STAGING
    healthy: bool | None = None
    staged_at: float = 0.0
    started_at: float | None = None  # when it was first reported RUNNING
    message: str = ""  # the latest status update's message
    killing: bool = False  # a kill was sent; it no longer counts toward the app's instances
    kill_reason: str = ""  # why (scale down, restart, app deleted, ...)
    unreachable_since: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATE_NAMES

    @property
    def active(self) -> bool:
        """Counts toward the app's instances: not terminal and not being killed."""
        return not self.terminal and not self.killing

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def is_healthy(self, has_checks: bool) -> bool:
        """Running, and healthy when the app has health checks."""
        return self.running and (self.healthy is True or not has_checks)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["attributes"] = [list(p) for p in self.attributes]
        doc["host_ports"] = list(self.host_ports)
        return doc

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Instance:
        """Reads a stored record; raises (KeyError, TypeError, ValueError) when malformed."""
        known = {f.name for f in dataclasses.fields(Instance)}
        values = {k: v for k, v in doc.items() if k in known}
        values["attributes"] = tuple((str(k), str(v)) for k, v in values.get("attributes", ()))
        values["host_ports"] = tuple(int(p) for p in values.get("host_ports", ()))
        inst = Instance(**values)
        if not isinstance(inst.task_id, str) or not isinstance(inst.app_id, str):
            raise TypeError("an instance record needs string task_id and app_id")
        return inst
