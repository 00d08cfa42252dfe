"""What the service engine asks its shell to do: the shared commands, plus ``Emit``.

``Emit(event_type, doc)`` publishes one Marathon event (``doc`` already has ``eventType`` and
``timestamp``) to the ``/v2/events`` subscribers; the shell sends it only after the state
writes of the same step succeeded.

Record kinds: ``app`` (key ``app_key(id)``: the app's current version, version list and times),
``version`` (key ``<app key>@<version>``: one stored app version), ``instance`` (key: the task
id) and ``deployment`` (key: the deployment id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mensa.frameworks.commands import (
    Decline,
    Forget,
    Kill,
    Launch,
    Persist,
    Reconcile,
    Revive,
    Suppress,
)

__all__ = ["KIND_APP", "KIND_VERSION", "Command", "Decline", "Emit", "Forget", "Kill", "Launch",
           "Persist", "Reconcile", "Revive", "Suppress"]

KIND_APP = "app"
KIND_VERSION = "version"


@dataclass(frozen=True, slots=True)
class Emit:
    event_type: str
    doc: dict[str, Any]


Command = Persist | Forget | Launch | Decline | Kill | Reconcile | Revive | Suppress | Emit
