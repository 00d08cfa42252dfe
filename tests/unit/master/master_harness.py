"""An in-memory harness for the master state machine: no sockets, no clock.

Peers are plain byte strings; every call returns the Sends the state produced so tests can assert
on exactly what would go on the wire.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mensa.master.allocator import Allocator
from mensa.master.state import MasterConfig, MasterState, Received, Send
from mensa.proto import internal_pb2, mensa_pb2, scheduler_pb2
from mensa.proto.resources import Resources

Call = scheduler_pb2.Call
Event = scheduler_pb2.Event
PA = mensa_pb2.FrameworkInfo.Capability.PARTITION_AWARE


def envelope(**kwargs: object) -> internal_pb2.Envelope:
    return internal_pb2.Envelope(**kwargs)  # type: ignore[arg-type]


@dataclass
class Harness:
    now: float = 1000.0
    state: MasterState = field(init=False)

    def __post_init__(self) -> None:
        info = mensa_pb2.MasterInfo(id="M", hostname="master", port=5051)
        self.state = MasterState(
            MasterConfig(master_info=info, agent_ping_timeout=1.0, max_agent_ping_timeouts=3,
                         heartbeat_interval=1.0),
            allocator=Allocator(rng=random.Random(7)),
        )

    # -- plumbing --------------------------------------------------------------------------

    def send(self, peer: bytes, env: internal_pb2.Envelope) -> list[Send]:
        sends = self.state.handle(Received(peer, env), self.now)
        self.check_invariants()
        return sends

    def allocate(self) -> list[Send]:
        sends = self.state.allocate(self.now)
        self.check_invariants()
        return sends

    def tick(self, advance: float = 0.0) -> list[Send]:
        self.now += advance
        sends = self.state.tick(self.now)
        self.check_invariants()
        return sends

    # -- agents ----------------------------------------------------------------------------

    def register_agent(self, peer: bytes, resources: str = "cpus:4;mem:4096;ports:[31000-31009]",
                       hostname: str = "host", agent_id: str = "",
                       tasks: list[mensa_pb2.Task] | None = None,
                       frameworks: list[mensa_pb2.FrameworkInfo] | None = None) -> str:
        msg = internal_pb2.RegisterAgent(version="test")
        msg.agent_info.hostname = hostname
        msg.agent_info.resources.extend(Resources.parse(resources).to_proto())
        if agent_id:
            msg.agent_info.id.value = agent_id
        msg.tasks.extend(tasks or [])
        msg.frameworks.extend(frameworks or [])
        sends = self.send(peer, envelope(register_agent=msg))
        replies = [s for s in sends if s.envelope.WhichOneof("message") == "agent_registered"]
        assert replies, sends
        return replies[-1].envelope.agent_registered.agent_id.value

    def status(self, peer: bytes, framework_id: str, task_id: str, state: int,
               uuid: bytes, latest: int | None = None, message: str = "") -> list[Send]:
        msg = internal_pb2.StatusUpdate()
        msg.framework_id.value = framework_id
        msg.status.task_id.value = task_id
        msg.status.state = state  # type: ignore[assignment]
        msg.status.uuid = uuid
        msg.status.message = message
        msg.status.source = mensa_pb2.TaskStatus.SOURCE_EXECUTOR
        if latest is not None:
            msg.latest_state = latest  # type: ignore[assignment]
        return self.send(peer, envelope(status_update=msg))

    # -- frameworks ------------------------------------------------------------------------

    def subscribe(self, peer: bytes, name: str = "fw", framework_id: str = "",
                  capabilities: tuple[int, ...] = (), failover_timeout: float = 0.0) -> str:
        call = Call(type=Call.SUBSCRIBE)
        info = call.subscribe.framework_info
        info.name, info.user = name, "root"
        info.failover_timeout = failover_timeout
        for cap in capabilities:
            info.capabilities.add(type=cap)  # type: ignore[arg-type]
        if framework_id:
            info.id.value = framework_id
            call.framework_id.value = framework_id
        sends = self.send(peer, envelope(call=call))
        events = [s.envelope.event for s in sends if s.peer == peer and s.envelope.HasField("event")]
        subscribed = [e for e in events if e.type == Event.SUBSCRIBED]
        assert subscribed, sends
        return subscribed[0].subscribed.framework_id.value

    def call(self, peer: bytes, framework_id: str, call: scheduler_pb2.Call) -> list[Send]:
        call.framework_id.value = framework_id
        return self.send(peer, envelope(call=call))

    def offers_to(self, sends: list[Send], peer: bytes) -> list[mensa_pb2.Offer]:
        return [o for e in events_to(sends, peer, Event.OFFERS) for o in e.offers.offers]

    def launch(self, peer: bytes, framework_id: str, offer_ids: list[str],
               tasks: list[mensa_pb2.TaskInfo], refuse_seconds: float | None = None) -> list[Send]:
        call = Call(type=Call.ACCEPT)
        for offer_id in offer_ids:
            call.accept.offer_ids.add(value=offer_id)
        op = call.accept.operations.add(type=mensa_pb2.Offer.Operation.LAUNCH)
        op.launch.task_infos.extend(tasks)
        if refuse_seconds is not None:
            call.accept.filters.refuse_seconds = refuse_seconds
        return self.call(peer, framework_id, call)

    # -- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Every agent's resources are free, offered, or used by a live task, exactly once."""
        st = self.state
        for agent in st.agents.values():
            used = Resources.empty()
            for framework_id, task_id in agent.tasks:
                task = st.frameworks[framework_id].tasks[task_id]
                assert not task.released, (framework_id, task_id)
                used = used + task.resources
            offered = st.offers.offered_on(agent.agent_id)
            free = st.allocator.free(agent.agent_id)
            assert free + offered + used == agent.total, (
                agent.agent_id, str(free), str(offered), str(used), str(agent.total))
        for framework in st.frameworks.values():
            for task in framework.tasks.values():
                if not task.released:
                    assert (framework.framework_id, task.task_id) in st.agents[task.agent_id].tasks


def task(task_id: str, resources: str = "cpus:1;mem:128", command: str = "true",
         shell: bool = True) -> mensa_pb2.TaskInfo:
    info = mensa_pb2.TaskInfo(name=f"task {task_id}")
    info.task_id.value = task_id
    info.resources.extend(Resources.parse(resources).to_proto())
    info.command.value = command
    info.command.shell = shell
    return info


def events_to(sends: list[Send], peer: bytes, kind: int | None = None) -> list[scheduler_pb2.Event]:
    return [s.envelope.event for s in sends if s.peer == peer and s.envelope.HasField("event")
            and (kind is None or s.envelope.event.type == kind)]


def updates_to(sends: list[Send], peer: bytes) -> list[mensa_pb2.TaskStatus]:
    return [e.update.status for e in events_to(sends, peer, Event.UPDATE)]


def messages_to(sends: list[Send], peer: bytes, kind: str) -> list[internal_pb2.Envelope]:
    return [s.envelope for s in sends if s.peer == peer and s.envelope.WhichOneof("message") == kind]


def errors_to(sends: list[Send], peer: bytes) -> list[internal_pb2.Error]:
    return [e.error for e in messages_to(sends, peer, "error")]
