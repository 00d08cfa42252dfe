"""The ``/v2/apps`` handlers of the service framework's REST API (see api.py for the routes,
answers and errors)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw.api import DEPLOYMENT_HEADER, ApiError, Leading, with_prefix
from mensa.frameworks.service_fw.app_reading import app_json, id_problem, merge_app, parse_app, resolve_id
from mensa.frameworks.service_fw.apps import AppSpec, app_key
from mensa.frameworks.service_fw.engine import AppRecord, NotFound, ServiceEngine
from mensa.frameworks.service_fw.events import iso
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.views import (
    COUNTS,
    DEPLOYMENTS,
    LIST_EMBEDS,
    SHOW_EMBEDS,
    TASKS,
    parse_label_selector,
    resolve_embeds,
    select_apps,
    service_ports,
    task_json,
)


def app_id_of(raw: str) -> str:
    """The app id a URL names, resolved; 422 when it cannot be one."""
    reason = id_problem(raw)
    if reason is not None:
        raise ApiError(422, "Object is not valid", [("/id", f"the id in the URL {reason}")])
    return resolve_id(raw)


def app_url(app_id: str) -> str:
    return "/v2/apps" + urllib.parse.quote(app_id)


def read_update(current: AppRecord | None, doc: Any, app_id: str, partial: bool) -> AppSpec:
    """The app a PUT asks for: with ``partial`` (Marathon's default), the fields given replace
    those of the current app (``merge_app``); otherwise (or for a new app) the body is the whole
    app. Raises SpecError."""
    if current is not None and partial:
        return parse_app(merge_app(app_json(current.spec), doc), app_id=app_id)
    return parse_app(doc, app_id=app_id)


def read_updates(engine: ServiceEngine, docs: list[Any], *, partial: bool, create: bool) -> list[AppSpec]:
    """The apps a bulk ``PUT /v2/apps`` asks for (each must have an id), every problem listed
    under its index (``/2/cpus``). Raises SpecError, or NotFound for an app that does not exist
    when ``create`` is false."""
    specs: list[AppSpec] = []
    problems: list[tuple[str, str]] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            problems.append((f"/{i}", "an app (a JSON object) is expected"))
            continue
        raw = doc.get("id")
        reason = id_problem(raw) if raw is not None else "is required"
        if reason is not None:
            problems.append((f"/{i}/id", reason))
            continue
        app_id = resolve_id(str(raw))
        current = engine.apps.get(app_id)
        if current is None and not create:
            raise NotFound(f"App '{app_id}' does not exist")
        try:
            specs.append(read_update(current, doc, app_id, partial))
        except SpecError as exc:
            problems.extend(with_prefix(exc, f"/{i}").details)
    if problems:
        raise SpecError("Object is not valid", problems)
    if not specs:
        raise SpecError("Object is not valid", [("/", "the list names no app")])
    return specs


class AppChange(Leading):
    def post_event(self, spec: AppSpec, version: str) -> None:
        """Marathon's ``api_post_event``: who changed which app definition, through which URI."""
        self.publish("api_post_event", {
            "eventType": "api_post_event", "timestamp": iso(self.now()),
            "clientIp": self.request.remote_ip, "uri": self.request.path,
            "appDefinition": {**app_json(spec), "version": version}})


class AppsHandler(AppChange):
    def get(self) -> None:
        label = self.get_query_argument("label", None)
        try:
            selector = parse_label_selector(label) if label else None
        except ValueError as exc:
            raise ApiError(400, f"Invalid label selector {label!r}: {exc}") from None
        engine = self.engine
        records = select_apps(engine.app_records(), id_part=self.get_query_argument("id", None),
                              cmd_part=self.get_query_argument("cmd", None), label=selector)
        embeds = resolve_embeds(self.get_query_arguments("embed")) | LIST_EMBEDS
        self.write_text(self.views.apps_text(records, engine, embeds))

    async def post(self) -> None:
        doc = self.body_object()
        force = self.flag("force")
        spec = parse_app(doc)
        dep = await self.apply(lambda now: self.engine.create_app(spec, now, force=force))
        engine = self.engine
        record = engine.app_record(spec.id)
        text = self.views.app_text(record, engine, frozenset({COUNTS, TASKS, DEPLOYMENTS}),
                                   deployment_ids=[dep.id])
        self.post_event(record.spec, record.version)
        self.set_header("Location", app_url(spec.id))
        self.set_header(DEPLOYMENT_HEADER, dep.id)
        self.write_text(text, 201)

    async def put(self) -> None:
        await self._bulk(partial=self.flag("partialUpdate", True), create=True)

    async def patch(self) -> None:
        await self._bulk(partial=True, create=False)

    async def _bulk(self, *, partial: bool, create: bool) -> None:
        docs = self.body_json()
        if not isinstance(docs, list):
            raise ApiError(422, "Object is not valid", [("/", "a JSON array of apps is expected")])
        force = self.flag("force")

        def change(now: float) -> tuple[Any, Sequence[Any]]:
            engine = self.engine
            specs = read_updates(engine, docs, partial=partial, create=create)
            dep, commands = engine.update_apps(specs, now, force=force)
            return (dep, specs), commands

        dep, specs = await self.apply(change)
        for spec in specs:
            record = self.engine.apps.get(spec.id)
            self.post_event(spec, record.version if record is not None else dep.version)
        self.changed(dep.id, dep.version)


class AppHandler(AppChange):
    def get(self, raw_id: str) -> None:
        engine = self.engine
        embeds = resolve_embeds(self.get_query_arguments("embed")) | SHOW_EMBEDS
        if raw_id.endswith("/*"):  # Marathon's /v2/apps/{group}/*: the apps under a group
            group = resolve_id(raw_id[:-1])
            under = [r for r in engine.app_records() if r.app_id.startswith(group.rstrip("/") + "/")]
            if not under and group != "/":
                raise NotFound(f"Group '{group}' does not exist")
            self.write_text(self.views.apps_text(under, engine, embeds, key="*"))
            return
        record = engine.app_record(app_id_of(raw_id))
        self.write_text('{"app":' + self.views.app_text(record, engine, embeds) + "}")

    async def put(self, raw_id: str) -> None:
        await self._update(raw_id, partial=self.flag("partialUpdate", True), create=True)

    async def patch(self, raw_id: str) -> None:
        await self._update(raw_id, partial=True, create=False)

    async def _update(self, raw_id: str, *, partial: bool, create: bool) -> None:
        app_id = app_id_of(raw_id)
        doc = self.body_object()
        force = self.flag("force")

        def change(now: float) -> tuple[Any, Sequence[Any]]:
            engine = self.engine
            current = engine.apps.get(app_id)
            if current is None and not create:
                raise NotFound(f"App '{app_id}' does not exist")
            spec = read_update(current, doc, app_id, partial)
            dep, commands = engine.update_app(spec, now, force=force)
            return (dep, current is None), commands

        dep, created = await self.apply(change)
        record = self.engine.app_record(app_id)
        self.post_event(record.spec, record.version)
        if created:
            self.set_header("Location", app_url(app_id))
        self.changed(dep.id, record.version, 201 if created else 200)

    async def delete(self, raw_id: str) -> None:
        app_id = app_id_of(raw_id)
        force = self.flag("force")
        dep = await self.apply(lambda now: self.engine.delete_app(app_id, now, force=force))
        self.changed(dep.id, dep.version)


class AppRestartHandler(AppChange):
    async def post(self, raw_id: str) -> None:
        app_id = app_id_of(raw_id)
        force = self.flag("force")
        dep = await self.apply(lambda now: self.engine.restart_app(app_id, now, force=force))
        record = self.engine.app_record(app_id)
        self.post_event(record.spec, record.version)
        self.changed(dep.id, record.version)


class AppVersionsHandler(Leading):
    def get(self, raw_id: str) -> None:
        record = self.engine.app_record(app_id_of(raw_id))
        self.write_json({"versions": record.versions[::-1]})


class AppVersionHandler(Leading):
    def get(self, raw_id: str, version: str) -> None:
        spec = self.engine.app_version(app_id_of(raw_id), version)
        self.write_json({**app_json(spec), "version": version})


# -- an app's tasks --------------------------------------------------------------------------------


def endpoints_text(engine: ServiceEngine, records: list[AppRecord]) -> str:
    """Marathon's text/plain task list: per app and service port, ``<app key>\\t<service
    port>\\t<host:port>\\t...`` over its running tasks (an app without ports: one line, the
    hosts separated by spaces)."""
    lines: list[str] = []
    for record in records:
        running = [i for i in engine.instances_of(record.app_id) if i.running]
        key = app_key(record.app_id)
        ports = service_ports(record.spec)
        if not ports:
            lines.append(f"{key}\t \t" + "".join(f"{i.hostname} " for i in running))
            continue
        for index, port in enumerate(ports):
            lines.append(f"{key}\t{port}\t" + "".join(
                f"{i.hostname}:{i.host_ports[index]}\t" for i in running if index < len(i.host_ports)))
    return "".join(line + "\n" for line in lines)


class AppTasksHandler(Leading):
    def get(self, raw_id: str) -> None:
        engine = self.engine
        if raw_id.endswith("/*"):
            group = resolve_id(raw_id[:-1]).rstrip("/") + "/"
            records = [r for r in engine.app_records() if r.app_id.startswith(group)]
        else:
            records = [engine.app_record(app_id_of(raw_id))]
        accept = self.request.headers.get("Accept", "")
        if "text/plain" in accept and "application/json" not in accept:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(endpoints_text(engine, records))
            return
        instances = [i for r in records for i in engine.instances_of(r.app_id)]
        self.write_text(self.views.tasks_text(instances, engine))

    async def delete(self, raw_id: str) -> None:
        app_id = app_id_of(raw_id)
        scale, wipe, force = self.flag("scale"), self.flag("wipe"), self.flag("force")
        if scale and wipe:
            raise ApiError(400, "You cannot use scale and wipe at the same time.")
        host = self.get_query_argument("host", None)

        def change(now: float) -> tuple[Any, Sequence[Any]]:
            engine = self.engine
            engine.app_record(app_id)
            ids = [i.task_id for i in engine.instances_of(app_id)
                   if host is None or host in ("*", i.hostname)]
            killed, dep, commands = engine.kill_tasks(ids, now, scale=scale, wipe=wipe, force=force)
            return (killed, dep), commands

        killed, dep = await self.apply(change)
        if dep is not None:
            self.changed(dep.id, dep.version)
        else:
            self.write_text(self.views.tasks_text(killed, self.engine))


class AppTaskHandler(Leading):
    def get(self, raw_id: str, task_id: str) -> None:
        engine = self.engine
        inst = self._instance(engine, app_id_of(raw_id), task_id)
        self.write_json({"task": self._render(engine, inst)})

    async def delete(self, raw_id: str, task_id: str) -> None:
        app_id = app_id_of(raw_id)
        scale, wipe, force = self.flag("scale"), self.flag("wipe"), self.flag("force")
        if scale and wipe:
            raise ApiError(400, "You cannot use scale and wipe at the same time.")

        def change(now: float) -> tuple[Any, Sequence[Any]]:
            engine = self.engine
            self._instance(engine, app_id, task_id)
            killed, dep, commands = engine.kill_tasks([task_id], now, scale=scale, wipe=wipe, force=force)
            return (killed, dep), commands

        killed, dep = await self.apply(change)
        if dep is not None:
            self.changed(dep.id, dep.version)
        else:
            self.write_json({"task": self._render(self.engine, killed[0])})

    @staticmethod
    def _instance(engine: ServiceEngine, app_id: str, task_id: str) -> Instance:
        engine.app_record(app_id)
        inst = engine.instance(task_id)  # NotFound
        if inst.app_id != app_id or inst.terminal:
            raise NotFound(f"Task '{task_id}' does not exist")
        return inst

    @staticmethod
    def _render(engine: ServiceEngine, inst: Instance) -> dict[str, Any]:
        record = engine.apps.get(inst.app_id)
        ports = service_ports(record.spec if record else None)
        return task_json(inst, ports, engine.has_health_checks(inst.app_id))
