"""Matching one offer against one waiting app: how many instances it takes, and why not more (pure).

``match_offer`` places up to ``wanted`` new instances of an app on one offer, one after the
other, each taking its share of the offer:

* **Roles.** The app runs as ``spec.role`` or else the framework's role. An offer allocated to
  another role is of no use to it. Of the offer's resources it may use the unreserved ones
  (``*``) and those reserved for its role; ``acceptedResourceRoles``, when set, narrows that
  further (``*`` there means unreserved).
* **Scalars.** cpus and mem, and disk and gpus when asked for, carved from the usable resources,
  reserved ones first (``frameworks.placement.carve``).
* **Ports.** One host port per port definition (or BRIDGE port mapping): a required port (with
  ``requirePorts``, or a mapping's fixed host port) exactly, any other the lowest free offered
  one. No port is taken twice, within an instance or across the instances of one offer.
* **Constraints.** Checked before each instance against the app's active instances and those
  already placed on this offer (``constraints.Tally``: each check costs O(constraints), so 500
  instances on a few offers stay linear).

The result holds the TaskInfos (with their host ports and resources), the offer with what they
took removed (``left``: the engine tries the next waiting app on it), and, when fewer than
``wanted`` were placed, why the next one did not fit, in Marathon's vocabulary (``REASONS``:
``UnfulfilledRole``, ``UnfulfilledConstraint``, ``InsufficientCpus``, ``InsufficientMemory``,
``InsufficientDisk``, ``InsufficientGpus``, ``InsufficientPorts``) and in words.

Usage::

    result = match_offer(spec, version, OfferView.of(offer), placed, wanted=3,
                         new_task_id=lambda: f"{app_key(spec.id)}.{uuid4().hex}", role="*")
    for p in result.placed: ...        # p.task (TaskInfo), p.host_ports
    result.reasons, result.message     # ("InsufficientCpus",), "not enough cpus: ..."
    view = result.left                 # what remains of the offer
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mensa.frameworks.placement import OfferView, carve, fmt_number
from mensa.frameworks.service_fw.apps import AppSpec
from mensa.frameworks.service_fw.constraints import Located, Placement, Tally
from mensa.frameworks.service_fw.tasks import task_info
from mensa.proto import mensa_pb2
from mensa.proto.resources import UNRESERVED, Resources

__all__ = ["INSUFFICIENT", "INSUFFICIENT_PORTS", "REASONS", "UNFULFILLED_CONSTRAINT", "UNFULFILLED_ROLE",
           "MatchResult", "PlacedTask", "Placement", "match_offer", "needs", "pick_ports",
           "usable_roles"]

UNFULFILLED_ROLE = "UnfulfilledRole"
UNFULFILLED_CONSTRAINT = "UnfulfilledConstraint"
INSUFFICIENT_PORTS = "InsufficientPorts"
# Marathon's reason per scalar resource.
INSUFFICIENT = {"cpus": "InsufficientCpus", "mem": "InsufficientMemory", "disk": "InsufficientDisk",
                "gpus": "InsufficientGpus"}
# Every reason, in the order a result lists them.
REASONS = (UNFULFILLED_ROLE, UNFULFILLED_CONSTRAINT, *INSUFFICIENT.values(), INSUFFICIENT_PORTS)


@dataclass(frozen=True, slots=True)
class PlacedTask:
    """One new instance: the TaskInfo to launch, its host ports in the app's port order, and
    the resources it takes from the offer."""

    task: mensa_pb2.TaskInfo
    host_ports: tuple[int, ...]
    resources: Resources

    @property
    def task_id(self) -> str:
        return self.task.task_id.value


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What one offer gives one app. ``placed``: the new instances (at most ``wanted``);
    ``left``: the offer minus what they took (``left.free`` is the Resources left over);
    ``reasons``/``message``: why one more instance did not fit (Marathon's reason names, in
    ``REASONS`` order, and in words), empty when all ``wanted`` were placed."""

    placed: tuple[PlacedTask, ...]
    left: OfferView
    reasons: tuple[str, ...] = ()
    message: str = ""

    @property
    def agent_id(self) -> str:
        return self.left.agent_id

    @property
    def hostname(self) -> str:
        return self.left.hostname

    @property
    def attributes(self) -> tuple[tuple[str, str], ...]:
        return self.left.attributes


def needs(spec: AppSpec) -> dict[str, float]:
    """The scalars one instance needs: cpus and mem, and disk and gpus when asked for."""
    out = {"cpus": spec.cpus, "mem": spec.mem}
    if spec.disk > 0:
        out["disk"] = spec.disk
    if spec.gpus > 0:
        out["gpus"] = spec.gpus
    return out


def usable_roles(spec: AppSpec, framework_role: str) -> frozenset[str]:
    """The resource roles the app may use: unreserved and its own role, narrowed to
    ``acceptedResourceRoles`` when set."""
    roles = {UNRESERVED, spec.role or framework_role}
    if spec.accepted_resource_roles is not None:
        roles &= set(spec.accepted_resource_roles)
    return frozenset(roles)


def _role_order(resources: Resources) -> list[str]:
    return sorted(resources.roles(), key=lambda r: (r == UNRESERVED, r))


