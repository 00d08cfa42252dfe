"""An in-memory harness for the batch engine: no sockets, no clock, a dict for a store.

``Harness`` plays the shell: it passes ``now`` (an injected clock, moved by the test), writes
Persist/Forget commands into ``records`` as a store would (through JSON), keeps every command in
``sent``, and can ``restart`` the engine from those records as a restarted framework would.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mensa.frameworks.batch_fw import (
    BatchEngine,
    Command,
    Decline,
    Forget,
    Kill,
    Launch,
    Persist,
    Reconcile,
    Revive,
    Run,
    Suppress,
    parse_job,
    parse_schedule,
)
from mensa.proto import mensa_pb2
from mensa.proto.attributes import parse_attributes
from mensa.proto.resources import Resources

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()


def at(text: str) -> float:
    """Epoch seconds of an ISO time with offset, e.g. ``2026-03-08T03:00:00-04:00``."""
    return datetime.fromisoformat(text).timestamp()


def offer(offer_id: str = "o1", agent_id: str = "a1", resources: str = "cpus:4;mem:4096;disk:1000",
          hostname: str = "h1", attributes: str = "", role: str | None = None) -> mensa_pb2.Offer:
    o = mensa_pb2.Offer(hostname=hostname)
    o.id.value = offer_id
    o.agent_id.value = agent_id
    o.framework_id.value = "fw"
    o.resources.extend(Resources.parse(resources).to_proto(allocation_role=role))
    if role is not None:
        o.allocation_info.role = role
    o.attributes.extend(parse_attributes(attributes))
    return o


def status(task_id: str, state: int, message: str = "", agent_id: str = "a1",
           reason: int | None = None) -> mensa_pb2.TaskStatus:
    s = mensa_pb2.TaskStatus(state=state, message=message)  # type: ignore[arg-type]
    s.task_id.value = task_id
    s.agent_id.value = agent_id
    if reason is not None:
        s.reason = reason  # type: ignore[assignment]
    return s


def job_doc(job_id: str = "hello", **extra: Any) -> dict[str, Any]:
    run = {"cmd": "echo hi", "cpus": 1, "mem": 128}
    run.update(extra.pop("run", {}))
    return {"id": job_id, "run": run, **extra}


def launched(commands: list[Command]) -> list[mensa_pb2.TaskInfo]:
    return [t for c in commands if isinstance(c, Launch) for t in c.tasks]


def launched_ids(commands: list[Command]) -> list[str]:
    return [t.task_id.value for t in launched(commands)]


def kinds(commands: list[Command]) -> list[str]:
    """Command names in order, e.g. ["Persist", "Launch", "Decline"]."""
    return [type(c).__name__ for c in commands]


def only(commands: list[Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


@dataclass
class Harness:
    now: float = T0
    engine: BatchEngine = field(default_factory=BatchEngine)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {"job": {}, "run": {}})
    sent: list[Command] = field(default_factory=list)

    def apply(self, commands: list[Command]) -> list[Command]:
        for c in commands:
            if isinstance(c, Persist):  # stored as JSON, as the real stores do
                self.records.setdefault(c.kind, {})[c.key] = json.loads(json.dumps(c.doc, allow_nan=False))
            elif isinstance(c, Forget):
                self.records.get(c.kind, {}).pop(c.key, None)
        self.sent += commands
        return commands

    def put(self, doc: dict[str, Any], **kwargs: Any) -> list[Command]:
        return self.apply(self.engine.put_job(parse_job(doc), self.now, **kwargs))

    def put_schedule(self, job_id: str, doc: dict[str, Any], **kwargs: Any) -> list[Command]:
        return self.apply(self.engine.put_schedule(job_id, parse_schedule(doc), self.now, **kwargs))

    def start(self, job_id: str = "hello") -> Run:
        run, commands = self.engine.start_run(job_id, self.now)
        self.apply(commands)
        return run

    def offers(self, *offers: mensa_pb2.Offer) -> list[Command]:
        return self.apply(self.engine.offers(list(offers), self.now))

    def update(self, task_id: str, state: int, message: str = "", agent_id: str = "a1",
               reason: int | None = None) -> list[Command]:
        update = status(task_id, state, message, agent_id, reason)
        return self.apply(self.engine.status_update(update, self.now))

    def tick(self, when: float | None = None) -> list[Command]:
        if when is not None:
            self.now = when
        return self.apply(self.engine.tick(self.now))

    def advance(self, seconds: float) -> list[Command]:
        return self.tick(self.now + seconds)

    def run_until(self, when: float) -> list[Command]:
        """Ticks at each wakeup the engine asks for up to ``when`` (as the shell's timer would)."""
        out: list[Command] = []
        while True:
            wake = self.engine.next_wakeup()
            if wake is None or wake > when:
                break
            out += self.tick(max(wake, self.now))
        self.now = when
        out += self.tick(when)
        return out

    def restart(self, when: float | None = None) -> list[Command]:
        """A new engine from the records (the framework restarted or another instance leads)."""
        if when is not None:
            self.now = when
        self.engine = BatchEngine()
        return self.apply(self.engine.restore(copy.deepcopy(self.records), self.now))

    def run_json(self, job_id: str, run_id: str) -> dict[str, Any]:
        return self.engine.run(job_id, run_id)


__all__ = ["T0", "Decline", "Harness", "Kill", "Launch", "Persist", "Reconcile", "Revive", "Suppress", "at",
           "job_doc", "kinds", "launched", "launched_ids", "offer", "only", "status"]
