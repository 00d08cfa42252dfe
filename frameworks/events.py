"""Which Scheduler callback an Event means, and the driver's timing rules (pure).

``callback_for(event, ...)`` maps one master Event to the Scheduler callback it triggers and
its arguments (after the driver argument); HEARTBEAT and UNKNOWN trigger none. The driver
(the I/O shell) adds the side effects: the offer book, acknowledgements, pongs, aborting.

Usage::

    cb = callback_for(event, first_subscription=True)
    if cb is not None:
        getattr(scheduler, cb.name)(driver, *cb.args)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mensa.proto import internal_pb2, scheduler_pb2
from mensa.proto.zk import Leader

Event = scheduler_pb2.Event

DEFAULT_HEARTBEAT_INTERVAL = 15.0


@dataclass(frozen=True, slots=True)
class Callback:
    """A Scheduler callback to invoke: its method name and the arguments after ``driver``."""

    name: str
    args: tuple[Any, ...]


def callback_for(event: scheduler_pb2.Event, *, first_subscription: bool) -> Callback | None:
    """Returns the callback ``event`` triggers, or None (HEARTBEAT, UNKNOWN).

    SUBSCRIBED is ``registered(framework_id, master_info)`` on the driver's first subscription
    and ``reregistered(master_info)`` afterwards. FAILURE is ``agent_lost(agent_id)`` unless it
    names an executor, then ``executor_lost(executor_id, agent_id, status)``.
    """
    kind = event.type
    if kind == Event.SUBSCRIBED:
        sub = event.subscribed
        if first_subscription:
            return Callback("registered", (sub.framework_id, sub.master_info))
        return Callback("reregistered", (sub.master_info,))
    if kind == Event.OFFERS:
        return Callback("resource_offers", (list(event.offers.offers),))
    if kind == Event.RESCIND:
        return Callback("offer_rescinded", (event.rescind.offer_id,))
    if kind == Event.UPDATE:
        return Callback("status_update", (event.update.status,))
    if kind == Event.MESSAGE:
        msg = event.message
        return Callback("framework_message", (msg.executor_id, msg.agent_id, msg.data))
    if kind == Event.FAILURE:
        failure = event.failure
        if failure.HasField("executor_id") and failure.executor_id.value:
            return Callback(
                "executor_lost", (failure.executor_id, failure.agent_id, failure.status)
            )
        return Callback("agent_lost", (failure.agent_id,))
    if kind == Event.ERROR:
        return Callback("error", (event.error.message,))
    return None


def is_removal_error(message: str) -> bool:
    """True when an ERROR event's message says the framework was removed (the master answers
    so a SUBSCRIBE with the id of a framework it tore down or timed out)."""
    return "has been removed" in message


def removal_hint(framework_id: str | None, id_file: str | None) -> str:
    """Returns what to do when the master removed the framework (its id is stale)."""
    if id_file is not None:
        return f"the master removed framework {framework_id}: delete {id_file} to register as a new framework"
    return "the master removed this framework: subscribe without its framework id"


def leader_hint(error: internal_pb2.Error) -> Leader | None:
    """Returns the leader a NOT_LEADER error names, or None (another code, no leader, or a
    leader without a ZeroMQ endpoint)."""
    if error.code != internal_pb2.Error.NOT_LEADER or not error.HasField("leader"):
        return None
    try:
        return Leader.from_info(error.leader)
    except ValueError:
        return None


def same_master(a: Leader | None, b: Leader | None) -> bool:
    """True when ``a`` and ``b`` name one master: both None, or one ZeroMQ endpoint and no two
    different master ids (a fixed address knows no id)."""
    if a is None or b is None:
        return a is b
    if a.zmq != b.zmq:
        return False
    return not (a.master_id and b.master_id and a.master_id != b.master_id)


def heartbeat_interval(event: scheduler_pb2.Event) -> float:
    """Returns the heartbeat interval a SUBSCRIBED event announces (Mesos's 15s when unset)."""
    value = event.subscribed.heartbeat_interval_seconds
    return value if value > 0 else DEFAULT_HEARTBEAT_INTERVAL


def silence_timeout(interval: float, factor: float = 3.0, minimum: float = 5.0) -> float:
    """Returns how long a subscribed driver hears nothing before it deems the master lost."""
    return max(factor * interval, minimum)


@dataclass(slots=True)
class Backoff:
    """Retry delays that start at ``initial`` and double up to ``maximum``.

    ``next()`` returns the delay to wait now and doubles the following one; ``reset()`` starts
    over (after a success).
    """

    initial: float = 0.5
    maximum: float = 10.0
    _current: float = 0.0

    def next(self) -> float:
        delay = self._current or self.initial
        self._current = min(delay * 2, self.maximum)
        return min(delay, self.maximum)

    def reset(self) -> None:
        self._current = 0.0
