"""The service framework's engine: apps, deployments and instances; events in, commands out (pure).

``ServiceEngine`` holds every app (``AppRecord``), the instances that run them and the
deployments under way. API changes (``create_app``, ``update_app``, ``scale_app``,
``restart_app``, ``delete_app``, ``kill_tasks``, ``cancel_deployment``) and driver events
(``offers``, ``status_update``, ``subscribed``) and ``tick(now)`` each return the commands the
shell carries out, in order: ``Persist``/``Forget`` first (the shell stores them before it sends
anything), then ``Launch``, ``Decline``, ``Kill``, ``Reconcile``, ``Revive``/``Suppress`` and
``Emit`` (events for ``/v2/events``). It never reads the clock and does no I/O.

How changes become versions and deployments: ``changes.py``. How apps converge
(``converge.py``): after each event, every app it touched is compared with
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
from mensa.frameworks.service_fw.app_reading import parse_app
from mensa.frameworks.service_fw.apps import AppSpec, app_key
from mensa.frameworks.service_fw.backoff import LaunchDelays
from mensa.frameworks.service_fw.changes import Changes
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
    Deployment,
)
from mensa.frameworks.service_fw.errors import Conflict, Exists, NotFound
from mensa.frameworks.service_fw.instances import KIND_INSTANCE, Instance
from mensa.frameworks.service_fw.offering import OfferBook, QueueEntry
from mensa.frameworks.service_fw.records import (
    AppRecord,
    deployment_doc,
    version_key,
)
from mensa.frameworks.service_fw.restore import restore_records
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

__all__ = ["AppRecord", "Conflict", "Exists", "NotFound", "QueueEntry", "ServiceEngine"]


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
        self.changes = Changes(self)
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
        dep = self.changes.apply(targets, now, force=force, restart=restart)
        return dep, self.flush()

    def version_has_checks(self, app_id: str, version: str) -> bool:
        """Whether the app's ``version`` has health checks (an unknown version: the current)."""
        try:
            return bool(self.app_version(app_id, version).health_checks)
        except NotFound:
            return self.has_health_checks(app_id)

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
                self.changes.check(targets, force)
            for inst in found:
                self.kill(inst, "killed through the API (scaling down)", now)
            if targets:
                dep = self.changes.apply(targets, now, force=True)
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
        self.end_deployment(dep, "deployment_failed", now)
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
        rollback = self.changes.apply(back, now, force=True, rollback_of=dep.id)
        return rollback, self.flush()

    def end_deployment(self, dep: Deployment, event: str, now: float) -> None:
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
        self.end_deployment(dep, "deployment_success", now)

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


