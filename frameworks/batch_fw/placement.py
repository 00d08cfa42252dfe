"""Where a batch task may go: constraints, resources carved from offers, the TaskInfo (pure).

``OfferView`` reads what placement needs from an Offer once (hostname, attributes as strings,
free resources). ``matches`` checks placement constraints: IS/EQ (equal; numbers compare as
numbers), LIKE and UNLIKE (``re.fullmatch`` of the value; UNLIKE also accepts an agent without
the attribute), on ``hostname`` or an agent attribute. ``carve`` takes a task's cpus/mem/disk/
gpus out of an offer, reserved resources (for the offer's role) first. ``task_info`` builds the
TaskInfo the agent runs. ``why_unplaced`` says why no offer seen could take a task.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mensa.frameworks.batch_fw.jobs import Constraint, JobSpec, RunSpec
from mensa.proto import mensa_pb2
from mensa.proto.resources import UNRESERVED, ResourceError, Resources

NEEDS = ("cpus", "mem", "disk", "gpus")


@dataclass(frozen=True, slots=True)
class OfferView:
    """What placement reads from an offer (or remembers of an agent's latest offer)."""

    agent_id: str
    hostname: str
    attributes: tuple[tuple[str, str], ...]
    free: Resources
    role: str | None  # the role the offer was allocated to (allocation_info), if any

    @staticmethod
    def of(offer: mensa_pb2.Offer) -> OfferView:
        """Reads an offer; raises ResourceError when its resources are malformed."""
        role = offer.allocation_info.role if offer.HasField("allocation_info") else None
        return OfferView(offer.agent_id.value, offer.hostname, attribute_strings(offer.attributes),
                         Resources.from_proto(offer.resources), role or None)

    def attribute(self, name: str) -> str | None:
        if name == "hostname":
            return self.hostname
        for key, value in self.attributes:
            if key == name:
                return value
        return None


def fmt_number(value: float) -> str:
    """A number as text, exactly and without a needless ".0": "3", "2.5", "0.1234567" (agent
    attributes for constraints; seconds and amounts in the reasons the API shows)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def attribute_strings(attributes: Iterable[mensa_pb2.Attribute]) -> tuple[tuple[str, str], ...]:
    """Agent attributes as (name, text): text as is, scalars as numbers ("3", "2.5"), ranges as
    "[1-2,5-6]", sets as "{a,b}"."""
    out: list[tuple[str, str]] = []
    for a in attributes:
        if a.type == mensa_pb2.Value.SCALAR:
            out.append((a.name, fmt_number(a.scalar.value)))
        elif a.type == mensa_pb2.Value.RANGES:
            out.append((a.name, "[" + ",".join(f"{r.begin}-{r.end}" for r in a.ranges.range) + "]"))
        elif a.type == mensa_pb2.Value.SET:
            out.append((a.name, "{" + ",".join(a.set.item) + "}"))
        else:
            out.append((a.name, a.text.value))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _equal(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    try:
        return float(expected) == float(actual)
    except ValueError:
        return False


def satisfies(constraint: Constraint, view: OfferView) -> bool:
    """True when the offer's agent satisfies one constraint."""
    actual = view.attribute(constraint.attribute)
    if constraint.operator == "UNLIKE":
        return actual is None or _regex(constraint.value).fullmatch(actual) is None
    if actual is None:
        return False
    if constraint.operator == "LIKE":
        return _regex(constraint.value).fullmatch(actual) is not None
    return _equal(constraint.value, actual)  # IS, EQ


def matches(constraints: Iterable[Constraint], view: OfferView) -> bool:
    """True when the offer's agent satisfies every constraint."""
    return all(satisfies(c, view) for c in constraints)


def needs(run: RunSpec) -> dict[str, float]:
    """What one task of the run needs: cpus, mem, and disk/gpus when asked for."""
    out = {"cpus": run.cpus, "mem": run.mem}
    if run.disk > 0:
        out["disk"] = run.disk
    if run.gpus > 0:
        out["gpus"] = run.gpus
    return out


def carve(free: Resources, need: dict[str, float]) -> Resources | None:
    """Returns the resources a task needing ``need`` takes from ``free`` (reserved roles first,
    then unreserved), or None when they do not fit."""
    taken = Resources.empty()
    roles = sorted(free.roles(), key=lambda r: (r == UNRESERVED, r))
    for name, amount in need.items():
        left = round(amount * 1000)
        for role in roles:
            if left <= 0:
                break
            have = round(free.filter_roles((role,)).scalar(name) * 1000)
            use = min(left, have)
            if use > 0:
                try:
                    taken = taken + Resources.scalars(role=role, **{name: use / 1000})
                except ResourceError:
                    return None
                left -= use
        if left > 0:
            return None
    return taken


def task_info(spec: JobSpec, run_id: str, index: int, task_id: str, view: OfferView,
              resources: Resources) -> mensa_pb2.TaskInfo:
    """The TaskInfo for slot ``index`` of run ``run_id``: cmd as a shell command, args as an
    argv (shell=false), a docker image as a DOCKER container; the job's env plus MENSA_JOB_ID,
    MENSA_RUN_ID, MENSA_TASK_INDEX and MENSA_TASK_COUNT; the kill grace period."""
    run = spec.run
    info = mensa_pb2.TaskInfo(name=spec.id)
    info.task_id.value = task_id
    info.agent_id.value = view.agent_id
    info.resources.extend(resources.to_proto(view.role))
    command = info.command
    if run.cmd is not None:
        command.value = run.cmd
        command.shell = True
    elif run.args is not None:
        command.shell = False
        command.value = run.args[0]
        command.arguments.extend(run.args)
    else:
        command.shell = False  # the image's own entrypoint and command
    if run.user:
        command.user = run.user
    env = [*run.env, ("MENSA_JOB_ID", spec.id), ("MENSA_RUN_ID", run_id),
           ("MENSA_TASK_INDEX", str(index)), ("MENSA_TASK_COUNT", str(spec.completions))]
    for name, value in env:
        command.environment.variables.add(name=name, value=value)
    if run.docker is not None:
        info.container.type = mensa_pb2.ContainerInfo.DOCKER
        info.container.docker.image = run.docker.image
        if run.docker.force_pull_image:
            info.container.docker.force_pull_image = True
    if run.task_kill_grace_period_seconds is not None:
        info.kill_policy.grace_period.nanoseconds = int(run.task_kill_grace_period_seconds * 1e9)
    for key, value in (*spec.labels, ("mensa.job", spec.id), ("mensa.run", run_id),
                       ("mensa.index", str(index))):
        info.labels.labels.add(key=key, value=value)
    return info


def _amount(value: float) -> str:
    return fmt_number(round(value, 3))


def why_unplaced(run: RunSpec, seen: Iterable[OfferView]) -> str:
    """Says why none of the offers ``seen`` (each agent's latest) can take a task of ``run``."""
    views = list(seen)
    if not views:
        return "waiting for offers (none received yet)"
    eligible = [v for v in views if matches(run.constraints, v)]
    if not eligible:
        text = ", ".join(str(c) for c in run.constraints)
        return f"no agent seen matches the placement constraints ({text}); {len(views)} agents seen"
    need = needs(run)
    short: list[str] = []
    for name, amount in need.items():
        largest = max(v.free.scalar(name) for v in eligible)
        if amount > largest + 1e-9:
            short.append(f"needs {name} {_amount(amount)} but the largest offer seen had {_amount(largest)}")
    if short:
        return "; ".join(short)
    wanted = ", ".join(f"{n} {_amount(a)}" for n, a in need.items())
    return f"waiting for an offer with enough free resources ({wanted})"
