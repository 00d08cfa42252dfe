"""The TaskInfo an agent runs for one instance of an app (pure).

``task_info`` turns an ``AppSpec`` (one version), the offer's agent, the resources taken from
the offer and the host ports picked for the instance into a ``TaskInfo``:

* **What runs.** ``cmd`` as a shell command; ``args`` as an argv (shell false: the executable
  and its full argv for a plain process, the image's entrypoint with ``args`` as its command for
  Docker); a Docker image as a DOCKER container with network HOST, BRIDGE (one port mapping per
  mapping and protocol, host port -> container port; container port 0 means the host port) or
  NONE.
* **Environment.** Marathon's variables, then the app's ``env`` (which wins on a clash):
  ``PORT0..PORTn`` (host ports in the app's port order), ``PORT`` (the first), ``PORTS``
  (comma-separated), ``PORT_<port>`` for each port (the container port for BRIDGE, else the
  declared port; the host port when that is 0), ``PORT_<NAME>`` for named ports (upper case),
  ``HOST``, ``MARATHON_APP_ID``, ``MARATHON_APP_VERSION``, ``MARATHON_APP_RESOURCE_CPUS`` /
  ``_MEM`` / ``_DISK`` / ``_GPUS``, ``MARATHON_APP_LABELS`` (label names, space-separated) and
  ``MARATHON_APP_LABEL_<NAME>`` (names upper-cased, runs of characters outside ``[A-Za-z0-9_]``
  as ``_``; labels of 512 characters or more are left out), ``MARATHON_APP_DOCKER_IMAGE``,
  ``MESOS_TASK_ID``.
* **Health.** A TaskInfo carries one health check (Mesos allows one): the app's *first* is
  translated (``health_check``); any further checks are not run. HTTP/HTTPS/TCP probe the host
  port of ``portIndex`` (for BRIDGE too: the agent probes the host side of the mapping) or the
  fixed ``port``; COMMAND runs a shell command. The timing fields carry over;
  ``maxConsecutiveFailures`` becomes ``consecutive_failures`` (0: never kill).
* **The rest.** Labels (the app's plus ``mensa.app`` and ``mensa.version``), DiscoveryInfo
  (ports with names, protocols and labels), the kill grace period, and the resources (a
  ``ports`` ranges resource holds the host ports).

The task's name is the app id as a host name, as Marathon names tasks (``/shop/web`` ->
``web.shop``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mensa.frameworks.placement import OfferView, fmt_number
from mensa.frameworks.service_fw.apps import AppSpec, HealthCheckSpec, Pairs
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

__all__ = ["health_check", "task_env", "task_info", "task_name"]

_NETWORKS = {
    "HOST": mensa_pb2.ContainerInfo.DockerInfo.HOST,
    "BRIDGE": mensa_pb2.ContainerInfo.DockerInfo.BRIDGE,
    "NONE": mensa_pb2.ContainerInfo.DockerInfo.NONE,
}
_LABEL_PREFIX = "MARATHON_APP_LABEL_"
_MAX_ENV = 512  # Marathon leaves out labels whose names or values would make longer variables
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]+")


def task_name(app_id: str) -> str:
    """The task name Marathon gives an app's tasks: the path reversed, dot-separated
    (``/shop/web`` -> ``web.shop``), as DNS discovery reads it."""
    return ".".join(reversed([part for part in app_id.split("/") if part]))


def _is_bridge(spec: AppSpec) -> bool:
    return spec.container is not None and spec.container.network == "BRIDGE"


def _declared_ports(spec: AppSpec) -> list[tuple[str | None, int, str, Pairs]]:
    """(name, declared port, protocol, labels) per host port: BRIDGE mappings (the container
    port) or port definitions (the declared port)."""
    if spec.container is not None and spec.container.network == "BRIDGE":
        return [(m.name, m.container_port, m.protocol, m.labels) for m in spec.container.port_mappings]
    return [(p.name, p.port, p.protocol, p.labels) for p in spec.port_definitions]


def task_env(spec: AppSpec, version: str, task_id: str, hostname: str,
             host_ports: Sequence[int]) -> list[tuple[str, str]]:
    """The task's environment (see the module docstring), in order; the app's ``env`` last and
    winning over Marathon's variables of the same name."""
    env: dict[str, str] = {}
    declared = _declared_ports(spec)
    for i, port in enumerate(host_ports):
        env[f"PORT{i}"] = str(port)
    for i, port in enumerate(host_ports):
        requested = declared[i][1] if i < len(declared) else 0
        env[f"PORT_{requested or port}"] = str(port)
    for i, port in enumerate(host_ports):
        name = declared[i][0] if i < len(declared) else None
        if name:
            env[f"PORT_{name.upper()}"] = str(port)
    if host_ports:
        env["PORT"] = str(host_ports[0])
        env["PORTS"] = ",".join(str(p) for p in host_ports)
    env["HOST"] = hostname
    env["MARATHON_APP_ID"] = spec.id
    env["MARATHON_APP_VERSION"] = version
    if spec.container is not None:
        env["MARATHON_APP_DOCKER_IMAGE"] = spec.container.image
    env["MARATHON_APP_RESOURCE_CPUS"] = str(float(spec.cpus))
    env["MARATHON_APP_RESOURCE_MEM"] = str(float(spec.mem))
    env["MARATHON_APP_RESOURCE_DISK"] = str(float(spec.disk))
    env["MARATHON_APP_RESOURCE_GPUS"] = fmt_number(spec.gpus)
    labels = [(_NOT_NAME.sub("_", key).upper(), value) for key, value in spec.labels
              if len(key) < _MAX_ENV - len(_LABEL_PREFIX) and len(value) < _MAX_ENV]
    env["MARATHON_APP_LABELS"] = " ".join(key for key, _ in labels)
    for key, value in labels:
        env[_LABEL_PREFIX + key] = value
    env["MESOS_TASK_ID"] = task_id
    env.update(spec.env)
    return list(env.items())


