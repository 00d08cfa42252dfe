"""What the service engine keeps per app, and how apps and deployments are stored (pure).

``AppRecord`` is an app's current definition with its version history. Versions are Marathon's:
the time of the change (``iso``). ``config_version`` is the version of the latest change that was
more than a scale (Marathon's ``versionInfo.lastConfigChangeAt``): instances launched since run
it, and a rolling restart replaces those that run an older one.

Stored records (see commands.py for the kinds): an app's record holds its current spec and the
list of its versions; each version's spec is a record of its own (``<app key>@<version>``) so
``/v2/apps/{id}/versions/{version}`` and rollbacks can read it; a deployment's record holds its
steps and the original and target specs of every app it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mensa.frameworks.service_fw.app_reading import app_json, parse_app
from mensa.frameworks.service_fw.apps import AppSpec, app_key
from mensa.frameworks.service_fw.deployments import Action, Deployment

MAX_VERSIONS = 50  # versions kept per app (Marathon's --max_versions default is 50 too)


@dataclass(slots=True)
class AppRecord:
    """An app: its current spec, its version, and the versions kept (oldest first)."""

    spec: AppSpec
    version: str
    config_version: str  # the version whose configuration current instances should run
    scaling_version: str  # the latest change of only ``instances`` (or the creation)
    versions: list[str] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return self.spec.id

    @property
    def last_config_change_at(self) -> str:
        return self.config_version

    @property
    def last_scaling_at(self) -> str:
        return self.scaling_version

    def to_doc(self) -> dict[str, Any]:
        return {"spec": app_json(self.spec), "version": self.version,
                "config_version": self.config_version, "scaling_version": self.scaling_version,
                "versions": list(self.versions)}

    @staticmethod
    def from_doc(doc: dict[str, Any]) -> AppRecord:
        """Reads a stored app record; raises (KeyError, TypeError, ValueError) when malformed."""
        versions = [str(v) for v in doc.get("versions", [])]
        return AppRecord(parse_app(doc["spec"]), str(doc["version"]), str(doc["config_version"]),
                         str(doc["scaling_version"]), versions)


def version_key(app_id: str, version: str) -> str:
    return f"{app_key(app_id)}@{version}"


def _spec_doc(spec: AppSpec | None) -> dict[str, Any] | None:
    return None if spec is None else app_json(spec)


def _spec_of(doc: Any) -> AppSpec | None:
    return None if doc is None else parse_app(doc)


def deployment_doc(dep: Deployment) -> dict[str, Any]:
    return {"id": dep.id, "version": dep.version,
            "steps": [[{"action": a.kind, "app": a.app_id} for a in step] for step in dep.steps],
            "original": {k: _spec_doc(v) for k, v in dep.original.items()},
            "target": {k: _spec_doc(v) for k, v in dep.target.items()},
            "started_at": dep.started_at, "current_step": dep.current_step,
            "rollback_of": dep.rollback_of, "preexisting": sorted(dep.preexisting)}


def deployment_of(doc: dict[str, Any]) -> Deployment:
    """Reads a stored deployment; raises (KeyError, TypeError, ValueError) when malformed."""
    steps = [[Action(str(a["action"]), str(a["app"])) for a in step] for step in doc["steps"]]
    return Deployment(id=str(doc["id"]), version=str(doc["version"]), steps=steps,
                      original={str(k): _spec_of(v) for k, v in doc["original"].items()},
                      target={str(k): _spec_of(v) for k, v in doc["target"].items()},
                      started_at=float(doc["started_at"]), current_step=int(doc["current_step"]),
                      rollback_of=doc.get("rollback_of"),
                      preexisting=frozenset(str(t) for t in doc.get("preexisting", ())))
