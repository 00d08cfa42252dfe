"""The command line every bundled framework (``mensa batch``, ``mensa service``) shares.

``add_host_arguments(parser, command=..., port=...)`` adds the flags (master, work dir,
ZooKeeper, HTTP address, FrameworkInfo fields); ``serve(args, options_type, service_type,
command=...)`` checks them, builds the options, and runs the service until SIGINT/SIGTERM.
Exit status: 0 after a signal, 1 when the instance had to stop (its state could not be written,
leadership was lost, the framework was removed), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mensa.deploy.runtime import configure_logging
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT
from mensa.proto.zk import ZkUriError, parse_zk_uri


def add_host_arguments(parser: argparse.ArgumentParser, *, command: str, port: int) -> None:
    parser.add_argument("--master", required=True, metavar="HOST:PORT|zk://...",
                        help="the master's ZeroMQ address, or zk://HOST:PORT,.../PATH to follow the leader")
    parser.add_argument("--work-dir", required=True, help="folder for endpoints.json, and the state "
                        "without --zk")
    parser.add_argument("--zk", metavar="zk://HOST:PORT,.../PATH",
                        help="keep the state in ZooKeeper under PATH and elect a leader among instances")
    parser.add_argument("--zk-session-timeout", type=float, default=10.0,
                        help="ZooKeeper session timeout in seconds (default 10)")
    parser.add_argument("--ip", default="127.0.0.1", help="address the REST API binds (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=port, help=f"REST API port (default {port}; "
                        "0 = pick a free one)")
    parser.add_argument("--advertise-ip", help="address other instances and clients reach this one at")
    parser.add_argument("--hostname", help="hostname in the FrameworkInfo (default: this machine's)")
    parser.add_argument("--name", default=f"mensa-{command}",
                        help=f"framework name (default mensa-{command})")
    parser.add_argument("--role", default="*", help='role to receive offers for (default "*")')
    parser.add_argument("--user", default="", help="user to run tasks as (default: the current user)")
    parser.add_argument("--failover-timeout", type=float, default=DEFAULT_FAILOVER_TIMEOUT,
                        help=f"seconds the master keeps the tasks of a disconnected {command} framework "
                        f"(default {DEFAULT_FAILOVER_TIMEOUT:g}, 7 days)")


def serve(args: argparse.Namespace, options_type: Callable[..., Any], service_type: Callable[[Any], Any],
          *, command: str) -> int:
    """Checks the flags (SystemExit with a message when wrong), then runs the service."""
    configure_logging(args.log_format, args.log_level, component=command)
    if args.zk:
        try:
            parse_zk_uri(args.zk)
        except ZkUriError as exc:
            raise SystemExit(f"mensa {command}: --zk: {exc}") from None
    if not args.zk_session_timeout > 0:
        raise SystemExit(f"mensa {command}: --zk-session-timeout must be positive")
    if not args.failover_timeout >= 0:
        raise SystemExit(f"mensa {command}: --failover-timeout must not be negative")
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = options_type(
        master=args.master, work_dir=work_dir, zk=args.zk, zk_session_timeout=args.zk_session_timeout,
        ip=args.ip, http_port=args.http_port, advertise_ip=args.advertise_ip, hostname=args.hostname,
        name=args.name, role=args.role, user=args.user, failover_timeout=args.failover_timeout,
        flags={k: str(v) for k, v in sorted(vars(args).items()) if v is not None and not callable(v)},
    )

    async def main() -> int:
        service = service_type(opts)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        return int(await service.run())

    return asyncio.run(main())
