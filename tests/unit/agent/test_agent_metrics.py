"""The agent's metrics: figures read off AgentState, completions counted past the bounded list,
and the Prometheus rendering (no sockets, no processes, no sleeps)."""

from __future__ import annotations

from collections import deque

from prometheus_client.parser import text_string_to_metric_families
from test_agent_state import FW, ContainerExited, ContainerStarted, Harness, registered_harness, updates

from mensa.agent.metrics import AgentMetrics, agent_metrics_json
from mensa.agent.metrics_http import agent_families, prometheus_text
from mensa.agent.state import Tick
from mensa.agent.tasks import TaskRecord
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

S = mensa_pb2


def record(state: int) -> TaskRecord:
    return TaskRecord(mensa_pb2.FrameworkInfo(), mensa_pb2.TaskInfo(), state=state)  # type: ignore[arg-type]


def test_completions_are_counted_once_even_past_the_bounded_list() -> None:
    metrics = AgentMetrics(started_at=0.0)
    completed: deque[TaskRecord] = deque(maxlen=3)
    metrics.observe_completed(completed)
    assert metrics.tasks_completed == {}
    completed.append(record(S.TASK_FINISHED))
    completed.append(record(S.TASK_FAILED))
    metrics.observe_completed(completed)
    metrics.observe_completed(completed)  # nothing new
    assert metrics.tasks_completed == {"finished": 1, "failed": 1}
    for _ in range(3):  # pushes both out of the list
        completed.append(record(S.TASK_KILLED))
    metrics.observe_completed(completed)
    assert metrics.tasks_completed == {"finished": 1, "failed": 1, "killed": 3}


def test_snapshot_of_an_unregistered_agent() -> None:
    h = Harness()
    m = agent_metrics_json(h.state, AgentMetrics(started_at=10.0), now=25.0)
    assert m["slave/uptime_secs"] == 15.0
    assert m["slave/registered"] == 0
    assert m["slave/cpus_total"] == 4 and m["slave/mem_total"] == 1024 and m["slave/disk_total"] == 0
    assert m["slave/cpus_used"] == 0 and m["slave/disk_percent"] == 0.0
    assert m["slave/tasks_running"] == 0 and m["slave/tasks_finished"] == 0
    assert list(m) == sorted(m)


def test_snapshot_follows_tasks_through_their_lives() -> None:
    h = registered_harness()
    metrics = AgentMetrics(started_at=0.0)
    cpus = Resources.parse("cpus:1;mem:256").to_proto()
    h.run_task(1.0, "t1", resources=cpus)
    (starting,) = updates(h.run_task(1.0, "t2", resources=cpus))
    m = agent_metrics_json(h.state, metrics, now=1.0)
    assert m["slave/registered"] == 1
    assert m["slave/tasks_starting"] == 2
    assert m["slave/cpus_used"] == 2 and m["slave/cpus_percent"] == 0.5
    assert m["slave/mem_used"] == 512
    assert m["slave/frameworks_active"] == 1
    assert m["slave/status_updates_pending"] == 2  # each task's STARTING, unacknowledged

    h.handle(ContainerStarted(FW, "t1", pid=11), 2.0)
    h.handle(ContainerStarted(FW, "t2", pid=12), 2.0)
    h.ack(2.0, starting)
    m = agent_metrics_json(h.state, metrics, now=2.0)
    assert m["slave/tasks_running"] == 2 and m["slave/tasks_starting"] == 0
    assert m["slave/containers_running"] == m["slave/executors_running"] == 2

    # t1's STARTING was never acknowledged: its updates wait, and it is retried.
    h.handle(ContainerExited(FW, "t1", exit_code=0), 3.0)
    h.handle(ContainerExited(FW, "t2", exit_code=1), 3.0)
    m = agent_metrics_json(h.state, metrics, now=3.0)
    assert m["slave/tasks_running"] == 0
    assert m["slave/tasks_finished"] == 1 and m["slave/tasks_failed"] == 1  # terminal, not yet acked
    assert m["slave/cpus_used"] == 0
    assert m["slave/status_updates_retrying"] >= 1

    # Every update acknowledged: the tasks complete and are counted once, from the counter.
    now = 3.0
    while h.state.tasks and now < 9.0:  # retries come every 1, 2, 4 s
        now += 1.0
        due = updates(h.handle(Tick(), now))
        while due:
            due += updates(h.ack(now, due.pop(0)))
    assert not h.state.tasks
    metrics.observe_completed(h.state.completed)
    m = agent_metrics_json(h.state, metrics, now=now)
    assert m["slave/tasks_finished"] == 1 and m["slave/tasks_failed"] == 1
    assert m["slave/status_updates_pending"] == 0


def test_prometheus_families_of_the_agent() -> None:
    h = registered_harness()
    metrics = AgentMetrics(started_at=0.0)
    metrics.tasks_completed["finished"] = 3
    h.run_task(1.0, "t1", resources=Resources.parse("cpus:1;mem:256").to_proto())
    text = prometheus_text(agent_families(agent_metrics_json(h.state, metrics, now=5.0)))[0].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(s.labels.items())): s.value for f in families.values() for s in f.samples}
    assert values[("mensa_agent_registered", ())] == 1
    assert values[("mensa_agent_uptime_seconds", ())] == 5.0
    assert values[("mensa_agent_tasks", (("state", "starting"),))] == 1
    assert values[("mensa_agent_tasks_completed_total", (("state", "finished"),))] == 3
    assert families["mensa_agent_tasks_completed"].type == "counter"
    assert values[("mensa_agent_cpus_total", ())] == 4
    assert values[("mensa_agent_cpus_used", ())] == 1
