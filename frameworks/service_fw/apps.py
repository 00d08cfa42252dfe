"""App definitions of the service framework, in Marathon's vocabulary (pure types).

An ``AppSpec`` is one version of an app as the user asked for it: Marathon's JSON field names,
snake_cased (``maxLaunchDelaySeconds`` is ``max_launch_delay_seconds``). Reading a Marathon
document into an ``AppSpec`` (with every problem reported by JSON path) and rendering it back
live in ``app_reading.py``; this module holds only the types and their small helpers.

Ids are Marathon paths: ``/shop/web`` (absolute, '/'-separated segments of lowercase letters,
digits, '-' and '.'). ``app_key`` turns one into a store key and task-id prefix (``shop_web``):
ids never contain '_', so the mapping is one to one.

Usage::

    spec = AppSpec(id="/shop/web", cmd="python3 -m http.server $PORT0", instances=3,
                   port_definitions=(PortDefinition(port=0, name="http"),))
    spec.port_count        # 1
    needs_restart(old, new)  # True when anything but ``instances`` changed
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

Pairs = tuple[tuple[str, str], ...]

# Marathon's defaults.
DEFAULT_CPUS = 1.0
DEFAULT_MEM = 128.0
DEFAULT_BACKOFF_SECONDS = 1.0
DEFAULT_BACKOFF_FACTOR = 1.15
DEFAULT_MAX_LAUNCH_DELAY = 300.0
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
# Constraint operators (Marathon): UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS.
OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
# Health check protocols after reading (MESOS_HTTP -> HTTP, MESOS_HTTPS -> HTTPS, MESOS_TCP -> TCP:
# every check runs on the agent).
PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND")
# ``unreachableStrategy: "disabled"`` (never replace nor expunge an unreachable instance) is read as
# both times set to this: later than any clock reaches, beyond any time a user may give (1e9 s),
# and finite, so timers stay plain arithmetic. ``app_json`` renders it back as "disabled".
UNREACHABLE_NEVER = 1e12


@dataclass(frozen=True, slots=True)
class PortDefinition:
    """A port the app asks the agent for (``portDefinitions``; ``ports`` is the short form).
    ``port`` is the service port (0: any); with ``require_ports`` it is also the host port."""

    port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: Pairs = ()


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A Docker BRIDGE port mapping: ``host_port`` 0 takes any offered port."""

    container_port: int
    host_port: int = 0
    service_port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: Pairs = ()


@dataclass(frozen=True, slots=True)
class DockerSpec:
    """``container: {type: DOCKER, docker: {...}}``; network HOST, BRIDGE or NONE."""

    image: str
    network: str = "HOST"
    port_mappings: tuple[PortMapping, ...] = ()
    force_pull_image: bool = False
    privileged: bool = False
    parameters: Pairs = ()


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    """One health check, run by the agent. HTTP/HTTPS/TCP probe the task's port
    ``port_index`` (an index into the app's ports) or a fixed ``port``; COMMAND runs
    ``command`` in the task's sandbox and container. Marathon's defaults."""

    protocol: str = "HTTP"
    path: str = "/"
    port_index: int | None = 0
    port: int | None = None
    command: str | None = None
    grace_period_seconds: float = 300.0
    interval_seconds: float = 60.0
    timeout_seconds: float = 20.0
    max_consecutive_failures: int = 3
    delay_seconds: float = 15.0
    ignore_http1xx: bool = False


@dataclass(frozen=True, slots=True)
class UpgradeStrategy:
    """Rolling restarts keep at least ``ceil(instances * minimum_health_capacity)`` healthy
    instances and never run more than ``instances + floor(instances * maximum_over_capacity)``."""

    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0


