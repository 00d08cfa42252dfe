"""``mensa batch``: the batch job framework (Metronome's /v1 API on --http-port).

    mensa batch --master 127.0.0.1:5050 --work-dir /var/lib/mensa/batch
    mensa batch --master zk://zk1:2181/mensa --zk zk://zk1:2181/mensa-batch --work-dir DIR

Standalone, the state lives in ``<work-dir>/state`` (one JSON file per record) and the framework
id in ``<work-dir>/framework_id``. With ``--zk`` both live in ZooKeeper under the given path and
several instances elect a leader; the others redirect the API to it. SIGINT/SIGTERM stop the
instance without tearing the framework down: its tasks keep running and the next instance (or
the new leader) takes them over. Exit status: 0 after a signal, 1 when the instance had to stop
(its state could not be written, leadership was lost, the framework was removed), 2 for bad flags.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from mensa.deploy.runtime import configure_logging
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT
from mensa.proto.zk import ZkUriError, parse_zk_uri


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", required=True, metavar="HOST:PORT|zk://...",
                        help="the master's ZeroMQ address, or zk://HOST:PORT,.../PATH to follow the leader")
    parser.add_argument("--work-dir", required=True, help="folder for endpoints.json, and the state "
                        "without --zk")
    parser.add_argument("--zk", metavar="zk://HOST:PORT,.../PATH",
                        help="keep the state in ZooKeeper under PATH and elect a leader among instances")
    parser.add_argument("--zk-session-timeout", type=float, default=10.0,
                        help="ZooKeeper session timeout in seconds (default 10)")
    parser.add_argument("--ip", default="127.0.0.1", help="address the REST API binds (default 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=9000, help="REST API port (0 = pick a free one)")
    parser.add_argument("--advertise-ip", help="address other instances and clients reach this one at")
    parser.add_argument("--hostname", help="hostname in the FrameworkInfo (default: this machine's)")
    parser.add_argument("--name", default="mensa-batch", help="framework name (default mensa-batch)")
    parser.add_argument("--role", default="*", help='role to receive offers for (default "*")')
    parser.add_argument("--user", default="", help="user to run tasks as (default: the current user)")
    parser.add_argument("--failover-timeout", type=float, default=DEFAULT_FAILOVER_TIMEOUT,
                        help="seconds the master keeps the tasks of a disconnected batch framework "
                        f"(default {DEFAULT_FAILOVER_TIMEOUT:g}, 7 days)")


def run(args: argparse.Namespace) -> int:
    from mensa.frameworks.batch_fw.service import BatchOptions, BatchService

    configure_logging(args.log_format, args.log_level, component="batch")
    if args.zk:
        try:
            parse_zk_uri(args.zk)
        except ZkUriError as exc:
            raise SystemExit(f"mensa batch: --zk: {exc}") from None
    if not args.zk_session_timeout > 0:
        raise SystemExit("mensa batch: --zk-session-timeout must be positive")
    if not args.failover_timeout >= 0:
        raise SystemExit("mensa batch: --failover-timeout must not be negative")
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = BatchOptions(
        master=args.master, work_dir=work_dir, zk=args.zk, zk_session_timeout=args.zk_session_timeout,
        ip=args.ip, http_port=args.http_port, advertise_ip=args.advertise_ip, hostname=args.hostname,
        name=args.name, role=args.role, user=args.user, failover_timeout=args.failover_timeout,
        flags={k: str(v) for k, v in sorted(vars(args).items()) if v is not None and not callable(v)},
    )

    async def main() -> int:
        service = BatchService(opts)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        return await service.run()

    return asyncio.run(main())
