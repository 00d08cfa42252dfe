"""An in-memory harness for the service engine: no sockets, no clock, a dict for a store.

``Harness`` plays the shell and the cluster: it passes ``now`` (moved by the test), writes
Persist/Forget into ``records`` through JSON as a store would, keeps every command in ``sent``,
plays agents (``offer``), reports task states (``update``, ``run_all``), and can ``restart``
the engine from the records as a restarted framework would.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from mensa.frameworks.service_fw.app_reading import parse_app
from mensa.frameworks.service_fw.commands import (
    Command,
    Decline,
    Emit,
    Forget,
    Kill,
    Launch,
    Persist,
    Reconcile,
    Revive,
    Suppress,
)
from mensa.frameworks.service_fw.deployments import Deployment
from mensa.frameworks.service_fw.engine import ServiceEngine
from mensa.frameworks.service_fw.instances import Instance
from mensa.proto import mensa_pb2
from mensa.proto.attributes import parse_attributes
from mensa.proto.resources import Resources

T0 = 1_790_000_000.0


PLENTY = "cpus:4;mem:4096;disk:1000;ports:[31000-31009]"


def offer(offer_id: str, agent_id: str = "a1", resources: str = PLENTY, hostname: str | None = None,
          attributes: str = "", role: str | None = None) -> mensa_pb2.Offer:
    o = mensa_pb2.Offer(hostname=hostname or f"host-{agent_id}")
    o.id.value = offer_id
    o.agent_id.value = agent_id
    o.framework_id.value = "fw"
    o.resources.extend(Resources.parse(resources).to_proto(allocation_role=role))
    if role is not None:
        o.allocation_info.role = role
    o.attributes.extend(parse_attributes(attributes))
    return o


def status(task_id: str, state: int, *, agent_id: str = "a1", healthy: bool | None = None,
           message: str = "", reason: int | None = None) -> mensa_pb2.TaskStatus:
    s = mensa_pb2.TaskStatus(state=state, message=message)  # type: ignore[arg-type]
    s.task_id.value = task_id
    s.agent_id.value = agent_id
    if healthy is not None:
        s.healthy = healthy
    if reason is not None:
        s.reason = reason  # type: ignore[assignment]
    return s


def app(app_id: str = "/web", **fields: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 1000", "cpus": 0.5, "mem": 64, **fields}


class Harness:
    """See the module docstring."""

    def __init__(self) -> None:
        self.now = T0
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.sent: list[Command] = []
        self.counter = itertools.count(1)
        self.offers = itertools.count(1)
        self.engine = self._new_engine()

    def _new_engine(self) -> ServiceEngine:
        return ServiceEngine(role="*", new_id=lambda: f"{next(self.counter):032x}")

    def apply(self, commands: list[Command]) -> list[Command]:
        stored = True
        for c in commands:
            if isinstance(c, Persist):
                assert stored, "a Persist came after a command that depends on the store"
                self.records.setdefault(c.kind, {})[c.key] = json.loads(json.dumps(c.doc))
            elif isinstance(c, Forget):
                assert stored
                self.records.get(c.kind, {}).pop(c.key, None)
            else:
                stored = False  # any later Persist would come after a send
        self.sent.extend(commands)
        return commands

    def tick(self, seconds: float = 0.0) -> list[Command]:
        self.now += seconds
        return self.apply(self.engine.tick(self.now))

    # -- API ----------------------------------------------------------------------------------

    def deploy(self, doc: dict[str, Any], force: bool = False) -> Deployment:
        dep, commands = self.engine.update_app(parse_app(doc), self.now, force=force)
        self.apply(commands)
        return dep

    def scale(self, app_id: str, n: int, force: bool = False) -> Deployment:
        dep, commands = self.engine.scale_app(app_id, n, self.now, force=force)
        self.apply(commands)
        return dep

    # -- the cluster ----------------------------------------------------------------------------

    def offer(self, agent_id: str = "a1", **kw: Any) -> list[Command]:
        o = offer(f"o{next(self.offers)}", agent_id, **kw)
        return self.apply(self.engine.offers([o], self.now))

    def update(self, task_id: str, state: int, **kw: Any) -> list[Command]:
        inst = self.engine.instances.get(task_id)
        agent = inst.agent_id if inst is not None else kw.pop("agent_id", "a1")
        kw.pop("agent_id", None)
        return self.apply(self.engine.status_update(status(task_id, state, agent_id=agent, **kw), self.now))

    def run_all(self, app_id: str, healthy: bool | None = None) -> None:
        """Every STAGING instance of the app goes RUNNING (with that health)."""
        for inst in list(self.engine.instances_of(app_id)):
            if inst.state == "TASK_STAGING" and not inst.killing:
                self.update(inst.task_id, mensa_pb2.TASK_RUNNING, healthy=healthy)

    def finish_kills(self) -> None:
        """The agents answer every kill sent and not answered yet with TASK_KILLED."""
        for inst in list(self.engine.all_instances()):
            if inst.killing:
                self.update(inst.task_id, mensa_pb2.TASK_KILLED)

    def live(self, app_id: str) -> list[Instance]:
        return [i for i in self.engine.instances_of(app_id) if i.active]

    def restart(self) -> list[Command]:
        """A new engine from the stored records, as after a framework restart."""
        self.engine = self._new_engine()
        return self.apply(self.engine.restore(copy.deepcopy(self.records), self.now))


def launched(commands: list[Command]) -> list[mensa_pb2.TaskInfo]:
    return [t for c in commands if isinstance(c, Launch) for t in c.tasks]


def killed(commands: list[Command]) -> list[str]:
    return [c.task_id for c in commands if isinstance(c, Kill)]


def emitted(commands: list[Command], event_type: str) -> list[dict[str, Any]]:
    return [c.doc for c in commands if isinstance(c, Emit) and c.event_type == event_type]


__all__ = ["T0", "Decline", "Harness", "Kill", "Launch", "Reconcile", "Revive", "Suppress", "app",
           "emitted", "killed", "launched", "offer", "status"]
