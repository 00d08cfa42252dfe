"""The connection to a Docker Engine, shared by the Docker containerizer's modules.

Contract:

  * ``DockerEngine(base_url, api_timeout)`` connects lazily: ``connect()`` (blocking) creates
    the client on first success, negotiating the API version, plus a second client without a
    timeout for output streams (``attach``); it marks the engine ``reachable`` and records its
    ``version``. Callers set ``reachable = False`` when a call finds the engine gone.
  * ``call(fn, ...)`` runs a blocking SDK call in the engine's thread ``pool``, so the event loop
    never blocks; every call is bounded by the client's ``api_timeout``.
  * ``UNREACHABLE`` are the errors that mean "the engine did not answer" (as opposed to "the
    engine said no"); ``explain`` turns an SDK error into the engine's own reason.
  * ``docker_host(socket)`` picks the engine URL: ``socket``, else DOCKER_HOST, else the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

T = TypeVar("T")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# Errors that mean "the engine did not answer" (as opposed to "the engine said no").
UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError)


class DockerEngine:
    """A Docker Engine at ``base_url``: its clients (made on first use) and the thread pool that
    runs the blocking SDK calls; see the module docstring."""

    def __init__(self, base_url: str, api_timeout: float) -> None:
        self.base_url = base_url
        self.api_timeout = api_timeout
        self.version: str | None = None
        self.reachable = False
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mensa-docker")
        self._client: docker.DockerClient | None = None
        self._stream_client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs the blocking ``fn(*args, **kwargs)`` in the pool and returns its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))

    def connect(self) -> docker.DockerClient:
        """Returns the client, creating it (API version negotiated) on first success."""
        with self._lock:
            if self._client is None:
                client = docker.DockerClient(
                    base_url=self.base_url, version="auto", timeout=int(self.api_timeout)
                )
                self.version = client.api.api_version
                with contextlib.suppress(Exception):
                    self.version = client.version().get("Version", self.version)
                # Output streams must not time out while a quiet container runs.
                self._stream_client = docker.DockerClient(
                    base_url=self.base_url, version=client.api.api_version, timeout=None
                )
                self._client = client
            self.reachable = True
            return self._client

    def attach(self, docker_id: str) -> Any:
        """Returns the container's (stdout, stderr) frame stream from now on (blocking; after
        ``connect``)."""
        assert self._stream_client is not None
        return self._stream_client.api.attach(
            docker_id, stdout=True, stderr=True, stream=True, logs=False, demux=True
        )

    def close(self) -> None:
        """Releases the thread pool and the engine connections."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for client in (self._client, self._stream_client):
            if client is not None:
                client.close()


def docker_host(socket: str | None) -> str:
    """Returns the engine URL: ``socket`` (a path or URL), else DOCKER_HOST, else the default."""
    if socket:
        return socket if "://" in socket else f"unix://{os.path.abspath(socket)}"
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def explain(exc: BaseException) -> str:
    """Returns the engine's explanation of an API error, else the error's text."""
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)
