"""``mensa master``: flags and entry point."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from mensa.deploy.runtime import configure_logging
from mensa.master.service import MasterOptions, serve
from mensa.proto.resources import ResourceError, Resources
from mensa.proto.transport import DEFAULT_MAX_MESSAGE_BYTES
from mensa.proto.zk import ZkUriError, parse_zk_uri

DEFAULT_OFFER_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", required=True, help="directory for endpoints.json and state")
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to bind (0.0.0.0 for every interface; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5050, help="ZeroMQ port (0 = pick a free one)")
    parser.add_argument("--http-port", type=int, default=5051, help="HTTP port (0 = pick a free one)")
    parser.add_argument("--hostname", help="hostname to advertise (default: this machine's)")
    parser.add_argument("--advertise-ip", help="IP to advertise when binding 0.0.0.0")
    parser.add_argument("--allocation-interval", type=float, default=1.0,
                        help="seconds between periodic allocation passes")
    parser.add_argument("--agent-ping-timeout", type=float, default=15.0,
                        help="seconds to wait for an agent's pong (also the ping period)")
    parser.add_argument("--max-agent-ping-timeouts", type=int, default=5,
                        help="missed pongs after which an agent is removed")
    parser.add_argument("--framework-heartbeat-interval", type=float, default=15.0,
                        help="seconds between HEARTBEAT events; 3 silent intervals disconnect")
    parser.add_argument("--offer-timeout", type=float, default=DEFAULT_OFFER_TIMEOUT,
                        help="seconds after which an unanswered offer is rescinded, so no framework "
                        f"hoards resources (default {DEFAULT_OFFER_TIMEOUT:g}; 0 = never, Mesos's default)")
    parser.add_argument("--min-allocatable-resources", default="cpus:0.01|mem:32",
                        help="offer an agent's free resources only when they contain at least one of "
                        "these '|'-separated quantities (default cpus:0.01|mem:32, as Mesos)")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest message accepted on the ZeroMQ socket")
    parser.add_argument("--zk", metavar="zk://HOST:PORT,.../PATH",
                        help="contend for leadership through ZooKeeper and keep the registry there "
                        "(default: a standalone master, registry in --work-dir)")
    parser.add_argument("--zk-session-timeout", type=float, default=10.0,
                        help="ZooKeeper session timeout in seconds; a leader that loses its session "
                        "stops leading, and a standby takes over after at most this long")
    parser.add_argument("--http-stream-buffer-bytes", type=int, default=8 * 1024 * 1024,
                        help="bytes an HTTP scheduler's event stream may have waiting to be written; "
                        "a scheduler that stops reading is disconnected beyond that (default 8 MiB)")
    parser.add_argument("--agent-reregister-timeout", type=float, default=600.0,
                        help="seconds after election within which agents known from the registry must "
                        "re-register before they are marked unreachable (Mesos's default: 10 minutes)")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level, component="master")
    for name in ("allocation_interval", "agent_ping_timeout", "framework_heartbeat_interval",
                 "zk_session_timeout", "agent_reregister_timeout"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be positive")
    if args.http_stream_buffer_bytes < 1024:
        raise SystemExit("--http-stream-buffer-bytes must be at least 1024")
    if not args.offer_timeout >= 0:  # also NaN
        raise SystemExit("--offer-timeout must be 0 (never) or a positive number of seconds")
    try:
        min_allocatable = [Resources.parse(part) for part in args.min_allocatable_resources.split("|")
                           if part.strip()]
    except ResourceError as exc:
        raise SystemExit(f"--min-allocatable-resources: {exc}") from None
    if args.zk:
        try:
            parse_zk_uri(args.zk)
        except ZkUriError as exc:
            raise SystemExit(f"--zk: {exc}") from None
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    opts = MasterOptions(
        work_dir=args.work_dir,
        ip=args.ip,
        port=args.port,
        http_port=args.http_port,
        hostname=args.hostname,
        advertise_ip=args.advertise_ip,
        allocation_interval=args.allocation_interval,
        agent_ping_timeout=args.agent_ping_timeout,
        max_agent_ping_timeouts=args.max_agent_ping_timeouts,
        framework_heartbeat_interval=args.framework_heartbeat_interval,
        offer_timeout=args.offer_timeout or None,
        min_allocatable=min_allocatable,
        max_message_bytes=args.max_message_bytes,
        zk=args.zk,
        zk_session_timeout=args.zk_session_timeout,
        agent_reregister_timeout=args.agent_reregister_timeout,
        http_stream_buffer_bytes=args.http_stream_buffer_bytes,
        flags={name: str(value) for name, value in sorted(vars(args).items())
               if value is not None and not callable(value)},
    )
    return asyncio.run(serve(opts))
