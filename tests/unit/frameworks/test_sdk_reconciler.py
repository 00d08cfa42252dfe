"""The SDK's pure reconciliation bookkeeping: which tasks are tracked, which are asked about in
each request of a round, and when the retries are due (no sockets, no clock)."""

from __future__ import annotations

import pytest

from mensa.frameworks import convert
from mensa.frameworks.reconciler import Reconciler, Request
from mensa.proto import mensa_pb2

RUNNING = mensa_pb2.TASK_RUNNING
STAGING = mensa_pb2.TASK_STAGING


def tracker(*tasks: tuple[str, str]) -> Reconciler:
    rec = Reconciler(initial=1.0, maximum=30.0)
    for task_id, agent_id in tasks:
        rec.launched(task_id, agent_id)
    return rec


def test_launched_tasks_are_staging_and_asked_with_their_agents() -> None:
    rec = tracker(("t2", "a2"), ("t1", "a1"))
    assert {k: (v.agent_id, v.state) for k, v in rec.tasks.items()} == {
        "t1": ("a1", STAGING),
        "t2": ("a2", STAGING),
    }
    request = rec.start(100.0)
    assert request == Request((("t1", "a1"), ("t2", "a2")), attempt=1)
    assert not request.implicit
    assert rec.running and rec.pending == {"t1", "t2"} and rec.deadline == 101.0


def test_answered_tasks_stop_being_asked_and_the_last_answer_completes() -> None:
    rec = tracker(("t1", "a1"), ("t2", "a2"))
    rec.start(0.0)
    assert rec.observed("t1", "a1", RUNNING, delivered=True) is False  # t2 still unanswered
    assert rec.due(0.5) is None  # not due yet
    assert rec.due(1.0) == Request((("t2", "a2"),), attempt=2)
    # Any update counts as an answer, e.g. TASK_UNREACHABLE from the master.
    assert rec.observed("t2", "a2", mensa_pb2.TASK_UNREACHABLE, delivered=True) is True
    assert not rec.running and rec.deadline is None
    assert rec.due(1000.0) is None  # nothing more to ask
    assert rec.tasks["t2"].state == mensa_pb2.TASK_UNREACHABLE  # not terminal: still tracked
    assert rec.observed("t1", "a1", RUNNING, delivered=True) is False  # outside a round


def test_backoff_doubles_and_caps() -> None:
    rec = tracker(("t1", "a1"))
    now = 0.0
    rec.start(now)
    deadlines = []
    for attempt in range(2, 10):
        assert rec.deadline is not None
        now = rec.deadline
        assert rec.due(now) == Request((("t1", "a1"),), attempt=attempt)
        assert rec.deadline is not None
        deadlines.append(rec.deadline - now)
    assert deadlines == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_a_new_round_restarts_the_backoff_and_asks_everything_again() -> None:
    rec = tracker(("t1", "a1"), ("t2", "a2"))
    rec.start(0.0)
    rec.observed("t1", "a1", RUNNING, delivered=True)
    rec.due(1.0)
    rec.due(3.0)  # attempt 3; the next wait would be 4s
    assert rec.attempt == 3
    request = rec.start(10.0)  # a re-subscription
    assert request == Request((("t1", "a1"), ("t2", "a2")), attempt=1)
    assert rec.deadline == 11.0 and rec.pending == {"t1", "t2"}


def test_terminal_tasks_are_dropped_once_delivered() -> None:
    rec = tracker(("t1", "a1"), ("t2", "a2"), ("t3", "a3"))
    rec.start(0.0)
    assert rec.observed("t1", "a1", mensa_pb2.TASK_FINISHED, delivered=True) is False
    # The callback raised: the update comes again, so the task stays (answered though).
    assert rec.observed("t2", "a2", mensa_pb2.TASK_LOST, delivered=False) is False
    assert set(rec.tasks) == {"t2", "t3"} and rec.tasks["t2"].state == mensa_pb2.TASK_LOST
    assert rec.due(1.0) == Request((("t3", "a3"),), attempt=2)
    assert rec.observed("t3", "a3", mensa_pb2.TASK_KILLED, delivered=True) is True
    assert rec.observed("t2", "a2", mensa_pb2.TASK_LOST, delivered=True) is False
    assert rec.tasks == {}
    assert rec.start(5.0) is None  # nothing to reconcile


def test_updates_track_unknown_tasks_and_their_latest_agent() -> None:
    rec = Reconciler()
    rec.observed("t1", "a1", RUNNING, delivered=True)  # e.g. an implicit reconciliation answer
    rec.observed("t2", "a2", mensa_pb2.TASK_FAILED, delivered=True)  # terminal: not tracked
    rec.observed("t3", "", mensa_pb2.TASK_UNKNOWN, delivered=True)  # the master knows nothing
    assert set(rec.tasks) == {"t1"}
    rec.launched("t1", "other")  # a launch does not overwrite what an update said
    rec.observed("t1", "a9", RUNNING, delivered=True)
    assert rec.tasks["t1"].agent_id == "a9"
    rec.observed("t1", "", mensa_pb2.TASK_KILLING, delivered=True)  # no agent: keeps the last
    assert (rec.tasks["t1"].agent_id, rec.tasks["t1"].state) == ("a9", mensa_pb2.TASK_KILLING)


def test_implicit_request_only_when_asked_and_nothing_is_tracked() -> None:
    rec = Reconciler()
    assert rec.start(0.0) is None
    request = rec.start(0.0, implicit_if_empty=True)
    assert request == Request((), attempt=1) and request.implicit
    assert not rec.running  # an implicit request is not retried
    rec.launched("t1", "a1")
    assert rec.start(0.0, implicit_if_empty=True) == Request((("t1", "a1"),), attempt=1)


def test_forget_and_stop() -> None:
    rec = tracker(("t1", "a1"), ("t2", "a2"))
    rec.start(0.0)
    rec.forget("t1")
    assert rec.pending == {"t2"} and set(rec.tasks) == {"t2"}
    rec.stop()
    assert not rec.running and rec.due(100.0) is None
    rec.forget("t2")
    assert rec.start(0.0) is None


def test_bad_backoff_is_refused() -> None:
    with pytest.raises(ValueError):
        Reconciler(initial=0.0)
    with pytest.raises(ValueError):
        Reconciler(initial=5.0, maximum=1.0)


def test_accept_fills_agents_and_launched_tasks_are_listed() -> None:
    task = {"name": "t", "task_id": {"value": "t1"}, "command": {"value": "true"}}
    pinned = {"name": "p", "task_id": {"value": "t2"}, "agent_id": {"value": "a7"}}
    op = {"type": "LAUNCH", "launch": {"task_infos": [task, pinned]}}
    call = convert.accept_call("o1", [op, {"type": "RESERVE"}], None, {"o1": "a1"})
    assert convert.launched_tasks(call) == [("t1", "a1"), ("t2", "a7")]
    unknown = convert.accept_call("o2", [op], None, {"o1": "a1"})
    assert convert.launched_tasks(unknown) == [("t1", ""), ("t2", "a7")]
    assert convert.launched_tasks(convert.revive_call()) == []
