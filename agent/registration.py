"""The agent's standing with the master: when to register, when the master is lost (pure).

``MasterLink`` decides when a RegisterAgent must go out: on the first tick, then with backoff
(``backoff_min`` doubling to ``backoff_max``) until AgentRegistered arrives; and again, from the
minimum backoff, when a registered agent hears nothing from the master for ``ping_timeout``
seconds, is told NOT_REGISTERED, or sees its connection re-established. It keeps the agent id
across re-registrations (``forget`` drops it when the master shuts the agent down).

Following a leading master (``leader_changed``): while no master leads the agent does not
register at all (it keeps its tasks and updates and waits); when a new leader is announced the
first registration waits ``jitter * backoff_min`` (``jitter`` in [0, 1), drawn by the caller),
except for the first leader the agent ever learns of, so thousands of agents re-registering
after a failover spread out instead of stampeding the new leader. A NOT_LEADER answer
(``not_leader``) restarts the backoff from its minimum (plus the same jitter), so an agent that
asked a master still taking over registers again within about a second instead of waiting out
a doubled backoff.

``register_envelope`` builds the RegisterAgent message itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mensa.proto import internal_pb2, mensa_pb2


@dataclass(slots=True)
class MasterLink:
    """Registration state and timing; every method takes ``now`` (monotonic seconds)."""

    backoff_min: float = 0.5
    backoff_max: float = 5.0
    ping_timeout: float = 15.0
    agent_id: str | None = None
    registered: bool = False
    ping_interval: float | None = None
    master_info: mensa_pb2.MasterInfo | None = None
    last_heard: float = 0.0
    next_attempt: float = float("-inf")
    last_attempt: float = float("-inf")
    backoff: float = field(default=0.0)
    leader_known: bool = True  # False while the detector knows of no leading master.
    had_leader: bool = False  # A leader was announced before (the next one is a change).
    hold_until: float = float("-inf")  # No registration before this (jittered leader change).
    jitter: float = 0.0  # The last leader change's jitter, in [0, 1] (this agent's own spread).

    def __post_init__(self) -> None:
        self.backoff = self.backoff_min

    def heard(self, now: float) -> None:
        """Records that a message from the master arrived."""
        self.last_heard = now

    def master_silent(self, now: float) -> bool:
        """True when registered and nothing was heard for longer than ``ping_timeout``."""
        return self.registered and now - self.last_heard > self.ping_timeout

    def registration_due(self, now: float) -> bool:
        """True when an unregistered agent's next attempt is due (and a master leads)."""
        return (
            self.leader_known
            and not self.registered
            and now >= self.next_attempt
            and now >= self.hold_until
        )

    def leader_changed(self, leading: bool, now: float, jitter: float) -> float:
        """A new leader (``leading``) or none: registers again, after ``jitter * backoff_min``
        unless this is the first leader ever announced. Returns the delay chosen."""
        self.lose()
        self.leader_known = leading
        if not leading:
            return 0.0
        self.jitter = min(max(jitter, 0.0), 1.0)
        delay = min(max(jitter, 0.0), 1.0) * self.backoff_min if self.had_leader else 0.0
        self.had_leader = True
        self.hold_until = now + delay
        self.next_attempt = self.hold_until
        return delay

    def lose(self) -> None:
        """The master is gone (or forgot us): register again, backoff restarted."""
        self.registered = False
        self.backoff = self.backoff_min
        self.next_attempt = float("-inf")

    def not_leader(self, now: float) -> float:
        """The master answered NOT_LEADER: the agent is not registered with it, and registers
        again (with whichever master leads by then) after ``backoff_min * (1 + jitter)``, from
        the minimum backoff each time, however many answers came before (a leader that is
        still taking over must not push the agent's next attempt out to ``backoff_max``).
        Returns the delay chosen."""
        self.registered = False
        self.backoff = self.backoff_min
        delay = self.backoff_min * (1.0 + self.jitter)
        self.next_attempt = now + delay
        return delay

    def forget(self) -> None:
        """Drops the agent id (shut down by the master): the next registration is a new agent."""
        self.agent_id = None
        self.lose()

    def may_register_now(self, now: float) -> bool:
        """True unless an attempt went out less than ``backoff_min`` ago while unregistered
        (so a burst of NOT_REGISTERED errors sends one registration, not one each)."""
        if not self.leader_known or now < self.hold_until:
            return False
        return self.registered or now - self.last_attempt >= self.backoff_min

    def attempted(self, now: float) -> None:
        """Records a RegisterAgent sent at ``now``; the next is due after the backoff."""
        self.last_attempt = now
        self.next_attempt = now + self.backoff
        self.backoff = min(self.backoff * 2, self.backoff_max)

    def accept(self, reply: internal_pb2.AgentRegistered, now: float) -> bool:
        """Applies AgentRegistered; returns True when it registered the agent (False for a
        duplicate reply while already registered)."""
        newly = not self.registered
        self.agent_id = reply.agent_id.value
        self.registered = True
        self.last_heard = now
        self.backoff = self.backoff_min
        self.next_attempt = float("-inf")
        if reply.ping_timeout_seconds > 0:
            self.ping_timeout = reply.ping_timeout_seconds
        if reply.ping_interval_seconds > 0:
            self.ping_interval = reply.ping_interval_seconds
        if reply.HasField("master_info"):
            self.master_info = reply.master_info
        return newly


def register_envelope(
    *,
    hostname: str,
    resources: Iterable[mensa_pb2.Resource],
    attributes: Iterable[mensa_pb2.Attribute],
    http_port: int,
    version: str,
    advertise_ip: str = "",
    agent_id: str | None,
    tasks: Iterable[mensa_pb2.Task],
    frameworks: Iterable[mensa_pb2.FrameworkInfo],
) -> internal_pb2.Envelope:
    """Returns the RegisterAgent envelope (with ``agent_info.id`` once the agent has one)."""
    info = mensa_pb2.AgentInfo(hostname=hostname, port=http_port)
    info.resources.extend(resources)
    info.attributes.extend(attributes)
    if agent_id:
        info.id.value = agent_id
    message = internal_pb2.RegisterAgent(agent_info=info, version=version, http_port=http_port,
                                         advertise_ip=advertise_ip)
    message.tasks.extend(tasks)
    message.frameworks.extend(frameworks)
    return internal_pb2.Envelope(register_agent=message)
