"""The service framework's engine: apps, deployments and instances; events in, commands out (pure).

``ServiceEngine`` holds every app (``AppRecord``), the instances that run them and the
deployments under way. API changes (``create_app``, ``update_app``, ``scale_app``,
``restart_app``, ``delete_app``, ``kill_tasks``, ``cancel_deployment``) and driver events
(``offers``, ``status_update``, ``subscribed``) and ``tick(now)`` each return the commands the
shell carries out, in order: ``Persist``/``Forget`` first (the shell stores them before it sends
anything), then ``Launch``, ``Decline``, ``Kill``, ``Reconcile``, ``Revive``/``Suppress`` and
``Emit`` (events for ``/v2/events``). It never reads the clock and does no I/O.

How apps converge (``converge.py``): after each event, every app it touched is compared with
what it should run. An app in the current step of a deployment follows that step's action
(scale, rolling restart, stop); any other app is kept at its instance count (failed, lost and
long-unreachable instances are replaced, after the app's launch backoff). The difference becomes
kills (sent at once) and a number of instances *waiting* for offers. Offers (``offering.py``) are
matched against waiting apps, constraints and roles; unused offers are declined with a short
filter while something waits, and offers are suppressed when nothing does.

An instance's record is stored before its launch is sent, so a restart (``restore``) knows every
task it may have launched and reconciles them with the master instead of launching again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw import events
from mensa.frameworks.service_fw.app_reading import app_json, dependency_cycle, parse_app
from mensa.frameworks.service_fw.apps import AppSpec, app_key, needs_restart
from mensa.frameworks.service_fw.backoff import LaunchDelays
from mensa.frameworks.service_fw.commands import (
    KIND_APP,
    KIND_VERSION,
    Command,
    Forget,
    Kill,
    Persist,
    Reconcile,
)
from mensa.frameworks.service_fw.converge import Converger
from mensa.frameworks.service_fw.deployments import (
    KIND_DEPLOYMENT,
    RESTART,
    SCALE,
    Action,
    Deployment,
)
from mensa.frameworks.service_fw.instances import KIND_INSTANCE, Instance
from mensa.frameworks.service_fw.offering import OfferBook, QueueEntry
from mensa.frameworks.service_fw.planner import plan
from mensa.frameworks.service_fw.records import (
    MAX_VERSIONS,
    AppRecord,
    deployment_doc,
    version_key,
)
from mensa.frameworks.service_fw.restore import restore_records
from mensa.frameworks.service_fw.service_ports import assign_service_ports, service_ports_of
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

__all__ = ["AppRecord", "Conflict", "Exists", "NotFound", "QueueEntry", "ServiceEngine"]


class NotFound(LookupError):
    """An app, version, task or deployment that does not exist; ``str()`` is Marathon's message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Exists(Exception):
    """Creating an app that already exists."""


class Conflict(Exception):
    """The apps are locked by deployments under way (HTTP 409 unless ``force``)."""

    def __init__(self, message: str, deployments: list[str]) -> None:
        super().__init__(message)
        self.deployments = deployments


