"""The Docker containerizer: each task is a container of the Docker Engine, via the ``docker`` SDK.

Runs tasks whose ``TaskInfo.container`` is of type DOCKER with a ``docker.image``. What the
container gets (``container_config``, pure):

  * the image, pulled when missing (always with ``force_pull_image``); a failed pull is a
    ``LaunchError`` naming the image and the engine's reason;
  * the command: shell (the default) with a value runs ``/bin/sh -c value`` (entrypoint
    overridden, as Mesos does); ``shell=false`` passes ``value`` and ``arguments`` as the
    command (to the image's entrypoint, if any); no value keeps the image's entrypoint/cmd;
  * the task's environment, with MESOS_SANDBOX pointing at the sandbox mount inside the
    container (``/mnt/mesos/sandbox``) and without the agent's PATH (the image's is kept unless
    the task sets one);
  * memory (and memory+swap) limit from ``mem`` (MB), ``nano_cpus`` and cpu shares from
    ``cpus``;
  * labels ``mensa.container_id``, ``mensa.framework_id``, ``mensa.task_id``,
    ``mensa.agent_id``, ``mensa.sandbox``, so a restarted agent finds its containers
    (``find_containers`` / ``recover``); the name ``mensa-<container_id>``;
  * the network: HOST -> ``host``, BRIDGE -> ``bridge`` with the task's port mappings (each
    host port must be one of the task's ports), NONE -> ``none``; USER is refused;
  * the sandbox bind-mounted read-write at the sandbox mount (also the working directory),
    plus ``ContainerInfo.volumes`` (host paths relative to the sandbox stay inside it).

Output is streamed into ``<sandbox>/stdout`` and ``<sandbox>/stderr`` while the container runs
(an attach made before the start, pumped by one thread per container). ``wait`` never blocks
the event loop and never hangs: it polls the engine with bounded calls, reads ExitCode and
OOMKilled, and removes the container. When the engine is unreachable ``launch`` raises
``LaunchError("Docker Engine unreachable at ...")`` and ``wait`` gives up after
``unreachable_limit`` seconds with REASON_EXECUTOR_TERMINATED. Nothing but ``LaunchError``
(from ``launch``) leaves this class's methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import structlog
from docker.utils import parse_repository_tag

from mensa.agent.containerizer.base import (
    ContainerHandle,
    EngineUnreachable,
    LaunchError,
    LaunchSpec,
    Termination,
)
from mensa.agent.containerizer.docker_config import (
    DEFAULT_SANDBOX_MOUNT,
    LABEL_PREFIX,
    MB,
    NAME_PREFIX,
    ContainerConfig,
    can_run,
    container_config,
    termination_of,
)
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
API_TIMEOUT_SECONDS = 10.0
PULL_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 1.0
MIN_POLL_SECONDS = 0.05
UNREACHABLE_LIMIT_SECONDS = 15.0
LOG_DRAIN_SECONDS = 5.0
MAX_CONCURRENT_LAUNCHES = 4
EXEC_POLL_SECONDS = 0.1
OOM_SETTLE_TRIES = 5
OOM_SETTLE_SECONDS = 0.2
# While a container's output stream is open its end shows there; the engine is asked less often.
ATTACHED_POLL_FACTOR = 5

# Errors that mean "the engine did not answer" (as opposed to "the engine said no").
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError)


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


@dataclass(frozen=True, slots=True)
class FoundContainer:
    """A container of this agent's found on the engine by its labels."""

    docker_id: str
    container_id: str
    framework_id: str
    task_id: str
    agent_id: str
    sandbox: str
    running: bool


class DockerUnreachable(EngineUnreachable):
    """The engine could not be asked (``find_containers(strict=True)``)."""


