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

This module is the containerizer itself (launch, kill, exec, engine probing); the engine
connection is docker_engine.py, a container's handle, output pump and end are docker_wait.py,
and finding, adopting and removing the containers of an earlier agent run is docker_recovery.py.
The names that moved stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.errors
import structlog
from docker.utils import parse_repository_tag

from mensa.agent.containerizer import docker_recovery, docker_wait
from mensa.agent.containerizer.base import ContainerHandle, LaunchError, LaunchSpec, Termination
from mensa.agent.containerizer.docker_config import (
    DEFAULT_SANDBOX_MOUNT,
    MB,
    ContainerConfig,
    can_run,
    container_config,
)
from mensa.agent.containerizer.docker_engine import (
    DEFAULT_DOCKER_HOST,
    UNREACHABLE,
    DockerEngine,
    docker_host,
    explain,
)
from mensa.agent.containerizer.docker_recovery import DockerUnreachable, FoundContainer
from mensa.agent.containerizer.docker_wait import (
    ATTACHED_POLL_FACTOR,
    LOG_DRAIN_SECONDS,
    MIN_POLL_SECONDS,
    OOM_SETTLE_SECONDS,
    OOM_SETTLE_TRIES,
    DockerHandle,
    own,
    start_pump,
)
from mensa.proto import mensa_pb2

log = structlog.get_logger(__name__)

__all__ = [
    "API_TIMEOUT_SECONDS",
    "ATTACHED_POLL_FACTOR",
    "DEFAULT_DOCKER_HOST",
    "EXEC_POLL_SECONDS",
    "LOG_DRAIN_SECONDS",
    "MAX_CONCURRENT_LAUNCHES",
    "MIN_POLL_SECONDS",
    "OOM_SETTLE_SECONDS",
    "OOM_SETTLE_TRIES",
    "POLL_SECONDS",
    "PULL_TIMEOUT_SECONDS",
    "UNREACHABLE_LIMIT_SECONDS",
    "DockerContainerizer",
    "DockerHandle",
    "DockerUnreachable",
    "FoundContainer",
    "docker_host",
]

