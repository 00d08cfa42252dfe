"""A scripted master for SDK tests: a real ZeroMQ ROUTER on 127.0.0.1 that the test drives.

The test receives what a driver sends (``next_call``) and answers with events (``send_event``),
so each step of the wire protocol is asserted where it happens. ``not_leader`` plays a standby
master; ``ScriptedDetector`` plays ZooKeeper telling the driver who leads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from mensa.frameworks import Scheduler
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2, transport
from mensa.proto.zk import Leader

Call = scheduler_pb2.Call
Event = scheduler_pb2.Event
Envelope = internal_pb2.Envelope

WAIT = 5.0  # seconds any single expected message may take to arrive (never a timing assertion)


class FakeMaster:
    """A ROUTER socket bound on 127.0.0.1 (``port`` 0 picks one)."""

    def __init__(self, port: int = 0, master_id: str = "master-1") -> None:
        self.ctx = zmq.Context()
        self.sock, self.port = transport.bind_router(self.ctx, "127.0.0.1", port)
        self.address = f"127.0.0.1:{self.port}"
        self.master_id = master_id

    @property
    def info(self) -> mensa_pb2.MasterInfo:
        """This master's MasterInfo as a leader znode holds it (HTTP port: ZeroMQ port + 1)."""
        info = mensa_pb2.MasterInfo(
            id=self.master_id, hostname="localhost", zmq_endpoint=f"tcp://{self.address}"
        )
        info.address.ip = "127.0.0.1"
        info.address.port = self.port + 1
        return info

    @property
    def leader(self) -> Leader:
        return Leader.from_info(self.info)

    def not_leader(self, identity: bytes, leader: FakeMaster | None = None) -> None:
        """Answers as a standby: NOT_LEADER, naming ``leader`` when given."""
        error = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, message="not the leader")
        if leader is not None:
            error.leader.CopyFrom(leader.info)
        self.send(identity, Envelope(error=error))

    def not_subscribed(self, identity: bytes) -> None:
        """Answers as a master that lost the framework (after a failover): NOT_SUBSCRIBED."""
        error = internal_pb2.Error(code=internal_pb2.Error.NOT_SUBSCRIBED, message="who are you")
        self.send(identity, Envelope(error=error))

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def recv(self, timeout: float = WAIT) -> tuple[bytes, internal_pb2.Envelope] | None:
        """Returns the next (identity, envelope), or None when nothing came within ``timeout``."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        identity, payload = self.sock.recv_multipart()
        return identity, transport.decode(payload)

    def next_message(self, skip_pongs: bool = True) -> tuple[bytes, internal_pb2.Envelope]:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is None:
                break
            if skip_pongs and got[1].HasField("pong"):
                continue
            return got
        raise AssertionError("the driver sent nothing")

    def next_call(self, type_: int) -> tuple[bytes, scheduler_pb2.Call]:
        """Returns the next Call, which must be of ``type_``; skips pongs, repeated SUBSCRIBEs
        (retries) and RECONCILEs (the driver's automatic reconciliation) unless one of those
        is what is expected."""
        while True:
            identity, envelope = self.next_message()
            assert envelope.HasField("call"), f"expected a call, got {envelope}"
            call = envelope.call
            if call.type in (Call.SUBSCRIBE, Call.RECONCILE) and call.type != type_:
                continue
            assert call.type == type_, f"expected {Call.Type.Name(type_)}, got {call}"
            return identity, call

    def send(self, identity: bytes, envelope: internal_pb2.Envelope) -> None:
        self.sock.send_multipart([identity, transport.encode(envelope)])

    def send_event(self, identity: bytes, **fields: Any) -> None:
        self.send(identity, Envelope(event=Event(**fields)))

    def update(self, identity: bytes, task_status: mensa_pb2.TaskStatus) -> None:
        """Sends an UPDATE event carrying ``task_status``."""
        self.send_event(identity, type=Event.UPDATE, update=Event.Update(status=task_status))

    def next_reconcile(self) -> tuple[bytes, list[tuple[str, str]]]:
        """Waits for the next RECONCILE; returns the identity and its (task id, agent id) pairs
        (an empty list for an implicit reconciliation)."""
        identity, call = self.next_call(Call.RECONCILE)
        return identity, [(t.task_id.value, t.agent_id.value) for t in call.reconcile.tasks]

    def subscribe(
        self, framework_id: str = "fw-1", heartbeat: float = 30.0
    ) -> tuple[bytes, scheduler_pb2.Call]:
        """Waits for SUBSCRIBE and answers SUBSCRIBED; returns the identity and the call."""
        identity, call = self.next_call(Call.SUBSCRIBE)
        self.subscribed(identity, framework_id, heartbeat)
        return identity, call

    def subscribed(
        self, identity: bytes, framework_id: str = "fw-1", heartbeat: float = 30.0
    ) -> None:
        """Sends SUBSCRIBED to ``identity``."""
        self.send_event(
            identity,
            type=Event.SUBSCRIBED,
            subscribed=Event.Subscribed(
                framework_id=mensa_pb2.FrameworkID(value=framework_id),
                heartbeat_interval_seconds=heartbeat,
                master_info=mensa_pb2.MasterInfo(id=self.master_id, hostname="localhost"),
            ),
        )


class ScriptedDetector:
    """A MasterDetector the test drives: ``announce(leader)`` reports a leader (None: none)
    from the test's thread, as kazoo's thread would."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self._on_change: Callable[[Leader | None], None] | None = None

    def start(self, on_change: Callable[[Leader | None], None]) -> None:
        self._on_change = on_change
        self.started.set()

    def stop(self) -> None:
        self.stopped.set()

    def announce(self, leader: FakeMaster | Leader | None) -> None:
        assert self.started.wait(WAIT), "the driver never started its detector"
        assert self._on_change is not None
        self._on_change(leader.leader if isinstance(leader, FakeMaster) else leader)


def offer(offer_id: str, agent_id: str, resources: str = "cpus:1;mem:1024") -> mensa_pb2.Offer:
    from mensa.proto.resources import Resources

    return mensa_pb2.Offer(
        id=mensa_pb2.OfferID(value=offer_id),
        framework_id=mensa_pb2.FrameworkID(value="fw-1"),
        agent_id=mensa_pb2.AgentID(value=agent_id),
        hostname="localhost",
        resources=Resources.parse(resources).to_proto(),
    )


def status(
    task_id: str, state: int, agent_id: str = "a1", uuid: bytes = b""
) -> mensa_pb2.TaskStatus:
    out = mensa_pb2.TaskStatus(
        task_id=mensa_pb2.TaskID(value=task_id),
        state=state,
        agent_id=mensa_pb2.AgentID(value=agent_id),
        source=mensa_pb2.TaskStatus.SOURCE_AGENT,
    )
    if uuid:
        out.uuid = uuid
    return out


class Recorder(Scheduler):
    """Records every callback as (name, args) in a queue; ``wait`` pops until a name appears."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()

    def _record(self, name: str, *args: Any) -> None:
        self.seen.put((name, args))

    def wait(self, name: str) -> tuple[Any, ...]:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, args = self.seen.get(timeout=left)
            except queue.Empty:
                break
            if got == name:
                return args
        raise AssertionError(f"callback {name} was not invoked")

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self._record("registered", framework_id, master_info)

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._record("reregistered", master_info)

    def disconnected(self, driver: Any) -> None:
        self._record("disconnected")

    def resource_offers(self, driver: Any, offers: Any) -> None:
        self._record("resource_offers", offers)

    def offer_rescinded(self, driver: Any, offer_id: Any) -> None:
        self._record("offer_rescinded", offer_id)

    def status_update(self, driver: Any, status: Any) -> None:
        self._record("status_update", status)

    def framework_message(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:
        self._record("framework_message", executor_id, agent_id, data)

    def agent_lost(self, driver: Any, agent_id: Any) -> None:
        self._record("agent_lost", agent_id)

    def executor_lost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:
        self._record("executor_lost", executor_id, agent_id, status)

    def error(self, driver: Any, message: str) -> None:
        self._record("error", message)
