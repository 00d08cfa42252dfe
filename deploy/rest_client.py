"""What the framework CLIs (``mensa job``, ``mensa app``) share: JSON over HTTP to a framework's
REST API, and reading definitions from JSON or YAML files.

``RestClient.call`` returns the decoded answer, follows a standby's redirect to the leader,
waits out a moment without a leader, and raises ``ApiError`` (an answer in the Marathon /
Metronome error shape, ``{"message", "details": [{"path", "errors"}]}``, kept field by field) or
``Unreachable``; both are ``CliError``, whose text is one line for the user::

    client = RestClient("http://127.0.0.1:8080", timeout=10, what="the service framework")
    apps = client.call("GET", "/v2/apps")["apps"]
    docs = read_documents("apps.yaml", "app")   # one object, or a list of them
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MAX_REDIRECTS = 3


class CliError(Exception):
    """What went wrong, for the user (one line)."""


class Unreachable(CliError):
    """The framework did not answer at all (refused, timed out, bad address)."""


class ApiError(CliError):
    """The framework answered with an error. ``str()`` is ``METHOD PATH: STATUS message; path:
    errors``; the fields let a caller say more (``details`` holds ``(path, errors)`` pairs,
    ``body`` the decoded answer, or None when it was not JSON)."""

    def __init__(self, method: str, path: str, status: int, message: str,
                 details: list[tuple[str, list[str]]], body: Any = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.details = details
        self.body = body
        text = f"{method} {path}: {status} {message}"
        for where, errors in details:
            text += f"; {where}: {', '.join(errors)}"
        super().__init__(text)


class RestClient:
    """JSON over HTTP to a framework; follows a standby's 307 to the leader, and retries a 503
    for up to ``timeout`` seconds when nothing can have happened (a GET, or the API says so with
    ``Mensa-Retry-Safe: true``: no leader right now), never a change whose state write failed.
    ``what`` names the framework in messages. Subclasses may turn errors into their own type by
    overriding ``fail``."""

    def __init__(self, base: str, timeout: float = 10.0, what: str = "the framework") -> None:
        base = base.rstrip("/")
        if not base.startswith(("http://", "https://")):
            base = "http://" + base
        self.base = base
        self.timeout = timeout
        self.what = what

    def fail(self, error: CliError) -> Exception:
        """The exception ``call`` raises for ``error`` (``error`` itself by default)."""
        return error

    def call(self, method: str, path: str, body: Any = None, ok_404: bool = False) -> Any:
        """Returns the decoded answer (None for an empty one, or for a 404 when ``ok_404``);
        raises ``fail(ApiError)`` for an error answer and ``fail(Unreachable)`` when there is
        none."""
        url = self.base + path
        data = None if body is None else json.dumps(body).encode()
        redirects = 0
        unavailable_until = time.monotonic() + self.timeout
        while True:
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={"Content-Type": "application/json",
                                                      "Accept": "application/json"})
            try:
                with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw.strip() else None
            except urllib.error.HTTPError as exc:
                if exc.code in (301, 302, 307, 308) and exc.headers.get("Location"):
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise self.fail(CliError(f"{method} {path}: too many redirects")) from None
                    url = urllib.parse.urljoin(url, exc.headers["Location"])
                    continue
                retry_safe = method == "GET" or exc.headers.get("Mensa-Retry-Safe") == "true"
                if exc.code == 503 and retry_safe and time.monotonic() < unavailable_until:
                    time.sleep(0.2)  # no leader for the moment (starting, or failing over)
                    continue
                if exc.code == 404 and ok_404:
                    return None
                raise self.fail(api_error(method, path, exc)) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise self.fail(Unreachable(f"cannot reach {self.what} at {self.base}: {reason}")) from None
            except ValueError as exc:
                raise self.fail(CliError(f"{method} {path} did not answer with JSON: {exc}")) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 307 reaches RestClient.call, which repeats the request there


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


def api_error(method: str, path: str, exc: urllib.error.HTTPError) -> ApiError:
    """Reads an error answer: Marathon's and Metronome's ``{"message", "details"}`` (details'
    ``errors`` may be strings or ``{"message"}`` objects), or the HTTP reason when not JSON."""
    try:
        doc = json.loads(exc.read())
    except (ValueError, OSError):
        doc = None
    if not isinstance(doc, dict):
        return ApiError(method, path, exc.code, str(exc.reason), [], doc)
    details = []
    for detail in doc.get("details", []) or []:
        if isinstance(detail, dict):
            errors = detail.get("errors", [])
            errors = errors if isinstance(errors, list) else [errors]
            details.append((str(detail.get("path", "")),
                            [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]))
    return ApiError(method, path, exc.code, str(doc.get("message", exc.reason)), details, doc)


def read_documents(path: str, noun: str) -> list[dict[str, Any]]:
    """The ``noun`` definitions (objects with an ``"id"``) in a JSON file, or a YAML one
    (``.yaml``/``.yml``); ``-`` reads stdin. The file holds one object, a list, or
    ``{"<noun>s": [...]}`` (what ``GET /v2/apps`` answers). Raises CliError saying what is wrong."""
    try:
        text = Path(path).read_text() if path != "-" else sys.stdin.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    doc: Any
    try:
        doc = json.loads(text)
    except ValueError as json_error:
        if not path.endswith((".yaml", ".yml")):
            raise CliError(f"{path} is not JSON: {json_error}") from None
        try:
            import yaml
        except ImportError:
            raise CliError(f"{path}: YAML needs PyYAML (pip install pyyaml); JSON works as is") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CliError(f"{path} is not YAML: {exc}") from None
    plural = f"{noun}s"
    if isinstance(doc, dict) and "id" not in doc and isinstance(doc.get(plural), list):
        doc = doc[plural]
    docs = doc if isinstance(doc, list) else [doc]
    for item in docs:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise CliError(f"{path}: every {noun} must be an object with an \"id\"")
    return docs
