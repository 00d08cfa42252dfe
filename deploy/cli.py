"""The ``mensa`` command: one entry point for every component and tool.

    mensa master --work-dir DIR [--port 5050] [--http-port 5051] ...
    mensa agent --master HOST:PORT --work-dir DIR [--resources ...] ...
    mensa scheduler run MODULE:CLASS --master HOST:PORT
    mensa state --master HOST:PORT [--json]
    mensa agents|frameworks --master HOST:PORT [--json]
    mensa tasks [--state RUNNING,...] [--framework ID|NAME] [--agent ID|HOSTNAME] [--completed]
    mensa top --master HOST:PORT     # a live view of usage, frameworks, agents and tasks
    mensa logs TASK_ID [--stderr] [--follow] --master HOST:PORT
    mensa local                      # a whole local cluster with the example scheduler
    mensa batch --master HOST:PORT --work-dir DIR [--zk zk://...] [--http-port 9000]
    mensa job run|submit|list|runs|logs|stop ...   # batch jobs, through the batch framework
    mensa service --master HOST:PORT --work-dir DIR [--zk zk://...] [--http-port 8080]
    mensa app deploy|list|show|scale|restart|rm|tasks ...   # apps, through the service framework
    mensa deployments                # deployments under way in the service framework
    mensa quota set|get|rm ...       # operator endpoints: quota, weights, reservations
    mensa weights set|get ...
    mensa reserve|unreserve AGENT_ID RESOURCES
    mensa bench launch               # the launch benchmark
    mensa bench failover             # the master failover benchmark
    mensa bench allocator            # the allocator benchmark
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import import_module

# (command, module, help); each module has add_arguments(parser) and run(args) -> int.
COMMANDS: list[tuple[str, str, str]] = [
    ("master", "mensa.master.main", "run a master"),
    ("agent", "mensa.agent.main", "run an agent"),
    ("state", "mensa.deploy.state_cli", "print a cluster's agents, frameworks and tasks"),
    ("agents", "mensa.deploy.state_cli", "list agents: resources used/total, tasks, attributes"),
    ("frameworks", "mensa.deploy.state_cli", "list frameworks: roles, tasks, resources used, dominant share"),
    ("tasks", "mensa.deploy.state_cli", "list tasks (filter by --state, --framework, --agent)"),
    ("top", "mensa.deploy.top_cli", "a live, refreshing view of cluster usage, frameworks, agents and tasks"),
    ("logs", "mensa.deploy.logs_cli", "print a task's stdout or stderr (--follow to stream it)"),
    ("local", "mensa.deploy.local", "run a local cluster (master, agents, example scheduler)"),
    ("batch", "mensa.frameworks.batch_fw.main",
     "run the batch job framework (Metronome-style /v1/jobs REST API)"),
    ("service", "mensa.frameworks.service_fw.main",
     "run the service framework (Marathon-style /v2 REST API)"),
    ("deployments", "mensa.deploy.app_cli", "list the service framework's deployments: apps, step, actions"),
    ("quota", "mensa.deploy.operator_cli", "set, get or remove a role's quota"),
    ("weights", "mensa.deploy.operator_cli", "set or get role weights"),
    ("reserve", "mensa.deploy.operator_cli", "reserve an agent's free resources for a role"),
    ("unreserve", "mensa.deploy.operator_cli", "return dynamically reserved resources to the pool"),
]
NESTED: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "scheduler": ("run framework schedulers", [
        ("run", "mensa.frameworks.runner", "run a Scheduler class: mensa scheduler run MODULE:CLASS"),
    ]),
    "job": ("batch jobs, through the batch framework's REST API", [
        ("run", "mensa.deploy.job_cli", "run a command once as a job, show its progress and output"),
        ("submit", "mensa.deploy.job_cli", "create or replace jobs from a JSON (or YAML) file"),
        ("list", "mensa.deploy.job_cli", "list jobs with their schedules and latest runs"),
        ("runs", "mensa.deploy.job_cli", "list a job's active and finished runs"),
        ("logs", "mensa.deploy.job_cli", "print the output of a run's tasks"),
        ("stop", "mensa.deploy.job_cli", "stop a run (kills its tasks)"),
    ]),
    "app": ("long-running apps, through the service framework's REST API", [
        ("deploy", "mensa.deploy.app_cli", "create or update apps from a JSON (or YAML) file, follow it"),
        ("list", "mensa.deploy.app_cli", "list apps: instances running/healthy/wanted, resources"),
        ("show", "mensa.deploy.app_cli", "show an app: state, deployments, last failure, tasks, definition"),
        ("scale", "mensa.deploy.app_cli", "change how many instances an app runs, follow the deployment"),
        ("restart", "mensa.deploy.app_cli", "replace every instance of an app (rolling), follow it"),
        ("rm", "mensa.deploy.app_cli", "remove an app (kills its tasks)"),
        ("tasks", "mensa.deploy.app_cli", "list an app's tasks: host, ports, state, health"),
    ]),
    "bench": ("benchmarks (print figures)", [
        ("launch", "mensa.bench.launch", "launch trivial tasks through the SDK and time them"),
        ("containerizers", "mensa.bench.containerizers",
         "launch to RUNNING for tasks in each containerizer on one agent"),
        ("allocator", "mensa.bench.allocator_bench",
         "seconds per allocation pass over agents/frameworks, beside Mesos 1.8's"),
        ("batch", "mensa.bench.batch", "the batch framework: runs/s through its REST API, cron lateness"),
        ("service", "mensa.bench.service",
         "the service framework: POST of a 500-instance app to all RUNNING, GET /v2/apps latency"),
        ("failover", "mensa.bench.failover",
         "SIGKILL the leading master (3 masters, 3-node ZooKeeper) and time the failover"),
    ]),
}


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-format", choices=("console", "json"), default="console",
                       help="console (readable) or json (one object per line)")
    group.add_argument("--log-level", default="info", help="debug, info, warning or error")


def _add(sub: argparse._SubParsersAction, name: str, module: str, help_: str,
         load: bool) -> None:
    parser = sub.add_parser(name, help=help_, description=help_)
    if load:
        import_module(module).add_arguments(parser)
    _common(parser)
    parser.set_defaults(_module=module)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. With ``argv``, only the module of the command it names is
    imported (for its flags), so ``mensa master`` does not load the batch framework, and a
    broken command cannot break the others; without, every command's flags are loaded."""
    words = [a for a in argv if not a.startswith("-")][:2] if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="mensa",
        description="Mensa: a two-level, offer-based cluster manager in the family of Apache Mesos.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_ in COMMANDS:
        _add(sub, name, module, help_, load=words is None or words[:1] == [name])
    for group, (help_, commands) in NESTED.items():
        gp = sub.add_parser(group, help=help_, description=help_)
        gsub = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        for name, module, sub_help in commands:
            _add(gsub, name, module, sub_help, load=words is None or words == [group, name])
        gp.set_defaults(_help=gp.print_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        getattr(args, "_help", parser.print_help)()
        return 2
    run: Callable[[argparse.Namespace], int] = import_module(module).run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
