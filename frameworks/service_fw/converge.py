"""How the service engine moves each app toward what it should run (pure; part of the engine).

``Converger.settle(now)`` looks at every app marked dirty (a change, a status update, an offer,
a timer) and decides:

- an app in the current step of its deployment follows that action: ScaleApplication and apps
  under no deployment use ``planner.scale_decision`` (start the shortfall, kill the surplus by
  killSelection), RestartApplication ``planner.restart_decision`` (rolling, within the upgrade
  strategy), StopApplication kills everything;
- an app whose deployment has not reached it yet is held as it is;
- kills are sent at once; the number of instances to start goes to the offer book, which
  launches them as offers arrive, unless the app's launch backoff holds it.

It then moves deployments on: a step is done when each of its actions is (the app runs its
instance count of the current configuration, healthy when it has health checks; a stopped app
has no instances left, and is removed). Timers (``tick``): a launch that stays STAGING or
STARTING over ``LAUNCH_TIMEOUT`` is killed and replaced; an UNREACHABLE instance is replaced
after the app's ``inactive_after_seconds`` and forgotten after ``expunge_after_seconds``; kills
without an answer are sent again with backoff; restored instances the master has not answered
for are reconciled again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from mensa.frameworks.service_fw import events
from mensa.frameworks.service_fw.commands import Kill, Reconcile
from mensa.frameworks.service_fw.deployments import RESTART, SCALE, START, STOP, Action, Deployment
from mensa.frameworks.service_fw.instances import RUNNING, UNREACHABLE, Instance
from mensa.frameworks.service_fw.planner import restart_decision, restart_done, scale_decision, scale_done
from mensa.proto import mensa_pb2
from mensa.proto.states import TERMINAL_STATE_NAMES

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import ServiceEngine

log = structlog.get_logger(__name__)

LAUNCH_TIMEOUT = 300.0  # seconds a task may stay STAGING/STARTING (image pulls included)
KILL_RETRY_FIRST = 10.0
KILL_RETRY_MAX = 300.0
RECONCILE_RETRY_FIRST = 10.0
RECONCILE_RETRY_MAX = 300.0
MAX_MESSAGE = 500

# Terminal states that say the task never ran (a lost launch): replaced without backoff.
NEVER_RAN = frozenset({"TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN"})
LOST_NEVER_RAN = frozenset({mensa_pb2.TaskStatus.REASON_RECONCILIATION,
                            mensa_pb2.TaskStatus.REASON_INVALID_OFFERS,
                            mensa_pb2.TaskStatus.REASON_TASK_UNKNOWN})


@dataclass(slots=True)
class Retry:
    at: float
    delay: float


class Converger:
    """See the module docstring."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine
        self.dirty: set[str] = set()
        # Instances not steadily running: timers apply (launch timeout, unreachable, kill retries).
        self.pending: set[str] = set()
        self.kill_retries: dict[str, Retry] = {}
        self.unconfirmed: dict[str, Retry] = {}  # restored, until the master says something
        # When restored instances came back: their launch-timeout and unreachable clocks count
        # from then at the earliest (the framework was not watching while it was down).
        self.restored_at: dict[str, float] = {}

    # -- instances --------------------------------------------------------------------------------

    def track(self, inst: Instance) -> None:
        if inst.terminal:
            self.pending.discard(inst.task_id)
            self.kill_retries.pop(inst.task_id, None)
            self.unconfirmed.pop(inst.task_id, None)
        elif inst.state != RUNNING or inst.killing:
            self.pending.add(inst.task_id)
        else:
            self.pending.discard(inst.task_id)

    def launched(self, inst: Instance) -> None:
        self.track(inst)

    def restored(self, inst: Instance, now: float) -> None:
        self.track(inst)
        self.restored_at[inst.task_id] = now
        if inst.agent_id:
            self.unconfirmed[inst.task_id] = Retry(now + RECONCILE_RETRY_FIRST, RECONCILE_RETRY_FIRST)

    def forget(self, task_id: str) -> None:
        """The instance is gone from the engine: no timer may act on it any more."""
        self.pending.discard(task_id)
        self.kill_retries.pop(task_id, None)
        self.unconfirmed.pop(task_id, None)
        self.restored_at.pop(task_id, None)

    def kill_sent(self, inst: Instance, now: float) -> None:
        retry = self.kill_retries.get(inst.task_id)
        delay = KILL_RETRY_FIRST if retry is None else min(retry.delay * 2, KILL_RETRY_MAX)
        self.kill_retries[inst.task_id] = Retry(now + delay, delay)
        self.track(inst)

    def status_update(self, status: mensa_pb2.TaskStatus, now: float) -> None:
        engine = self.engine
        task_id = status.task_id.value
        state = mensa_pb2.TaskState.Name(status.state)
        inst = engine.instances.get(task_id)
        if inst is None:
            if state not in TERMINAL_STATE_NAMES and state != "TASK_UNKNOWN":
                # Not ours (any more): a task of a deleted app, or one forgotten after it was
                # unreachable too long. It must not run beside its replacement.
                log.warning("unknown_task_killed", task_id=task_id, state=state)
                engine.emit(Kill(task_id, status.agent_id.value, None))
            return
        self.unconfirmed.pop(task_id, None)
        before_state, before_health = inst.state, inst.healthy
        if status.agent_id.value and not inst.agent_id:
            inst.agent_id = status.agent_id.value
        if status.message and status.reason != mensa_pb2.TaskStatus.REASON_RECONCILIATION:
            inst.message = status.message[:MAX_MESSAGE]
        if status.HasField("healthy"):
            inst.healthy = status.healthy
        if state == "TASK_UNKNOWN":
            # The master does not know the task on an agent it does not know either: gone.
            state = "TASK_GONE"
        inst.state = state
        if state == RUNNING and inst.started_at is None:
            inst.started_at = now
        if state == UNREACHABLE:
            inst.unreachable_since = inst.unreachable_since or now
        elif state not in TERMINAL_STATE_NAMES:
            inst.unreachable_since = None
        changed = inst.state != before_state or inst.healthy != before_health
        if changed:
            engine.emit(events.status_update(inst, now))
        if inst.healthy != before_health and inst.healthy is not None:
            engine.emit(events.health_changed(inst, now))
        if inst.terminal:
            self._ended(inst, status, now)
        else:
            if changed:
                engine.save_instance(inst)
            if inst.killing and state == RUNNING:
                self.kill_retries.setdefault(task_id, Retry(now, KILL_RETRY_FIRST))
            self.track(inst)
            if inst.is_healthy(engine.has_health_checks(inst.app_id)):
                engine.delays.running(inst.app_id, now)
        if changed:
            self.dirty.add(inst.app_id)

    def _ended(self, inst: Instance, status: mensa_pb2.TaskStatus, now: float) -> None:
        engine = self.engine
        never_ran = inst.state in NEVER_RAN or (inst.state == "TASK_LOST" and status.reason in LOST_NEVER_RAN)
        if not inst.killing and not never_ran:
            engine.counters["failed"] += 1
            spec = engine.spec_for(inst)
            if spec is not None:
                engine.delays.failed(inst.app_id, spec, now)
            engine.last_failures[inst.app_id] = {
                "appId": inst.app_id, "host": inst.hostname, "message": inst.message,
                "state": inst.state, "taskId": inst.task_id, "timestamp": events.iso(now),
                "version": inst.version, "slaveId": inst.agent_id}
            if inst.state == "TASK_KILLED" and inst.healthy is False:
                engine.emit(events.unhealthy_killed(inst, now))
            log.info("instance_failed", app_id=inst.app_id, task_id=inst.task_id, state=inst.state,
                     message=inst.message)
        elif not inst.killing:
            log.info("instance_launch_lost", app_id=inst.app_id, task_id=inst.task_id, state=inst.state)
        self.track(inst)
        engine.drop_instance(inst)
        self.dirty.add(inst.app_id)

    # -- apps ---------------------------------------------------------------------------------------

    def settle(self, now: float) -> None:
        """Converges every dirty app, moves deployments on, and updates the offer interest."""
        engine = self.engine
        engine.latest_now = max(engine.latest_now, now)
        for _round in range(10):  # a finished step makes the next step's apps dirty
            if not self.dirty:
                break
            dirty, self.dirty = self.dirty, set()
            for app_id in sorted(dirty):
                self._converge(app_id, now)
            deps = {engine.locks[a] for a in dirty if a in engine.locks}
            for dep_id in sorted(deps):
                dep = engine.deployment_list.get(dep_id)
                if dep is not None:
                    self.advance(dep, now)
        engine.offer_book.update_interest(now)

    def _action(self, app_id: str) -> tuple[Deployment | None, Action | None]:
        engine = self.engine
        dep_id = engine.locks.get(app_id)
        dep = engine.deployment_list.get(dep_id) if dep_id else None
        if dep is None:
            return None, None
        return dep, next((a for a in dep.current_actions if a.app_id == app_id), None)

    def _live(self, app_id: str) -> list[Instance]:
        return [i for i in self.engine.by_app.get(app_id, {}).values() if i.active]

    def _converge(self, app_id: str, now: float) -> None:
        engine = self.engine
        record = engine.apps.get(app_id)
        dep, action = self._action(app_id)
        live = self._live(app_id)
        if record is None and app_id in engine.held:
            engine.offer_book.want(app_id, None, "", 0, now)  # its record is unreadable: hands off
            return
        if record is None or (action is not None and action.kind == STOP):
            for inst in live:
                engine.kill(inst, "app deleted", now)
            self._forget_unreachable(app_id)
            engine.offer_book.want(app_id, None, "", 0, now)
            return
        if dep is not None and (action is None or action.kind == START):
            self._hold(app_id, dep, live, now)
            return
        spec, version = record.spec, record.config_version
        has_checks = bool(spec.health_checks)
        if action is not None and action.kind == RESTART:
            decision = restart_decision(spec, version, live, has_checks,
                                        lambda inst: engine.version_has_checks(app_id, inst.version))
            reason = "replaced by a new version"
        else:
            decision = scale_decision(spec, version, live, has_checks)
            reason = "scaled down"
        for inst in decision.kill:
            engine.kill(inst, reason, now)
        engine.offer_book.want(app_id, spec, version, decision.start, now)

    def _hold(self, app_id: str, dep: Deployment, live: list[Instance], now: float) -> None:
        """An app whose deployment step has not come yet keeps running what it ran before: lost
        instances are replaced with its original configuration; nothing is killed."""
        engine = self.engine
        original = dep.original.get(app_id)
        version = engine.changes.running_config(app_id, original) if original is not None else None
        if original is None or version is None:
            engine.offer_book.want(app_id, None, "", 0, now)
            return
        decision = scale_decision(original, version, live, bool(original.health_checks))
        engine.offer_book.want(app_id, original, version, decision.start, now)

    def _forget_unreachable(self, app_id: str) -> None:
        """A stopped app does not wait for instances behind a partition: killed (above) and
        forgotten; if one comes back, it is an unknown task and killed again."""
        for inst in list(self.engine.by_app.get(app_id, {}).values()):
            if inst.state == UNREACHABLE:
                self.pending.discard(inst.task_id)
                self.kill_retries.pop(inst.task_id, None)
                self.engine.drop_instance(inst)

    def _action_done(self, action: Action, preexisting: frozenset[str]) -> bool:
        engine = self.engine
        record = engine.apps.get(action.app_id)
        if action.kind == START:
            return True
        if action.kind == STOP:
            return not engine.by_app.get(action.app_id)
        if record is None:
            return True
        instances = list(engine.by_app.get(action.app_id, {}).values())
        has_checks = bool(record.spec.health_checks)
        if action.kind == RESTART:
            return restart_done(record.spec, record.config_version, instances, has_checks)
        if action.kind == SCALE:
            return scale_done(record.spec, record.config_version, instances, has_checks, preexisting)
        return True

    def advance(self, dep: Deployment, now: float) -> None:
        """Moves ``dep`` through every step that is done; finishes it after the last."""
        engine = self.engine
        while not dep.done:
            actions = dep.current_actions
            if not all(self._action_done(a, dep.preexisting) for a in actions):
                return  # its apps converge again when something about them changes
            for a in actions:
                if a.kind == STOP:
                    engine.remove_app(a.app_id, now)
            engine.emit(events.deployment("deployment_step_success", dep, now))
            dep.current_step += 1
            engine.save_deployment(dep)
            for a in dep.current_actions:
                self.dirty.add(a.app_id)
        engine.finish_deployment(dep, now)

    # -- timers -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        engine = self.engine
        for task_id in list(self.pending):
            inst = engine.instances.get(task_id)
            if inst is None or inst.terminal:
                self.pending.discard(task_id)
                continue
            spec = engine.spec_for(inst)
            if task_id in self.unconfirmed:
                # Restored and not answered for yet: nothing is decided on stale facts (a
                # framework that was down must not kill tasks that ran fine meanwhile).
                retry = self.kill_retries.get(task_id)
                if inst.killing and retry is not None and now >= retry.at:
                    engine.kill(inst, inst.kill_reason, now)
                continue
            since = self.restored_at.get(task_id, 0.0)
            if inst.state == UNREACHABLE and inst.unreachable_since is not None and spec is not None:
                gone_for = now - max(inst.unreachable_since, since)
                strategy = spec.unreachable_strategy
                if gone_for >= strategy.expunge_after_seconds:
                    log.warning("instance_expunged", task_id=task_id, app_id=inst.app_id,
                                unreachable_seconds=round(gone_for))
                    self.pending.discard(task_id)
                    self.kill_retries.pop(task_id, None)
                    engine.drop_instance(inst)
                    self.dirty.add(inst.app_id)
                    continue
                if gone_for >= strategy.inactive_after_seconds and not inst.killing:
                    engine.counters["replaced"] += 1
                    engine.kill(inst, f"unreachable for {round(gone_for)} s: replaced", now)
                    self.dirty.add(inst.app_id)
                    continue
            if (inst.state in ("TASK_STAGING", "TASK_STARTING") and not inst.killing
                    and now - max(inst.staged_at, since) >= LAUNCH_TIMEOUT):
                log.warning("instance_launch_timed_out", task_id=task_id, app_id=inst.app_id)
                if spec is not None:
                    engine.delays.failed(inst.app_id, spec, now)
                engine.kill(inst, f"not running {round(LAUNCH_TIMEOUT)} s after its launch", now)
                self.dirty.add(inst.app_id)
                continue
            retry = self.kill_retries.get(task_id)
            if inst.killing and retry is not None and now >= retry.at:
                engine.kill(inst, inst.kill_reason, now)
        due = [t for t, r in self.unconfirmed.items() if now >= r.at]
        if due:
            pairs = []
            for task_id in due:
                inst = engine.instances.get(task_id)
                if inst is None:
                    self.unconfirmed.pop(task_id, None)
                    continue
                retry = self.unconfirmed[task_id]
                delay = min(retry.delay * 2, RECONCILE_RETRY_MAX)
                self.unconfirmed[task_id] = Retry(now + delay, delay)
                pairs.append((task_id, inst.agent_id))
            if pairs:
                engine.emit(Reconcile(tuple(pairs)))
        for app_id in engine.offer_book.delays_over(now):
            self.dirty.add(app_id)

    def next_wakeup(self, now: float) -> float | None:
        engine = self.engine
        times: list[float] = []
        for task_id in self.pending:
            inst = engine.instances.get(task_id)
            if inst is None:
                continue
            spec = engine.spec_for(inst)
            if task_id in self.unconfirmed:
                continue  # its reconciliation retry (below) wakes the timer
            since = self.restored_at.get(task_id, 0.0)
            if inst.state == UNREACHABLE and inst.unreachable_since is not None and spec is not None:
                s = spec.unreachable_strategy
                times.append(max(inst.unreachable_since, since) + (
                    s.expunge_after_seconds if inst.killing else s.inactive_after_seconds))
            elif inst.state in ("TASK_STAGING", "TASK_STARTING") and not inst.killing:
                times.append(max(inst.staged_at, since) + LAUNCH_TIMEOUT)
        times.extend(r.at for r in self.kill_retries.values())
        times.extend(r.at for r in self.unconfirmed.values())
        delay_end = engine.offer_book.next_delay_end(now)
        if delay_end is not None:
            times.append(delay_end)
        return min(times) if times else None
