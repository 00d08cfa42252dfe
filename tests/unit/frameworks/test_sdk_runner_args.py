"""frameworks.runner: flags -> FrameworkInfo, and MODULE:CLASS -> a Scheduler (or a clear error)."""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Iterator

import pytest

from mensa.frameworks import Scheduler
from mensa.frameworks.examples.hello import HelloScheduler
from mensa.frameworks.runner import TargetError, add_arguments, framework_info, load_scheduler


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def plugin() -> Iterator[types.ModuleType]:
    """A module with a few targets, importable as ``sdk_runner_plugin``."""
    module = types.ModuleType("sdk_runner_plugin")

    class Good(Scheduler):
        pass

    class Broken(Scheduler):
        def __init__(self) -> None:
            raise RuntimeError("needs a config file")

    class NotAScheduler:
        pass

    module.Good = Good  # type: ignore[attr-defined]
    module.Broken = Broken  # type: ignore[attr-defined]
    module.NotAScheduler = NotAScheduler  # type: ignore[attr-defined]
    module.factory = lambda: Good()  # type: ignore[attr-defined]  # noqa: PLW0108
    module.bad_factory = lambda: 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_defaults_build_a_framework_info_named_after_the_class() -> None:
    args = parse("mensa.frameworks.examples.hello:HelloScheduler", "--master", "127.0.0.1:5050")
    assert args.implicit_acks is True
    info = framework_info(args, HelloScheduler())
    assert (info.name, info.role, info.failover_timeout, info.checkpoint) == (
        "HelloScheduler", "*", 7 * 24 * 3600.0, False
    )  # fmt: skip
    assert not info.HasField("id") and not info.principal
    assert args.framework_id_file is None and args.zk_session_timeout == 10.0


def test_zookeeper_and_failover_flags() -> None:
    args = parse(
        "m:C", "--master", "zk://h1:2181,h2:2181/mensa", "--zk-session-timeout", "2.5",
        "--framework-id-file", "/var/lib/fw/id", "--failover-timeout", "0",
    )  # fmt: skip
    assert args.master == "zk://h1:2181,h2:2181/mensa" and args.zk_session_timeout == 2.5
    assert args.framework_id_file == "/var/lib/fw/id"
    info = framework_info(args, Scheduler())
    assert info.HasField("failover_timeout") and info.failover_timeout == 0.0  # kept, not 7 days


def test_flags_build_the_framework_info() -> None:
    args = parse(
        "m:C", "--master", "h:1", "--name", "n", "--user", "u", "--role", "dev",
        "--failover-timeout", "600", "--principal", "p", "--checkpoint", "--explicit-acks",
        "--framework-id", "fw-3",
    )  # fmt: skip
    assert args.implicit_acks is False
    info = framework_info(args, Scheduler())
    assert (info.name, info.user, info.role, info.principal) == ("n", "u", "dev", "p")
    assert info.failover_timeout == 600.0 and info.checkpoint and info.id.value == "fw-3"


def test_auto_reconcile_is_on_unless_turned_off() -> None:
    assert parse("m:C", "--master", "h:1").auto_reconcile is True
    assert parse("m:C", "--master", "h:1", "--no-auto-reconcile").auto_reconcile is False


def test_master_is_required() -> None:
    with pytest.raises(SystemExit):
        parse("m:C")


def test_loads_a_class_or_a_factory(plugin: types.ModuleType) -> None:
    assert isinstance(load_scheduler("sdk_runner_plugin:Good"), plugin.Good)
    assert isinstance(load_scheduler("sdk_runner_plugin:factory"), plugin.Good)
    assert isinstance(
        load_scheduler("mensa.frameworks.examples.hello:HelloScheduler"), HelloScheduler
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("sdk_runner_plugin", "is not MODULE:CLASS"),
        (":Good", "is not MODULE:CLASS"),
        ("sdk_runner_plugin_missing:Good", "cannot import 'sdk_runner_plugin_missing'"),
        ("sdk_runner_plugin:Missing", "has no attribute 'Missing'"),
        ("sdk_runner_plugin:NotAScheduler", "not a subclass of mensa.frameworks.Scheduler"),
        ("sdk_runner_plugin:Broken", "RuntimeError: needs a config file"),
        ("sdk_runner_plugin:bad_factory", "returned int, not a Scheduler"),
    ],
)
def test_bad_targets_say_what_is_wrong(plugin: types.ModuleType, target: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        load_scheduler(target)
