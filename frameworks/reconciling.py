"""AutoReconciler: the Session's automatic reconciliation, on the driver's event loop thread.

It feeds a pure Reconciler (frameworks/reconciler.py) with the tasks the scheduler launches and
the status updates it is given, and turns its requests into RECONCILE calls: ``start(reason)``
after a re-subscription (or a failover's first SUBSCRIBED) sends the first request of a round,
a timer on the running loop sends the retries for the unanswered tasks when due (while
subscribed; otherwise the next SUBSCRIBED starts the round over), and the last answer ends the
round. Rounds are logged: reconciliation_started, reconciliation_retried,
reconciliation_completed. Disabled (``enabled=False``) it does nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mensa.frameworks import convert
from mensa.frameworks.reconciler import Reconciler, Request
from mensa.proto import mensa_pb2, scheduler_pb2

RECONCILE_CHUNK = 5000  # tasks per RECONCILE call (far below the message size limit)


class AutoReconciler:
    """Reconciles a session's tasks after (re-)subscriptions; see the module docstring.

    ``send`` sends a call to the master now; ``subscribed`` says whether the session is;
    ``logger`` returns the session's current (bound) logger.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        send: Callable[[scheduler_pb2.Call], None],
        subscribed: Callable[[], bool],
        logger: Callable[[], Any],
        enabled: bool = True,
    ) -> None:
        self.reconciler = Reconciler(initial, maximum)
        self._send = send
        self._subscribed = subscribed
        self._logger = logger
        self._enabled = enabled
        self._timer: asyncio.TimerHandle | None = None

    def track_launches(self, call: scheduler_pb2.Call) -> None:
        """Tracks the tasks an ACCEPT call launches (any thread before the loop runs)."""
        if self._enabled:
            for task_id, agent_id in convert.launched_tasks(call):
                self.reconciler.launched(task_id, agent_id)

    def start(self, reason: str) -> None:
        """Begins a round for the tracked tasks; with ``reason`` "failover" and nothing
        tracked, sends one implicit RECONCILE instead."""
        if not self._enabled:
            return
        self.cancel()
        now = asyncio.get_running_loop().time()
        request = self.reconciler.start(now, implicit_if_empty=reason == "failover")
        if request is None:
            return
        self._logger().info("reconciliation_started", reason=reason, tasks=len(request.tasks),
                            implicit=request.implicit)
        self._send_request(request)

    def observed(self, status: mensa_pb2.TaskStatus, delivered: bool) -> None:
        """Records a status update given to the scheduler (``delivered``: its callback
        returned); logs the end of the round when it was the last answer missing."""
        if not self._enabled:
            return
        reconciler = self.reconciler
        if reconciler.observed(status.task_id.value, status.agent_id.value, status.state,
                               delivered):
            self.cancel()
            self._logger().info("reconciliation_completed", attempts=reconciler.attempt,
                                tasks=len(reconciler.tasks))

    def cancel(self) -> None:
        """Stops the retry timer (the round's state stays for the next ``start``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        if not self._subscribed():
            return  # the next SUBSCRIBED starts the round over
        request = self.reconciler.due(asyncio.get_running_loop().time())
        if request is None:
            self._schedule()
            return
        self._logger().info("reconciliation_retried", attempt=request.attempt,
                            unanswered=len(request.tasks))
        self._send_request(request)

    def _send_request(self, request: Request) -> None:
        tasks = request.tasks
        for i in range(0, max(len(tasks), 1), RECONCILE_CHUNK):
            chunk = [(task_id, agent_id or None) for task_id, agent_id in tasks[i : i + RECONCILE_CHUNK]]
            self._send(convert.reconcile_call(chunk))
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.reconciler.deadline
        if deadline is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._due)