def pick_ports(free: Resources, required: Sequence[int]) -> tuple[tuple[int, ...], Resources] | None:
    """Host ports from ``free``'s ``ports`` ranges, one per entry of ``required``: that port
    exactly when non-zero, else the lowest free one (reserved ports first, then unreserved);
    never one port twice. Returns the ports (in ``required`` order) and the ``ports``
    resources they take (with their roles), or None when they cannot all be had."""
    if not required:
        return (), Resources.empty()
    roles = [(role, free.filter_roles((role,)).ranges("ports")) for role in _role_order(free)]
    chosen: dict[int, str] = {}
    for port in required:
        if port == 0:
            continue
        role = next((r for r, ranges in roles if any(b <= port <= e for b, e in ranges)), None)
        if role is None or port in chosen:
            return None
        chosen[port] = role
    out: list[int] = []
    for port in required:
        if port != 0:
            out.append(port)
            continue
        found = _lowest_free(roles, chosen)
        if found is None:
            return None
        chosen[found[0]] = found[1]
        out.append(found[0])
    by_role: dict[str, list[int]] = {}
    for port, role in chosen.items():
        by_role.setdefault(role, []).append(port)
    taken = Resources.empty()
    for role, ports in by_role.items():
        head = "ports" if role == UNRESERVED else f"ports({role})"
        taken = taken + Resources.parse(head + ":[" + ",".join(f"{p}-{p}" for p in ports) + "]")
    return tuple(out), taken


def _lowest_free(roles: Iterable[tuple[str, tuple[tuple[int, int], ...]]],
                 chosen: dict[int, str]) -> tuple[int, str] | None:
    for role, ranges in roles:
        for begin, end in ranges:
            port = begin
            while port <= end and port in chosen:  # at most len(chosen) steps
                port += 1
            if port <= end:
                return port, role
    return None


def _shortages(spec: AppSpec, need: dict[str, float], usable: Resources, everything: Resources,
               role: str) -> list[tuple[str, str]]:
    """(reason, words) for each resource the usable part of the offer lacks; a lack that the
    whole offer would cover is a role problem."""
    out: list[tuple[str, str]] = []
    for name, amount in need.items():
        have = usable.scalar(name)
        if round(have * 1000) >= round(amount * 1000):
            continue
        if round(everything.scalar(name) * 1000) >= round(amount * 1000):
            out.append((UNFULFILLED_ROLE, f"the offer's {name} are reserved for roles the app may not "
                        f"use (it uses {_roles_text(spec, role)})"))
        else:
            out.append((INSUFFICIENT[name], f"not enough {name}: needs {fmt_number(round(amount, 3))}, "
                        f"the offer has {fmt_number(round(have, 3))}"))
    return out


def _roles_text(spec: AppSpec, role: str) -> str:
    return ", ".join(sorted(usable_roles(spec, role)))


def _ports_problem(spec: AppSpec, usable: Resources, everything: Resources,
                   role: str) -> tuple[str, str]:
    required = spec.required_host_ports
    if pick_ports(everything, required) is not None:
        return (UNFULFILLED_ROLE, f"the offer's ports are reserved for roles the app may not use "
                f"(it uses {_roles_text(spec, role)})")
    fixed = [p for p in required if p]
    free_count = usable.range_count("ports")
    if fixed:
        ranges = usable.ranges("ports")
        missing = [p for p in fixed if not any(b <= p <= e for b, e in ranges)]
        if missing:
            return (INSUFFICIENT_PORTS, "host port(s) " + ", ".join(map(str, missing))
                    + " not offered")
    return (INSUFFICIENT_PORTS, f"not enough ports: needs {len(required)}, the offer has {free_count}")


def _reject(view: OfferView, placed: list[PlacedTask], problems: list[tuple[str, str]]) -> MatchResult:
    if not problems:  # carve refused amounts it could not express (never for a valid spec)
        problems = [("", "the offer's resources could not be divided for this app")]
    reasons = tuple(r for r in REASONS if any(p[0] == r for p in problems))
    return MatchResult(tuple(placed), view, reasons, "; ".join(words for _, words in problems))


def match_offer(spec: AppSpec, version: str, view: OfferView, placed: Sequence[Located], wanted: int,
                new_task_id: Callable[[], str], role: str) -> MatchResult:
    """Places up to ``wanted`` new instances of ``spec`` (configuration ``version``) on the offer
    ``view``, given where the app's active instances run (``placed``) and the framework's
    ``role``; ``new_task_id`` is called once per instance placed. See the module docstring."""
    if wanted <= 0:
        return MatchResult((), view)
    app_role = spec.role or role
    if view.role is not None and view.role != app_role:
        return _reject(view, [], [(UNFULFILLED_ROLE, f"the offer is for role {view.role!r}, "
                                   f"the app runs as {app_role!r}")])
    usable = view.free.filter_roles(usable_roles(spec, role))
    free = view.free
    tally = Tally(spec.constraints, placed) if spec.constraints else None
    need = needs(spec)
    required = spec.required_host_ports
    out: list[PlacedTask] = []
    while len(out) < wanted:
        problems: list[tuple[str, str]] = []
        if tally is not None:
            problem = tally.problem(view)
            if problem is not None:
                problems.append((UNFULFILLED_CONSTRAINT, problem))
        taken = carve(usable, need)
        if taken is None:
            problems.extend(_shortages(spec, need, usable, free, role))
        ports = pick_ports(usable, required)
        if ports is None:
            problems.append(_ports_problem(spec, usable, free, role))
        if problems or taken is None or ports is None:
            return _reject(dataclasses.replace(view, free=free), out, problems)
        host_ports, port_resources = ports
        resources = taken + port_resources
        task = task_info(spec, version, new_task_id(), view, resources, host_ports)
        out.append(PlacedTask(task, host_ports, resources))
        usable = usable - resources
        free = free - resources
        if tally is not None:
            tally.add(view)
    return MatchResult(tuple(out), dataclasses.replace(view, free=free))
