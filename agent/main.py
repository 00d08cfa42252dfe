"""``mensa agent``: run an agent that registers with a master and runs its tasks.

    mensa agent --master 127.0.0.1:5050|zk://HOSTS/PATH --work-dir /var/lib/mensa/agent \\
        [--resources "cpus:4;mem:4096;disk:10000;ports:[31000-32000]"] \\
        [--attributes "rack:a;zone:z1"] [--hostname NAME] [--ip 127.0.0.1] [--http-port 5052]

Without ``--resources`` the machine's resources are detected (and logged). ``--http-port 0``
binds a free port; the port actually bound (and, once registered, the agent id) is written to
``<work-dir>/endpoints.json``. The HTTP endpoints bind to ``--ip``, 127.0.0.1 by default so an
agent is not reachable from other machines unless asked (use ``--ip 0.0.0.0`` in a cluster).

``--master`` is a master's ``HOST:PORT`` or ``zk://HOSTS/PATH``: the agent then follows the
leading master elected in ZooKeeper (``--zk-session-timeout`` seconds, default 10).

On SIGTERM or SIGINT the agent kills its tasks (SIGTERM, then SIGKILL after the grace period)
before it exits, so no task process is left behind. Killed any other way (SIGKILL, a crash),
it leaves them running: restarted with the same ``--work-dir`` it recovers them from its
checkpoint (``<work-dir>/meta``), keeps its agent id, reports the tasks that ended meanwhile
with their exit codes, resends unacknowledged status updates and re-registers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time

import structlog
import tornado.httpserver
import tornado.netutil

from mensa.agent import gc
from mensa.agent.containerizer.base import Containerizer
from mensa.agent.containerizer.docker import DockerContainerizer
from mensa.agent.containerizer.process import ProcessContainerizer
from mensa.agent.http import make_app
from mensa.agent.resources_detect import detect_resources
from mensa.agent.service import AgentService
from mensa.agent.state import AgentConfig
from mensa.deploy.runtime import configure_logging, write_endpoints
from mensa.proto.attributes import parse_attributes
from mensa.proto.detector import DEFAULT_ZK_SESSION_TIMEOUT, MasterDetector, detector_for
from mensa.proto.resources import ResourceError, Resources

log = structlog.get_logger(__name__)

DEFAULT_HTTP_PORT = 5052
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the agent's flags to ``parser``."""
    parser.add_argument(
        "--master",
        required=True,
        help="the master's ZeroMQ endpoint HOST:PORT, or zk://HOST:PORT[,...]/PATH to follow the "
        "leading master",
    )
    parser.add_argument(
        "--zk-session-timeout",
        type=float,
        default=DEFAULT_ZK_SESSION_TIMEOUT,
        help="ZooKeeper session timeout in seconds, with a zk:// --master (default 10)",
    )
    parser.add_argument("--work-dir", required=True, help="where sandboxes and endpoints.json live")
    parser.add_argument(
        "--resources",
        help='e.g. "cpus:4;mem:4096;disk:10000;ports:[31000-32000]" (default: detected)',
    )
    parser.add_argument(
        "--attributes", default="", help='e.g. "rack:a;zone:z1" (numbers become SCALAR)'
    )
    parser.add_argument("--hostname", default=None, help="default: this machine's hostname")
    parser.add_argument("--ip", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument(
        "--advertise-ip",
        default=None,
        help="the IP others reach this agent's HTTP at (default: --ip, or the hostname's address "
        "when --ip is 0.0.0.0)",
    )
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port; 0 picks a free one"
    )
    parser.add_argument(
        "--kill-grace-period",
        type=float,
        default=3.0,
        help="seconds between SIGTERM and SIGKILL when a task has no kill policy",
    )
    parser.add_argument(
        "--status-update-retry-interval",
        type=float,
        default=1.0,
        help="first retry interval of unacknowledged status updates (doubles up to 60s)",
    )
    parser.add_argument(
        "--containerizers",
        default="process",
        help="comma-separated, in order of preference: docker,process (default: process; the "
        "first that can run a task runs it, process is always added last)",
    )
    parser.add_argument(
        "--docker-socket",
        default=None,
        help="the Docker Engine socket (path or unix:// URL; default: DOCKER_HOST, then "
        "/var/run/docker.sock)",
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "cgroups", "rlimits"),
        default="auto",
        help="process tasks: cgroups (v2 or v1, detected) or rlimits; auto uses cgroups where "
        "they can be written and says loudly when it cannot",
    )
    parser.add_argument("--cgroup-root", default="/sys/fs/cgroup", help="where cgroups are mounted")
    parser.add_argument(
        "--pids-max", type=int, default=4096, help="most processes a task may have (0: no limit)"
    )
    parser.add_argument(
        "--pid-namespace",
        choices=("auto", "on", "off"),
        default="auto",
        help="run each process task in its own PID namespace with its own /proc (auto: where "
        "the host allows it)",
    )
    parser.add_argument(
        "--sandbox-gc-delay",
        type=float,
        default=gc.GcPolicy().max_age_seconds,
        help="seconds a finished task's sandbox is kept (default one week, as Mesos)",
    )
    parser.add_argument(
        "--sandbox-gc-disk-headroom",
        type=float,
        default=gc.GcPolicy().disk_headroom,
        help="free-disk fraction to keep: past it, the oldest finished sandboxes go early (0.1)",
    )
    parser.add_argument(
        "--sandbox-gc-interval", type=float, default=60.0, help="seconds between sandbox GC passes"
    )
    parser.add_argument(
        "--registration-backoff",
        type=float,
        default=0.5,
        help="first registration retry interval (doubles up to 5s)",
    )


