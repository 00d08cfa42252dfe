"""``mensa quota|weights|reserve|unreserve``: the master's operator endpoints from a shell.

    mensa quota set ml --guarantee "cpus:4;mem:8192" [--limit "cpus:8;mem:16384"] --master M
    mensa quota get [ROLE] --master M
    mensa quota rm ml --master M
    mensa weights set ml=2 eng=1.5 --master M
    mensa weights get --master M
    mensa reserve AGENT_ID "cpus(ml):2;mem(ml):1024" --master M
    mensa unreserve AGENT_ID "cpus(ml):2;mem(ml):1024" --master M

``--master`` is ``HOST:PORT`` (the master's ZeroMQ port; a standby's answer leads to the
leader), ``zk://...`` or ``http://HOST:HTTP_PORT``. Exit status: 0 done, 1 refused by the master
(its reason is printed), 2 bad arguments or no master to ask.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mensa.deploy.runtime import configure_logging
from mensa.deploy.state_cli import leader_http, quiet_kazoo
from mensa.proto.detector import MasterUnreachable


def _master(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", default="127.0.0.1:5050",
                        help="HOST:PORT, zk://HOSTS/PATH or http://HOST:HTTP_PORT (default 127.0.0.1:5050)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the master")


def add_quota_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("set", help="set a role's quota guarantee (and limit)")
    p.add_argument("role")
    p.add_argument("--guarantee", default="", help='resources, e.g. "cpus:4;mem:8192"')
    p.add_argument("--limit", help="the most the role may hold, e.g. \"cpus:8;mem:16384\"")
    p.add_argument("--force", action="store_true", help="allow a guarantee beyond the cluster's resources")
    _master(p)
    p = sub.add_parser("get", help="print quotas")
    p.add_argument("role", nargs="?", default="")
    _master(p)
    p = sub.add_parser("rm", help="remove a role's quota")
    p.add_argument("role")
    _master(p)


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("set", help="set role weights: ROLE=WEIGHT ...")
    p.add_argument("weights", nargs="+", metavar="ROLE=WEIGHT")
    _master(p)
    p = sub.add_parser("get", help="print role weights")
    _master(p)


def add_reservation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent_id")
    parser.add_argument("resources", help='reserved resources, e.g. "cpus(ml):2;mem(ml):1024"')
    _master(parser)


# The CLI registers each command with one add_arguments; these dispatch on the command name.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    name = parser.prog.split()[-1]
    {"quota": add_quota_arguments, "weights": add_weights_arguments}.get(
        name, add_reservation_arguments)(parser)
    parser.set_defaults(_command=name)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level, component="cli")
    quiet_kazoo()
    try:
        base = leader_http(args.master, args.timeout)
        return _run(args, base)
    except (MasterUnreachable, ValueError) as exc:
        print(f"mensa {args._command}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, base: str) -> int:
    command = args._command
    if command == "quota":
        if args.action == "get":
            status, body = _request("GET", f"{base}/quota", timeout=args.timeout)
            infos = [i for i in body.get("infos", []) if not args.role or i["role"] == args.role]
            for info in infos:
                limit = _text(info["limit"]) if "limit" in info else "-"
                print(f"{info['role']}\tguarantee {_text(info['guarantee']) or '-'}\tlimit {limit}")
            return 0 if status == 200 else 1
        if args.action == "set":
            payload: dict[str, Any] = {"role": args.role, "guarantee": args.guarantee}
            if args.limit is not None:
                payload["limit"] = args.limit
            if args.force:
                payload["force"] = True
            return _report(*_request("POST", f"{base}/quota", payload, timeout=args.timeout))
        return _report(*_request("DELETE", f"{base}/quota/{urllib.parse.quote(args.role, safe='')}",
                                 timeout=args.timeout))
    if command == "weights":
        if args.action == "get":
            status, body = _request("GET", f"{base}/weights", timeout=args.timeout)
            for item in body if isinstance(body, list) else []:
                print(f"{item['role']}\t{item['weight']:g}")
            return 0 if status == 200 else 1
        weights = []
        for item in args.weights:
            role, sep, value = item.partition("=")
            try:
                weights.append({"role": role, "weight": float(value)})
            except ValueError:
                print(f"mensa weights: {item!r} is not ROLE=WEIGHT", file=sys.stderr)
                return 2
            if not sep:
                print(f"mensa weights: {item!r} is not ROLE=WEIGHT", file=sys.stderr)
                return 2
        return _report(*_request("PUT", f"{base}/weights", weights, timeout=args.timeout))
    form = urllib.parse.urlencode({"agentId": args.agent_id, "resources": args.resources}).encode()
    return _report(*_request("POST", f"{base}/{command}", form=form, timeout=args.timeout))


def _request(method: str, url: str, payload: Any = None, *, form: bytes | None = None,
             timeout: float) -> tuple[int, Any]:
    data = form if form is not None else (json.dumps(payload).encode() if payload is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if form is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    elif data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except json.JSONDecodeError:
            return exc.code, {"error": exc.reason}


def _report(status: int, body: Any) -> int:
    if 200 <= status < 300:
        return 0
    reason = body.get("error") if isinstance(body, dict) else body
    print(f"refused ({status}): {reason}", file=sys.stderr)
    return 1


def _text(resources: list[dict[str, Any]]) -> str:
    parts = []
    for r in resources:
        role = next((x.get("role") for x in reversed(r.get("reservations", [])) if x.get("role")), None)
        name = f"{r['name']}({role})" if role else r["name"]
        parts.append(f"{name}:{r.get('scalar', {}).get('value', 0):g}")
    return ";".join(parts)
