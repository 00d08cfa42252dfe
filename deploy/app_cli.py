"""``mensa app ...`` and ``mensa deployments``: long-running apps, through the service framework's
Marathon-style /v2 REST API.

    mensa app deploy FILE [--force] [--no-wait]   # apps as JSON or YAML: one, a list, or {"apps": [...]}
    mensa app list [--json]
    mensa app show ID [--json]
    mensa app scale ID N [--force] [--no-wait]
    mensa app restart ID [--force] [--no-wait]
    mensa app rm ID [--force]
    mensa app tasks ID [--json]
    mensa deployments [--json]

Where the service framework is: ``--service URL`` (or ``--url``); else ``--work-dir DIR``, the
framework's work dir or a ``mensa local`` cluster's (its ``endpoints.json``, or
``service/endpoints.json`` beneath); else ``$MENSA_SERVICE``; else http://127.0.0.1:8080. A
standby's redirect to the leader is followed.

``deploy`` creates each app of the file that does not exist (POST) and replaces the others
(PUT), apps the file's other apps depend on first; what ``app list --json`` adds to a
definition (tasks, counts, version, ...) is left out, so its output deploys back. ``deploy``,
``scale`` and ``restart`` then print a line whenever an app's counts or its deployment's step
change, and each new task failure, until every deployment is over and the apps have their
instances (healthy ones, for apps with health checks): exit 0. They exit 1 when an app
disappears, a deployment ends without its version (cancelled, rolled back, replaced), or
``--timeout`` (600 s) passes; Ctrl-C stops watching (exit 130) and leaves the deployment
going. ``--force`` replaces a deployment in the way (Marathon's ``force=true``). API errors
print the message and each ``path: reason`` on stderr and exit 1; bad flags exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mensa.deploy.app_views import (
    Target,
    Watch,
    app_text,
    apps_table,
    counts,
    definition,
    deployments_table,
    error_text,
    order_for_deploy,
    resolve_id,
    tasks_table,
)
from mensa.deploy.rest_client import CliError, RestClient, Unreachable, read_documents
from mensa.deploy.state_cli import write_stdout

DEFAULT_SERVICE = "http://127.0.0.1:8080"
WATCHING = ("deploy", "scale", "restart")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    name = parser.prog.split()[-1]
    where = parser.add_argument_group("where the service framework is")
    where.add_argument("--service", "--url", dest="service", metavar="URL",
                       help=f"its URL (default: --work-dir's, else $MENSA_SERVICE, else {DEFAULT_SERVICE})")
    where.add_argument("--work-dir", metavar="DIR",
                       help="its work dir, or a mensa local cluster's: read the port from endpoints.json")
    where.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="seconds to wait for each answer (default 10)")
    if name in ("show", "scale", "restart", "rm", "tasks"):
        parser.add_argument("app_id", metavar="ID", help="the app's id, e.g. /shop/web")
    if name == "deploy":
        parser.add_argument("file", metavar="FILE", help="apps as JSON or YAML (.yaml/.yml); - reads stdin")
    if name == "scale":
        parser.add_argument("instances", metavar="N", type=_count, help="how many instances to run")
    if name in ("deploy", "scale", "restart", "rm"):
        parser.add_argument("--force", action="store_true",
                            help="replace a deployment under way for the app (force=true)")
    if name in WATCHING:
        parser.add_argument("--no-wait", action="store_true", help="do not follow the deployment")
        parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                            help="give up following after this long (default 600; the deployment goes on)")
        parser.add_argument("--poll-interval", type=float, default=0.5, metavar="SECONDS",
                            help="seconds between polls (default 0.5)")
    if name in ("list", "show", "tasks", "deployments"):
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(_app_command=name)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


def service_url(flag: str | None, work_dir: str | None, env: dict[str, str]) -> str:
    """Where the service framework answers: ``flag``; else the ``http_port`` in
    ``work_dir/endpoints.json`` (or ``work_dir/service/endpoints.json``, a ``mensa local``
    root); else ``$MENSA_SERVICE``; else the default. Raises CliError for a work dir without
    endpoints."""
    if flag:
        return flag
    if work_dir:
        for path in (Path(work_dir) / "endpoints.json", Path(work_dir) / "service" / "endpoints.json"):
            try:
                endpoints = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot read {path}: {exc}") from None
            if isinstance(endpoints, dict) and endpoints.get("http_port"):
                return f"http://127.0.0.1:{int(endpoints['http_port'])}"
        raise CliError(f"no endpoints.json with an http_port in {work_dir} or {work_dir}/service: is the "
                       "service framework running with that --work-dir?")
    return env.get("MENSA_SERVICE") or DEFAULT_SERVICE


def app_path(app_id: str, suffix: str = "") -> str:
    return "/v2/apps" + urllib.parse.quote(resolve_id(app_id)) + suffix


def _force(args: argparse.Namespace) -> str:
    return "?force=true" if args.force else ""


def change_of(answer: Any) -> tuple[str | None, str | None]:
    """The deployment id and version a change's answer names: ``{"deploymentId", "version"}``
    (PUT, restart, DELETE, scale), or an app with ``"deployments": [{"id"}]`` (POST)."""
    if not isinstance(answer, dict):
        return None, None
    if answer.get("deploymentId"):
        return str(answer["deploymentId"]), answer.get("version")
    deployments = answer.get("deployments") or []
    first = deployments[0].get("id") if deployments and isinstance(deployments[0], dict) else None
    return (str(first) if first else None), answer.get("version")


def _started(verb: str, app_id: str, deployment_id: str | None, version: str | None) -> Target:
    by = f"deployment {deployment_id}" if deployment_id else "no deployment"
    write_stdout(f"{verb} {app_id}: {by}" + (f", version {version}" if version else ""))
    return Target(app_id, deployment_id, version)


# -- following a change -------------------------------------------------------------------------------

def follow(client: RestClient, targets: list[Target], timeout: float, interval: float, *,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> int:
    """Polls ``/v2/deployments`` and each target app until ``Watch`` says it is over; returns
    the exit code. The framework going away for a while (a restart, a failover) is waited out
    until the timeout; Ctrl-C stops following (130)."""
    watch = Watch(targets, started=clock(), timeout=timeout)
    away = False
    try:
        while True:
            try:
                deployments = client.call("GET", "/v2/deployments") or []
                apps = {}
                for target in targets:
                    answer = client.call("GET", app_path(target.app_id, "?embed=apps.counts"
                                                          "&embed=apps.lastTaskFailure"), ok_404=True)
                    apps[target.app_id] = None if answer is None else answer.get("app", answer)
            except Unreachable as exc:
                if not away:
                    print(f"{exc}; trying again", file=sys.stderr)
                    away = True
                verdict = watch.expired(clock())
            else:
                away = False
                verdict = watch.observe(deployments, apps, clock())
            if verdict is not None:
                for line in verdict.lines:
                    write_stdout(line)
                if verdict.done:
                    if verdict.code == 0:
                        write_stdout(verdict.reason)
                    else:
                        print(verdict.reason, file=sys.stderr)
                    return verdict.code
            sleep(interval)
    except KeyboardInterrupt:
        print("stopped following; the deployment goes on (mensa deployments shows it)", file=sys.stderr)
        return 130


def _follow(client: RestClient, args: argparse.Namespace, targets: list[Target]) -> int:
    if args.no_wait or not targets:
        return 0
    return follow(client, targets, args.timeout, args.poll_interval)


# -- the commands -------------------------------------------------------------------------------------

def cmd_deploy(client: RestClient, args: argparse.Namespace) -> int:
    targets = []
    for doc in order_for_deploy(read_documents(args.file, "app")):
        app_id, app = doc["id"], definition(doc)  # what `app list --json` adds is state, not definition
        if client.call("GET", app_path(app_id), ok_404=True) is None:
            deployment_id, version = change_of(client.call("POST", "/v2/apps", app))
            targets.append(_started("creating", app_id, deployment_id, version))
        else:
            deployment_id, version = change_of(client.call("PUT", app_path(app_id, _force(args)), app))
            targets.append(_started("updating", app_id, deployment_id, version))
    return _follow(client, args, targets)


def cmd_scale(client: RestClient, args: argparse.Namespace) -> int:
    app_id = resolve_id(args.app_id)
    answer = client.call("PUT", app_path(app_id, _force(args)), {"instances": args.instances})
    target = _started(f"scaling to {args.instances}", app_id, *change_of(answer))
    return _follow(client, args, [target])


def cmd_restart(client: RestClient, args: argparse.Namespace) -> int:
    app_id = resolve_id(args.app_id)
    answer = client.call("POST", app_path(app_id, "/restart" + _force(args)), {})
    return _follow(client, args, [_started("restarting", app_id, *change_of(answer))])


def cmd_rm(client: RestClient, args: argparse.Namespace) -> int:
    app_id = resolve_id(args.app_id)
    _started("removing", app_id, *change_of(client.call("DELETE", app_path(app_id, _force(args)))))
    return 0


def cmd_list(client: RestClient, args: argparse.Namespace) -> int:
    answer = client.call("GET", "/v2/apps?embed=apps.counts&embed=apps.deployments") or {}
    apps = answer.get("apps", []) if isinstance(answer, dict) else answer
    write_stdout(json.dumps(apps, indent=2) if args.json else apps_table(apps))
    return 0


def _app(client: RestClient, app_id: str, embeds: str) -> dict[str, Any]:
    answer = client.call("GET", app_path(app_id, embeds)) or {}
    app: dict[str, Any] = answer.get("app", answer)
    return app


def cmd_show(client: RestClient, args: argparse.Namespace) -> int:
    app = _app(client, args.app_id, "?embed=apps.tasks&embed=apps.counts&embed=apps.deployments"
                                    "&embed=apps.lastTaskFailure")
    if args.json:
        write_stdout(json.dumps(app, indent=2))
        return 0
    deployments = client.call("GET", "/v2/deployments") or []
    write_stdout(app_text(app, deployments))
    return 0


def cmd_tasks(client: RestClient, args: argparse.Namespace) -> int:
    app = _app(client, args.app_id, "?embed=apps.tasks")
    tasks = app.get("tasks")
    if tasks is None:
        tasks = (client.call("GET", app_path(args.app_id, "/tasks")) or {}).get("tasks", [])
    write_stdout(json.dumps(tasks, indent=2) if args.json else tasks_table(tasks, counts(app).has_checks))
    return 0


def cmd_deployments(client: RestClient, args: argparse.Namespace) -> int:
    deployments = client.call("GET", "/v2/deployments") or []
    write_stdout(json.dumps(deployments, indent=2) if args.json else deployments_table(deployments))
    return 0


COMMANDS = {"deploy": cmd_deploy, "list": cmd_list, "show": cmd_show, "scale": cmd_scale,
            "restart": cmd_restart, "rm": cmd_rm, "tasks": cmd_tasks, "deployments": cmd_deployments}


def run(args: argparse.Namespace) -> int:
    name = args._app_command
    label = "mensa deployments" if name == "deployments" else f"mensa app {name}"
    try:
        url = service_url(args.service, args.work_dir, dict(os.environ))
        client = RestClient(url, args.request_timeout, what="the service framework")
        return COMMANDS[name](client, args)
    except CliError as exc:
        print(f"{label}: {error_text(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