def _advertise_ip(given: str | None, bind_ip: str, hostname: str) -> str:
    """Returns the IP to advertise: the given one, the bind address, or the hostname's address."""
    if given:
        return given
    if bind_ip not in ("0.0.0.0", "", "::"):
        return bind_ip
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return ""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mensa")
    except PackageNotFoundError:
        return "0.0.0"


def build_config(args: argparse.Namespace, http_port: int) -> AgentConfig:
    """Returns the agent's config from its flags; raises ValueError on bad input."""
    work_dir = os.path.abspath(args.work_dir)
    if args.resources:
        try:
            resources = Resources.parse(args.resources)
        except ResourceError as exc:
            raise ValueError(f"--resources: {exc}") from None
    else:
        resources = detect_resources(work_dir)
        log.info("resources_detected", resources=str(resources))
    try:
        attributes = parse_attributes(args.attributes or "")
    except ValueError as exc:
        raise ValueError(f"--attributes: {exc}") from None
    for flag in ("kill_grace_period", "status_update_retry_interval", "registration_backoff",
                 "sandbox_gc_delay"):
        if not getattr(args, flag) >= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must not be negative")
    if not 0 <= args.sandbox_gc_disk_headroom < 1:
        raise ValueError("--sandbox-gc-disk-headroom must be a fraction in [0, 1)")
    if not args.sandbox_gc_interval > 0:
        raise ValueError("--sandbox-gc-interval must be positive")
    retry = max(args.status_update_retry_interval, 0.001)
    hostname = args.hostname or socket.gethostname()
    return AgentConfig(
        work_dir=work_dir,
        hostname=hostname,
        advertise_ip=_advertise_ip(args.advertise_ip, args.ip, hostname),
        resources=resources.to_proto(),
        attributes=attributes,
        http_port=http_port,
        version=_version(),
        path_env=os.environ.get("PATH", DEFAULT_PATH),
        kill_grace_seconds=args.kill_grace_period,
        registration_backoff=max(args.registration_backoff, 0.01),
        registration_backoff_max=max(5.0, args.registration_backoff),
        update_retry_min=retry,
        update_retry_max=max(60.0, retry),
        checkpoint=True,
    )


