"""The operator CLI's pure views: units, tables, rows joined from /state, task filters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from state_docs import NOW, agent, framework, res, small_cluster, state, task

from mensa.deploy.views import (
    StateIndex,
    TaskFilter,
    agent_rows,
    agents_table,
    fmt_age,
    fmt_attributes,
    fmt_mb,
    fmt_number,
    fmt_percent,
    fmt_used,
    framework_rows,
    frameworks_table,
    parse_states,
    render_state,
    select_tasks,
    table,
    tasks_table,
)


def line_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


# Units


def test_numbers_keep_at_most_two_decimals_and_no_trailing_zeros() -> None:
    assert [fmt_number(x) for x in (2.5, 4.0, 0.1 + 0.2, 1 / 3, 0, 1234567.0)] == \
        ["2.5", "4", "0.3", "0.33", "0", "1234567"]


def test_sizes_in_mb_read_in_binary_units() -> None:
    assert [fmt_mb(x) for x in (0, 32, 512.5, 1024, 1228.8, 4096, 1.5 * 1024 * 1024)] == \
        ["0", "32 MiB", "512.5 MiB", "1 GiB", "1.2 GiB", "4 GiB", "1.5 TiB"]


def test_used_of_total_with_a_percentage() -> None:
    assert fmt_used(3, 4) == "3/4 75%"
    assert fmt_used(1228.8, 4096, "mb") == "1.2 GiB/4 GiB 30%"
    assert fmt_percent(1, 0) == "-"


def test_ages() -> None:
    assert fmt_age(None, NOW) == "-"
    assert [fmt_age(NOW - s, NOW) for s in (0, 12.7, 61, 3 * 3600 + 5, 2 * 86400 + 1)] == \
        ["0s ago", "12s ago", "1m ago", "3h ago", "2d ago"]
    assert fmt_age(NOW + 30, NOW) == "0s ago"  # another machine's clock runs ahead


def test_attributes_read_as_the_flag_takes_them() -> None:
    assert fmt_attributes({"zone": "z1", "gen": 3.0, "rack": "a"}) == "gen:3;rack:a;zone:z1"


def test_table_aligns_columns_left_or_right() -> None:
    text = table(["NAME", "N"], [["a", 1], ["bbb", 100]], right=(1,))
    assert text.splitlines() == ["NAME    N", "a       1", "bbb   100"]
    assert table(["A", "B"], []) == "A  B"


# Agents


def test_agents_rows_join_live_task_counts_and_sort_by_hostname() -> None:
    rows = agent_rows(StateIndex.build(small_cluster()))
    assert [(r.hostname, r.id, r.tasks) for r in rows] == [("node-a", "a1", 2), ("node-b", "a2", 1)]
    a1 = rows[0]
    assert (a1.address, a1.cpus_used, a1.cpus_total, a1.mem_used, a1.mem_total) == \
        ("127.0.0.1:5052", 3.0, 4.0, 2048.0, 4096.0)
    assert a1.usage == 0.75
    assert a1.to_json()["attributes"] == {"rack": "a", "gen": 3.0}
    json.dumps([r.to_json() for r in rows])  # --json prints them as they are


def test_agents_table_shows_human_units_and_ages() -> None:
    rows = agent_rows(StateIndex.build(small_cluster()))
    text = agents_table(rows, NOW)
    assert text.splitlines()[0].split() == ["ID", "HOSTNAME", "ADDRESS", "CPUS", "MEM", "DISK", "TASKS",
                                            "ATTRIBUTES", "REGISTERED"]
    row = line_of(text, "node-a")
    for part in ("127.0.0.1:5052", "3/4 75%", "2 GiB/4 GiB 50%", "0/10 GiB 0%", "gen:3;rack:a", "10m ago"):
        assert part in row
    assert "2d ago" in line_of(text, "node-b")


def test_an_agent_without_ip_takes_its_address_from_its_pid() -> None:
    a = agent("a1", "h", res(1, 1))
    del a["ip"], a["port"]
    a["pid"] = "slave(1)@10.0.0.5:5051"
    [row] = agent_rows(StateIndex.build(state([a], [])))
    assert row.address == "10.0.0.5:5051"


# Frameworks


def test_framework_shares_come_from_the_allocator_else_from_used_resources() -> None:
    index = StateIndex.build(small_cluster())
    rows = framework_rows(index)
    assert [(r.name, r.tasks, r.dominant_share) for r in rows] == [("batch", 1, 0.25), ("web", 2, 0.4)]
    assert rows[0].dominant_shares == {"batch": 0.25}  # computed: 2 of 8 cpus beats 1.5 of 8 GiB
    assert rows[1].roles == ["web"] and rows[1].active
    text = frameworks_table(rows, index.totals)
    row = line_of(text, "fw-web")
    for part in ("web", "yes", "2 25%", "1 GiB 12%", "40.0%"):
        assert part in row
    assert "batch,etl" in line_of(text, "fw-batch")


def test_completed_frameworks_are_listed_only_when_asked() -> None:
    index = StateIndex.build(small_cluster())
    assert "fw-old" not in {r.id for r in framework_rows(index)}
    old = next(r for r in framework_rows(index, completed=True) if r.id == "fw-old")
    assert (old.active, old.tasks) == (False, 0)


def test_no_agents_means_no_share() -> None:
    [row] = framework_rows(StateIndex.build(state([], [framework("f", "f")])))
    assert row.dominant_share is None
    assert "-" in frameworks_table([row], {}).splitlines()[1].split()


# Tasks


def ids(rows: Sequence[Any]) -> list[str]:
    return [r.id for r in rows]


def test_tasks_join_framework_names_and_agent_hostnames() -> None:
    rows = select_tasks(StateIndex.build(small_cluster()), TaskFilter())
    assert ids(rows) == ["job-1", "web-1", "web-2"]  # by framework name, then id; live only
    job = rows[0]
    assert (job.framework_name, job.agent_hostname, job.state, job.healthy, job.cpus, job.mem) == \
        ("batch", "node-a", "TASK_RUNNING", False, 2.0, 1536.0)
    assert job.last_status_time == NOW - 7200
    text = tasks_table(rows, NOW)
    assert line_of(text, "web-1").split() == ["web-1", "web-1", "web", "node-a", "RUNNING", "healthy", "1",
                                              "512", "MiB", "1m", "ago"]
    assert line_of(text, "job-1").split()[4:6] == ["RUNNING", "unhealthy"]
    assert line_of(text, "web-2").split()[4:6] == ["STAGING", "-"]


def test_states_parse_with_or_without_prefix_and_reject_unknown_ones() -> None:
    assert parse_states("running, task_staging,,") == {"TASK_RUNNING", "TASK_STAGING"}
    with pytest.raises(ValueError, match="unknown task state 'RUNING'"):
        parse_states("RUNING")


def test_filters_by_state_framework_and_agent() -> None:
    index = StateIndex.build(small_cluster())

    def select(**kw: Any) -> list[str]:
        return ids(select_tasks(index, TaskFilter(**kw)))

    assert select(states=parse_states("RUNNING")) == ["job-1", "web-1"]
    # A terminal state brings in completed tasks, of live and completed frameworks.
    assert select(states=parse_states("FAILED,KILLED")) == ["job-0", "old-1"]
    assert select(framework="web") == ["web-1", "web-2"]
    assert select(framework="fw-batch", completed=True) == ["job-0", "job-00", "job-1"]
    assert select(agent="node-a") == ["job-1", "web-1"]
    assert select(agent="a2", completed=True) == ["job-0", "web-2"]
    assert select(agent="a-gone", completed=True) == ["old-1"]  # an agent that left, by id
    assert select(agent="node-b", states=parse_states("RUNNING")) == []


def test_a_framework_or_agent_that_matches_nothing_is_an_error() -> None:
    index = StateIndex.build(small_cluster())
    with pytest.raises(ValueError, match="no framework has the id or name 'nope'"):
        select_tasks(index, TaskFilter(framework="nope"))
    with pytest.raises(ValueError, match="no agent has the id or hostname 'nope'"):
        select_tasks(index, TaskFilter(agent="nope"))


def test_mensa_state_report_keeps_its_shape() -> None:
    text = render_state(small_cluster())
    assert text.splitlines()[0] == "master master-1 at master@127.0.0.1:5050 (version 0.1.0)"
    assert "AGENTS (2)" in text and "FRAMEWORKS (2)" in text and "TASKS (3)" in text
    assert "cpus=4 mem=4096 disk=10240" in line_of(text, "node-a")
    assert "TASKS (5)" in render_state(small_cluster(), completed=True)


def test_a_big_cluster_is_indexed_once() -> None:
    """1,000 agents and 10,000 tasks in 20 frameworks: every row is joined by id look-ups."""
    agents = [agent(f"a{i}", f"node-{i:04d}", res(8, 32768, 100000), res(5, 1280)) for i in range(1000)]
    frameworks = [framework(f"fw-{f}", f"fw{f:02d}", [task(f"t{f}-{i}", f"fw-{f}", f"a{(f * 500 + i) % 1000}")
                                                      for i in range(500)]) for f in range(20)]
    index = StateIndex.build(state(agents, frameworks))
    rows = agent_rows(index)
    assert len(rows) == 1000 and {r.tasks for r in rows} == {10}
    tasks = select_tasks(index, TaskFilter(states=parse_states("RUNNING"), agent="node-0007"))
    assert len(tasks) == 10 and {t.agent_hostname for t in tasks} == {"node-0007"}
    everything = select_tasks(index, TaskFilter())
    assert len(tasks_table(everything, NOW).splitlines()) == 10_001
    assert len(frameworks_table(framework_rows(index), index.totals).splitlines()) == 21