def health_check(check: HealthCheckSpec, host_ports: Sequence[int]) -> mensa_pb2.HealthCheck | None:
    """The Mesos HealthCheck for one of the app's checks, None when it names a port index the
    instance does not have (app validation refuses such checks)."""
    out = mensa_pb2.HealthCheck(
        delay_seconds=check.delay_seconds,
        interval_seconds=check.interval_seconds,
        timeout_seconds=check.timeout_seconds,
        consecutive_failures=check.max_consecutive_failures,
        grace_period_seconds=check.grace_period_seconds,
    )
    if check.protocol == "COMMAND":
        if not check.command:
            return None
        out.type = mensa_pb2.HealthCheck.COMMAND
        out.command.value = check.command
        out.command.shell = True
        return out
    if check.port is not None:
        port = check.port
    elif check.port_index is not None and 0 <= check.port_index < len(host_ports):
        port = host_ports[check.port_index]
    else:
        return None
    if check.protocol == "TCP":
        out.type = mensa_pb2.HealthCheck.TCP
        out.tcp.port = port
    else:
        out.type = mensa_pb2.HealthCheck.HTTP
        out.http.port = port
        out.http.path = check.path or "/"
        out.http.scheme = "https" if check.protocol == "HTTPS" else "http"
    return out


def _protocols(protocol: str) -> list[str]:
    """Marathon's "tcp,udp" as ["tcp", "udp"]."""
    return [p.strip().lower() for p in (protocol or "tcp").split(",") if p.strip()] or ["tcp"]


def _ports_resources(resources: Resources, host_ports: Sequence[int]) -> Resources:
    """``resources`` with any host port it does not hold yet added (unreserved)."""
    have = resources.ranges("ports")
    missing = [p for p in host_ports if not any(b <= p <= e for b, e in have)]
    if not missing:
        return resources
    return resources + Resources.parse("ports:[" + ",".join(f"{p}-{p}" for p in missing) + "]")


def task_info(spec: AppSpec, version: str, task_id: str, view: OfferView, resources: Resources,
              host_ports: Sequence[int]) -> mensa_pb2.TaskInfo:
    """The TaskInfo for one instance of ``spec`` (configuration ``version``) on the offer's agent,
    taking ``resources`` (which should hold ``host_ports`` as a ``ports`` resource with the roles
    they were offered under; ports missing from it are added unreserved) and using
    ``host_ports`` in the app's port order. See the module docstring."""
    info = mensa_pb2.TaskInfo(name=task_name(spec.id))
    info.task_id.value = task_id
    info.agent_id.value = view.agent_id
    info.resources.extend(_ports_resources(resources, host_ports).to_proto(view.role))
    docker = spec.container
    command = info.command
    if spec.cmd is not None:
        command.value = spec.cmd
        command.shell = True
    elif spec.args is not None:
        command.shell = False
        if docker is None:
            command.value = spec.args[0]
        command.arguments.extend(spec.args)
    else:
        command.shell = False  # the image's own entrypoint and command
    if spec.user:
        command.user = spec.user
    for name, value in task_env(spec, version, task_id, view.hostname, host_ports):
        command.environment.variables.add(name=name, value=value)
    if docker is not None:
        info.container.type = mensa_pb2.ContainerInfo.DOCKER
        d = info.container.docker
        d.image = docker.image
        d.network = _NETWORKS.get(docker.network, mensa_pb2.ContainerInfo.DockerInfo.HOST)
        if docker.force_pull_image:
            d.force_pull_image = True
        if docker.privileged:
            d.privileged = True
        for key, value in docker.parameters:
            d.parameters.add(key=key, value=value)
        if docker.network == "BRIDGE":
            for mapping, host_port in zip(docker.port_mappings, host_ports, strict=False):
                for protocol in _protocols(mapping.protocol):
                    d.port_mappings.add(host_port=host_port,
                                        container_port=mapping.container_port or host_port,
                                        protocol=protocol)
    check = health_check(spec.health_checks[0], host_ports) if spec.health_checks else None
    if check is not None:
        info.health_check.CopyFrom(check)
    if spec.task_kill_grace_period_seconds is not None:
        info.kill_policy.grace_period.nanoseconds = int(spec.task_kill_grace_period_seconds * 1e9)
    for key, value in (*spec.labels, ("mensa.app", spec.id), ("mensa.version", version)):
        info.labels.labels.add(key=key, value=value)
    discovery = info.discovery
    discovery.visibility = mensa_pb2.DiscoveryInfo.FRAMEWORK
    discovery.name = info.name
    discovery.version = version
    for (port_name, _declared, protocol, labels), host_port in zip(_declared_ports(spec), host_ports,
                                                                   strict=False):
        for proto in _protocols(protocol):
            port = discovery.ports.ports.add(number=host_port, protocol=proto)
            if port_name:
                port.name = port_name
            for key, value in labels:
                port.labels.labels.add(key=key, value=value)
    return info