class ServiceEngine:
    """See the module docstring. ``role`` is the framework's role (apps without one use it);
    ``new_id`` makes task and deployment ids (random by default; tests pass a counter)."""

    def __init__(self, *, role: str = "*", new_id: Callable[[], str] | None = None) -> None:
        self.role = role
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self.apps: dict[str, AppRecord] = {}
        self.versions: dict[tuple[str, str], AppSpec] = {}
        self.version_docs: dict[tuple[str, str], dict[str, Any]] = {}  # restored, not read yet
        self.instances: dict[str, Instance] = {}
        self.by_app: dict[str, dict[str, Instance]] = {}
        self.deployment_list: dict[str, Deployment] = {}
        self.locks: dict[str, str] = {}  # app id -> the deployment that changes it
        self.held: set[str] = set()  # apps whose stored record was unreadable: never killed
        self.delays = LaunchDelays()
        self.last_failures: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, int] = {"launched": 0, "killed": 0, "failed": 0, "replaced": 0,
                                         "status_updates": 0, "offers": 0, "offers_declined": 0,
                                         "deployments_started": 0, "deployments_succeeded": 0,
                                         "deployments_cancelled": 0}
        self.out: list[Command] = []
        self.latest_now = 0.0  # the latest time an event brought (for next_wakeup and queue)
        self.converger = Converger(self)
        self.offer_book = OfferBook(self)

    # -- bookkeeping shared by the parts ----------------------------------------------------------

    def emit(self, *commands: Command) -> None:
        self.out.extend(commands)

    def flush(self) -> list[Command]:
        out, self.out = self.out, []
        # Stores first: every record is written before any launch, kill or event it explains.
        return ([c for c in out if isinstance(c, (Persist, Forget))]
                + [c for c in out if not isinstance(c, (Persist, Forget))])

    def save_instance(self, inst: Instance) -> None:
        self.emit(Persist(KIND_INSTANCE, inst.task_id, inst.to_json()))

    def add_instance(self, inst: Instance) -> None:
        self.instances[inst.task_id] = inst
        self.by_app.setdefault(inst.app_id, {})[inst.task_id] = inst

    def drop_instance(self, inst: Instance) -> None:
        self.instances.pop(inst.task_id, None)
        self.converger.forget(inst.task_id)
        group = self.by_app.get(inst.app_id)
        if group is not None:
            group.pop(inst.task_id, None)
            if not group:
                del self.by_app[inst.app_id]
        self.emit(Forget(KIND_INSTANCE, inst.task_id))

    def save_app(self, record: AppRecord) -> None:
        self.emit(Persist(KIND_APP, app_key(record.app_id), record.to_doc()))

    def save_deployment(self, dep: Deployment) -> None:
        self.emit(Persist(KIND_DEPLOYMENT, dep.id, deployment_doc(dep)))

    def kill(self, inst: Instance, reason: str, now: float) -> None:
        """Kills an instance (it stops counting toward its app at once)."""
        if inst.terminal:
            return
        if not inst.killing:
            inst.killing = True
            inst.kill_reason = reason
            self.save_instance(inst)
            self.counters["killed"] += 1
        spec = self.spec_for(inst)
        grace = spec.task_kill_grace_period_seconds if spec is not None else None
        self.converger.kill_sent(inst, now)
        self.emit(Kill(inst.task_id, inst.agent_id, grace))

    def spec_for(self, inst: Instance) -> AppSpec | None:
        record = self.apps.get(inst.app_id)
        return record.spec if record is not None else None

    def app_instances(self, app_id: str) -> list[Instance]:
        return list(self.by_app.get(app_id, {}).values())

    def _version(self, app_ids: Iterable[str], now: float) -> str:
        """The version of a change: its time, made later than every affected app's latest
        version (two changes within a millisecond still get distinct, ordered versions)."""
        at = now
        for app_id in app_ids:
            record = self.apps.get(app_id)
            if record is not None:
                at = max(at, events.parse_iso(record.version) + 0.001)
        return events.iso(at)

    # -- changes from the API ----------------------------------------------------------------------

    def create_app(self, spec: AppSpec, now: float, *, force: bool = False
                   ) -> tuple[Deployment, list[Command]]:
        """Creates an app (a deployment starting it); raises Exists, Conflict, SpecError."""
        if spec.id in self.apps:
            raise Exists(f"An app with id [{spec.id}] already exists.")
        return self.change({spec.id: spec}, now, force=force)

    def update_app(self, spec: AppSpec, now: float, *, force: bool = False
                   ) -> tuple[Deployment, list[Command]]:
        """Creates or replaces an app; raises Conflict, SpecError."""
        return self.change({spec.id: spec}, now, force=force)

    def update_apps(self, specs: Sequence[AppSpec], now: float, *, force: bool = False
                    ) -> tuple[Deployment, list[Command]]:
        """Creates or replaces several apps in one deployment; raises Conflict, SpecError."""
        ids = [s.id for s in specs]
        if len(set(ids)) != len(ids):
            raise SpecError("Object is not valid", [("/", "an app id appears more than once")])
        return self.change({s.id: s for s in specs}, now, force=force)

    def scale_app(self, app_id: str, instances: int, now: float, *, force: bool = False
                  ) -> tuple[Deployment, list[Command]]:
        record = self.app_record(app_id)
        if instances < 0:
            raise SpecError("Object is not valid", [("/instances", "must be 0 or more")])
        return self.change({app_id: record.spec.scaled(instances)}, now, force=force)

    def delete_app(self, app_id: str, now: float, *, force: bool = False
                   ) -> tuple[Deployment, list[Command]]:
        self.app_record(app_id)
        dependents = sorted(a for a, r in self.apps.items() if app_id in r.spec.dependencies and a != app_id)
        if dependents:
            why = f"{', '.join(dependents)} depend(s) on {app_id}; delete or change them first"
            raise SpecError("Object is not valid", [("/dependencies", why)])
        return self.change({app_id: None}, now, force=force)

    def restart_app(self, app_id: str, now: float, *, force: bool = False
                    ) -> tuple[Deployment, list[Command]]:
        """Replaces every instance (a new version of the same definition), rolling."""
        record = self.app_record(app_id)
        return self.change({app_id: record.spec}, now, force=force, restart=True)

    def change(self, targets: dict[str, AppSpec | None], now: float, *, force: bool = False,
               restart: bool = False) -> tuple[Deployment, list[Command]]:
        """The one way apps change: checks, a new version per app, and a deployment."""
        dep = self._change(targets, now, force=force, restart=restart)
        return dep, self.flush()

    def _change(self, targets: dict[str, AppSpec | None], now: float, *, force: bool = False,
                restart: bool = False, rollback_of: str | None = None) -> Deployment:
        """``change`` without the flush: its commands stay queued with the caller's."""
        self._check(targets, force)
        targets = self._with_service_ports(self._with_cancelled_stops(targets))
        original = {app_id: (self.apps[app_id].spec if app_id in self.apps else None) for app_id in targets}
        all_apps = {a: r.spec for a, r in self.apps.items()}
        for app_id, spec in targets.items():
            if spec is None:
                all_apps.pop(app_id, None)
            else:
                all_apps[app_id] = spec
        steps = ([[Action(RESTART, a)] for a in targets] if restart
                 else plan(original, targets, all_apps=all_apps))
        version = self._version(targets, now)
        for app_id, spec in targets.items():
            self.held.discard(app_id)
            self._record_version(app_id, spec, version, restart=restart)
        steps = self._with_restarts(steps, targets)
        preexisting = frozenset(t for a in targets for t, i in self.by_app.get(a, {}).items() if i.active)
        dep = Deployment(id=self._deployment_id(), version=version, steps=steps, original=original,
                         target=dict(targets), started_at=now, rollback_of=rollback_of,
                         preexisting=preexisting)
        for app_id in targets:
            self._take_lock(app_id, dep, now)
        self.converger.dirty.update(targets)
        self.deployment_list[dep.id] = dep
        self.counters["deployments_started"] += 1
        self.save_deployment(dep)
        self.emit(events.deployment("deployment_info", dep, now))
        log.info("deployment_started", deployment_id=dep.id, apps=dep.affected_apps,
                 steps=[[f"{a.kind} {a.app_id}" for a in s] for s in steps])
        self.converger.advance(dep, now)
        self.converger.settle(now)
        return dep

    def _with_service_ports(self, targets: dict[str, AppSpec | None]) -> dict[str, AppSpec | None]:
        """Each target with its 0 service ports assigned (kept from its current version)."""
        used = {p for a, r in self.apps.items() if a not in targets for p in service_ports_of(r.spec)}
        out: dict[str, AppSpec | None] = {}
        for app_id, spec in sorted(targets.items()):
            if spec is None:
                out[app_id] = None
                continue
            current = self.apps.get(app_id)
            try:
                assigned = assign_service_ports(spec, current.spec if current else None, used)
            except ValueError as exc:
                raise SpecError("Object is not valid", [("/portDefinitions", str(exc))]) from None
            used.update(service_ports_of(assigned))
            out[app_id] = assigned
        return out

    def _with_cancelled_stops(self, targets: dict[str, AppSpec | None]) -> dict[str, AppSpec | None]:
        """A forced change cancels the deployments holding its apps; apps those were deleting
        are still deleted (by this deployment), never brought back by the cancellation."""
        out = dict(targets)
        for dep_id in sorted({self.locks[a] for a in targets if a in self.locks}):
            old = self.deployment_list.get(dep_id)
            if old is None:
                continue
            for app_id, spec in old.target.items():
                if spec is None and app_id not in out and app_id in self.apps:
                    out[app_id] = None
        return out

    def _with_restarts(self, steps: list[list[Action]], targets: dict[str, AppSpec | None]
                       ) -> list[list[Action]]:
        """An app some of whose live instances run another configuration than its current one
        (a forced change in the middle of a rolling restart, say) is restarted, not only scaled:
        no old instance is left behind by a deployment that reports success."""
        mixed = {app_id for app_id, spec in targets.items() if spec is not None
                 and any(i.version != self.apps[app_id].config_version
                         for i in self.by_app.get(app_id, {}).values() if i.active)}
        if not mixed:
            return steps
        out = [[Action(RESTART, a.app_id) if a.kind == SCALE and a.app_id in mixed else a for a in step]
               for step in steps]
        covered = {a.app_id for step in out for a in step if a.kind == RESTART}
        missing = sorted(mixed - covered)
        if missing:
            out.append([Action(RESTART, a) for a in missing])
        return out

    def _deployment_id(self) -> str:
        new = self.new_id()
        return f"{new[:8]}-{new[8:12]}-{new[12:16]}-{new[16:20]}-{new[20:32]}" if len(new) == 32 else new

    def _check(self, targets: dict[str, AppSpec | None], force: bool) -> None:
        """Raises SpecError (unknown dependencies, cycles) or Conflict (locked, without force)."""
        after = {a: r.spec for a, r in self.apps.items()}
        for app_id, spec in targets.items():
            if spec is None:
                after.pop(app_id, None)
            else:
                after[app_id] = spec
        problems: list[tuple[str, str]] = []
        for app_id, spec in targets.items():
            if spec is None:
                continue
            for dep_id in spec.dependencies:
                if dep_id == app_id:
                    problems.append(("/dependencies", f"{app_id} cannot depend on itself"))
                elif dep_id not in after:
                    problems.append(("/dependencies", f"dependency {dep_id} of {app_id} does not exist"))
        cycle = dependency_cycle(after)
        if cycle:
            problems.append(("/dependencies", "dependency cycle: " + " -> ".join(cycle)))
        if problems:
            raise SpecError("Object is not valid", problems)
        locked = sorted({self.locks[a] for a in targets if a in self.locks})
        if locked and not force:
            raise Conflict("App is locked by one or more deployments. Override with the option "
                           "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.", locked)

    def _take_lock(self, app_id: str, dep: Deployment, now: float) -> None:
        """A forced change cancels the deployments it overrides (their other apps are released)."""
        old_id = self.locks.get(app_id)
        if old_id is not None and old_id in self.deployment_list:
            self._end_deployment(self.deployment_list[old_id], "deployment_failed", now)
        self.locks[app_id] = dep.id

    def _record_version(self, app_id: str, spec: AppSpec | None, version: str, *, restart: bool) -> None:
        if spec is None:
            return  # a deletion: the record goes when its StopApplication is done
        record = self.apps.get(app_id)
        if record is None:
            record = AppRecord(spec, version, version, version, [])
            self.apps[app_id] = record
        else:
            config_change = restart or needs_restart(record.spec, spec)
            if config_change:
                record.config_version = (None if restart else self.running_config(app_id, spec)) or version
                self.delays.reset(app_id)
            else:
                record.scaling_version = version
            record.spec = spec
            record.version = version
        record.versions.append(version)
        self.versions[(app_id, version)] = spec
        self.emit(Persist(KIND_VERSION, version_key(app_id, version), {"spec": app_json(spec)}))
        while len(record.versions) > MAX_VERSIONS:
            gone = record.versions.pop(0)
            self.versions.pop((app_id, gone), None)
            self.version_docs.pop((app_id, gone), None)
            self.emit(Forget(KIND_VERSION, version_key(app_id, gone)))
        self.save_app(record)
        self.converger.dirty.add(app_id)

    def version_has_checks(self, app_id: str, version: str) -> bool:
        """Whether the app's ``version`` has health checks (an unknown version: the current)."""
        try:
            return bool(self.app_version(app_id, version).health_checks)
        except NotFound:
            return self.has_health_checks(app_id)

    def running_config(self, app_id: str, spec: AppSpec) -> str | None:
        """The configuration version some live instance of the app already runs, if ``spec`` is
        that configuration (a rollback, or a change undone): those instances are kept."""
        versions = {i.version for i in self.by_app.get(app_id, {}).values() if i.active}
        for version in sorted(versions, reverse=True):
            try:
                if not needs_restart(self.app_version(app_id, version), spec):
                    return version
            except NotFound:
                continue
        return None

    def remove_app(self, app_id: str, now: float) -> None:
        """The app's StopApplication is done: its records go."""
        record = self.apps.pop(app_id, None)
        if record is None:
            return
        for version in record.versions:
            self.versions.pop((app_id, version), None)
            self.version_docs.pop((app_id, version), None)
            self.emit(Forget(KIND_VERSION, version_key(app_id, version)))
        self.emit(Forget(KIND_APP, app_key(app_id)))
        self.delays.reset(app_id)
        self.last_failures.pop(app_id, None)
        self.offer_book.forget(app_id)
        self.emit(events.app_terminated(app_id, now))
        log.info("app_removed", app_id=app_id)

    def kill_tasks(self, task_ids: Iterable[str], now: float, *, scale: bool = False, wipe: bool = False,
                   force: bool = False) -> tuple[list[Instance], Deployment | None, list[Command]]:
        """Kills the named tasks (unknown ids are skipped). With ``scale`` their apps' instance
        counts go down by as many (a deployment; Conflict, before anything is killed, when an
        app is under another deployment and not ``force``); otherwise they are replaced.
        ``wipe`` also forgets them at once (Marathon's wipe: for tasks on agents that are gone
        for good)."""
        found = [self.instances[t] for t in dict.fromkeys(task_ids) if t in self.instances]
        found = [i for i in found if not i.terminal]
        dep: Deployment | None = None
        if scale and found:
            per_app: dict[str, int] = {}
            for inst in found:
                if inst.active:
                    per_app[inst.app_id] = per_app.get(inst.app_id, 0) + 1
            targets: dict[str, AppSpec | None] = {}
            for app_id, n in per_app.items():
                record = self.apps.get(app_id)
                if record is not None:
                    targets[app_id] = record.spec.scaled(max(0, record.spec.instances - n))
            if targets:
                self._check(targets, force)
            for inst in found:
                self.kill(inst, "killed through the API (scaling down)", now)
            if targets:
                dep = self._change(targets, now, force=True)
        else:
            for inst in found:
                self.kill(inst, "killed through the API", now)
        if wipe:
            for inst in found:
                self.drop_instance(inst)
                self.converger.dirty.add(inst.app_id)
        self.converger.settle(now)
        return found, dep, self.flush()

    def cancel_deployment(self, deployment_id: str, now: float, *, force: bool = False
                          ) -> tuple[Deployment | None, list[Command]]:
        """Stops a deployment. Without ``force`` a new deployment rolls its apps back to their
        original versions (apps it created are deleted); with it, the apps stay as they are."""
        dep = self.deployment_list.get(deployment_id)
        if dep is None:
            raise NotFound(f"DeploymentPlan {deployment_id} does not exist")
        self._end_deployment(dep, "deployment_failed", now)
        self.counters["deployments_cancelled"] += 1
        if force:
            self.converger.settle(now)
            return None, self.flush()
        back = {app_id: spec for app_id, spec in dep.original.items()}
        # Apps deleted by the cancelled deployment and already gone come back; apps it created
        # (no original) are deleted; others return to their original spec.
        back = {a: s for a, s in back.items() if s is not None or a in self.apps}
        if not back:
            self.converger.settle(now)
            return None, self.flush()
        rollback = self._change(back, now, force=True, rollback_of=dep.id)
        return rollback, self.flush()

    def _end_deployment(self, dep: Deployment, event: str, now: float) -> None:
        self.deployment_list.pop(dep.id, None)
        for app_id in dep.affected_apps:
            if self.locks.get(app_id) == dep.id:
                del self.locks[app_id]
                self.converger.dirty.add(app_id)
        self.emit(Forget(KIND_DEPLOYMENT, dep.id))
        self.emit(events.deployment(event, dep, now))
        log.info("deployment_ended", deployment_id=dep.id, outcome=event)

    def finish_deployment(self, dep: Deployment, now: float) -> None:
        self.counters["deployments_succeeded"] += 1
        self._end_deployment(dep, "deployment_success", now)

    def reset_delay(self, app_id: str, now: float) -> list[Command]:
        """Forgets an app's launch backoff (``DELETE /v2/queue/{app}/delay``)."""
        self.app_record(app_id)
        self.delays.reset(app_id)
        self.converger.dirty.add(app_id)
        self.converger.settle(now)
        return self.flush()

    # -- events from the driver --------------------------------------------------------------------

    def offers(self, offers: list[mensa_pb2.Offer], now: float) -> list[Command]:
        self.offer_book.handle(offers, now)
        self.converger.settle(now)
        return self.flush()

    def status_update(self, status: mensa_pb2.TaskStatus, now: float) -> list[Command]:
        self.counters["status_updates"] += 1
        self.converger.status_update(status, now)
        self.converger.settle(now)
        return self.flush()

    def subscribed(self, now: float) -> list[Command]:
        """(Re)subscribed: reconciles every known instance, then converges."""
        known = tuple((i.task_id, i.agent_id) for i in self.instances.values() if i.agent_id)
        if known:
            self.emit(Reconcile(known))
        self.converger.dirty.update(self.apps)
        self.offer_book.resubscribed()
        self.converger.settle(now)
        return self.flush()

    def tick(self, now: float) -> list[Command]:
        self.converger.tick(now)
        self.converger.settle(now)
        return self.flush()

    def next_wakeup(self) -> float | None:
        return self.converger.next_wakeup(self.latest_now)

    def wants_offers(self) -> bool:
        return self.offer_book.wants_offers()

    # -- restore ------------------------------------------------------------------------------------

    def restore(self, records: dict[str, dict[str, dict[str, Any]]], now: float) -> list[Command]:
        """Rebuilds from stored records (apps, versions, instances, deployments); a record that
        cannot be read is logged and skipped. Nothing converges, and nothing is reconciled,
        before the framework has subscribed: ``subscribed`` does both."""
        restore_records(self, records, now)
        return self.flush()

    # -- queries ------------------------------------------------------------------------------------

    def app_record(self, app_id: str) -> AppRecord:
        record = self.apps.get(app_id)
        if record is None:
            raise NotFound(f"App '{app_id}' does not exist")
        return record

    def app_records(self) -> list[AppRecord]:
        return [self.apps[a] for a in sorted(self.apps)]

    def app_version(self, app_id: str, version: str) -> AppSpec:
        self.app_record(app_id)
        spec = self.versions.get((app_id, version))
        doc = self.version_docs.get((app_id, version))
        if spec is None and doc is not None:
            try:
                spec = parse_app(doc["spec"])
            except (KeyError, TypeError, ValueError, SpecError) as exc:
                log.error("service_record_unreadable", kind=KIND_VERSION, app_id=app_id, version=version,
                          error=str(exc))
            else:
                self.versions[(app_id, version)] = spec
                del self.version_docs[(app_id, version)]
        if spec is None:
            raise NotFound(f"App '{app_id}' does not exist in version {version}")
        return spec

    def instances_of(self, app_id: str) -> list[Instance]:
        return sorted(self.by_app.get(app_id, {}).values(), key=lambda i: (i.staged_at, i.task_id))

    def all_instances(self) -> list[Instance]:
        return list(self.instances.values())

    def instance(self, task_id: str) -> Instance:
        inst = self.instances.get(task_id)
        if inst is None:
            raise NotFound(f"Task '{task_id}' does not exist")
        return inst

    def deployments(self) -> list[Deployment]:
        return sorted(self.deployment_list.values(), key=lambda d: (d.started_at, d.id))

    def deployments_of(self, app_id: str) -> list[Deployment]:
        dep_id = self.locks.get(app_id)
        dep = self.deployment_list.get(dep_id) if dep_id else None
        return [dep] if dep is not None else []

    def queue(self, now: float | None = None) -> list[QueueEntry]:
        """The apps waiting for offers; ``now`` (default: the latest time the engine saw)
        decides whether a launch backoff is over."""
        return self.offer_book.queue(self.latest_now if now is None else now)

    def last_failure(self, app_id: str) -> dict[str, Any] | None:
        return self.last_failures.get(app_id)

    def has_health_checks(self, app_id: str) -> bool:
        record = self.apps.get(app_id)
        return bool(record and record.spec.health_checks)

    def metrics(self) -> dict[str, float]:
        states = [i.state for i in self.instances.values()]
        out: dict[str, float] = {f"counter_{k}": float(v) for k, v in self.counters.items()}
        out.update({
            "apps": float(len(self.apps)),
            "instances": float(len(self.instances)),
            "instances_running": float(sum(1 for s in states if s == "TASK_RUNNING")),
            "instances_staging": float(sum(1 for s in states if s in ("TASK_STAGING", "TASK_STARTING"))),
            "instances_unreachable": float(sum(1 for s in states if s == "TASK_UNREACHABLE")),
            "instances_waiting": float(sum(w.count for w in self.offer_book.wants.values())),
            "deployments": float(len(self.deployment_list)),
        })
        return out