class DockerContainerizer:
    """Runs DOCKER-image tasks on a Docker Engine; see the module docstring."""

    name = "docker"

    def __init__(
        self,
        socket: str | None = None,
        *,
        sandbox_mount: str = DEFAULT_SANDBOX_MOUNT,
        api_timeout: float = API_TIMEOUT_SECONDS,
        pull_timeout: float = PULL_TIMEOUT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        unreachable_limit: float = UNREACHABLE_LIMIT_SECONDS,
        max_concurrent_launches: int = MAX_CONCURRENT_LAUNCHES,
    ) -> None:
        self.base_url = docker_host(socket)
        self.sandbox_mount = sandbox_mount
        self.api_timeout = api_timeout
        self.pull_timeout = pull_timeout
        self.poll_seconds = poll_seconds
        self.unreachable_limit = unreachable_limit
        self._client: docker.DockerClient | None = None
        self._stream_client: docker.DockerClient | None = None
        self._version: str | None = None
        self._reachable = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="mensa-docker")
        # An engine asked to create many containers at once answers them all late (past the
        # API timeout on a small host): launches queue here instead.
        self._launching = asyncio.Semaphore(max(1, max_concurrent_launches))

    # -- the Containerizer protocol ------------------------------------------------------------

    def can_run(self, task_info: mensa_pb2.TaskInfo) -> bool:
        """True for tasks with a DOCKER container that names an image."""
        return can_run(task_info)

    async def launch(self, spec: LaunchSpec) -> ContainerHandle:
        """Pulls the image if needed, creates and starts the container; LaunchError if not."""
        cfg = container_config(spec, self.sandbox_mount)
        async with self._launching:
            return await self._launch(cfg, spec)

    async def _launch(self, cfg: ContainerConfig, spec: LaunchSpec) -> ContainerHandle:
        try:
            await self._call(self._connect)
            await self._ensure_image(cfg)
            handle = DockerHandle(
                spec.container_id,
                docker_id="",
                sandbox=spec.sandbox,
                mem_mb=(cfg.mem_limit or 0) / MB,
            )
            handle.logs_done = asyncio.get_running_loop().create_future()
            creating = self._pool.submit(self._create_and_start, cfg, spec, handle)
            try:
                await asyncio.wrap_future(creating)
            except asyncio.CancelledError:
                # The agent gave up on this launch (it is stopping): once the engine has made
                # the container, remove it, so nothing runs that nobody tracks.
                creating.add_done_callback(lambda _f: self._remove_abandoned(spec.container_id))
                raise
        except LaunchError:
            raise
        except docker.errors.APIError as exc:
            raise LaunchError(f"Docker Engine refused the container: {_explain(exc)}") from None
        except (*_UNREACHABLE, docker.errors.DockerException) as exc:
            self._reachable = False
            raise LaunchError(f"Docker Engine unreachable at {self.base_url}: {exc}") from None
        except Exception as exc:  # The SDK may raise anything; the agent must keep going.
            log.exception("docker_launch_failed", container_id=spec.container_id)
            raise LaunchError(f"docker launch failed: {exc!r}") from None
        log.info(
            "docker_container_started",
            container_id=spec.container_id,
            docker_id=handle.docker_id[:12],
            image=cfg.image,
            task_id=spec.task_id,
        )
        return handle

    async def wait(self, handle: ContainerHandle) -> Termination:
        """Waits (polling, bounded) for the container to end, collects its logs, removes it."""
        h = _own(handle)
        if h.termination is not None:
            await h.done.wait()
            return h.termination
        h.termination = Termination()  # Placeholder: a second wait() joins this one.
        try:
            termination = await self._wait_for_end(h)
            await self._finish(h)
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

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """``docker stop`` with the grace period (SIGTERM, then SIGKILL); idempotent."""
        h = _own(handle)
        h.killed_by_us = True
        if h.done.is_set():
            return
        timeout = max(0, math.ceil(grace_seconds))
        log.info("docker_container_stopping", container_id=h.container_id, grace_seconds=timeout)
        try:
            client = await self._call(self._connect)
            await self._call(client.api.stop, h.docker_id, timeout=timeout)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            log.warning("docker_stop_failed", container_id=h.container_id, error=str(exc))

    # -- operator views and recovery -----------------------------------------------------------

    async def exec_in(
        self, handle: ContainerHandle, argv: Sequence[str], env: Mapping[str, str]
    ) -> int:
        """Runs ``argv`` (a COMMAND health check) inside the task's container (``docker exec``).

        Returns its exit status, or 125 when the engine cannot run it. The exec is started
        detached and polled, so no engine thread waits on it; when the check is cancelled (it
        timed out) its process is killed. It sees the image's PATH, not the agent's.
        """
        h = _own(handle)
        inside = {k: v for k, v in env.items() if k != "PATH"}
        inside["MESOS_SANDBOX"] = self.sandbox_mount
        exec_id = ""
        try:
            client = await self._call(self._connect)
            created = await self._call(client.api.exec_create, h.docker_id, list(argv),
                                       environment=inside, workdir=self.sandbox_mount)
            exec_id = created["Id"]
            await self._call(client.api.exec_start, exec_id, detach=True)
            while True:
                info = await self._call(client.api.exec_inspect, exec_id)
                if not info.get("Running"):
                    code = info.get("ExitCode")
                    return 125 if code is None else int(code)
                await asyncio.sleep(EXEC_POLL_SECONDS)
        except asyncio.CancelledError:
            if exec_id:
                self._pool.submit(self._kill_exec, exec_id)
            raise
        except (*_UNREACHABLE, docker.errors.DockerException) as exc:
            log.warning("docker_exec_failed", container_id=h.container_id, error=_explain(exc))
            return 125

    async def remove(self, found: FoundContainer) -> None:
        """Force-removes a container found on the engine (an orphan found at recovery)."""

        def remove() -> None:
            with contextlib.suppress(*_UNREACHABLE, docker.errors.DockerException):
                self._connect().api.remove_container(found.docker_id, force=True)
                log.info("docker_orphan_removed", container_id=found.container_id,
                         task_id=found.task_id)

        await self._call(remove)

    async def remove_by_name(self, container_id: str) -> None:
        """Force-removes the container of Mensa container ``container_id`` by its name (best
        effort: for a task given up on at recovery, so it does not run on untracked)."""
        await self._call(self._remove_abandoned, container_id)

    def _remove_abandoned(self, container_id: str) -> None:
        """Force-removes the container of a launch that was given up on (blocking)."""
        with contextlib.suppress(*_UNREACHABLE, docker.errors.DockerException):
            self._connect().api.remove_container(f"{NAME_PREFIX}{container_id}", force=True)
            log.info("docker_abandoned_container_removed", container_id=container_id)

    def _kill_exec(self, exec_id: str) -> None:
        """SIGKILLs a still running exec by its host pid (the engine runs on this host)."""
        with contextlib.suppress(*_UNREACHABLE, docker.errors.DockerException, ProcessLookupError,
                                 PermissionError):
            info = self._connect().api.exec_inspect(exec_id)
            if info.get("Running") and info.get("Pid"):
                os.kill(int(info["Pid"]), signal.SIGKILL)

    def describe(self) -> dict[str, Any]:
        """Returns ``{"docker": {"socket", "version"}}`` or ``{"docker": "unreachable"}``.

        Reads what the last engine call learned (no I/O); ``probe`` refreshes it.
        """
        if not self._reachable:
            return {"docker": "unreachable", "docker_socket": self.base_url}
        return {"docker": {"socket": self.base_url, "version": self._version}}

    async def probe(self) -> bool:
        """Pings the engine (bounded); True when it answers. Logs the outcome."""
        try:
            client = await self._call(self._connect)
            await self._call(client.ping)
        except Exception as exc:
            self._reachable = False
            log.warning("docker_engine_unreachable", socket=self.base_url, error=str(exc))
            return False
        self._reachable = True
        log.info("docker_engine_found", socket=self.base_url, version=self._version)
        return True

    async def find_containers(
        self, agent_id: str | None = None, *, strict: bool = False
    ) -> list[FoundContainer]:
        """Returns the containers labelled as Mensa's (of ``agent_id`` when given).

        An unreachable engine yields an empty list (and a warning), or, with ``strict``, raises
        DockerUnreachable: recovery must tell "none found" from "could not look".
        """
        wanted = [f"{LABEL_PREFIX}container_id"]
        if agent_id:
            wanted.append(f"{LABEL_PREFIX}agent_id={agent_id}")
        try:
            client = await self._call(self._connect)
            listed = await self._call(client.api.containers, all=True, filters={"label": wanted})
        except Exception as exc:
            log.warning("docker_containers_not_listed", socket=self.base_url, error=str(exc))
            if strict:
                raise DockerUnreachable(str(exc)) from None
            return []
        found = []
        for c in listed:
            labels = c.get("Labels") or {}
            found.append(
                FoundContainer(
                    docker_id=c["Id"],
                    container_id=labels.get(f"{LABEL_PREFIX}container_id", ""),
                    framework_id=labels.get(f"{LABEL_PREFIX}framework_id", ""),
                    task_id=labels.get(f"{LABEL_PREFIX}task_id", ""),
                    agent_id=labels.get(f"{LABEL_PREFIX}agent_id", ""),
                    sandbox=labels.get(f"{LABEL_PREFIX}sandbox", ""),
                    running=c.get("State") == "running",
                )
            )
        return found

    async def recover(self, found: FoundContainer) -> DockerHandle:
        """Returns a handle for a container found after a restart, for ``wait`` and ``kill``.

        Its output from now on is appended to the sandbox files; what it wrote while no agent
        was attached is not copied.
        """
        handle = DockerHandle(found.container_id, found.docker_id, found.sandbox)
        handle.logs_done = asyncio.get_running_loop().create_future()
        try:
            client = await self._call(self._connect)
            attrs = await self._call(client.api.inspect_container, found.docker_id)
            handle.pid = attrs.get("State", {}).get("Pid") or None
            handle.mem_mb = (attrs.get("HostConfig", {}).get("Memory") or 0) / MB
            if found.running:
                stream = await self._call(self._attach, found.docker_id)
                self._start_pump(handle, stream)
        except Exception as exc:
            log.warning("docker_recover_incomplete", container_id=found.container_id, error=str(exc))
        if not handle.logs_done.done() and not found.running:
            handle.logs_done.set_result(True)
        log.info("docker_container_recovered", container_id=found.container_id, task_id=found.task_id)
        return handle

    def close(self) -> None:
        """Releases the thread pool and the engine connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in (self._client, self._stream_client):
            if client is not None:
                client.close()

    # -- engine calls (blocking ones run in the pool) ------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _connect(self) -> docker.DockerClient:
        """Returns the client, creating it (API version negotiated) on first success."""
        with self._lock:
            if self._client is None:
                client = docker.DockerClient(
                    base_url=self.base_url, version="auto", timeout=int(self.api_timeout)
                )
                self._version = client.api.api_version
                with contextlib.suppress(Exception):
                    self._version = client.version().get("Version", self._version)
                # Output streams must not time out while a quiet container runs.
                self._stream_client = docker.DockerClient(
                    base_url=self.base_url, version=client.api.api_version, timeout=None
                )
                self._client = client
            self._reachable = True
            return self._client

    async def _ensure_image(self, cfg: ContainerConfig) -> None:
        client = await self._call(self._connect)
        if not cfg.force_pull:
            try:
                await self._call(client.images.get, cfg.image)
                return
            except docker.errors.ImageNotFound:
                pass
        why = "force_pull_image is set" if cfg.force_pull else "not found locally"
        log.info("docker_image_pulling", image=cfg.image, why=why)
        try:
            await asyncio.wait_for(self._call(self._pull, cfg.image), self.pull_timeout)
        except TimeoutError:
            raise LaunchError(
                f"image {cfg.image} {why} and its pull did not finish in {self.pull_timeout:g} s"
            ) from None
        except (docker.errors.APIError, _PullError) as exc:
            raise LaunchError(f"image {cfg.image} {why} and cannot be pulled: {_explain(exc)}") from None
        log.info("docker_image_pulled", image=cfg.image)

    def _pull(self, image: str) -> None:
        client = self._connect()
        repository, tag = parse_repository_tag(image)
        for message in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(message, dict) and message.get("error"):
                raise _PullError(str(message["error"]))
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise _PullError("the engine reported no error but the image is still missing") from None

    def _attach(self, docker_id: str) -> Any:
        assert self._stream_client is not None
        return self._stream_client.api.attach(
            docker_id, stdout=True, stderr=True, stream=True, logs=False, demux=True
        )

    def _create_and_start(self, cfg: ContainerConfig, spec: LaunchSpec, handle: DockerHandle) -> None:
        client = self._connect()
        container = client.containers.create(**cfg.create_kwargs())
        handle.docker_id = container.id
        try:
            try:
                stream = self._attach(container.id)
            except Exception as exc:
                log.warning("docker_attach_failed", container_id=spec.container_id, error=str(exc))
                stream = None
            self._start_pump(handle, stream)
            container.start()
            container.reload()
            handle.pid = container.attrs.get("State", {}).get("Pid") or None
        except BaseException:
            try:
                container.remove(force=True)
            except Exception as exc:
                log.warning("docker_container_not_removed", docker_id=container.id, error=str(exc))
            raise

    def _start_pump(self, handle: DockerHandle, stream: Any) -> None:
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

    async def _wait_for_end(self, h: DockerHandle) -> Termination:
        """Polls until the container has exited or the engine is gone for too long."""
        loop = asyncio.get_running_loop()
        unreachable_since: float | None = None
        first = True
        while True:
            logs = h.logs_done
            clean_end = logs is not None and logs.done() and logs.result() is True
            if logs is not None and not logs.done():
                await asyncio.wait([logs], timeout=self.poll_seconds * ATTACHED_POLL_FACTOR)
            elif not first:
                # Paced: the full interval while the engine is away or output is not followed.
                slow = unreachable_since is not None or not clean_end
                await asyncio.sleep(self.poll_seconds if slow else MIN_POLL_SECONDS)
            first = False
            try:
                client = await self._call(self._connect)
                if clean_end and unreachable_since is None:
                    # Output closed: the container is ending; wait for it (bounded).
                    with contextlib.suppress(*_UNREACHABLE):  # Still running, or gone: inspect.
                        await self._call(client.api.wait, h.docker_id, timeout=self.poll_seconds)
                attrs = await self._call(client.api.inspect_container, h.docker_id)
            except docker.errors.NotFound:
                return Termination(
                    killed_by_us=h.killed_by_us,
                    reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                    message="the container disappeared from the Docker Engine",
                )
            except (*_UNREACHABLE, docker.errors.DockerException) as exc:
                now = loop.time()
                if unreachable_since is None:
                    unreachable_since = now
                    log.warning("docker_engine_lost", container_id=h.container_id, error=str(exc))
                if now - unreachable_since >= self.unreachable_limit:
                    self._reachable = False
                    return Termination(
                        killed_by_us=h.killed_by_us,
                        reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
                        message=(
                            f"Docker Engine unreachable at {self.base_url} for "
                            f"{self.unreachable_limit:g} s: the task's container is lost ({exc})"
                        ),
                    )
                continue
            unreachable_since = None
            state = attrs.get("State", {})
            if state.get("Status") in ("exited", "dead"):
                state = await self._settled_state(h, state)
                return termination_of(state, killed_by_us=h.killed_by_us, mem_mb=h.mem_mb)

    async def _settled_state(self, h: DockerHandle, state: dict[str, Any]) -> dict[str, Any]:
        """Returns the exited state, re-read briefly when an unexplained SIGKILL may be an OOM.

        The engine can record a container's exit before the kernel's OOM event reaches it, so
        ``OOMKilled`` may still read false right after a SIGKILL (exit code 137) we did not send.
        """
        for _ in range(OOM_SETTLE_TRIES):
            if state.get("OOMKilled") or h.killed_by_us or state.get("ExitCode") != 137:
                return state
            await asyncio.sleep(OOM_SETTLE_SECONDS)
            try:
                client = await self._call(self._connect)
                attrs = await self._call(client.api.inspect_container, h.docker_id)
            except (*_UNREACHABLE, docker.errors.DockerException):
                return state
            state = attrs.get("State", state)
        if not state.get("OOMKilled") and not h.killed_by_us and state.get("ExitCode") == 137:
            with contextlib.suppress(*_UNREACHABLE, docker.errors.DockerException):
                if await self._call(self._had_oom_event, h.docker_id):
                    state = {**state, "OOMKilled": True}
        return state

    def _had_oom_event(self, docker_id: str) -> bool:
        """True when the engine logged an ``oom`` event for the container (blocking, bounded)."""
        client = self._connect()
        until = datetime.datetime.now(datetime.UTC)
        events = client.events(until=until, since=until - datetime.timedelta(minutes=10),
                               filters={"container": docker_id, "event": "oom"}, decode=True)
        try:
            return any(True for _ in events)
        finally:
            events.close()

    async def _finish(self, h: DockerHandle) -> None:
        """Drains (or copies) the output, then removes the container; errors are logged."""
        streamed = False
        if h.logs_done is not None:
            try:
                streamed = await asyncio.wait_for(asyncio.shield(h.logs_done), LOG_DRAIN_SECONDS)
            except TimeoutError:
                log.warning("docker_log_stream_not_drained", container_id=h.container_id)
                streamed = True  # Still pumping: copying now would duplicate output.
        try:
            client = await self._call(self._connect)
            if not streamed:
                await self._call(self._copy_logs, client, h)
            await self._call(client.api.remove_container, h.docker_id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            log.warning("docker_container_not_removed", container_id=h.container_id, error=str(exc))

    @staticmethod
    def _copy_logs(client: docker.DockerClient, h: DockerHandle) -> None:
        for name, which in (
            ("stdout", {"stdout": True, "stderr": False}),
            ("stderr", {"stdout": False, "stderr": True}),
        ):
            data = client.api.logs(h.docker_id, stream=False, **which)
            with open(os.path.join(h.sandbox, name), "ab") as f:
                f.write(data)


class _PullError(Exception):
    """The engine reported an error in the middle of a pull."""


def docker_host(socket: str | None) -> str:
    """Returns the engine URL: ``socket`` (a path or URL), else DOCKER_HOST, else the default."""
    if socket:
        return socket if "://" in socket else f"unix://{os.path.abspath(socket)}"
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc)


def _own(handle: ContainerHandle) -> DockerHandle:
    if not isinstance(handle, DockerHandle):
        raise TypeError(f"not a docker container handle: {handle!r}")
    return handle
