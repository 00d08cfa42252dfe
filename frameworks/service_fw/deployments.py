"""Deployments: how the service framework moves apps from what runs to what was asked (pure types).

Every change to apps (create, update, scale, restart, delete) becomes a ``Deployment``: a plan
of ``steps``, each a list of ``Action``s that run together; a step starts when the one before
it is done. ``planner.plan`` orders them so that an app's dependencies start before it and stop
after it. A deployment keeps every affected app's ``original`` version (None: it did not exist)
and ``target`` (None: it is being deleted), so cancelling it can roll back.

Actions (Marathon's names):

    StartApplication    the app exists (with 0 instances) before others that depend on it scale
    ScaleApplication    start or kill instances of the target version until ``instances`` run
    RestartApplication  replace every instance of an older version, rolling, within the
                        upgrade strategy (minimumHealthCapacity, maximumOverCapacity)
    StopApplication     kill every instance and remove the app

Rendered by ``to_json`` in the shape of Marathon's ``/v2/deployments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mensa.frameworks.service_fw.apps import AppSpec

KIND_DEPLOYMENT = "deployment"

START = "StartApplication"
SCALE = "ScaleApplication"
RESTART = "RestartApplication"
STOP = "StopApplication"
ACTIONS = (START, SCALE, RESTART, STOP)


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a deployment step does to one app."""

    kind: str  # one of ACTIONS
    app_id: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.kind, "app": self.app_id}


@dataclass(slots=True)
class Deployment:
    """A plan under way (see the module docstring). ``current_step`` counts from 0; the
    deployment is done when it reaches ``len(steps)``."""

    id: str
    version: str  # the ISO 8601 time of the change, also the new app versions' version
    steps: list[list[Action]]
    original: dict[str, AppSpec | None]
    target: dict[str, AppSpec | None]
    started_at: float
    current_step: int = 0
    rollback_of: str | None = None  # the deployment this one rolls back
    waiting: dict[str, str] = field(default_factory=dict)  # app id -> why its action waits
    # Instances live when it started: a scale waits for the instances it launched, not these.
    preexisting: frozenset[str] = frozenset()

    @property
    def affected_apps(self) -> list[str]:
        return sorted(set(self.original) | set(self.target))

    @property
    def done(self) -> bool:
        return self.current_step >= len(self.steps)

    @property
    def current_actions(self) -> list[Action]:
        return [] if self.done else self.steps[self.current_step]

    def to_json(self) -> dict[str, Any]:
        """Marathon's ``/v2/deployments`` entry."""
        return {
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps,
            "affectedPods": [],
            "steps": [{"actions": [a.to_json() for a in step]} for step in self.steps],
            "currentActions": [{**a.to_json(), "readinessCheckResults": []}
                               for a in self.current_actions],
            "currentStep": min(self.current_step + 1, len(self.steps)),
            "totalSteps": len(self.steps),
        }
