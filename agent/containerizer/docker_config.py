"""What the Docker containerizer asks the engine for, decided without talking to it (pure).

``container_config`` turns a LaunchSpec into a ``ContainerConfig`` (image, command, environment,
limits, labels, network, ports, volumes); ``termination_of`` turns an exited container's state
into a ``Termination``. ``docker.py`` does the engine I/O; see its docstring for the semantics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mensa.agent.containerizer.base import LaunchError, LaunchSpec, Termination
from mensa.agent.sandbox import task_ports
from mensa.proto import mensa_pb2
from mensa.proto.resources import ResourceError, Resources

DEFAULT_SANDBOX_MOUNT = "/mnt/mesos/sandbox"
LABEL_PREFIX = "mensa."
NAME_PREFIX = "mensa-"
MB = 1024 * 1024
Network = mensa_pb2.ContainerInfo.DockerInfo


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """The arguments of ``containers.create`` for one task (see ``container_config``)."""

    image: str
    force_pull: bool
    name: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    network_mode: str
    ports: dict[str, int]
    volumes: dict[str, dict[str, str]]
    working_dir: str
    mem_limit: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    privileged: bool = False
    hostname: str | None = None

    def create_kwargs(self) -> dict[str, Any]:
        """Returns the keyword arguments for ``DockerClient.containers.create``."""
        kwargs: dict[str, Any] = {
            "image": self.image,
            "name": self.name,
            "command": self.command,
            "environment": self.environment,
            "labels": self.labels,
            "network_mode": self.network_mode,
            "volumes": self.volumes,
            "working_dir": self.working_dir,
            "privileged": self.privileged,
            "detach": True,
            "stdin_open": False,
            "tty": False,
        }
        if self.entrypoint is not None:
            kwargs["entrypoint"] = self.entrypoint
        if self.ports:
            kwargs["ports"] = self.ports
        if self.mem_limit is not None:
            kwargs["mem_limit"] = self.mem_limit
            kwargs["memswap_limit"] = self.mem_limit  # no swap: the limit is the limit
        if self.nano_cpus is not None:
            kwargs["nano_cpus"] = self.nano_cpus
        if self.cpu_shares is not None:
            kwargs["cpu_shares"] = self.cpu_shares
        if self.hostname:
            kwargs["hostname"] = self.hostname
        return kwargs


def can_run(task_info: mensa_pb2.TaskInfo) -> bool:
    """True for a task with a DOCKER container that names an image."""
    return (
        task_info.HasField("container")
        and task_info.container.type == mensa_pb2.ContainerInfo.DOCKER
        and bool(task_info.container.docker.image)
    )


def container_labels(spec: LaunchSpec) -> dict[str, str]:
    """Returns the labels that tie a container to its task (and agent)."""
    return {
        f"{LABEL_PREFIX}container_id": spec.container_id,
        f"{LABEL_PREFIX}framework_id": spec.framework_id,
        f"{LABEL_PREFIX}task_id": spec.task_id,
        f"{LABEL_PREFIX}agent_id": spec.env.get("MESOS_AGENT_ID", ""),
        f"{LABEL_PREFIX}sandbox": spec.sandbox,
    }


def port_bindings(
    mappings: list[mensa_pb2.ContainerInfo.DockerInfo.PortMapping], task_ports_: list[int]
) -> dict[str, int]:
    """Returns Docker's ``ports`` argument (``"<container_port>/<proto>" -> host_port``).

    Raises LaunchError when a host port is not one of the task's ports, a port is out of
    range, or the protocol is neither tcp nor udp.
    """
    allowed = set(task_ports_)
    out: dict[str, int] = {}
    for m in mappings:
        protocol = (m.protocol or "tcp").lower()
        if protocol not in ("tcp", "udp"):
            raise LaunchError(f"port mapping protocol {m.protocol!r} is not tcp or udp")
        if not 0 < m.container_port < 65536:
            raise LaunchError(f"invalid container port {m.container_port}")
        if m.host_port not in allowed:
            raise LaunchError(
                f"host port {m.host_port} is not one of the task's ports "
                f"({', '.join(map(str, sorted(allowed))) or 'none'})"
            )
        out[f"{m.container_port}/{protocol}"] = m.host_port
    return out


def container_config(spec: LaunchSpec, sandbox_mount: str = DEFAULT_SANDBOX_MOUNT) -> ContainerConfig:
    """Returns what to create for ``spec`` (see the module docstring); LaunchError if invalid."""
    info = spec.task_info
    if not can_run(info):
        raise LaunchError("the task has no DOCKER container with an image")
    docker_info = info.container.docker
    command_info = info.command
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    if command_info.shell and command_info.value:
        entrypoint, command = ["/bin/sh", "-c"], [command_info.value]
    elif command_info.value:
        command = [command_info.value, *command_info.arguments]
    elif command_info.arguments:
        command = list(command_info.arguments)

    env = dict(spec.env)
    user_vars = {v.name for v in command_info.environment.variables}
    if "PATH" not in user_vars:
        env.pop("PATH", None)
    env["MESOS_SANDBOX"] = sandbox_mount

    try:
        resources = Resources.from_proto(info.resources)
    except ResourceError as exc:
        raise LaunchError(f"invalid resources: {exc}") from None
    mem, cpus = resources.scalar("mem"), resources.scalar("cpus")

    network = docker_info.network
    ports: dict[str, int] = {}
    if network == Network.HOST:
        network_mode = "host"
    elif network == Network.BRIDGE:
        network_mode = "bridge"
        try:
            allowed = task_ports(info)
        except ValueError as exc:
            raise LaunchError(str(exc)) from None
        ports = port_bindings(list(docker_info.port_mappings), allowed)
    elif network == Network.NONE:
        network_mode = "none"
    else:
        raise LaunchError("docker network mode USER is not supported (use HOST, BRIDGE or NONE)")

    volumes = {spec.sandbox: {"bind": sandbox_mount, "mode": "rw"}}
    for volume in info.container.volumes:
        host, bind = _volume_paths(volume, spec.sandbox, sandbox_mount)
        mode = "ro" if volume.mode == mensa_pb2.Volume.RO else "rw"
        volumes[host] = {"bind": bind, "mode": mode}

    return ContainerConfig(
        image=docker_info.image,
        force_pull=docker_info.force_pull_image,
        name=f"{NAME_PREFIX}{spec.container_id}",
        entrypoint=entrypoint,
        command=command,
        environment=env,
        labels=container_labels(spec),
        network_mode=network_mode,
        ports=ports,
        volumes=volumes,
        working_dir=sandbox_mount,
        mem_limit=int(mem * MB) if mem > 0 else None,
        nano_cpus=int(cpus * 1e9) if cpus > 0 else None,
        cpu_shares=max(2, int(cpus * 1024)) if cpus > 0 else None,
        privileged=docker_info.privileged,
        hostname=(info.container.hostname or None) if network_mode != "host" else None,
    )


def _volume_paths(volume: mensa_pb2.Volume, sandbox: str, sandbox_mount: str) -> tuple[str, str]:
    if not volume.container_path:
        raise LaunchError("a volume has no container_path")
    bind = (
        volume.container_path
        if os.path.isabs(volume.container_path)
        else os.path.join(sandbox_mount, volume.container_path)
    )
    if not volume.host_path:
        raise LaunchError(f"volume {volume.container_path!r} has no host_path")
    if os.path.isabs(volume.host_path):
        return volume.host_path, bind
    host = os.path.normpath(os.path.join(sandbox, volume.host_path))
    if os.path.commonpath([sandbox, host]) != os.path.normpath(sandbox):
        raise LaunchError(f"volume host_path {volume.host_path!r} leaves the sandbox")
    return host, bind


def termination_of(state: dict[str, Any], *, killed_by_us: bool, mem_mb: float) -> Termination:
    """Returns the Termination for a container's inspected ``State``.

    OOMKilled is REASON_CONTAINER_LIMITATION_MEMORY; an exit code above 128 of a container we
    stopped is read as the signal that ended it (Docker reports 128+signal).
    """
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        limit = f" of {mem_mb:g} MB" if mem_mb > 0 else ""
        return Termination(
            signal=9,
            killed_by_us=killed_by_us,
            reason=mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY,
            message=f"container exceeded its memory limit{limit} and was OOM-killed",
        )
    if killed_by_us and code > 128:
        return Termination(signal=code - 128, killed_by_us=True)
    if state.get("Error"):
        return Termination(
            exit_code=code,
            killed_by_us=killed_by_us,
            reason=mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED,
            message=f"Docker Engine reported: {state['Error']}",
        )
    return Termination(exit_code=code, killed_by_us=killed_by_us)


# -- the shell ----------------------------------------------------------------------------------