@dataclass(frozen=True, slots=True)
class UnreachableStrategy:
    """An unreachable instance is replaced after ``inactive_after_seconds`` and forgotten (killed
    if it comes back) after ``expunge_after_seconds``."""

    inactive_after_seconds: float = 300.0
    expunge_after_seconds: float = 600.0

    @property
    def disabled(self) -> bool:
        """True for Marathon's "disabled": unreachable instances are never replaced."""
        return self.inactive_after_seconds >= UNREACHABLE_NEVER


@dataclass(frozen=True, slots=True)
class Constraint:
    """``[field, operator, value]``: field is ``hostname`` or an agent attribute; value is None
    for operators that take none (UNIQUE, CLUSTER without a value, GROUP_BY without a count)."""

    field: str
    operator: str
    value: str | None = None

    def __str__(self) -> str:
        return " ".join(p for p in (self.field, self.operator, self.value) if p is not None)

    def to_json(self) -> list[str]:
        return [self.field, self.operator] + ([self.value] if self.value is not None else [])


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One version of an app, as asked for (see the module docstring)."""

    id: str
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    user: str | None = None
    env: Pairs = ()
    instances: int = 1
    cpus: float = DEFAULT_CPUS
    mem: float = DEFAULT_MEM
    disk: float = 0.0
    gpus: float = 0.0
    container: DockerSpec | None = None
    port_definitions: tuple[PortDefinition, ...] = ()
    require_ports: bool = False
    constraints: tuple[Constraint, ...] = ()
    health_checks: tuple[HealthCheckSpec, ...] = ()
    upgrade_strategy: UpgradeStrategy = field(default_factory=UpgradeStrategy)
    unreachable_strategy: UnreachableStrategy = field(default_factory=UnreachableStrategy)
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_launch_delay_seconds: float = DEFAULT_MAX_LAUNCH_DELAY
    kill_selection: str = "YOUNGEST_FIRST"
    task_kill_grace_period_seconds: float | None = None
    dependencies: tuple[str, ...] = ()
    labels: Pairs = ()
    role: str | None = None  # None: the framework's role
    accepted_resource_roles: tuple[str, ...] | None = None

    @property
    def port_count(self) -> int:
        """How many host ports each instance takes (port definitions, or BRIDGE mappings)."""
        if self.container is not None and self.container.network == "BRIDGE":
            return len(self.container.port_mappings)
        return len(self.port_definitions)

    @property
    def port_names(self) -> tuple[str | None, ...]:
        if self.container is not None and self.container.network == "BRIDGE":
            return tuple(m.name for m in self.container.port_mappings)
        return tuple(p.name for p in self.port_definitions)

    @property
    def required_host_ports(self) -> tuple[int, ...]:
        """Fixed host ports (``require_ports``, or BRIDGE mappings with a host port), in port
        order; 0 where any port will do."""
        if self.container is not None and self.container.network == "BRIDGE":
            return tuple(m.host_port for m in self.container.port_mappings)
        if self.require_ports:
            return tuple(p.port for p in self.port_definitions)
        return tuple(0 for _ in self.port_definitions)

    def scaled(self, instances: int) -> AppSpec:
        return dataclasses.replace(self, instances=instances)


def needs_restart(old: AppSpec, new: AppSpec) -> bool:
    """True when ``new`` differs from ``old`` in more than the instance count: its instances
    must be replaced (a rolling restart), not only added or removed."""
    return dataclasses.replace(old, instances=0) != dataclasses.replace(new, instances=0)


def app_key(app_id: str) -> str:
    """The store key and task-id prefix of an app: ``/shop/web`` -> ``shop_web``."""
    return app_id.strip("/").replace("/", "_")


def app_id_of_key(key: str) -> str:
    """The inverse of ``app_key``: ``shop_web`` -> ``/shop/web``."""
    return "/" + key.replace("_", "/")


def app_id_of_task(task_id: str) -> str | None:
    """The app a task id belongs to (``shop_web.<uuid>`` -> ``/shop/web``), None if malformed.
    App ids may hold dots; the uuid part never does."""
    key, dot, _rest = task_id.rpartition(".")
    return app_id_of_key(key) if dot and key else None
