"""What the batch engine asks its shell to do: the shared commands of ``frameworks.commands``.

Record kinds: ``job`` (key: the job id) and ``run`` (key: ``<job id>.<run id>``); keys use only
lowercase letters, digits, '-' and '.'.
"""

from __future__ import annotations

from mensa.frameworks.commands import (
    Command,
    Decline,
    Forget,
    Kill,
    Launch,
    Persist,
    Reconcile,
    Revive,
    Suppress,
)

__all__ = ["KIND_JOB", "KIND_RUN", "Command", "Decline", "Forget", "Kill", "Launch", "Persist",
           "Reconcile", "Revive", "Suppress"]

KIND_JOB = "job"
KIND_RUN = "run"
