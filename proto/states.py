"""Facts about task states that every component shares."""

from __future__ import annotations

from mensa.proto import mensa_pb2

# A task in one of these states will not change state again.
TERMINAL_STATES: frozenset[mensa_pb2.TaskState] = frozenset(
    {
        mensa_pb2.TASK_FINISHED,
        mensa_pb2.TASK_FAILED,
        mensa_pb2.TASK_KILLED,
        mensa_pb2.TASK_ERROR,
        mensa_pb2.TASK_LOST,
        mensa_pb2.TASK_DROPPED,
        mensa_pb2.TASK_GONE,
        mensa_pb2.TASK_GONE_BY_OPERATOR,
    }
)


def is_terminal(state: mensa_pb2.TaskState) -> bool:
    """True when a task in ``state`` is done (finished, failed, killed, lost, ...)."""
    return state in TERMINAL_STATES


# The same states by name ("TASK_FINISHED", ...), for records that keep state names.
TERMINAL_STATE_NAMES: frozenset[str] = frozenset(mensa_pb2.TaskState.Name(s) for s in TERMINAL_STATES)
