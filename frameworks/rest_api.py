"""What the bundled frameworks' REST APIs (Metronome's, Marathon's) share: errors and JSON.

``ApiError`` is an answer other than success, with the error document both APIs use:
``{"message", "details": [{"path", "errors": [...]}]}`` plus any extra fields (Marathon's 409
names the deployments in the way). ``shared_error`` maps the exceptions every framework raises
(``SpecError`` 422, ``NotLeading`` 503 safe to retry, ``StoreError`` 503 maybe applied);
``JsonHandler`` is a tornado handler that reads JSON bodies (400 when they are not JSON) and
answers errors through ``api_error``, which each API extends with its own refusals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

import tornado.web

from mensa.frameworks.hosting import NotLeading
from mensa.frameworks.reading import SpecError
from mensa.frameworks.store import StoreError

RETRY_SAFE_HEADER = "Mensa-Retry-Safe"


class ApiError(Exception):
    """An answer other than success: the status and the error document."""

    def __init__(self, status: int, message: str, details: Sequence[tuple[str, str]] = (), *,
                 extra: dict[str, Any] | None = None, retry_safe: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details)
        self.extra = extra or {}
        # A 503 that changed nothing (no leader): clients may send it again. A 503 after a
        # failed state write may have taken effect, and must not be repeated blindly.
        self.retry_safe = retry_safe

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.details:
            grouped: dict[str, list[str]] = {}
            for path, error in self.details:
                grouped.setdefault(path or "/", []).append(error)
            body["details"] = [{"path": p, "errors": e} for p, e in grouped.items()]
        body.update(self.extra)
        return body


def shared_error(exc: BaseException) -> ApiError | None:
    """The answer for what any framework raises; None for anything else."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, SpecError):
        return ApiError(422, exc.message or "Object is not valid", exc.details)
    if isinstance(exc, NotLeading):
        return ApiError(503, f"this instance cannot serve the request now: {exc}", retry_safe=True)
    if isinstance(exc, StoreError):
        return ApiError(503, f"the state could not be written, so the change may or may not have "
                        f"taken effect; look before repeating it: {exc}")
    return None


class JsonHandler(tornado.web.RequestHandler):
    """A handler answering JSON, its errors in the shared shape (see the module docstring)."""

    content_type = "application/json"

    def api_error(self, exc: BaseException) -> ApiError | None:
        """The answer ``exc`` stands for (None: an unexpected failure, a 500). Extend it."""
        return shared_error(exc)

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", self.content_type)
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = self.api_error(exc_info[1]) if exc_info else None
        if error is None:
            reason = self._reason if status_code != 500 else "internal error; see the framework's log"
            error = ApiError(status_code, reason)
        self.set_status(error.status)
        self.set_header("Content-Type", self.content_type)
        if error.retry_safe:
            self.set_header(RETRY_SAFE_HEADER, "true")
        self.finish(json.dumps(error.to_json()))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if value is not None and self.api_error(value) is not None:
            return  # an answer, not a failure
        super().log_exception(typ, value, tb)

    def body_json(self) -> Any:
        """The request body as JSON; an ApiError (400) when it is not JSON."""
        body = self.request.body
        if not body.strip():
            raise ApiError(400, "Invalid JSON", [("/", "the request has no body; JSON is expected")])
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ApiError(400, "Invalid JSON", [("/", f"the body is not JSON: {exc}")]) from None

    def body_object(self) -> dict[str, Any]:
        doc = self.body_json()
        if not isinstance(doc, dict):
            raise ApiError(422, "Object is not valid", [("/", "a JSON object is expected")])
        return doc

    async def answer_as_standby(self, leader: Callable[[], str | None], framework: str) -> None:
        """Answers a request this instance cannot serve (it does not lead): 307 to the leader
        (``leader()`` may block: it runs off the loop), or 503, safe to retry, while none is
        known."""
        address = await asyncio.get_running_loop().run_in_executor(None, leader)
        if address is not None:
            self.set_header("Location", f"http://{address}{self.request.uri}")
            self.write_json({"message": "this instance does not lead", "leader": address}, status=307)
        else:
            self.set_header(RETRY_SAFE_HEADER, "true")
            self.write_json({"message": f"no {framework} framework instance leads right now; retry shortly"},
                            status=503)
