"""The deployment planner of the service framework: what a change does, in what order, and how far
each app may move right now (pure).

Three questions, one function each:

- ``plan``: which actions a change needs and in which steps (Marathon's deployment plan);
- ``restart_decision`` / ``restart_done``: how a rolling restart moves from the instances that
  run now toward ``instances`` healthy ones of the new version, within the upgrade strategy;
- ``scale_decision`` / ``scale_done``: how many instances to start, or which to kill, to reach
  the wanted count.

The decisions are stateless: they look at the app's instances as they are and say what to do
next, so the engine can ask again after every status update, offer or restart of its own and get
an answer consistent with the one before. "Live" instances are those that count toward the app
(``Instance.active``: not terminal, no kill sent); every function filters its input to them.

Usage::

    steps = plan({"/db": None}, {"/db": db}, all_apps={"/db": db, "/web": web})
    # [[StartApplication /db], [ScaleApplication /db]]
    d = restart_decision(spec, version, instances, bool(spec.health_checks))
    for inst in d.kill: ...        # send the kills
    want(d.start)                  # launch this many of ``version`` as offers arrive
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mensa.frameworks.service_fw.apps import AppSpec, needs_restart
from mensa.frameworks.service_fw.deployments import RESTART, SCALE, START, STOP, Action
from mensa.frameworks.service_fw.instances import UNREACHABLE, Instance

YOUNGEST_FIRST = "YOUNGEST_FIRST"
OLDEST_FIRST = "OLDEST_FIRST"
_EPSILON = 1e-9  # 25 * 0.28 is 7.000000000000001 in floating point: 7 after ceil, not 8


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do for one app now: launch ``start`` more instances (of the version asked about)
    and send a kill to each of ``kill`` (in that order)."""

    start: int
    kill: list[Instance]


# -- the plan -----------------------------------------------------------------------------------


def plan(original: Mapping[str, AppSpec | None], target: Mapping[str, AppSpec | None], *,
         all_apps: Mapping[str, AppSpec]) -> list[list[Action]]:
    """Returns the steps of a deployment from ``original`` to ``target`` (app id -> spec, None:
    absent; the affected apps are the keys of both). ``all_apps`` holds every app as it will be
    after the change and gives the dependency graph beyond the affected apps.

    Per app: new -> StartApplication then ScaleApplication; deleted -> StopApplication; changed
    in more than ``instances`` -> RestartApplication; only ``instances`` changed ->
    ScaleApplication; unchanged -> nothing. The steps, empty ones left out:

    1. the stops, dependents before their dependencies (graph: the apps as they were);
    2. one step with every StartApplication (the new apps exist, with no instances yet);
    3. the scales and restarts, an app after every affected app it depends on, directly or
       through unaffected apps (graph: the apps as they will be).

    Apps with no order between them share a step (each goes in the earliest step its
    dependencies allow); actions in a step are sorted by app id. Raises ValueError on a
    dependency cycle among the affected apps (the engine rejects cycles before planning).

    Example: ``/c`` depends on ``/b`` which depends on ``/a``, all new:
    ``[[START a, START b, START c], [SCALE a], [SCALE b], [SCALE c]]``; deleting all three:
    ``[[STOP c], [STOP b], [STOP a]]``.
    """
    stops: list[str] = []
    starts: list[str] = []
    runs: dict[str, str] = {}  # app id -> SCALE or RESTART
    for app_id in sorted(set(original) | set(target)):
        old, new = original.get(app_id), target.get(app_id)
        if new is None:
            if old is not None:
                stops.append(app_id)
        elif old is None:
            starts.append(app_id)
            runs[app_id] = SCALE
        elif needs_restart(old, new):
            runs[app_id] = RESTART
        elif old.instances != new.instances:
            runs[app_id] = SCALE

    before_graph = _graph(all_apps, original)
    after_graph = _graph(all_apps, target)
    stop_reach = {a: _reach(a, before_graph, set(stops)) for a in stops}
    # A stopped app waits for every stopped app that depends on it.
    stop_before = {a: {b for b in stops if a in stop_reach[b]} for a in stops}
    run_before = {a: _reach(a, after_graph, set(runs)) for a in runs}

    steps = [[Action(STOP, a) for a in layer] for layer in _layers(stop_before)]
    if starts:
        steps.append([Action(START, a) for a in starts])
    steps += [[Action(runs[a], a) for a in layer] for layer in _layers(run_before)]
    return steps


def _graph(all_apps: Mapping[str, AppSpec],
           overlay: Mapping[str, AppSpec | None]) -> dict[str, tuple[str, ...]]:
    """App id -> its dependencies: ``all_apps``, with the non-None specs of ``overlay`` on top."""
    graph = {a: s.dependencies for a, s in all_apps.items()}
    graph.update({a: s.dependencies for a, s in overlay.items() if s is not None})
    return graph


