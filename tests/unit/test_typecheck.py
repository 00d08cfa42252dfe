"""mypy passes on the pure layer (decision code and value types), with imports resolved.

The source folders install as ``mensa.*`` through setuptools' package-dir mapping, which mypy
cannot follow through an editable install; this lays out a ``mensa/`` tree of symlinks and points
mypy at it, so cross-module types are really checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("proto", "master", "agent", "frameworks", "deploy", "bench")
PURE_MODULES = [
    "mensa.proto.resources",
    "mensa.proto.transport",
    "mensa.proto.detector",
    "mensa.proto.zk",
    "mensa.proto.states",
    "mensa.proto.attributes",
    "mensa.master.state",
    "mensa.master.calls",
    "mensa.master.task_calls",
    "mensa.master.agents",
    "mensa.master.records",
    "mensa.master.metrics",
    "mensa.proto.mesos_json",
    "mensa.deploy.views",
    "mensa.deploy.top_view",
    "mensa.deploy.job_views",
    "mensa.master.http.metrics_snapshot",
    "mensa.agent.metrics",
    "mensa.frameworks.batch_fw",
    "mensa.frameworks.batch_fw.jobs",
    "mensa.frameworks.reading",
    "mensa.frameworks.commands",
    "mensa.frameworks.batch_fw.cron",
    "mensa.frameworks.batch_fw.engine",
    "mensa.frameworks.batch_fw.book",
    "mensa.frameworks.batch_fw.runs",
    "mensa.frameworks.batch_fw.schedules",
    "mensa.frameworks.batch_fw.firing",
    "mensa.frameworks.batch_fw.offering",
    "mensa.frameworks.batch_fw.placement",
    "mensa.frameworks.batch_fw.updates",
    "mensa.frameworks.batch_fw.recovery",
    "mensa.frameworks.batch_fw.queries",
    "mensa.frameworks.batch_fw.commands",
    "mensa.frameworks.service_fw.apps",
    "mensa.frameworks.service_fw.app_reading",
    "mensa.frameworks.service_fw.app_parts",
    "mensa.frameworks.service_fw.app_ports",
    "mensa.frameworks.service_fw.views",
    "mensa.frameworks.service_fw.restore",
    "mensa.frameworks.service_fw.service_ports",
    "mensa.frameworks.service_fw.changes",
    "mensa.frameworks.service_fw.errors",
    "mensa.deploy.app_views",
    "mensa.frameworks.service_fw.instances",
    "mensa.frameworks.service_fw.deployments",
    "mensa.frameworks.service_fw.commands",
    "mensa.frameworks.service_fw.events",
    "mensa.frameworks.service_fw.records",
    "mensa.frameworks.service_fw.engine",
    "mensa.frameworks.service_fw.converge",
    "mensa.frameworks.service_fw.offering",
    "mensa.frameworks.service_fw.planner",
    "mensa.frameworks.service_fw.backoff",
    "mensa.frameworks.service_fw.constraints",
    "mensa.frameworks.service_fw.matching",
    "mensa.frameworks.service_fw.tasks",
    "mensa.master.offers",
    "mensa.master.validation",
    "mensa.master.registry",
    "mensa.master.stores",
    "mensa.master.election",
    "mensa.master.allocator.sorter",
    "mensa.master.allocator.allocator",
    "mensa.master.allocator.roles",
    "mensa.master.allocator.quota",
    "mensa.master.allocator.books",
    "mensa.master.allocator.views",
    "mensa.master.operator",
    "mensa.master.http.state_json",
    "mensa.agent.state",
    "mensa.agent.checkpoint_records",
    "mensa.agent.leader_handling",
    "mensa.agent.task_recovery",
    "mensa.agent.health_handling",
    "mensa.agent.launch_specs",
    "mensa.agent.events",
    "mensa.agent.status_updates",
    "mensa.agent.registration",
    "mensa.agent.tasks",
    "mensa.agent.sandbox",
    "mensa.agent.gc",
    "mensa.agent.health",
    "mensa.agent.containerizer.docker_config",
    "mensa.agent.containerizer.cgroups",
    "mensa.agent.containerizer.launcher",
    "mensa.frameworks.convert",
    "mensa.frameworks.events",
    "mensa.frameworks.reconciler",
    "mensa.frameworks.scheduler",
]


def test_mypy_passes_on_the_pure_layer(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    tree = tmp_path / "src" / "mensa"
    tree.mkdir(parents=True)
    for folder in FOLDERS:
        os.symlink(ROOT / folder, tree / folder)
    args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(tmp_path / "cache"), "--follow-imports", "silent"]
    for module in PURE_MODULES:
        args += ["-m", module]
    env = {**os.environ, "MYPYPATH": str(tmp_path / "src")}
    result = subprocess.run(args, check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
