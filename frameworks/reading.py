"""Reading JSON documents with every problem collected by path (pure).

``Problems`` collects (JSON-pointer path, reason) pairs while a document is read, so one error
lists everything wrong at once; ``raise_if_any`` turns them into a ``SpecError``, whose
``to_json()`` is Metronome's error body. The ``read_*`` helpers read one field each and record
what is wrong with it.
"""

from __future__ import annotations

import math
from typing import Any


class SpecError(ValueError):
    """A document that is not a valid job or schedule: ``details`` lists (path, reason) pairs,
    the path a JSON pointer into the document (``/run/cpus``)."""

    def __init__(self, message: str, details: list[tuple[str, str]] | None = None) -> None:
        self.message = message
        self.details = list(details or [])
        text = "; ".join(f"{p or '/'}: {r}" for p, r in self.details)
        super().__init__(f"{message}: {text}" if text else message)

    def to_json(self) -> dict[str, Any]:
        """Metronome's error body: ``{"message", "details": [{"path", "errors": [...]}]}``."""
        grouped: dict[str, list[str]] = {}
        for path, reason in self.details:
            grouped.setdefault(path or "/", []).append(reason)
        return {"message": self.message,
                "details": [{"path": p, "errors": errors} for p, errors in grouped.items()]}


class Problems:
    """Collects (path, reason) pairs while a document is read."""

    def __init__(self) -> None:
        self.details: list[tuple[str, str]] = []

    def add(self, path: str, reason: str) -> None:
        self.details.append((path, reason))

    def raise_if_any(self, message: str = "Object is not valid") -> None:
        if self.details:
            raise SpecError(message, self.details)


def is_text(value: Any) -> bool:
    """True for a string a TaskInfo can carry: no NUL, and valid UTF-8 (no lone surrogates, which
    JSON's ``\\ud800`` escapes can produce)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def read_object(doc: Any, path: str, errors: Problems, known: tuple[str, ...]) -> dict[str, Any] | None:
    """Returns ``doc`` if it is an object (each key not in ``known`` is an "unknown field")."""
    if not isinstance(doc, dict):
        errors.add(path, "must be a JSON object")
        return None
    for key in doc:
        if key not in known:
            errors.add(f"{path}/{key}", "unknown field")
    return doc


def read_number(doc: dict[str, Any], key: str, path: str, errors: Problems, default: float | None, *,
                minimum: float, strict: bool, maximum: float | None = None) -> float | None:
    """Reads a number > minimum (strict) or >= minimum, and <= ``maximum`` when given (so derived
    times and sizes stay representable); returns ``default`` when absent/null."""
    value = doc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        errors.add(f"{path}/{key}", "must be a number")
        return default
    if (strict and value <= minimum) or (not strict and value < minimum):
        errors.add(f"{path}/{key}", f"must be {'>' if strict else '>='} {_number_text(minimum)}")
        return default
    if maximum is not None and value > maximum:
        errors.add(f"{path}/{key}", f"must be at most {_number_text(maximum)}")
        return default
    return float(value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON allows 1e400 written out)
        return False


def read_count(doc: dict[str, Any], key: str, errors: Problems, maximum: int) -> int:
    """Reads an integer from 1 to ``maximum`` (default 1) at ``/key``."""
    value = doc.get(key, 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            errors.add(f"/{key}", "must be an integer")
            return 1
    if not 1 <= value <= maximum:
        errors.add(f"/{key}", f"must be between 1 and {maximum}")
        return 1
    return value


def read_string(doc: dict[str, Any], key: str, path: str, errors: Problems, *, required: bool = False,
                nonempty: bool = False) -> str | None:
    """Reads a string without NUL (``required``: present; ``nonempty``: not blank)."""
    value = doc.get(key)
    if value is None:
        if required:
            errors.add(f"{path}/{key}", "is required")
        return None
    if not isinstance(value, str):
        errors.add(f"{path}/{key}", "must be a string")
        return None
    if (nonempty or required) and not value.strip():
        errors.add(f"{path}/{key}", "must not be empty")
        return None
    if not is_text(value):
        errors.add(f"{path}/{key}", "must not contain NUL or invalid Unicode")
        return None
    return value


def read_string_map(value: Any, path: str, errors: Problems, what: str) -> tuple[tuple[str, str], ...]:
    """Reads an object of strings as sorted (name, value) pairs; ``what`` "env" checks the names as
    environment variable names."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        errors.add(path, "must be a JSON object of strings")
        return ()
    out: list[tuple[str, str]] = []
    for name, item in value.items():
        if not is_text(name) or (what == "env" and (not name or "=" in name)):
            kind = "environment variable" if what == "env" else "label"
            errors.add(f"{path}/{name}", f"is not a valid {kind} name")
        elif isinstance(item, dict) and "secret" in item:
            errors.add(f"{path}/{name}", "secrets are not supported")
        elif not is_text(item):
            errors.add(f"{path}/{name}", "must be a string")
        else:
            out.append((name, item))
    return tuple(sorted(out))