API_TIMEOUT_SECONDS = 10.0
PULL_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 1.0
UNREACHABLE_LIMIT_SECONDS = 15.0
MAX_CONCURRENT_LAUNCHES = 4
EXEC_POLL_SECONDS = 0.1


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
        self.engine = DockerEngine(docker_host(socket), api_timeout)
        self.sandbox_mount = sandbox_mount
        self.pull_timeout = pull_timeout
        self.poll_seconds = poll_seconds
        self.unreachable_limit = unreachable_limit
        # An engine asked to create many containers at once answers them all late (past the
        # API timeout on a small host): launches queue here instead.
        self._launching = asyncio.Semaphore(max(1, max_concurrent_launches))

    @property
    def base_url(self) -> str:
        """The engine's URL."""
        return self.engine.base_url

    @property
    def api_timeout(self) -> float:
        """The bound on each engine call, in seconds."""
        return self.engine.api_timeout

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
            await self.engine.call(self.engine.connect)
            await self._ensure_image(cfg)
            handle = DockerHandle(
                spec.container_id,
                docker_id="",
                sandbox=spec.sandbox,
                mem_mb=(cfg.mem_limit or 0) / MB,
            )
            handle.logs_done = asyncio.get_running_loop().create_future()
            creating = self.engine.pool.submit(self._create_and_start, cfg, spec, handle)
            try:
                await asyncio.wrap_future(creating)
            except asyncio.CancelledError:
                # The agent gave up on this launch (it is stopping): once the engine has made
                # the container, remove it, so nothing runs that nobody tracks.
                creating.add_done_callback(
                    lambda _f: docker_recovery.remove_abandoned(self.engine, spec.container_id)
                )
                raise
        except LaunchError:
            raise
        except docker.errors.APIError as exc:
            raise LaunchError(f"Docker Engine refused the container: {explain(exc)}") from None
        except (*UNREACHABLE, docker.errors.DockerException) as exc:
            self.engine.reachable = False
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
        return await docker_wait.await_end(self.engine, own(handle), poll_seconds=self.poll_seconds,
                                           unreachable_limit=self.unreachable_limit)

    async def kill(self, handle: ContainerHandle, grace_seconds: float) -> None:
        """``docker stop`` with the grace period (SIGTERM, then SIGKILL); idempotent."""
        h = own(handle)
        h.killed_by_us = True
        if h.done.is_set():
            return
        timeout = max(0, math.ceil(grace_seconds))
        log.info("docker_container_stopping", container_id=h.container_id, grace_seconds=timeout)
        try:
            client = await self.engine.call(self.engine.connect)
            await self.engine.call(client.api.stop, h.docker_id, timeout=timeout)
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
        h = own(handle)
        inside = {k: v for k, v in env.items() if k != "PATH"}
        inside["MESOS_SANDBOX"] = self.sandbox_mount
        exec_id = ""
        try:
            client = await self.engine.call(self.engine.connect)
            created = await self.engine.call(client.api.exec_create, h.docker_id, list(argv),
                                             environment=inside, workdir=self.sandbox_mount)
            exec_id = created["Id"]
            await self.engine.call(client.api.exec_start, exec_id, detach=True)
            while True:
                info = await self.engine.call(client.api.exec_inspect, exec_id)
                if not info.get("Running"):
                    code = info.get("ExitCode")
                    return 125 if code is None else int(code)
                await asyncio.sleep(EXEC_POLL_SECONDS)
        except asyncio.CancelledError:
            if exec_id:
                self.engine.pool.submit(self._kill_exec, exec_id)
            raise
        except (*UNREACHABLE, docker.errors.DockerException) as exc:
            log.warning("docker_exec_failed", container_id=h.container_id, error=explain(exc))
            return 125

    async def remove(self, found: FoundContainer) -> None:
        """Force-removes a container found on the engine (an orphan found at recovery)."""
        await docker_recovery.remove(self.engine, found)

    async def remove_by_name(self, container_id: str) -> None:
        """Force-removes the container of Mensa container ``container_id`` by its name (best
        effort: for a task given up on at recovery, so it does not run on untracked)."""
        await self.engine.call(docker_recovery.remove_abandoned, self.engine, container_id)

    def _kill_exec(self, exec_id: str) -> None:
        """SIGKILLs a still running exec by its host pid (the engine runs on this host)."""
        with contextlib.suppress(*UNREACHABLE, docker.errors.DockerException, ProcessLookupError,
                                 PermissionError):
            info = self.engine.connect().api.exec_inspect(exec_id)
            if info.get("Running") and info.get("Pid"):
                os.kill(int(info["Pid"]), signal.SIGKILL)

    def describe(self) -> dict[str, Any]:
        """Returns ``{"docker": {"socket", "version"}}`` or ``{"docker": "unreachable"}``.

        Reads what the last engine call learned (no I/O); ``probe`` refreshes it.
        """
        if not self.engine.reachable:
            return {"docker": "unreachable", "docker_socket": self.base_url}
        return {"docker": {"socket": self.base_url, "version": self.engine.version}}

    async def probe(self) -> bool:
        """Pings the engine (bounded); True when it answers. Logs the outcome."""
        try:
            client = await self.engine.call(self.engine.connect)
            await self.engine.call(client.ping)
        except Exception as exc:
            self.engine.reachable = False
            log.warning("docker_engine_unreachable", socket=self.base_url, error=str(exc))
            return False
        self.engine.reachable = True
        log.info("docker_engine_found", socket=self.base_url, version=self.engine.version)
        return True

    async def find_containers(
        self, agent_id: str | None = None, *, strict: bool = False
    ) -> list[FoundContainer]:
        """Returns the containers labelled as Mensa's (of ``agent_id`` when given).

        An unreachable engine yields an empty list (and a warning), or, with ``strict``, raises
        DockerUnreachable: recovery must tell "none found" from "could not look".
        """
        return await docker_recovery.find_containers(self.engine, agent_id, strict=strict)

    async def recover(self, found: FoundContainer) -> DockerHandle:
        """Returns a handle for a container found after a restart, for ``wait`` and ``kill``.

        Its output from now on is appended to the sandbox files; what it wrote while no agent
        was attached is not copied.
        """
        return await docker_recovery.recover(self.engine, found)

    def close(self) -> None:
        """Releases the thread pool and the engine connections."""
        self.engine.close()

    # -- launching (blocking engine calls run in the engine's pool) -----------------------------

    async def _ensure_image(self, cfg: ContainerConfig) -> None:
        client = await self.engine.call(self.engine.connect)
        if not cfg.force_pull:
            try:
                await self.engine.call(client.images.get, cfg.image)
                return
            except docker.errors.ImageNotFound:
                pass
        why = "force_pull_image is set" if cfg.force_pull else "not found locally"
        log.info("docker_image_pulling", image=cfg.image, why=why)
        try:
            await asyncio.wait_for(self.engine.call(self._pull, cfg.image), self.pull_timeout)
        except TimeoutError:
            raise LaunchError(
                f"image {cfg.image} {why} and its pull did not finish in {self.pull_timeout:g} s"
            ) from None
        except (docker.errors.APIError, _PullError) as exc:
            raise LaunchError(f"image {cfg.image} {why} and cannot be pulled: {explain(exc)}") from None
        log.info("docker_image_pulled", image=cfg.image)

    def _pull(self, image: str) -> None:
        client = self.engine.connect()
        repository, tag = parse_repository_tag(image)
        for message in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(message, dict) and message.get("error"):
                raise _PullError(str(message["error"]))
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise _PullError("the engine reported no error but the image is still missing") from None

    def _create_and_start(self, cfg: ContainerConfig, spec: LaunchSpec, handle: DockerHandle) -> None:
        client = self.engine.connect()
        container = client.containers.create(**cfg.create_kwargs())
        handle.docker_id = container.id
        try:
            try:
                stream = self.engine.attach(container.id)
            except Exception as exc:
                log.warning("docker_attach_failed", container_id=spec.container_id, error=str(exc))
                stream = None
            start_pump(handle, stream)
            container.start()
            container.reload()
            handle.pid = container.attrs.get("State", {}).get("Pid") or None
        except BaseException:
            try:
                container.remove(force=True)
            except Exception as exc:
                log.warning("docker_container_not_removed", docker_id=container.id, error=str(exc))
            raise


class _PullError(Exception):
    """The engine reported an error in the middle of a pull."""
