"""``mensa top``'s pure layer: the summary of a /state document and the frame it draws."""

from __future__ import annotations

import json

from state_docs import NOW, agent, framework, res, small_cluster, state, task

from mensa.deploy.top_view import ResourceUsage, bar, render_frame, summarize
from mensa.deploy.views import TASK_STATES


def test_summary_totals_usage_and_counts_per_state() -> None:
    s = summarize(small_cluster())
    assert (s.master_id, s.agents, s.frameworks) == ("master-1", 2, 2)
    assert s.resources == [ResourceUsage("cpus", 4, 0.5, 8), ResourceUsage("mem", 2560, 256, 8192),
                           ResourceUsage("disk", 0, 0, 20480)]  # no gpus in the cluster: no gpus line
    assert s.task_counts == {"TASK_RUNNING": 2, "TASK_STAGING": 1, "TASK_FAILED": 1, "TASK_FINISHED": 1,
                             "TASK_KILLED": 1}
    order = [TASK_STATES.index(name) for name in s.task_counts]
    assert order == sorted(order)


def test_summary_picks_top_frameworks_agents_and_recent_tasks() -> None:
    s = summarize(small_cluster(), top=1, recent=4)
    assert [f.name for f in s.top_frameworks] == ["web"]  # 40% (the allocator's) beats batch's 25%
    assert [a.hostname for a in s.top_agents] == ["node-a"]  # 75% of its cpus in use
    assert [t.id for t in s.recent_tasks] == ["web-2", "job-0", "old-1", "web-1"]
    assert s.recent_tasks[2].framework_name == "old" and s.recent_tasks[2].agent_hostname == ""
    json.dumps(s.to_json())  # --json prints it as one line per frame


def test_bars_show_used_then_offered() -> None:
    assert bar(3, 1, 8, 8) == "[###+....]"
    assert bar(8, 4, 8, 4) == "[####]"
    assert bar(0, 0, 0, 3) == "[   ]"


def test_frame_shows_resources_tasks_frameworks_agents_and_recent_changes() -> None:
    lines = render_frame(summarize(small_cluster()), now=NOW, interval=2)
    assert lines[0].startswith("mensa top  ")
    assert lines[0].endswith("  every 2s  agents 2  frameworks 2  master master-1 at master@127.0.0.1:5050")
    cpus = next(line for line in lines if line.startswith("CPUS"))
    assert "4/8 50%" in cpus and "offered 0.5" in cpus and "[" + "#" * 20 + "+" * 2 in cpus
    assert "2.5 GiB/8 GiB 31%" in next(line for line in lines if line.startswith("MEM"))
    assert "TASKS 6  STAGING 1  RUNNING 2  FINISHED 1  FAILED 1  KILLED 1" in lines
    sections = ["TOP FRAMEWORKS BY DOMINANT SHARE", "TOP AGENTS BY USAGE", "RECENTLY CHANGED TASKS"]
    assert [line for line in lines if line in sections] == sections
    web = lines.index(sections[0]) + 2
    assert lines[web].split()[:3] == ["web", "fw-web", "web"] and lines[web].endswith("40.0%")
    recent = lines.index(sections[2])
    assert lines[recent + 2].split()[:4] == ["5s", "ago", "web-2", "web"]
    assert not any(line.startswith("!") for line in lines)


def test_frame_fits_a_terminal() -> None:
    tasks = [task(f"t{i}", "f", f"a{i % 50}", updated=NOW - i) for i in range(200)]
    big = state([agent(f"a{i}", f"node-{i}", res(4, 4096)) for i in range(50)], [framework("f", "f", tasks)])
    lines = render_frame(summarize(big), now=NOW, interval=2, width=60, height=30)
    assert len(lines) == 30 and max(len(line) for line in lines) <= 60
    # The recent-task list is cut to what fits: the last line is its newest-but-N task.
    shown = len(lines) - lines.index("RECENTLY CHANGED TASKS") - 2
    assert lines[-1].split()[:3] == [f"{shown - 1}s", "ago", f"t{shown - 1}"]


def test_an_error_is_shown_above_the_last_data() -> None:
    s = summarize(small_cluster())
    lines = render_frame(s, now=NOW, interval=0.5, error="no answer from http://m:5051/state: refused",
                         fetched_at=NOW - 6)
    assert lines[1] == ("! no answer from http://m:5051/state: refused; showing data from 6s ago; "
                        "retrying every 0.5s")
    assert any(line.startswith("CPUS") for line in lines)
    lines = render_frame(None, now=NOW, interval=2, error="no leader")
    assert len(lines) == 2 and lines[1] == "! no leader; retrying every 2s"