def run(args: argparse.Namespace) -> int:
    """Runs the agent until SIGTERM/SIGINT; returns the process exit code."""
    configure_logging(
        getattr(args, "log_format", "console"), getattr(args, "log_level", "info"), "agent"
    )
    try:
        if not args.zk_session_timeout > 0:
            raise ValueError("--zk-session-timeout must be positive")
        try:
            master = detector_for(args.master, session_timeout=args.zk_session_timeout)
        except ValueError as exc:
            raise ValueError(f"--master {args.master!r}: {exc}") from None
        if not 0 <= args.http_port < 65536:
            raise ValueError(f"--http-port {args.http_port} is not a port")
        os.makedirs(args.work_dir, exist_ok=True)
    except (ValueError, OSError) as exc:
        log.error("agent_not_started", error=str(exc))
        return 2
    try:
        return asyncio.run(_serve(args, master))
    except ValueError as exc:
        log.error("agent_not_started", error=str(exc))
        return 2


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("signal_received", signal=sig.name, action="killing tasks, then exiting")
    stop.set()


async def _serve(args: argparse.Namespace, master: MasterDetector) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    try:
        sockets = tornado.netutil.bind_sockets(args.http_port, args.ip)
    except OSError as exc:
        raise ValueError(f"cannot bind HTTP on {args.ip}:{args.http_port}: {exc}") from None
    http_port = sockets[0].getsockname()[1]
    try:
        config = build_config(args, http_port)
    except ValueError:
        for sock in sockets:
            sock.close()
        raise
    containerizers = await _containerizers(args)
    service = AgentService(config, master, containerizers)
    app = make_app(service.state, str(master), containerizers, service.usage, metrics=service.metrics)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    log.info("http_listening", ip=args.ip, http_port=http_port)
    write_endpoints(config.work_dir, http_port=http_port, agent_id=None)
    policy = gc.GcPolicy(max_age_seconds=args.sandbox_gc_delay,
                         disk_headroom=args.sandbox_gc_disk_headroom)
    collector = asyncio.create_task(_collect_sandboxes(service, policy, args.sandbox_gc_interval))
    try:
        await service.run(stop)
    finally:
        collector.cancel()
        server.stop()
    return 0


async def _containerizers(args: argparse.Namespace) -> list[Containerizer]:
    """Builds the containerizers named by ``--containerizers``, in order; process always last."""
    names = [n.strip() for n in args.containerizers.split(",") if n.strip()]
    unknown = sorted(set(names) - {"docker", "process"})
    if unknown:
        raise ValueError(f"--containerizers: unknown containerizer {', '.join(unknown)} "
                         "(choose from docker, process)")
    out: list[Containerizer] = []
    for name in dict.fromkeys([*names, "process"]):
        if name == "docker":
            docker = DockerContainerizer(args.docker_socket)
            if not await docker.probe():
                log.warning("docker_unreachable", socket=docker.describe().get("docker_socket"),
                            consequence="Docker tasks fail until the engine answers; process "
                            "tasks run as usual")
            out.append(docker)
        else:
            pid_namespace = {"auto": None, "on": True, "off": False}[args.pid_namespace]
            process = ProcessContainerizer(
                isolation=args.isolation,
                cgroup_root=args.cgroup_root,
                pids_max=args.pids_max or None,
                pid_namespace=pid_namespace,
                # After recovery (service), sparing the checkpointed tasks' cgroups.
                remove_stale=False,
            )
            log.info("process_isolation", **process.describe())
            out.append(process)
    log.info("containerizers_ready", containerizers=[c.name for c in out])
    return out


async def _collect_sandboxes(service: AgentService, policy: gc.GcPolicy, interval: float) -> None:
    """Removes finished tasks' sandboxes by age and disk pressure, every ``interval`` seconds.

    The sandboxes of every task the agent tracks when a pass starts are kept; the pass itself
    runs in a thread, and only removes sandboxes that finished ``--sandbox-gc-delay`` ago (or,
    under disk pressure, the oldest finished ones).
    """
    while True:
        await asyncio.sleep(interval)
        active = {r.sandbox for r in service.state.tasks.values() if r.sandbox}
        try:
            # Walking and removing large sandboxes takes a while: not on the agent's loop.
            await asyncio.to_thread(gc.collect, service.config.work_dir, active, time.time(), policy)
        except OSError as exc:
            log.warning("sandbox_gc_failed", error=str(exc))
