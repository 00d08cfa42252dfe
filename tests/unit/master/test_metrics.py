"""Master metrics: histograms and timers, /metrics/snapshot figures, /state-summary counts and the
Prometheus rendering, all against the pure state (no sockets, no clock)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from master_harness import PA, Call, Harness, task, updates_to
from prometheus_client.parser import text_string_to_metric_families

from mensa.deploy.prometheus import prometheus_text
from mensa.master.http.metrics_api import master_families, snapshot_of
from mensa.master.http.metrics_snapshot import metrics_json, standby_metrics_json
from mensa.master.http.recent import Recent
from mensa.master.http.state_json import state_summary_json
from mensa.master.metrics import WINDOW, Histogram, message_kind, percentile, timer_json
from mensa.proto import internal_pb2, mensa_pb2

A1, F1 = b"agent-1", b"fw-1"
S = mensa_pb2
STARTED = 900.0  # the master process started 100 s before the harness's clock (1000)


@pytest.fixture
def h() -> Harness:
    return Harness()


def snapshot(h: Harness) -> dict[str, float]:
    return metrics_json(h.state, now=h.now, started_at=STARTED)


def launch_one(h: Harness, fid: str, task_id: str = "t1", resources: str = "cpus:1;mem:128",
               wait: float = 0.0) -> None:
    offer = h.offers_to(h.allocate(), F1)[0]
    h.now += wait
    h.launch(F1, fid, [offer.id.value], [task(task_id, resources)], refuse_seconds=0)


# -- histograms and timers -------------------------------------------------------------------------


def test_histogram_buckets_are_upper_bounds_and_cumulate_to_the_count() -> None:
    hist = Histogram(buckets=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0, -3.0):  # a negative one counts as zero
        hist.observe(value)
    assert hist.counts == [3, 2, 1]  # <=0.1: 0.05, 0.1, 0 ; <=1: 0.5, 1.0 ; +Inf: 7
    assert hist.cumulative() == [(0.1, 3), (1.0, 5), (math.inf, 6)]
    assert hist.count == 6
    assert hist.total == pytest.approx(8.65)
    assert hist.last == 0.0


def test_the_recent_window_is_bounded_but_the_histogram_counts_everything() -> None:
    hist = Histogram()
    for i in range(WINDOW + 10):
        hist.observe(i / 1000)
    assert len(hist.recent) == WINDOW
    assert hist.recent[0] == 10 / 1000  # the oldest ten left the window
    assert hist.count == WINDOW + 10


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 1.0) == 4.0
    assert percentile([5.0], 0.99) == 5.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_timer_json_is_mesos_s_timer_form_in_milliseconds() -> None:
    hist = Histogram()
    assert timer_json("x_ms", hist) == {"x_ms/count": 0}
    for seconds in (0.004, 0.001, 0.002, 0.003):
        hist.observe(seconds)
    timer = timer_json("x_ms", hist)
    assert timer["x_ms"] == pytest.approx(3.0)  # the latest
    assert timer["x_ms/count"] == 4
    assert timer["x_ms/min"] == pytest.approx(1.0)
    assert timer["x_ms/max"] == pytest.approx(4.0)
    assert timer["x_ms/p50"] == pytest.approx(2.5)
    assert set(timer) == {"x_ms", "x_ms/count", "x_ms/min", "x_ms/max", "x_ms/p50", "x_ms/p90",
                          "x_ms/p95", "x_ms/p99", "x_ms/p999", "x_ms/p9999"}


def test_message_kinds_stay_bounded() -> None:
    call = internal_pb2.Envelope(call=Call(type=Call.ACCEPT))
    assert message_kind(call) == "call:ACCEPT"
    assert message_kind(internal_pb2.Envelope(call=Call())) == "call:UNKNOWN"
    assert message_kind(internal_pb2.Envelope(status_update=internal_pb2.StatusUpdate())) == "status_update"
    assert message_kind(internal_pb2.Envelope()) == "empty"


# -- /metrics/snapshot ------------------------------------------------------------------------------


def test_a_standby_reports_not_elected_and_its_uptime_only() -> None:
    assert standby_metrics_json(now=1010.0, started_at=1000.0) == {
        "master/elected": 0, "master/uptime_secs": 10.0}


def test_snapshot_of_an_idle_master(h: Harness) -> None:
    m = snapshot(h)
    assert m["master/elected"] == 1
    assert m["master/uptime_secs"] == 100.0
    assert m["master/agents_active"] == m["master/slaves_active"] == 0
    assert m["master/cpus_percent"] == 0.0  # no division by zero
    assert m["allocator/mesos/allocation_run_ms/count"] == 0
    assert "allocator/mesos/allocation_run_ms/p99" not in m
    assert list(m) == sorted(m)


def test_snapshot_follows_a_task_from_offer_to_finish(h: Harness) -> None:
    h.register_agent(A1, resources="cpus:4;mem:4096;disk:1000")
    fid = h.subscribe(F1)
    launch_one(h, fid, resources="cpus:1;mem:1024;disk:100", wait=2.0)  # accepted 2 s after the offer
    m = snapshot(h)
    assert m["master/agents_active"] == m["master/agents_connected"] == 1
    assert m["master/frameworks_active"] == m["master/frameworks_connected"] == 1
    assert m["master/tasks_staging"] == 1 and m["master/tasks_running"] == 0
    assert m["master/cpus_total"] == 4 and m["master/cpus_used"] == 1 and m["master/cpus_percent"] == 0.25
    assert m["master/mem_total"] == 4096 and m["master/mem_used"] == 1024
    assert m["master/disk_percent"] == pytest.approx(0.1)
    assert m["master/tasks_launched"] == 1 and m["master/offers_sent"] == 1
    assert m["master/offers_accepted"] == 1
    assert m["master/messages_launch_tasks"] == 1 and m["master/messages_register_framework"] == 1
    assert m["master/messages_register_slave"] == 1
    assert m["master/offer_to_accept_ms/count"] == 1
    assert m["master/offer_to_accept_ms"] == pytest.approx(2000.0)

    # STARTING arrives 1.5 s after the launch, saying the task already runs: that is the moment
    # the master learns it runs; the RUNNING update that follows is not timed again.
    h.now += 1.5
    h.status(A1, fid, "t1", S.TASK_STARTING, b"u1", latest=S.TASK_RUNNING)
    h.now += 1.0
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u2")
    m = snapshot(h)
    assert m["master/tasks_running"] == 1 and m["master/tasks_staging"] == 0
    assert m["master/launch_to_running_ms/count"] == 1
    assert m["master/launch_to_running_ms"] == pytest.approx(1500.0)
    assert m["master/status_updates"] == 2

    h.status(A1, fid, "t1", S.TASK_FINISHED, b"u3")
    m = snapshot(h)
    assert m["master/tasks_running"] == 0 and m["master/tasks_finished"] == 1
    assert m["master/cpus_used"] == 0
    h.status(A1, fid, "t1", S.TASK_FINISHED, b"u3")  # a retry counts once
    assert snapshot(h)["master/tasks_finished"] == 1


def test_terminal_counts_cover_refused_lost_and_killed_tasks(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    offer = h.offers_to(h.allocate(), F1)[0]
    h.launch(F1, fid, [offer.id.value], [task("bad", "cpus:99"), task("ok")], refuse_seconds=0)
    h.launch(F1, fid, [offer.id.value], [task("late")])  # the offer is used up: TASK_LOST
    m = snapshot(h)
    assert m["master/tasks_error"] == 1 and m["master/tasks_lost"] == 1
    assert m["master/tasks_invalid"] == 1
    assert m["master/invalid_messages"] >= 1

    h.call(F1, fid, Call(type=Call.TEARDOWN))  # "ok" is killed with its framework
    m = snapshot(h)
    assert m["master/tasks_killed"] == 1
    assert m["master/tasks_staging"] == 0
    assert m["master/frameworks_active"] == 0
    assert m["master/messages_unregister_framework"] == 1


def test_an_unreachable_agent_s_tasks_count_by_their_framework_s_capability(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1, capabilities=(PA,))
    launch_one(h, fid)
    for _ in range(4):  # pings unanswered until the agent is marked unreachable
        h.tick(1.0)
    m = snapshot(h)
    assert m["master/agents_unreachable"] == m["master/slaves_unreachable"] == 1
    assert m["master/agents_active"] == 0
    assert m["master/tasks_unreachable"] == 1 and m["master/tasks_staging"] == 0
    assert m["master/agent_removals"] == 1


def test_allocation_timings_and_role_shares(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    h.state.metrics.allocation.observe(0.002)
    launch_one(h, fid, resources="cpus:2;mem:1024")
    m = snapshot(h)
    assert m["allocator/mesos/allocation_runs"] == 1
    assert m["allocator/mesos/allocation_run_ms"] == pytest.approx(2.0)
    assert m["allocator/mesos/roles/*/shares/dominant"] == pytest.approx(0.5)
    assert m["allocator/mesos/resources/cpus/total"] == 4
    assert m["allocator/mesos/resources/cpus/offered_or_allocated"] == 2


# -- /state-summary ---------------------------------------------------------------------------------


def test_state_summary_counts_tasks_per_agent_and_framework(h: Harness) -> None:
    agent_id = h.register_agent(A1, hostname="a1", resources="cpus:4;mem:4096")
    fid = h.subscribe(F1, "one")
    offer = h.offers_to(h.allocate(), F1)[0]
    h.launch(F1, fid, [offer.id.value], [task("run"), task("done"), task("bad", "cpus:99")],
             refuse_seconds=0)
    h.status(A1, fid, "run", S.TASK_RUNNING, b"u1")
    sends = h.status(A1, fid, "done", S.TASK_FINISHED, b"u2")
    assert updates_to(sends, F1)
    summary = state_summary_json(h.state)
    assert summary["hostname"] == "master"
    assert summary["slaves"] is summary["agents"]
    [agent] = summary["agents"]
    assert agent["id"] == agent_id and agent["hostname"] == "a1"
    assert agent["TASK_RUNNING"] == 1 and agent["TASK_FINISHED"] == 1 and agent["TASK_STAGING"] == 0
    assert agent["TASK_ERROR"] == 0  # the refused task never reached the agent
    assert agent["used_resources"]["cpus"] == 1
    assert agent["resources"]["cpus"] == 4
    assert agent["framework_ids"] == [fid]
    [framework] = summary["frameworks"]
    assert framework["id"] == fid and framework["name"] == "one"
    assert framework["TASK_RUNNING"] == 1 and framework["TASK_FINISHED"] == 1
    assert framework["slave_ids"] == framework["agent_ids"] == [agent_id]
    assert framework["active"] and framework["connected"]
    assert "tasks" not in framework and "tasks" not in agent


def test_state_summary_of_an_empty_cluster() -> None:
    summary = state_summary_json(Harness().state, cluster="c1")
    assert summary == {"hostname": "master", "cluster": "c1", "agents": [], "slaves": [], "frameworks": []}


# -- Prometheus ------------------------------------------------------------------------------------


def parse(text: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def samples(family: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}  # type: ignore[attr-defined]


def test_prometheus_text_has_the_figures_and_histograms(h: Harness) -> None:
    h.register_agent(A1)
    fid = h.subscribe(F1)
    launch_one(h, fid, wait=0.3)
    h.now += 0.7
    h.status(A1, fid, "t1", S.TASK_RUNNING, b"u1")
    families = parse(prometheus_text(master_families(snapshot(h), h.state.metrics))[0])
    assert samples(families["mensa_master_elected"])[("mensa_master_elected", ())] == 1
    assert samples(families["mensa_master_cpus_total"])[("mensa_master_cpus_total", ())] == 4
    tasks = samples(families["mensa_master_tasks"])
    assert tasks[("mensa_master_tasks", (("state", "running"),))] == 1
    completed = families["mensa_master_tasks_completed"]
    assert completed.type == "counter"  # type: ignore[attr-defined]
    assert samples(completed)[("mensa_master_tasks_completed_total", (("state", "finished"),))] == 0
    messages = samples(families["mensa_master_messages"])
    assert messages[("mensa_master_messages_total", (("kind", "call:ACCEPT"),))] == 1
    launch = families["mensa_master_launch_to_running_seconds"]
    assert launch.type == "histogram"  # type: ignore[attr-defined]
    buckets = samples(launch)
    assert buckets[("mensa_master_launch_to_running_seconds_count", ())] == 1
    assert buckets[("mensa_master_launch_to_running_seconds_sum", ())] == pytest.approx(0.7)
    assert buckets[("mensa_master_launch_to_running_seconds_bucket", (("le", "0.5"),))] == 0
    assert buckets[("mensa_master_launch_to_running_seconds_bucket", (("le", "1.0"),))] == 1
    assert buckets[("mensa_master_launch_to_running_seconds_bucket", (("le", "+Inf"),))] == 1
    offer = samples(families["mensa_master_offer_to_accept_seconds"])
    assert offer[("mensa_master_offer_to_accept_seconds_bucket", (("le", "0.25"),))] == 0
    assert offer[("mensa_master_offer_to_accept_seconds_bucket", (("le", "0.5"),))] == 1
    assert "mensa_master_allocation_seconds" in families


def test_prometheus_text_of_a_standby_says_not_elected() -> None:
    families = parse(prometheus_text(master_families(standby_metrics_json(now=5.0, started_at=2.0), None))[0])
    assert set(families) == {"mensa_master_elected", "mensa_master_uptime_seconds"}
    assert samples(families["mensa_master_uptime_seconds"])[("mensa_master_uptime_seconds", ())] == 3.0


def test_a_standby_answers_metrics_without_state(h: Harness) -> None:
    standby = SimpleNamespace(state=h.state, leading=False, started_at=0.0)  # e.g. paused
    snap, metrics = snapshot_of(standby)  # type: ignore[arg-type]
    assert snap["master/elected"] == 0 and snap["master/uptime_secs"] > 0
    assert set(snap) == {"master/elected", "master/uptime_secs"}
    assert metrics is None


def test_recent_documents_are_rebuilt_for_a_new_term() -> None:
    built: list[int] = []

    def build() -> int:
        built.append(len(built))
        return built[-1]

    recent: Recent[int] = Recent()
    first, second = object(), object()
    assert recent.get(first, build) == 0
    assert recent.get(second, build) == 1  # another leadership term: never the old document
    always: Recent[int] = Recent(duty=1.0)  # a duty of the whole loop: nothing is reused
    assert always.get(first, build) == 2
    assert always.get(first, build) == 3
