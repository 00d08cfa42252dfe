"""The deployment planner on its own: the steps of a change in dependency order, the rolling
restart arithmetic (table and simulated restarts), and scaling with both kill selections."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mensa.frameworks.service_fw.apps import AppSpec, HealthCheckSpec, UpgradeStrategy
from mensa.frameworks.service_fw.deployments import RESTART, SCALE, START, STOP, Action
from mensa.frameworks.service_fw.instances import RUNNING, STAGING, UNREACHABLE, Instance
from mensa.frameworks.service_fw.planner import (
    Decision,
    kill_order,
    plan,
    restart_decision,
    restart_done,
    scale_decision,
    scale_done,
    surplus_order,
    upgrade_bounds,
)

OLD, NEW = "v1", "v2"
_ids = itertools.count()


def app(app_id: str, *deps: str, instances: int = 1, cmd: str = "sleep 1000") -> AppSpec:
    return AppSpec(id=app_id, cmd=cmd, instances=instances, dependencies=deps)


def rolling(n: int, m: float, o: float, *, checks: bool = True) -> AppSpec:
    return AppSpec(id="/a", cmd="serve", instances=n, upgrade_strategy=UpgradeStrategy(m, o),
                   health_checks=(HealthCheckSpec(),) if checks else ())


def inst(version: str = OLD, *, state: str = RUNNING, healthy: bool | None = True, staged_at: float = 0.0,
         killing: bool = False, name: str | None = None) -> Instance:
    return Instance(task_id=name or f"a.{next(_ids):04d}", app_id="/a", version=version, state=state,
                    healthy=healthy, staged_at=staged_at, killing=killing)


def names(instances: list[Instance]) -> list[str]:
    return [i.task_id for i in instances]


def steps_of(steps: list[list[Action]]) -> list[list[str]]:
    return [[f"{a.kind} {a.app_id}" for a in step] for step in steps]


# -- plan ---------------------------------------------------------------------------------------


def test_each_kind_of_change_gets_its_actions() -> None:
    web, db = app("/web"), app("/db")
    assert steps_of(plan({"/web": None}, {"/web": web}, all_apps={"/web": web})) == [
        [f"{START} /web"], [f"{SCALE} /web"]]
    assert steps_of(plan({"/web": web}, {"/web": None}, all_apps={})) == [[f"{STOP} /web"]]
    changed = dataclasses.replace(web, cmd="sleep 2000")
    restarted = plan({"/web": web}, {"/web": changed}, all_apps={"/web": changed})
    assert steps_of(restarted) == [[f"{RESTART} /web"]]
    bigger = web.scaled(5)
    assert steps_of(plan({"/web": web}, {"/web": bigger}, all_apps={"/web": bigger})) == [[f"{SCALE} /web"]]
    # A config change with a new count is one restart (it reaches the new count itself).
    both = dataclasses.replace(web, cmd="sleep 2000", instances=5)
    assert steps_of(plan({"/web": web}, {"/web": both}, all_apps={"/web": both})) == [[f"{RESTART} /web"]]
    assert plan({"/web": web, "/db": db}, {"/web": web, "/db": db}, all_apps={"/web": web, "/db": db}) == []


def test_a_chain_starts_dependencies_first_and_stops_them_last() -> None:
    # /c depends on /b, /b on /a.
    a, b, c = app("/a"), app("/b", "/a"), app("/c", "/b")
    apps = {"/a": a, "/b": b, "/c": c}
    created = plan(dict.fromkeys(apps), apps, all_apps=apps)
    assert steps_of(created) == [
        [f"{START} /a", f"{START} /b", f"{START} /c"],
        [f"{SCALE} /a"], [f"{SCALE} /b"], [f"{SCALE} /c"]]
    deleted = plan(apps, dict.fromkeys(apps), all_apps={})
    assert steps_of(deleted) == [[f"{STOP} /c"], [f"{STOP} /b"], [f"{STOP} /a"]]
    # Given in another order, the same plan: the output does not depend on the mapping's order.
    reversed_apps = dict(reversed(list(apps.items())))
    assert plan(dict.fromkeys(reversed_apps), reversed_apps, all_apps=reversed_apps) == created


def test_apps_with_no_order_between_them_share_a_step() -> None:
    # /web and /worker both need /db; /cache stands alone; /db changes config.
    db, cache = app("/db"), app("/cache")
    web, worker = app("/web", "/db"), app("/worker", "/db")
    new_db = dataclasses.replace(db, cmd="db --v2")
    after = {"/db": new_db, "/cache": cache, "/web": web, "/worker": worker}
    steps = plan({"/db": db, "/cache": None, "/web": None, "/worker": None}, after, all_apps=after)
    assert steps_of(steps) == [
        [f"{START} /cache", f"{START} /web", f"{START} /worker"],
        [f"{SCALE} /cache", f"{RESTART} /db"],
        [f"{SCALE} /web", f"{SCALE} /worker"]]


def test_order_follows_dependencies_through_unaffected_apps() -> None:
    # /front -> /mid (unchanged) -> /back: /back's restart comes before /front's scale.
    back, mid, front = app("/back"), app("/mid", "/back"), app("/front", "/mid")
    new_back, big_front = dataclasses.replace(back, cmd="back --v2"), front.scaled(3)
    after = {"/back": new_back, "/mid": mid, "/front": big_front}
    steps = plan({"/back": back, "/front": front}, {"/back": new_back, "/front": big_front}, all_apps=after)
    assert steps_of(steps) == [[f"{RESTART} /back"], [f"{SCALE} /front"]]


def test_stops_come_first_then_starts_then_the_rest() -> None:
    old, keep, new = app("/old"), app("/keep"), app("/new", "/keep")
    bigger = keep.scaled(2)
    after = {"/keep": bigger, "/new": new}
    steps = plan({"/old": old, "/keep": keep, "/new": None}, {"/old": None, "/keep": bigger, "/new": new},
                 all_apps=after)
    assert steps_of(steps) == [[f"{STOP} /old"], [f"{START} /new"], [f"{SCALE} /keep"], [f"{SCALE} /new"]]


def test_stops_follow_the_graph_as_it_was() -> None:
    # /web used to depend on /db; both go: /web stops first even though neither is in all_apps.
    db, web = app("/db"), app("/web", "/db")
    steps = plan({"/db": db, "/web": web}, {"/db": None, "/web": None}, all_apps={})
    assert steps_of(steps) == [[f"{STOP} /web"], [f"{STOP} /db"]]


def test_a_dependency_cycle_is_refused() -> None:
    a, b = app("/a", "/b"), app("/b", "/a")
    with pytest.raises(ValueError, match="cycle"):
        plan({"/a": None, "/b": None}, {"/a": a, "/b": b}, all_apps={"/a": a, "/b": b})


def test_missing_dependencies_do_not_order_anything() -> None:
    web = app("/web", "/gone")
    assert steps_of(plan({"/web": None}, {"/web": web}, all_apps={"/web": web})) == [
        [f"{START} /web"], [f"{SCALE} /web"]]


# -- kill order ---------------------------------------------------------------------------------


def test_kill_order_by_staging_time() -> None:
    first, second = inst(staged_at=10, name="t1"), inst(staged_at=20, name="t2")
    third = inst(staged_at=30, name="t3")
    tie = inst(staged_at=20, name="t0")
    assert names(kill_order([second, first, third, tie], "YOUNGEST_FIRST")) == ["t3", "t0", "t2", "t1"]
    assert names(kill_order([second, third, first, tie], "OLDEST_FIRST")) == ["t1", "t0", "t2", "t3"]
    with pytest.raises(ValueError, match="kill selection"):
        kill_order([first], "RANDOM")


def test_surplus_order_prefers_the_least_useful() -> None:
    healthy_new = inst(NEW, staged_at=50, name="healthy-new")
    healthy_old = inst(OLD, staged_at=1, name="healthy-old")
    unhealthy = inst(NEW, healthy=False, staged_at=2, name="unhealthy")
    staging = inst(NEW, state=STAGING, healthy=None, staged_at=3, name="staging")
    gone = inst(NEW, state=UNREACHABLE, healthy=None, staged_at=4, name="unreachable")
    ordered = surplus_order([healthy_new, healthy_old, unhealthy, staging, gone], NEW, "YOUNGEST_FIRST", True)
    assert names(ordered) == ["unreachable", "staging", "unhealthy", "healthy-old", "healthy-new"]
    # Without health checks a running instance counts as healthy whatever its verdict.
    ordered = surplus_order([healthy_new, unhealthy], NEW, "OLDEST_FIRST", False)
    assert names(ordered) == ["unhealthy", "healthy-new"]  # by age: unhealthy is older


# -- scaling ------------------------------------------------------------------------------------


def test_scale_up_starts_the_shortfall_of_live_instances() -> None:
    spec = app("/a", instances=5)
    live = [inst(NEW), inst(NEW, state=STAGING, healthy=None)]
    killed = inst(NEW, killing=True)
    ended = inst(NEW, state="TASK_FAILED")
    assert scale_decision(spec, NEW, [*live, killed, ended], False) == Decision(3, [])


@pytest.mark.parametrize(("selection", "killed"), [
    ("YOUNGEST_FIRST", ["t5", "t4", "t3"]),
    ("OLDEST_FIRST", ["t1", "t2", "t3"]),
])
def test_scale_down_kills_by_kill_selection(selection: str, killed: list[str]) -> None:
    spec = dataclasses.replace(app("/a", instances=2), kill_selection=selection)
    live = [inst(NEW, staged_at=float(n), name=f"t{n}") for n in (3, 1, 5, 2, 4)]
    decision = scale_decision(spec, NEW, live, False)
    assert decision.start == 0
    assert names(decision.kill) == killed


def test_scale_down_kills_unhealthy_and_old_before_healthy_current() -> None:
    spec = dataclasses.replace(rolling(2, 1.0, 1.0), kill_selection="OLDEST_FIRST")
    keep = [inst(NEW, staged_at=1, name="keep1"), inst(NEW, staged_at=2, name="keep2")]
    old = inst(OLD, staged_at=9, name="old")
    sick = inst(NEW, healthy=False, staged_at=8, name="sick")
    decision = scale_decision(spec, NEW, [*keep, old, sick], True)
    assert names(decision.kill) == ["sick", "old"]


def test_scale_done_needs_the_count_running_healthy_and_kills_ended() -> None:
    spec = rolling(2, 1.0, 1.0)
    two = [inst(NEW), inst(NEW)]
    assert scale_done(spec, NEW, two, True)
    assert not scale_done(spec, NEW, [*two, inst(NEW)], True)  # one too many
    assert not scale_done(spec, NEW, two[:1], True)  # one short
    assert not scale_done(spec, NEW, [two[0], inst(NEW, healthy=None)], True)  # no verdict yet
    unchecked = dataclasses.replace(spec, health_checks=())
    assert scale_done(unchecked, NEW, [two[0], inst(NEW, healthy=None)], False)
    assert not scale_done(spec, NEW, [two[0], inst(NEW, state=STAGING, healthy=None)], True)
    assert not scale_done(spec, NEW, [*two, inst(NEW, killing=True)], True)  # kill not confirmed
    assert scale_done(spec, NEW, [*two, inst(NEW, killing=True, state="TASK_KILLED")], True)
    assert scale_done(spec, NEW, [*two, inst(NEW, killing=True, state=UNREACHABLE)], True)
    assert scale_done(app("/a", instances=0), NEW, [], False)


# -- rolling restart: bounds and table ----------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "o", "bounds"), [
    (4, 0.5, 0.25, (2, 5)),
    (4, 1.0, 1.0, (4, 8)),
    (3, 0.5, 0.5, (2, 4)),  # ceil(1.5) = 2, floor(1.5) = 1
    (25, 0.28, 0.28, (7, 32)),  # 25 * 0.28 is 7.000000000000001 in floating point: still 7
    (50, 0.58, 0.58, (29, 79)),  # 50 * 0.58 is 28.999999999999996: still 29 over
    (4, 1.0, 0.0, (4, 5)),  # no room to start: one extra, as Marathon does
    (3, 1.0, 0.2, (3, 4)),  # floor(0.6) = 0: the same
    (4, 0.0, 0.0, (0, 4)),
    (0, 1.0, 0.0, (0, 0)),
])
def test_upgrade_bounds(n: int, m: float, o: float, bounds: tuple[int, int]) -> None:
    assert upgrade_bounds(rolling(n, m, o)) == bounds


def population(old_healthy: int = 0, old_sick: int = 0, new_healthy: int = 0,
               new_staging: int = 0) -> list[Instance]:
    return ([inst(OLD, staged_at=float(n)) for n in range(old_healthy)]
            + [inst(OLD, healthy=False, staged_at=100.0 + n) for n in range(old_sick)]
            + [inst(NEW, staged_at=200.0 + n) for n in range(new_healthy)]
            + [inst(NEW, state=STAGING, healthy=None, staged_at=300.0 + n) for n in range(new_staging)])


def counts(decision: Decision) -> tuple[int, int, int]:
    """(old killed, new killed, started)."""
    old = sum(1 for i in decision.kill if i.version == OLD)
    return old, len(decision.kill) - old, decision.start


@pytest.mark.parametrize(("n", "m", "o", "have", "want"), [
    # The docstring's worked example, row by row (N=4, m=0.5, o=0.25: min 2, max 5).
    (4, 0.5, 0.25, dict(old_healthy=4), (2, 0, 3)),
    (4, 0.5, 0.25, dict(old_healthy=2, new_staging=3), (0, 0, 0)),
    (4, 0.5, 0.25, dict(old_healthy=2, new_healthy=3), (2, 0, 1)),
    (4, 0.5, 0.25, dict(new_healthy=3, new_staging=1), (0, 0, 0)),
    # Unhealthy old ones go at once; they do not count toward min_healthy.
    (4, 0.5, 0.25, dict(old_healthy=2, old_sick=2), (2, 0, 3)),
    (4, 0.5, 0.25, dict(old_healthy=1, old_sick=3), (3, 0, 4)),
    # Full capacity always (m=1): only the over-capacity room is used.
    (4, 1.0, 0.5, dict(old_healthy=4), (0, 0, 2)),
    (4, 1.0, 0.5, dict(old_healthy=4, new_healthy=2), (2, 0, 2)),
    (4, 1.0, 0.0, dict(old_healthy=4), (0, 0, 1)),  # one extra, or nothing could ever start
    (4, 1.0, 0.0, dict(old_healthy=4, new_healthy=1), (1, 0, 1)),
    # m=0: everything old may go at once.
    (3, 0.0, 0.0, dict(old_healthy=3), (3, 0, 3)),
    # More old than wanted (a restart that also scales down): kill down to min_healthy.
    (4, 0.5, 0.25, dict(old_healthy=10), (8, 0, 3)),
    # More new than wanted (an outside change): the extra new are killed.
    (2, 1.0, 1.0, dict(new_healthy=3), (0, 1, 0)),
    # Scale to nothing.
    (0, 1.0, 1.0, dict(old_healthy=3, new_staging=1), (3, 1, 0)),
])
def test_restart_decision_table(n: int, m: float, o: float, have: dict[str, int],
                                want: tuple[int, int, int]) -> None:
    assert counts(restart_decision(rolling(n, m, o), NEW, population(**have), True)) == want


def test_restart_kills_unhealthy_old_first_then_healthy_by_kill_selection() -> None:
    spec = dataclasses.replace(rolling(4, 0.5, 0.25), kill_selection="OLDEST_FIRST")
    healthy = [inst(OLD, staged_at=float(n), name=f"h{n}") for n in (3, 1, 2)]
    sick = inst(OLD, healthy=False, staged_at=9, name="sick")
    staging = inst(OLD, state=STAGING, healthy=None, staged_at=8, name="staging")
    new = inst(NEW, staged_at=10, name="new")
    decision = restart_decision(spec, NEW, [*healthy, sick, staging, new], True)
    # healthy: 3 old + 1 new = 4, min 2: two healthy old may go, the oldest first.
    assert names(decision.kill) == ["staging", "sick", "h1", "h2"]
    assert decision.start == 3  # 2 live left, 1 new: up to 4 new, max_total = 5 -> min(3, 3)


def test_restart_without_health_checks_counts_running_as_healthy() -> None:
    spec = rolling(2, 0.5, 0.0, checks=False)  # min 1, max 2
    have = [inst(OLD, healthy=None), inst(NEW, healthy=None)]
    assert counts(restart_decision(spec, NEW, have, False)) == (1, 0, 1)


def test_restart_done() -> None:
    spec = rolling(2, 0.5, 0.5)
    assert restart_done(spec, NEW, [inst(NEW), inst(NEW)], True)
    assert restart_done(spec, NEW, [inst(NEW), inst(NEW), inst(OLD, state="TASK_KILLED", killing=True)], True)
    assert not restart_done(spec, NEW, [inst(NEW), inst(NEW), inst(OLD)], True)  # old left
    assert not restart_done(spec, NEW, [inst(NEW), inst(NEW), inst(OLD, killing=True)], True)  # not dead yet
    assert not restart_done(spec, NEW, [inst(NEW), inst(NEW, healthy=False)], True)
    assert not restart_done(spec, NEW, [inst(NEW)], True)
    assert not restart_done(spec, NEW, [inst(NEW)] * 3, True)


# -- rolling restart: simulated ----------------------------------------------------------------


def live_of(instances: list[Instance]) -> list[Instance]:
    return [i for i in instances if i.active]


def healthy_of(instances: list[Instance]) -> int:
    return sum(1 for i in live_of(instances) if i.is_healthy(True))


class Cluster:
    """A rolling restart played out: the engine's part (apply decisions) and the world's (kills
    end, launches run and turn healthy or fail) in alternation, with invariants checked after
    every decision."""

    def __init__(self, spec: AppSpec) -> None:
        self.spec = spec
        self.instances = [inst(OLD, staged_at=float(n)) for n in range(spec.instances)]
        self.min_healthy, self.max_total = upgrade_bounds(spec)
        self.clock = 1000.0
        self.peak = len(self.instances)
        self.lowest = healthy_of(self.instances)

    def decide(self) -> Decision:
        before = healthy_of(self.instances)
        decision = restart_decision(self.spec, NEW, self.instances, True)
        for victim in decision.kill:
            assert victim.active
            victim.killing = True
        after_kills = len(live_of(self.instances))
        for _ in range(decision.start):
            self.clock += 1
            self.instances.append(inst(NEW, state=STAGING, healthy=None, staged_at=self.clock))
        healthy = healthy_of(self.instances)
        # The decision never takes the healthy count below min_healthy (or below where it was).
        assert healthy >= min(self.min_healthy, before)
        # Starts never take the live count over max_total.
        live = len(live_of(self.instances))
        assert decision.start == 0 or live <= self.max_total
        assert live <= max(self.max_total, after_kills)
        self.peak = max(self.peak, live)
        self.lowest = min(self.lowest, healthy)
        return decision

    def world(self, fate: list[bool]) -> None:
        """Kills end; each staging instance runs and turns healthy (True) or fails (False);
        fates are used in turn, the last one repeated."""
        for i in self.instances:
            if i.killing and not i.terminal:
                i.state = "TASK_KILLED"
        staging = [i for i in self.instances if i.state == STAGING]
        for n, i in enumerate(staging):
            ok = fate[min(n, len(fate) - 1)]
            i.state, i.healthy = (RUNNING, True) if ok else ("TASK_FAILED", False)
        self.instances = [i for i in self.instances if not i.terminal]

    def done(self) -> bool:
        return restart_done(self.spec, NEW, self.instances, True)


CASES = [(n, m, o) for n in (1, 2, 3, 4, 7, 10) for m in (0.0, 0.3, 0.5, 1.0) for o in (0.0, 0.25, 0.5, 1.0)]


@pytest.mark.parametrize(("n", "m", "o"), CASES)
def test_simulated_restart_finishes_when_the_new_version_turns_healthy(n: int, m: float, o: float) -> None:
    cluster = Cluster(rolling(n, m, o))
    for _round in range(4 * n + 4):
        if cluster.done():
            break
        cluster.decide()
        cluster.world([True])
    assert cluster.done()
    assert sorted(i.version for i in cluster.instances) == [NEW] * n
    assert cluster.lowest >= cluster.min_healthy
    assert cluster.peak <= cluster.max_total


@pytest.mark.parametrize(("n", "m", "o"), CASES)
def test_simulated_restart_stalls_at_min_healthy_when_the_new_version_never_turns_healthy(
        n: int, m: float, o: float) -> None:
    cluster = Cluster(rolling(n, m, o))
    for _round in range(4 * n + 4):
        cluster.decide()
        cluster.world([False])
    assert not cluster.done()
    old = [i for i in live_of(cluster.instances) if i.version == OLD]
    assert len(old) == cluster.min_healthy and all(i.is_healthy(True) for i in old)
    assert cluster.lowest >= cluster.min_healthy
    assert cluster.peak <= cluster.max_total


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 8), m=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.75, 1.0]),
       o=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),
       fates=st.lists(st.lists(st.booleans(), min_size=1, max_size=4), min_size=1, max_size=12))
def test_restart_invariants_hold_whatever_the_launches_do(n: int, m: float, o: float,
                                                          fates: list[list[bool]]) -> None:
    """Any mix of launches that fail and launches that turn healthy keeps the bounds; once the
    launches succeed, the restart finishes."""
    cluster = Cluster(rolling(n, m, o))
    for fate in fates:
        cluster.decide()
        cluster.world(fate)
    assert cluster.lowest >= cluster.min_healthy
    assert cluster.peak <= cluster.max_total
    for _round in range(4 * n + 4):
        if cluster.done():
            break
        cluster.decide()
        cluster.world([True])
    assert cluster.done()
