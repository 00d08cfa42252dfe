"""A Docker task's container: its handle, its output pump, and reading its end.

Contract:

  * ``DockerHandle`` is the Docker containerizer's ``ContainerHandle``; ``own`` refuses any other
    handle with TypeError.
  * ``start_pump(handle, stream)`` copies the container's (stdout, stderr) frames into
    ``<sandbox>/stdout`` and ``<sandbox>/stderr`` in a daemon thread and resolves
    ``handle.logs_done`` (True: the stream ended cleanly; False: no stream, or it broke).
  * ``await_end(engine, h, ...)`` waits for the container to end without blocking the event loop
    and without hanging: it polls the engine with bounded calls, reads ExitCode and OOMKilled
    (re-reading briefly when an unexplained SIGKILL may be an OOM kill), drains or copies the
    output, removes the container and returns the ``Termination``. An engine unreachable for
    ``unreachable_limit`` seconds, or a container gone from it, ends the task with
    REASON_EXECUTOR_TERMINATED. It never raises; a second call joins the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import structlog

from mensa.agent.containerizer.base import ContainerHandle, Termination
from mensa.agent.containerizer.docker_config import termination_of
from mensa.agent.containerizer.docker_engine import UNREACHABLE, DockerEngine
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

MIN_POLL_SECONDS = 0.05
LOG_DRAIN_SECONDS = 5.0
OOM_SETTLE_TRIES = 5
OOM_SETTLE_SECONDS = 0.2
# While a container's output stream is open its end shows there; the engine is asked less often.
ATTACHED_POLL_FACTOR = 5


@dataclass(slots=True)
class DockerHandle:
    """A task's container: ``container_id`` is Mensa's, ``docker_id`` the engine's."""

    container_id: str
    docker_id: str
    sandbox: str
    mem_mb: float = 0.0
    pid: int | None = None
    killed_by_us: bool = False
    logs_done: asyncio.Future[bool] | None = None  # True when the stream ended cleanly
    termination: Termination | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


def own(handle: ContainerHandle) -> DockerHandle:
    """Returns ``handle`` as a DockerHandle; TypeError when it is another containerizer's."""
    if not isinstance(handle, DockerHandle):
        raise TypeError(f"not a docker container handle: {handle!r}")
    return handle


def start_pump(handle: DockerHandle, stream: Any) -> None:
    """Copies the container's (stdout, stderr) frames into the sandbox files in a thread.

    Resolves ``handle.logs_done`` (True: the stream ended; False: no stream or it broke).
    """
    assert handle.logs_done is not None
    loop = handle.logs_done.get_loop()
    done = handle.logs_done

    def finish(ok: bool) -> None:
        if not done.done():
            done.set_result(ok)

    if stream is None:
        loop.call_soon_threadsafe(finish, False)
        return

    def pump() -> None:
        ok = False
        try:
            with (
                open(os.path.join(handle.sandbox, "stdout"), "ab") as out,
                open(os.path.join(handle.sandbox, "stderr"), "ab") as err,
            ):
                for stdout, stderr in stream:
                    if stdout:
                        out.write(stdout)
                        out.flush()
                    if stderr:
                        err.write(stderr)
                        err.flush()
            ok = True
        except Exception as exc:
            log.warning("docker_log_stream_broke", container_id=handle.container_id, error=str(exc))
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(RuntimeError):  # A closed loop: nobody waits any more.
                loop.call_soon_threadsafe(finish, ok)

    threading.Thread(target=pump, name=f"docker-logs-{handle.container_id[:8]}", daemon=True).start()


async def await_end(
    engine: DockerEngine, h: DockerHandle, *, poll_seconds: float, unreachable_limit: float
) -> Termination:
    """Waits (polling, bounded) for the container to end, collects its logs, removes it."""
    if h.termination is not None:
        await h.done.wait()
        return h.termination
    h.termination = Termination()  # Placeholder: a second wait() joins this one.
    try:
        termination = await _wait_for_end(engine, h, poll_seconds, unreachable_limit)
        await _finish(engine, h)
    except Exception as exc:  # Never raise out: report the container as lost.
        log.exception("docker_wait_failed", container_id=h.container_id)
        termination = Termination(
            killed_by_us=h.killed_by_us,
            reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
            message=f"lost track of the docker container: {exc!r}",
        )
    h.termination = termination
    h.done.set()
    log.info(
        "docker_container_ended",
        container_id=h.container_id,
        exit_code=termination.exit_code,
        signal=termination.signal,
        reason=termination.reason,
    )
    return termination


