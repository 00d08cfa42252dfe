"""``mensa scheduler run MODULE:CLASS --master HOST:PORT|zk://...``: runs any Scheduler class.

This is how frameworks plug in: the target names a Scheduler subclass (or a callable that
returns a Scheduler), which is imported and instantiated with no arguments, given a
FrameworkInfo built from the flags, and run by a SchedulerDriver until it stops itself or the
process gets SIGINT/SIGTERM. On a signal the framework is torn down (its tasks are killed),
unless ``--framework-id-file`` is given: then the scheduler just disconnects, its tasks keep
running for ``--failover-timeout`` (7 days by default) and the next run with the same file
takes them over. ``--master zk://HOST:PORT,.../PATH`` follows the leading master.

Exit status: 0 when the driver stopped, 1 when it aborted (an ERROR from the master, or
``driver.abort()``), 2 for a bad target or address (with a one-line error, no traceback).

Usage::

    mensa scheduler run mensa.frameworks.examples.hello:HelloScheduler --master 127.0.0.1:5050
    mensa scheduler run my_pkg.sched:MyScheduler --master zk://10.0.0.1:2181/mensa \
        --framework-id-file /var/lib/my-sched/framework_id
    python -m mensa.frameworks.runner my_pkg.sched:MyScheduler --master 10.0.0.1:5050 --role dev
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from mensa.deploy.runtime import LOG_FORMATS, configure_logging
from mensa.frameworks.driver import DriverStatus, SchedulerDriver
from mensa.frameworks.idfile import DEFAULT_FAILOVER_TIMEOUT
from mensa.frameworks.scheduler import Scheduler
from mensa.proto import mensa_pb2
from mensa.proto.detector import DEFAULT_ZK_SESSION_TIMEOUT

log = structlog.get_logger(__name__)


class TargetError(ValueError):
    """The MODULE:CLASS target cannot be turned into a Scheduler; ``str()`` says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``mensa scheduler run``."""
    parser.add_argument(
        "target",
        metavar="MODULE:CLASS",
        help="the Scheduler subclass (or a callable returning a Scheduler) to run, "
        "e.g. mensa.frameworks.examples.hello:HelloScheduler",
    )
    parser.add_argument(
        "--master",
        required=True,
        metavar="HOST:PORT|zk://...",
        help="the master's ZeroMQ address, or zk://HOST:PORT,.../PATH to follow the leading master",
    )
    parser.add_argument(
        "--zk-session-timeout",
        type=float,
        default=DEFAULT_ZK_SESSION_TIMEOUT,
        metavar="SECONDS",
        help=f"ZooKeeper session timeout with a zk:// master (default: {DEFAULT_ZK_SESSION_TIMEOUT:g})",
    )
    parser.add_argument("--name", help="framework name (default: the class name)")
    parser.add_argument(
        "--user", default="", help="user to run tasks as (default: the current user)"
    )
    parser.add_argument("--role", default="*", help='role to receive offers for (default: "*")')
    parser.add_argument(
        "--failover-timeout",
        type=float,
        default=DEFAULT_FAILOVER_TIMEOUT,
        metavar="SECONDS",
        help="how long the master keeps the tasks of a disconnected framework before killing "
        f"them (default: {DEFAULT_FAILOVER_TIMEOUT:g}, 7 days)",
    )
    parser.add_argument("--principal", default="", help="principal to authenticate as")
    parser.add_argument(
        "--framework-id", default="", help="re-subscribe as this framework (failover)"
    )
    parser.add_argument(
        "--framework-id-file",
        metavar="PATH",
        help="keep the framework id here: a restart re-subscribes with it and takes the tasks "
        "over; SIGINT/SIGTERM then leave the tasks running (failover) instead of tearing down",
    )
    parser.add_argument(
        "--checkpoint", action="store_true", help="agents checkpoint this framework's tasks"
    )
    acks = parser.add_mutually_exclusive_group()
    acks.add_argument(
        "--implicit-acks",
        dest="implicit_acks",
        action="store_true",
        default=True,
        help="the driver acknowledges status updates after status_update returns (default)",
    )
    acks.add_argument(
        "--explicit-acks",
        dest="implicit_acks",
        action="store_false",
        help="the scheduler calls driver.acknowledge_status_update itself",
    )

    parser.add_argument(
        "--no-auto-reconcile",
        dest="auto_reconcile",
        action="store_false",
        default=True,
        help="do not reconcile the framework's tasks after re-subscribing or failing over "
        "(by default the driver does, as the Mesos reconciliation algorithm says)",
    )


def load_scheduler(target: str) -> Scheduler:
    """Imports ``MODULE:NAME`` and returns ``NAME()``; raises TargetError saying what is wrong."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"target {target!r} is not MODULE:CLASS")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(obj, Scheduler):
        return obj
    if not callable(obj):
        raise TargetError(f"{target!r} is not a Scheduler class or a callable returning one")
    if isinstance(obj, type) and not issubclass(obj, Scheduler):
        raise TargetError(f"{target!r} is a class but not a subclass of mensa.frameworks.Scheduler")
    try:
        scheduler = obj()
    except Exception as exc:
        raise TargetError(f"{target}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(scheduler, Scheduler):
        raise TargetError(f"{target}() returned {type(scheduler).__name__}, not a Scheduler")
    return scheduler


def framework_info(args: argparse.Namespace, scheduler: Scheduler) -> mensa_pb2.FrameworkInfo:
    """Returns the FrameworkInfo the flags describe (user and hostname are filled by the driver)."""
    info = mensa_pb2.FrameworkInfo(
        name=args.name or type(scheduler).__name__,
        user=args.user or "",
        role=args.role,
        failover_timeout=args.failover_timeout,
        checkpoint=args.checkpoint,
    )
    if args.principal:
        info.principal = args.principal
    if args.framework_id:
        info.id.value = args.framework_id
    return info


def run(args: argparse.Namespace) -> int:
    """Runs the scheduler until it stops (0), aborts (1), or the target is bad (2)."""
    configure_logging(
        getattr(args, "log_format", "console"),
        getattr(args, "log_level", "info"),
        component="scheduler",
    )
    id_file = getattr(args, "framework_id_file", None)
    try:
        scheduler = load_scheduler(args.target)
        driver = SchedulerDriver(
            scheduler,
            framework_info(args, scheduler),
            args.master,
            zk_session_timeout=getattr(args, "zk_session_timeout", DEFAULT_ZK_SESSION_TIMEOUT),
            framework_id_file=id_file,
            implicit_acknowledgements=args.implicit_acks,
            auto_reconcile=getattr(args, "auto_reconcile", True),
        )
    except ValueError as exc:
        print(f"mensa scheduler run: {exc}", file=sys.stderr)
        return 2
    failover = bool(id_file)
    restore = _on_signals(lambda signum: _stop(driver, signum, failover))
    try:
        status = driver.run()
    finally:
        restore()
    log.info("scheduler_exited", status=status.value, framework_id=driver.framework_id)
    return 1 if status is DriverStatus.ABORTED else 0


def _stop(driver: SchedulerDriver, signum: int, failover: bool) -> None:
    log.info("signal_received", signal=signal.Signals(signum).name, failover=failover)
    driver.stop(failover=failover)


def _on_signals(handler: Callable[[int], None]) -> Callable[[], None]:
    """Routes SIGINT/SIGTERM to ``handler`` (main thread only); returns what undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def main(argv: list[str] | None = None) -> int:
    """``python -m mensa.frameworks.runner``: the same command without the mensa CLI."""
    parser = argparse.ArgumentParser(
        prog="mensa scheduler run", description="Runs a Mensa Scheduler class."
    )
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="console")
    parser.add_argument("--log-level", default="info")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
