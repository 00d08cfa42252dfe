"""How API changes become versions and deployments (pure; part of the engine).

``Changes.apply(targets, now)`` is the one way apps change: it checks the change (unknown
dependencies, cycles, the deployment lock unless forced), assigns service ports, gives every
changed app one new version (the change's time, later than any version the app had), plans the
deployment (``planner.plan``; a restart when live instances would otherwise be left on an older
configuration), takes the apps' locks (a forced change cancels the deployments it overrides,
keeping the deletions they were making), stores all of it, and starts converging.

An app's configuration version moves only with a change of more than ``instances``; a change
back to a configuration that live instances already run (a rollback) reuses their version, so
they are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw import events
from mensa.frameworks.service_fw.app_reading import app_json, dependency_cycle
from mensa.frameworks.service_fw.apps import AppSpec, needs_restart
from mensa.frameworks.service_fw.commands import KIND_VERSION, Forget, Persist
from mensa.frameworks.service_fw.deployments import RESTART, SCALE, Action, Deployment
from mensa.frameworks.service_fw.errors import Conflict, NotFound
from mensa.frameworks.service_fw.planner import plan
from mensa.frameworks.service_fw.records import MAX_VERSIONS, AppRecord, version_key
from mensa.frameworks.service_fw.service_ports import assign_service_ports, service_ports_of

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import ServiceEngine

log = structlog.get_logger(__name__)


class Changes:
    """See the module docstring."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine

    def version_for(self, app_ids: Iterable[str], now: float) -> str:
        """The version of a change: its time, made later than every affected app's latest
        version (two changes within a millisecond still get distinct, ordered versions)."""
        at = now
        for app_id in app_ids:
            record = self.engine.apps.get(app_id)
            if record is not None:
                at = max(at, events.parse_iso(record.version) + 0.001)
        return events.iso(at)

    def apply(self, targets: dict[str, AppSpec | None], now: float, *, force: bool = False,
              restart: bool = False, rollback_of: str | None = None) -> Deployment:
        """Changes the apps to ``targets`` (None: delete) and returns the deployment; its
        commands stay queued in the engine for the caller to flush. Raises SpecError or
        Conflict, having changed nothing."""
        self.check(targets, force)
        apps = self.engine.apps
        targets = self._with_service_ports(self._with_cancelled_stops(targets))
        original = {app_id: (apps[app_id].spec if app_id in apps else None) for app_id in targets}
        all_apps = {a: r.spec for a, r in self.engine.apps.items()}
        for app_id, spec in targets.items():
            if spec is None:
                all_apps.pop(app_id, None)
            else:
                all_apps[app_id] = spec
        steps = ([[Action(RESTART, a)] for a in targets] if restart
                 else plan(original, targets, all_apps=all_apps))
        version = self.version_for(targets, now)
        for app_id, spec in targets.items():
            self.engine.held.discard(app_id)
            self._record_version(app_id, spec, version, restart=restart)
        steps = self._with_restarts(steps, targets)
        by_app = self.engine.by_app
        preexisting = frozenset(t for a in targets for t, i in by_app.get(a, {}).items() if i.active)
        dep = Deployment(id=self._deployment_id(), version=version, steps=steps, original=original,
                         target=dict(targets), started_at=now, rollback_of=rollback_of,
                         preexisting=preexisting)
        for app_id in targets:
            self._take_lock(app_id, dep, now)
        self.engine.converger.dirty.update(targets)
        self.engine.deployment_list[dep.id] = dep
        self.engine.counters["deployments_started"] += 1
        self.engine.save_deployment(dep)
        self.engine.emit(events.deployment("deployment_info", dep, now))
        log.info("deployment_started", deployment_id=dep.id, apps=dep.affected_apps,
                 steps=[[f"{a.kind} {a.app_id}" for a in s] for s in steps])
        self.engine.converger.advance(dep, now)
        self.engine.converger.settle(now)
        return dep

    def _with_service_ports(self, targets: dict[str, AppSpec | None]) -> dict[str, AppSpec | None]:
        """Each target with its 0 service ports assigned (kept from its current version)."""
        used = {p for a, r in self.engine.apps.items() if a not in targets for p in service_ports_of(r.spec)}
        out: dict[str, AppSpec | None] = {}
        for app_id, spec in sorted(targets.items()):
            if spec is None:
                out[app_id] = None
                continue
            current = self.engine.apps.get(app_id)
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
        for dep_id in sorted({self.engine.locks[a] for a in targets if a in self.engine.locks}):
            old = self.engine.deployment_list.get(dep_id)
            if old is None:
                continue
            for app_id, spec in old.target.items():
                if spec is None and app_id not in out and app_id in self.engine.apps:
                    out[app_id] = None
        return out

    def _with_restarts(self, steps: list[list[Action]], targets: dict[str, AppSpec | None]
                       ) -> list[list[Action]]:
        """An app some of whose live instances run another configuration than its current one
        (a forced change in the middle of a rolling restart, say) is restarted, not only scaled:
        no old instance is left behind by a deployment that reports success."""
        mixed = {app_id for app_id, spec in targets.items() if spec is not None
                 and any(i.version != self.engine.apps[app_id].config_version
                         for i in self.engine.by_app.get(app_id, {}).values() if i.active)}
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
        new = self.engine.new_id()
        return f"{new[:8]}-{new[8:12]}-{new[12:16]}-{new[16:20]}-{new[20:32]}" if len(new) == 32 else new

    def check(self, targets: dict[str, AppSpec | None], force: bool) -> None:
        """Raises SpecError (unknown dependencies, cycles) or Conflict (locked, without force)."""
        after = {a: r.spec for a, r in self.engine.apps.items()}
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
        locked = sorted({self.engine.locks[a] for a in targets if a in self.engine.locks})
        if locked and not force:
            raise Conflict("App is locked by one or more deployments. Override with the option "
                           "'?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'.", locked)

    def _take_lock(self, app_id: str, dep: Deployment, now: float) -> None:
        """A forced change cancels the deployments it overrides (their other apps are released)."""
        old_id = self.engine.locks.get(app_id)
        if old_id is not None and old_id in self.engine.deployment_list:
            self.engine.end_deployment(self.engine.deployment_list[old_id], "deployment_failed", now)
        self.engine.locks[app_id] = dep.id

    def _record_version(self, app_id: str, spec: AppSpec | None, version: str, *, restart: bool) -> None:
        if spec is None:
            return  # a deletion: the record goes when its StopApplication is done
        record = self.engine.apps.get(app_id)
        if record is None:
            record = AppRecord(spec, version, version, version, [])
            self.engine.apps[app_id] = record
        else:
            config_change = restart or needs_restart(record.spec, spec)
            if config_change:
                record.config_version = (None if restart else self.running_config(app_id, spec)) or version
                self.engine.delays.reset(app_id)
            else:
                record.scaling_version = version
            record.spec = spec
            record.version = version
        record.versions.append(version)
        self.engine.versions[(app_id, version)] = spec
        self.engine.emit(Persist(KIND_VERSION, version_key(app_id, version), {"spec": app_json(spec)}))
        while len(record.versions) > MAX_VERSIONS:
            gone = record.versions.pop(0)
            self.engine.versions.pop((app_id, gone), None)
            self.engine.version_docs.pop((app_id, gone), None)
            self.engine.emit(Forget(KIND_VERSION, version_key(app_id, gone)))
        self.engine.save_app(record)
        self.engine.converger.dirty.add(app_id)

    def running_config(self, app_id: str, spec: AppSpec) -> str | None:
        """The configuration version some live instance of the app already runs, if ``spec`` is
        that configuration (a rollback, or a change undone): those instances are kept."""
        versions = {i.version for i in self.engine.by_app.get(app_id, {}).values() if i.active}
        for version in sorted(versions, reverse=True):
            try:
                if not needs_restart(self.engine.app_version(app_id, version), spec):
                    return version
            except NotFound:
                continue
        return None