async def _wait_for_end(
    engine: DockerEngine, h: DockerHandle, poll_seconds: float, unreachable_limit: float
) -> Termination:
    """Polls until the container has exited or the engine is gone for too long."""
    loop = asyncio.get_running_loop()
    unreachable_since: float | None = None
    first = True
    while True:
        logs = h.logs_done
        clean_end = logs is not None and logs.done() and logs.result() is True
        if logs is not None and not logs.done():
            await asyncio.wait([logs], timeout=poll_seconds * ATTACHED_POLL_FACTOR)
        elif not first:
            # Paced: the full interval while the engine is away or output is not followed.
            slow = unreachable_since is not None or not clean_end
            await asyncio.sleep(poll_seconds if slow else MIN_POLL_SECONDS)
        first = False
        try:
            client = await engine.call(engine.connect)
            if clean_end and unreachable_since is None:
                # Output closed: the container is ending; wait for it (bounded).
                with contextlib.suppress(*UNREACHABLE):  # Still running, or gone: inspect.
                    await engine.call(client.api.wait, h.docker_id, timeout=poll_seconds)
            attrs = await engine.call(client.api.inspect_container, h.docker_id)
        except docker.errors.NotFound:
            return Termination(
                killed_by_us=h.killed_by_us,
                reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                message="the container disappeared from the Docker Engine",
            )
        except (*UNREACHABLE, docker.errors.DockerException) as exc:
            now = loop.time()
            if unreachable_since is None:
                unreachable_since = now
                log.warning("docker_engine_lost", container_id=h.container_id, error=str(exc))
            if now - unreachable_since >= unreachable_limit:
                engine.reachable = False
                return Termination(
                    killed_by_us=h.killed_by_us,
                    reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                    message=(
                        f"Docker Engine unreachable at {engine.base_url} for "
                        f"{unreachable_limit:g} s: the task's container is lost ({exc})"
                    ),
                )
            continue
        unreachable_since = None
        state = attrs.get("State", {})
        if state.get("Status") in ("exited", "dead"):
            state = await _settled_state(engine, h, state)
            return termination_of(state, killed_by_us=h.killed_by_us, mem_mb=h.mem_mb)


async def _settled_state(engine: DockerEngine, h: DockerHandle, state: dict[str, Any]) -> dict[str, Any]:
    """Returns the exited state, re-read briefly when an unexplained SIGKILL may be an OOM.

    The engine can record a container's exit before the kernel's OOM event reaches it, so
    ``OOMKilled`` may still read false right after a SIGKILL (exit code 137) we did not send.
    """
    for _ in range(OOM_SETTLE_TRIES):
        if state.get("OOMKilled") or h.killed_by_us or state.get("ExitCode") != 137:
            return state
        await asyncio.sleep(OOM_SETTLE_SECONDS)
        try:
            client = await engine.call(engine.connect)
            attrs = await engine.call(client.api.inspect_container, h.docker_id)
        except (*UNREACHABLE, docker.errors.DockerException):
            return state
        state = attrs.get("State", state)
    if not state.get("OOMKilled") and not h.killed_by_us and state.get("ExitCode") == 137:
        with contextlib.suppress(*UNREACHABLE, docker.errors.DockerException):
            if await engine.call(_had_oom_event, engine, h.docker_id):
                state = {**state, "OOMKilled": True}
    return state


def _had_oom_event(engine: DockerEngine, docker_id: str) -> bool:
    """True when the engine logged an ``oom`` event for the container (blocking, bounded)."""
    client = engine.connect()
    until = datetime.datetime.now(datetime.UTC)
    events = client.events(until=until, since=until - datetime.timedelta(minutes=10),
                           filters={"container": docker_id, "event": "oom"}, decode=True)
    try:
        return any(True for _ in events)
    finally:
        events.close()


async def _finish(engine: DockerEngine, h: DockerHandle) -> None:
    """Drains (or copies) the output, then removes the container; errors are logged."""
    streamed = False
    if h.logs_done is not None:
        try:
            streamed = await asyncio.wait_for(asyncio.shield(h.logs_done), LOG_DRAIN_SECONDS)
        except TimeoutError:
            log.warning("docker_log_stream_not_drained", container_id=h.container_id)
            streamed = True  # Still pumping: copying now would duplicate output.
    try:
        client = await engine.call(engine.connect)
        if not streamed:
            await engine.call(_copy_logs, client, h)
        await engine.call(client.api.remove_container, h.docker_id, v=True, force=True)
    except docker.errors.NotFound:
        pass
    except Exception as exc:
        log.warning("docker_container_not_removed", container_id=h.container_id, error=str(exc))


def _copy_logs(client: docker.DockerClient, h: DockerHandle) -> None:
    for name, which in (
        ("stdout", {"stdout": True, "stderr": False}),
        ("stderr", {"stdout": False, "stderr": True}),
    ):
        data = client.api.logs(h.docker_id, stream=False, **which)
        with open(os.path.join(h.sandbox, name), "ab") as f:
            f.write(data)
