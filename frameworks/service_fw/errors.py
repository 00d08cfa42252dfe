"""What the service engine refuses with (the REST API maps each to Marathon's answer)."""

from __future__ import annotations

__all__ = ["Conflict", "Exists", "NotFound"]


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
