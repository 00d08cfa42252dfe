"""Where a batch task may go: constraints, resources carved from offers, the TaskInfo (pure).

Offers are read through the shared ``frameworks.placement`` (``OfferView``, ``carve``).
``matches`` checks placement constraints: IS/EQ (equal; numbers compare as
numbers), LIKE and UNLIKE (``re.fullmatch`` of the value; UNLIKE also accepts an agent without
the attribute), on ``hostname`` or an agent attribute. ``task_info`` builds the
TaskInfo the agent runs. ``why_unplaced`` says why no offer seen could take a task.
"""

from __future__ import annotations

from collections.abc import Iterable

from mensa.frameworks.batch_fw.jobs import Constraint, JobSpec, RunSpec
from mensa.frameworks.placement import (
    OfferView,
    attribute_strings,
    carve,
    equal_values,
    fmt_number,
    regex,
)
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

__all__ = ["OfferView", "attribute_strings", "carve", "fmt_number", "matches", "needs", "satisfies",
           "task_info", "why_unplaced"]

NEEDS = ("cpus", "mem", "disk", "gpus")


def satisfies(constraint: Constraint, view: OfferView) -> bool:
    """True when the offer's agent satisfies one constraint."""
    actual = view.attribute(constraint.attribute)
    if constraint.operator == "UNLIKE":
        return actual is None or regex(constraint.value).fullmatch(actual) is None
    if actual is None:
        return False
    if constraint.operator == "LIKE":
        return regex(constraint.value).fullmatch(actual) is not None
    return equal_values(constraint.value, actual)  # IS, EQ


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
        if run.docker is None:
            command.value = run.args[0]  # the executable; arguments are the whole argv
        # With a docker image the args are the container's command (after its entrypoint); the
        # Docker containerizer runs [value, *arguments], so value stays empty there.
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
