"""Running one health-check probe (the I/O half of ``health.py``).

``run_probe(probe)`` runs a COMMAND, HTTP or TCP probe once and returns a ``ProbeOutcome``;
it never raises (every error is an unhealthy outcome with a message) and never lasts much more
than ``probe.timeout`` seconds: a probe still running then is a failure ("timed out after Ns").

* COMMAND: by default a plain process with the probe's environment, the sandbox as its working
  directory, in its own session (process group), stdin from /dev/null; healthy when it exits 0.
  On timeout (or cancellation) the whole process group is SIGKILLed, and so is anything it
  left behind after exiting. A containerizer able to run a command inside the task's container
  (its namespaces, cgroup, image) implements ``ContainerExec.exec_in``; the agent then passes
  ``exec_in`` here and the command runs there instead.
* HTTP: ``GET scheme://127.0.0.1:port/path`` (https without certificate verification, as Mesos
  does with ``curl -k``); healthy on a status in ``probe.statuses`` when given, else 200-399.
* TCP: healthy when a connection to 127.0.0.1:port is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from mensa.agent.containerizer.base import ContainerHandle
from mensa.agent.health import Probe

log = structlog.get_logger(__name__)

OUTPUT_TAIL_BYTES = 512  # How much of a failed command's output goes into the message.
HTTP_HEADER_LIMIT = 64 * 1024
USER_AGENT = "mensa-health-check"

ExecIn = Callable[[Sequence[str], Mapping[str, str]], Awaitable[int]]
"""Runs ``argv`` with ``env`` inside the task's container; returns its exit status."""


@runtime_checkable
class ContainerExec(Protocol):
    """Optional containerizer capability: run a command inside a task's container.

    ``exec_in`` returns the command's exit status (non-zero when it cannot be run). When the
    awaiting task is cancelled (the probe timed out) it must stop the command.
    """

    async def exec_in(
        self, handle: ContainerHandle, argv: Sequence[str], env: Mapping[str, str]
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe's result: ``healthy``, and when not, why (``message``)."""

    healthy: bool
    message: str = ""


async def run_probe(probe: Probe, exec_in: ExecIn | None = None) -> ProbeOutcome:
    """Runs ``probe`` once (see the module docstring); never raises, bounded by its timeout."""
    try:
        return await asyncio.wait_for(_run(probe, exec_in), probe.timeout)
    except TimeoutError:
        return ProbeOutcome(False, f"{probe.describe()} timed out after {probe.timeout:g}s")
    except Exception as exc:  # A probe must never take the agent down.
        log.exception("health_probe_failed", probe=probe.describe())
        return ProbeOutcome(False, f"{probe.describe()} failed: {exc}")


async def _run(probe: Probe, exec_in: ExecIn | None) -> ProbeOutcome:
    if probe.kind == "HTTP":
        return await _http(probe)
    if probe.kind == "TCP":
        return await _tcp(probe)
    if exec_in is not None:
        # The program actually run is ``executable`` (with shell=false, argv[0] is only a name).
        argv = [probe.executable or probe.argv[0], *probe.argv[1:]] if probe.argv else []
        code = await exec_in(argv, probe.env)
        if code == 0:
            return ProbeOutcome(True)
        return ProbeOutcome(False, f"health check command exited with status {code}")
    return await _command(probe)


async def _tcp(probe: Probe) -> ProbeOutcome:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", probe.port)
    except OSError as exc:
        return ProbeOutcome(False, f"{probe.describe()} failed: {exc.strerror or exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeOutcome(True)


async def _http(probe: Probe) -> ProbeOutcome:
    context: ssl.SSLContext | None = None
    if probe.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", probe.port, ssl=context, limit=HTTP_HEADER_LIMIT
        )
    except (OSError, ssl.SSLError) as exc:
        return ProbeOutcome(False, f"{probe.describe()} failed: {exc}")
    try:
        request = (
            f"GET {probe.path} HTTP/1.1\r\nHost: 127.0.0.1:{probe.port}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        status_line = await reader.readline()
    except (OSError, ssl.SSLError, ValueError) as exc:
        return ProbeOutcome(False, f"{probe.describe()} failed: {exc}")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return ProbeOutcome(False, f"{probe.describe()} got no HTTP response")
    status = int(parts[1])
    healthy = status in probe.statuses if probe.statuses else 200 <= status < 400
    if healthy:
        return ProbeOutcome(True)
    return ProbeOutcome(False, f"{probe.describe()} returned status {status}")


async def _command(probe: Probe) -> ProbeOutcome:
    kwargs: dict[str, object] = {}
    if probe.user and os.geteuid() == 0:
        kwargs["user"] = probe.user
    try:
        proc = await asyncio.create_subprocess_exec(
            *probe.argv,
            executable=probe.executable,
            env=dict(probe.env),
            cwd=probe.cwd or None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,  # type: ignore[arg-type]
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return ProbeOutcome(False, f"health check command could not run: {exc}")
    tail = bytearray()
    assert proc.stdout is not None
    reader = asyncio.create_task(_read_tail(proc.stdout, tail))
    try:
        code = await proc.wait()
    finally:
        # Timed out (cancelled), or exited: nothing of the check may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, 1.0)
    if code == 0:
        return ProbeOutcome(True)
    what = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
    output = tail.decode("utf-8", errors="replace").strip()
    return ProbeOutcome(False, f"health check command {what}" + (f": {output}" if output else ""))


async def _read_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Reads ``stream`` to its end, keeping its last OUTPUT_TAIL_BYTES bytes in ``tail``."""
    while chunk := await stream.read(4096):
        tail.extend(chunk)
        del tail[:-OUTPUT_TAIL_BYTES]