def _reach(start: str, graph: Mapping[str, Iterable[str]], among: set[str]) -> set[str]:
    """The apps of ``among`` that ``start`` depends on, directly or through any other app
    (``start`` itself only if it lies on a cycle)."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        app_id = todo.pop()
        if app_id in seen:
            continue
        seen.add(app_id)
        if app_id in among:
            found.add(app_id)
        todo.extend(graph.get(app_id, ()))
    return found


def _layers(before: Mapping[str, set[str]]) -> list[list[str]]:
    """Groups the keys of ``before`` (app -> the apps that must come in an earlier layer) into
    layers: each app in the layer after the latest of its predecessors (longest path), so
    the number of layers is the least possible. Each layer is sorted."""
    level: dict[str, int] = {}

    def level_of(app_id: str, path: tuple[str, ...]) -> int:
        if app_id in level:
            return level[app_id]
        if app_id in path:
            raise ValueError("dependency cycle: " + " -> ".join((*path, app_id)))
        deps = before[app_id]
        value = 1 + max(level_of(d, (*path, app_id)) for d in sorted(deps)) if deps else 0
        level[app_id] = value
        return value

    for app_id in sorted(before):
        level_of(app_id, ())
    layers: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for app_id in sorted(level):
        layers[level[app_id]].append(app_id)
    return layers


# -- which instances go first -------------------------------------------------------------------


def kill_order(instances: Iterable[Instance], kill_selection: str) -> list[Instance]:
    """Returns ``instances`` in the order a scale-down kills them by staging time:
    YOUNGEST_FIRST, the latest ``staged_at`` first; OLDEST_FIRST, the earliest first. Ties go by
    task id. Raises ValueError for any other selection."""
    if kill_selection == YOUNGEST_FIRST:
        return sorted(instances, key=lambda i: (-i.staged_at, i.task_id))
    if kill_selection == OLDEST_FIRST:
        return sorted(instances, key=lambda i: (i.staged_at, i.task_id))
    raise ValueError(f"unknown kill selection {kill_selection!r}")


def surplus_order(instances: Iterable[Instance], version: str, kill_selection: str,
                  has_checks: bool) -> list[Instance]:
    """Returns ``instances`` in the order a scale-down kills them: the least useful first, then
    by ``kill_order`` within each group. The groups, first killed first:

    0. UNREACHABLE (behind a partition: probably gone already);
    1. not running yet (STAGING, STARTING);
    2. running but not healthy (the app has health checks and the verdict is not "healthy");
    3. healthy, of another version than ``version``;
    4. healthy, of ``version``.
    """
    def group(inst: Instance) -> int:
        if inst.state == UNREACHABLE:
            return 0
        if not inst.running:
            return 1
        if not inst.is_healthy(has_checks):
            return 2
        return 3 if inst.version != version else 4

    ordered = kill_order(instances, kill_selection)
    rank = {inst.task_id: n for n, inst in enumerate(ordered)}
    return sorted(ordered, key=lambda i: (group(i), rank[i.task_id]))


# -- scaling ------------------------------------------------------------------------------------


def scale_decision(target: AppSpec, version: str, instances: Sequence[Instance],
                   has_checks: bool) -> Decision:
    """Returns how to bring the app's live instances (of any version) to ``target.instances``:
    start the shortfall (launched as ``version``), or kill the surplus in ``surplus_order``
    (not running and unhealthy ones first, then other versions, each group by the app's
    killSelection)."""
    live = [i for i in instances if i.active]
    wanted = target.instances
    if len(live) <= wanted:
        return Decision(wanted - len(live), [])
    ordered = surplus_order(live, version, target.kill_selection, has_checks)
    return Decision(0, ordered[:len(live) - wanted])


def scale_done(target: AppSpec, version: str, instances: Sequence[Instance], has_checks: bool,
               preexisting: Collection[str] = ()) -> bool:
    """True when exactly ``target.instances`` instances are live, every kill sent has ended (an
    UNREACHABLE instance being killed is not waited for), and the instances not in
    ``preexisting`` (task ids live when the deployment started) are running, and healthy when
    the app has health checks. Instances that were there before are not waited for: one failing its
    checks, or behind a partition, is the upkeep's to replace, not the scale's. Instances of any
    version count; ``version`` is taken for symmetry with ``restart_done``."""
    del version
    live = [i for i in instances if i.active]
    fresh = [i for i in live if i.task_id not in preexisting]
    return (len(live) == target.instances and all(i.is_healthy(has_checks) for i in fresh)
            and not any(_lingering(i) for i in instances))


def _lingering(inst: Instance) -> bool:
    """A kill was sent and the instance has not ended (nor is it behind a partition)."""
    return inst.killing and not inst.terminal and inst.state != UNREACHABLE


# -- rolling restarts ---------------------------------------------------------------------------


def upgrade_bounds(target: AppSpec) -> tuple[int, int]:
    """Returns ``(min_healthy, max_total)`` of a rolling restart to ``target``:
    ``ceil(N * minimumHealthCapacity)`` and ``N + floor(N * maximumOverCapacity)`` for
    ``N = target.instances``. When they are equal (minimumHealthCapacity 1 and too little over
    capacity for one instance) nothing could ever start, so, as Marathon does, ``max_total`` is
    one more."""
    n = target.instances
    strategy = target.upgrade_strategy
    min_healthy = math.ceil(n * strategy.minimum_health_capacity - _EPSILON)
    max_total = n + math.floor(n * strategy.maximum_over_capacity + _EPSILON)
    if n > 0 and max_total <= min_healthy:
        max_total = min_healthy + 1
    return min_healthy, max_total


def restart_decision(target: AppSpec, version: str, instances: Sequence[Instance],
                     has_checks: bool, old_checks: Callable[[Instance], bool] | None = None) -> Decision:
    """Returns the next move of a rolling restart to ``target``, whose instances run
    ``version``: "new" instances run it, "old" ones any other version. Only live instances
    count (one being killed counts for nothing: it is on its way out). With
    ``N = target.instances`` and ``(min_healthy, max_total) = upgrade_bounds(target)``; healthy
    means ``Instance.is_healthy(has_checks)`` (running, and passing its checks if it has any):

    1. new instances beyond N (only after an outside change) are killed, in ``surplus_order``;
    2. every old instance that is not healthy (staging, unreachable, failing its checks) is
       killed: it serves nobody and is to be replaced anyway;
    3. healthy old instances are killed, in ``kill_order`` by killSelection, as long as the
       healthy count (old + new) stays at least ``min_healthy``;
    4. new instances are started up to N new, without more than ``max_total`` live ones after
       the kills.

    Worked example, N=4, minimumHealthCapacity 0.5, maximumOverCapacity 0.25: min_healthy =
    ceil(4 * 0.5) = 2, max_total = 4 + floor(4 * 0.25) = 5.

    ====================================  ===================  ==========================
    live instances                        kill                 start
    ====================================  ===================  ==========================
    4 old healthy                         2 old (4 - 2)        min(4 - 0, 5 - 2) = 3
    2 old healthy, 3 new staging          none (2 healthy)     min(4 - 3, 5 - 5) = 0
    2 old healthy, 3 new healthy          2 old (5 - 2 >= 2)   min(4 - 3, 5 - 3) = 1
    3 new healthy, 1 new staging          none                 0 (4 new)
    ====================================  ===================  ==========================

    A new version that never turns healthy leaves the first row's two healthy old instances
    running: the restart stalls at min_healthy instead of taking the app down.

    An old instance is judged by its own version's health checks (``old_checks(instance)``:
    whether that version has any; default ``has_checks``): an old version without checks is
    healthy when running, even if the new version adds checks.
    """
    live = [i for i in instances if i.active]
    wanted = target.instances
    min_healthy, max_total = upgrade_bounds(target)
    new = [i for i in live if i.version == version]
    old = [i for i in live if i.version != version]
    kill: list[Instance] = []

    if len(new) > wanted:
        extra = surplus_order(new, version, target.kill_selection, has_checks)[:len(new) - wanted]
        kill += extra
        gone = {i.task_id for i in extra}
        new = [i for i in new if i.task_id not in gone]

    def old_healthy(inst: Instance) -> bool:
        return inst.is_healthy(has_checks if old_checks is None else old_checks(inst))

    unhealthy_old = [i for i in old if not old_healthy(i)]
    healthy_old = [i for i in old if old_healthy(i)]
    kill += surplus_order(unhealthy_old, version, target.kill_selection, has_checks)

    healthy = len(healthy_old) + sum(1 for i in new if i.is_healthy(has_checks))
    can_kill = min(len(healthy_old), max(0, healthy - min_healthy))
    kill += kill_order(healthy_old, target.kill_selection)[:can_kill]

    remaining = len(new) + len(healthy_old) - can_kill
    start = max(0, min(wanted - len(new), max_total - remaining))
    return Decision(start, kill)


def restart_done(target: AppSpec, version: str, instances: Sequence[Instance], has_checks: bool) -> bool:
    """True when the rolling restart to ``target`` is over: exactly ``target.instances`` live
    instances, all of ``version`` and healthy, none of another version left, and every kill
    sent has ended (an UNREACHABLE instance being killed is not waited for)."""
    live = [i for i in instances if i.active]
    return (len(live) == target.instances
            and all(i.version == version and i.is_healthy(has_checks) for i in live)
            and not any(_lingering(i) for i in instances))
