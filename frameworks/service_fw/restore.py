"""Rebuilding the service engine from its stored records (pure; part of the engine).

Apps come back with their current spec; their older versions are kept as stored documents and
read only when asked for (``ServiceEngine.app_version``), so a restart with many apps and
versions stays fast. Instances come back as they were stored (their tasks are reconciled once
the framework has subscribed), and deployments with the locks they hold. A record that cannot
be read is logged (``service_record_unreadable``) and skipped; the instances of an app whose
record could not be read are *held*: kept and reconciled, never killed as strangers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw.apps import app_id_of_key, app_id_of_task, app_key
from mensa.frameworks.service_fw.commands import KIND_APP, KIND_VERSION
from mensa.frameworks.service_fw.deployments import KIND_DEPLOYMENT
from mensa.frameworks.service_fw.instances import KIND_INSTANCE, Instance
from mensa.frameworks.service_fw.records import AppRecord, deployment_of

if TYPE_CHECKING:
    from mensa.frameworks.service_fw.engine import ServiceEngine

log = structlog.get_logger(__name__)


def restore_records(engine: ServiceEngine, records: dict[str, dict[str, dict[str, Any]]], now: float) -> None:
    """Fills an empty ``engine`` from ``records`` (``{kind: {key: doc}}``)."""
    for key, doc in records.get(KIND_APP, {}).items():
        try:
            record = AppRecord.from_doc(doc)
        except (KeyError, TypeError, ValueError, SpecError) as exc:
            log.error("service_record_unreadable", kind=KIND_APP, key=key, error=str(exc),
                      consequence="its instances are kept running, never killed, until it is deployed again")
            engine.held.add(app_id_of_key(key))
            continue
        engine.apps[record.app_id] = record
    keys = {app_key(a): a for a in engine.apps}
    for key, doc in records.get(KIND_VERSION, {}).items():
        app_part, _, version = key.rpartition("@")
        app_id = keys.get(app_part)
        if app_id is not None and isinstance(doc, dict):
            engine.version_docs[(app_id, version)] = doc  # read when asked for (restore stays fast)
    for record in engine.apps.values():
        record.versions = [v for v in record.versions if (record.app_id, v) in engine.version_docs]
        engine.versions[(record.app_id, record.version)] = record.spec
        if record.version not in record.versions:
            record.versions.append(record.version)
    for key, doc in records.get(KIND_INSTANCE, {}).items():
        try:
            inst = Instance.from_json(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("service_record_unreadable", kind=KIND_INSTANCE, key=key, error=str(exc))
            continue
        if app_id_of_task(inst.task_id) is None:
            continue
        engine.add_instance(inst)
        engine.converger.restored(inst, now)
    for key, doc in records.get(KIND_DEPLOYMENT, {}).items():
        try:
            dep = deployment_of(doc)
        except (KeyError, TypeError, ValueError, SpecError) as exc:
            log.error("service_record_unreadable", kind=KIND_DEPLOYMENT, key=key, error=str(exc))
            continue
        engine.deployment_list[dep.id] = dep
        for app_id in dep.affected_apps:
            engine.locks[app_id] = dep.id
    log.info("service_state_restored", apps=len(engine.apps), instances=len(engine.instances),
             deployments=len(engine.deployment_list))
