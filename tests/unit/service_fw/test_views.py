"""The REST API's JSON views: embeds, label selectors, tasks, apps (and what is kept encoded),
and the launch queue's entries (pure)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from mensa.frameworks.service_fw.app_reading import parse_app
from mensa.frameworks.service_fw.engine import QueueEntry, ServiceEngine
from mensa.frameworks.service_fw.events import iso
from mensa.frameworks.service_fw.instances import Instance
from mensa.frameworks.service_fw.views import (
    COUNTS,
    DEPLOYMENTS,
    LAST_TASK_FAILURE,
    LIST_EMBEDS,
    READINESS,
    SHOW_EMBEDS,
    TASKS,
    AppViews,
    counts,
    parse_label_selector,
    queue_json,
    resolve_embeds,
    select_apps,
    service_ports,
    task_json,
    task_text,
)

NOW = 1_900_000_000.0


def engine_with(*docs: dict[str, Any]) -> ServiceEngine:
    ids = itertools.count(1)
    engine = ServiceEngine(new_id=lambda: f"{next(ids):032x}")
    for doc in docs:
        engine.create_app(parse_app(doc if "args" in doc else {"cmd": "sleep 100", **doc}), NOW)
    return engine


def add_task(engine: ServiceEngine, app_id: str, n: int, **fields: Any) -> Instance:
    record = engine.app_record(app_id)
    values: dict[str, Any] = {"agent_id": "a1", "hostname": "10.0.0.1", "host_ports": (31000 + n,),
                              "state": "TASK_RUNNING", "staged_at": NOW + 1, "started_at": NOW + 2, **fields}
    inst = Instance(task_id=f"{app_id.strip('/').replace('/', '_')}.t{n}", app_id=app_id,
                    version=record.version, **values)
    engine.add_instance(inst)
    return inst


# -- embeds ----------------------------------------------------------------------------------------

def test_embeds_are_read_with_or_without_marathons_prefixes() -> None:
    assert resolve_embeds(["apps.counts"]) == {COUNTS}
    assert resolve_embeds(["app.lastTaskFailure", "deployments"]) == {LAST_TASK_FAILURE, DEPLOYMENTS}
    # tasks brings deployments, failures brings all three (Marathon's deprecated forms)
    assert resolve_embeds(["apps.tasks"]) == {TASKS, DEPLOYMENTS}
    assert resolve_embeds(["group.apps.failures"]) == {TASKS, LAST_TASK_FAILURE, DEPLOYMENTS}
    assert resolve_embeds(["apps.counts,apps.readiness"]) == {COUNTS, READINESS}
    # unknown and unsupported ones are ignored, as Marathon ignores them
    assert resolve_embeds(["apps.taskStats", "apps.everything", ""]) == frozenset()


# -- label selectors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("selector", "expected"), [
    ("tier", ["a", "b", "c"]),
    ("tier==web", ["a", "b"]),
    ("tier!=web", ["c"]),  # d has no tier: != needs the label, as in Marathon
    ("env in (prod, qa)", ["a", "c"]),
    ("env notin (prod)", ["b", "c"]),
    ("tier==web, env==prod", ["a"]),
    ("tier == web ,env in(qa,dev)", ["b"]),
    ("owner==team-a/x.y", ["d"]),
    (r"note==hello\ world\!", ["d"]),
    ("", ["a", "b", "c", "d"]),
    ("missing", []),
])
def test_label_selectors_match_as_marathons(selector: str, expected: list[str]) -> None:
    labels = {
        "a": {"tier": "web", "env": "prod"},
        "b": {"tier": "web", "env": "dev"},
        "c": {"tier": "db", "env": "qa"},
        "d": {"owner": "team-a/x.y", "note": "hello world!"},
    }
    matches = parse_label_selector(selector)
    assert [name for name, values in labels.items() if matches(values)] == expected


@pytest.mark.parametrize("selector", ["tier==", "==web", "env in prod", "env in (prod", "a b", "tier===x",
                                      "x,", "note==hello world"])
def test_malformed_label_selectors_are_refused_with_a_position(selector: str) -> None:
    with pytest.raises(ValueError, match="position"):
        parse_label_selector(selector)


def test_apps_are_selected_by_id_cmd_and_labels_ignoring_case() -> None:
    engine = engine_with({"id": "/shop/web", "cmd": "python3 -m http.server", "labels": {"tier": "web"}},
                         {"id": "/shop/db", "cmd": "postgres", "labels": {"tier": "db"}},
                         {"id": "/ops/web", "args": ["nginx"]})
    records = engine.app_records()

    def ids(**kwargs: Any) -> list[str]:
        return [r.app_id for r in select_apps(records, **kwargs)]

    assert ids(id_part="SHOP") == ["/shop/db", "/shop/web"]
    assert ids(cmd_part="HTTP") == ["/shop/web"]
    assert ids(cmd_part="nginx") == []  # an app without a cmd has none to match
    assert ids(id_part="web", label=parse_label_selector("tier")) == ["/shop/web"]
    assert ids() == ["/ops/web", "/shop/db", "/shop/web"]


# -- tasks -----------------------------------------------------------------------------------------

def test_a_task_in_marathons_shape() -> None:
    inst = Instance(task_id="web.t1", app_id="/web", version="v1", agent_id="a1", hostname="10.0.0.7",
                    host_ports=(31005, 31006), state="TASK_RUNNING", healthy=True, staged_at=NOW,
                    started_at=NOW + 1.5)
    doc = task_json(inst, [10000, 0], has_checks=True)
    assert doc == {
        "id": "web.t1", "appId": "/web", "host": "10.0.0.7", "ports": [31005, 31006],
        "servicePorts": [10000, 0], "slaveId": "a1", "stagedAt": iso(NOW),
        "startedAt": "2030-03-17T17:46:41.500Z", "version": "v1", "state": "TASK_RUNNING",
        "healthCheckResults": [{"alive": True, "consecutiveFailures": 0, "firstSuccess": None,
                                "lastSuccess": None, "lastFailure": None, "lastFailureCause": None,
                                "taskId": "web.t1", "instanceId": "web.t1"}],
        "ipAddresses": [{"ipAddress": "10.0.0.7", "protocol": "IPv4"}], "localVolumes": []}


def test_health_results_appear_only_for_apps_with_checks_and_a_verdict() -> None:
    staging = Instance(task_id="web.t1", app_id="/web", version="v1", hostname="node-1.example")
    assert task_json(staging, [], has_checks=True)["healthCheckResults"] == []
    assert task_json(staging, [], has_checks=True)["startedAt"] is None
    assert task_json(staging, [], has_checks=True)["ipAddresses"] == []  # a name, not an address
    sick = Instance(task_id="web.t2", app_id="/web", version="v1", state="TASK_RUNNING", healthy=False,
                    message="HTTP 500")
    result = task_json(sick, [], has_checks=True)["healthCheckResults"][0]
    assert (result["alive"], result["consecutiveFailures"]) == (False, 1)
    assert result["lastFailureCause"] == "HTTP 500"
    assert task_json(sick, [], has_checks=False)["healthCheckResults"] == []
    v6 = Instance(task_id="web.t3", app_id="/web", version="v1", hostname="::1")
    assert task_json(v6, [], has_checks=False)["ipAddresses"] == [{"ipAddress": "::1", "protocol": "IPv6"}]


@pytest.mark.parametrize("fields", [
    {},
    {"healthy": True, "state": "TASK_RUNNING", "started_at": NOW + 1},
    {"healthy": False, "message": 'said "no" \\ \u00e9\n\u2028'},
    {"healthy": False, "message": ""},
    {"hostname": "::1", "host_ports": (), "staged_at": 0.0},
    {"hostname": "h\u00f6st", "agent_id": "a\"1", "host_ports": (1, 2, 3)},
])
@pytest.mark.parametrize("has_checks", [True, False])
def test_the_hand_written_task_text_is_the_task_json(fields: dict[str, Any], has_checks: bool) -> None:
    values: dict[str, Any] = {"hostname": "10.0.0.1", "agent_id": "a1", "host_ports": (31000,),
                              "staged_at": NOW, **fields}
    inst = Instance(task_id="shop_web.x", app_id="/shop/web", version="v1", **values)
    text = task_text(inst, [10000, 0], has_checks)
    assert json.loads(text) == task_json(inst, [10000, 0], has_checks)
    assert text.isascii()


def test_counts_follow_marathon() -> None:
    tasks = [Instance(task_id=f"t{i}", app_id="/a", version="v", state=state, healthy=healthy)
             for i, (state, healthy) in enumerate([("TASK_STAGING", None), ("TASK_STARTING", None),
                                                   ("TASK_RUNNING", True), ("TASK_RUNNING", False),
                                                   ("TASK_RUNNING", None), ("TASK_UNREACHABLE", None)])]
    assert counts(tasks, has_checks=True) == (2, 3, 1, 1)
    assert counts(tasks, has_checks=False) == (2, 3, 0, 0)  # no checks: neither healthy nor unhealthy


def test_service_ports_come_from_port_definitions_or_bridge_mappings() -> None:
    host = parse_app({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 10001}, {"port": 0}]})
    bridge = parse_app({"id": "/b", "container": {"type": "DOCKER", "docker": {
        "image": "nginx", "network": "BRIDGE",
        "portMappings": [{"containerPort": 80, "servicePort": 10080}]}}})
    assert service_ports(host) == [10001, 0]
    assert service_ports(bridge) == [10080]
    assert service_ports(None) == []


# -- apps ------------------------------------------------------------------------------------------

def test_an_app_renders_its_definition_and_the_embeds_asked_for() -> None:
    engine = engine_with({"id": "/web", "instances": 2, "healthChecks": [{"protocol": "TCP"}]})
    add_task(engine, "/web", 1, healthy=True)
    add_task(engine, "/web", 2, state="TASK_STAGING")
    engine.last_failures["/web"] = {"appId": "/web", "taskId": "web.t0", "state": "TASK_FAILED"}
    views = AppViews()
    record = engine.app_record("/web")

    full = json.loads(views.app_text(record, engine, SHOW_EMBEDS | {READINESS}))
    assert full["id"] == "/web" and full["instances"] == 2 and full["cmd"] == "sleep 100"
    assert full["version"] == record.version
    assert full["versionInfo"] == {"lastScalingAt": record.last_scaling_at,
                                   "lastConfigChangeAt": record.last_config_change_at}
    count_keys = ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy")
    assert [full[k] for k in count_keys] == [1, 1, 1, 0]
    assert [t["id"] for t in full["tasks"]] == ["web.t1", "web.t2"]
    assert full["deployments"] == [{"id": d.id} for d in engine.deployments_of("/web")] != []
    assert full["lastTaskFailure"]["taskId"] == "web.t0"
    assert full["readinessCheckResults"] == []

    listed = json.loads(views.app_text(record, engine, LIST_EMBEDS))
    assert "tasks" not in listed and "lastTaskFailure" not in listed and listed["tasksRunning"] == 1
    bare = json.loads(views.app_text(record, engine, frozenset()))
    assert not {"tasks", "tasksRunning", "deployments", "lastTaskFailure"} & set(bare)
    given = json.loads(views.app_text(record, engine, frozenset({DEPLOYMENTS}), deployment_ids=["d-9"]))
    assert given["deployments"] == [{"id": "d-9"}]


def test_an_app_without_failures_has_no_last_task_failure() -> None:
    engine = engine_with({"id": "/web"})
    doc = json.loads(AppViews().app_text(engine.app_record("/web"), engine, SHOW_EMBEDS))
    assert "lastTaskFailure" not in doc and doc["tasks"] == []


def test_definitions_are_encoded_once_per_version_and_tasks_once_per_change() -> None:
    engine = engine_with({"id": "/web"})
    views = AppViews()
    record = engine.app_record("/web")
    first = views.definition_text(record)
    assert views.definition_text(record) is first  # kept
    engine.scale_app("/web", 3, NOW + 10, force=True)
    changed = views.definition_text(engine.app_record("/web"))
    assert changed is not first and json.loads(changed + "}")["instances"] == 3

    inst = add_task(engine, "/web", 1, state="TASK_STAGING", started_at=None)
    text = views.task_text(inst, [0], False)
    assert views.task_text(inst, [0], False) is text
    inst.state, inst.started_at = "TASK_RUNNING", NOW + 20
    again = json.loads(views.task_text(inst, [0], False))
    assert again["state"] == "TASK_RUNNING" and again["startedAt"] == iso(NOW + 20)
    assert json.loads(views.task_text(inst, [10000], False))["servicePorts"] == [10000]


def test_apps_text_is_one_json_document_in_the_order_given() -> None:
    engine = engine_with({"id": "/b"}, {"id": "/a"})
    add_task(engine, "/a", 1)
    views = AppViews()
    doc = json.loads(views.apps_text(engine.app_records(), engine, LIST_EMBEDS | {TASKS}))
    assert [a["id"] for a in doc["apps"]] == ["/a", "/b"]
    assert [len(a["tasks"]) for a in doc["apps"]] == [1, 0]
    assert json.loads(views.apps_text([], engine, LIST_EMBEDS, key="*")) == {"*": []}
    tasks = json.loads(views.tasks_text(engine.all_instances(), engine))
    assert [t["id"] for t in tasks["tasks"]] == ["a.t1"]


def test_what_is_kept_for_removed_apps_and_tasks_is_forgotten() -> None:
    engine = engine_with(*({"id": f"/app{i}"} for i in range(70)))
    views = AppViews()
    for i in range(70):
        for n in range(15):
            add_task(engine, f"/app{i}", n)
    views.apps_text(engine.app_records(), engine, LIST_EMBEDS | {TASKS})
    assert views.kept() == (70, 1050)
    for i in range(70):
        engine.remove_app(f"/app{i}", NOW)
    engine.instances.clear()
    views.apps_text(engine.app_records(), engine, LIST_EMBEDS)
    views.tasks_text([], engine)
    assert views.kept() == (0, 0)  # past a margin, what is gone is forgotten


# -- the queue -------------------------------------------------------------------------------------

def entry(**fields: Any) -> QueueEntry:
    values: dict[str, Any] = {
        "app_id": "/web", "spec": parse_app({"id": "/web", "cmd": "x", "cpus": 16}), "count": 3,
        "since": NOW, "delay_until": None, "overdue": False,
        "rejections": {"InsufficientCpus": 4, "UnfulfilledConstraint": 1}, "offers_processed": 6,
        "unused_offers": 5, "last_unused_at": NOW + 5, "last_used_at": None,
        "recent": [{"offerId": "o1", "agentId": "a1", "hostname": "h1", "reasons": ["InsufficientCpus"],
                    "message": "not enough cpus: 16 wanted, 8 offered", "timestamp": NOW + 5}],
        "message": "3 instance(s) wait: the latest offer was declined: not enough cpus", **fields}
    return QueueEntry(**values)


def test_a_queue_entry_says_how_many_wait_and_why() -> None:
    doc = queue_json(entry(), NOW + 10)
    assert doc["count"] == 3 and doc["since"] == iso(NOW)
    assert doc["delay"] == {"timeLeftSeconds": 0, "overdue": True}
    assert doc["app"]["id"] == "/web" and doc["app"]["cpus"] == 16
    # Marathon's fields only (the marathon client refuses others); the sentence is in the summary.
    assert set(doc) == {"count", "delay", "since", "processedOffersSummary", "app"}
    summary = doc["processedOffersSummary"]
    assert "not enough cpus" in summary["message"]
    assert (summary["processedOffersCount"], summary["unusedOffersCount"]) == (6, 5)
    assert summary["lastUnusedOfferAt"] == iso(NOW + 5) and summary["lastUsedOfferAt"] is None
    funnel = {r["reason"]: (r["processed"], r["declined"]) for r in summary["rejectSummaryLastOffers"]}
    # Each check sees the offers the checks before it let through.
    assert funnel["UnfulfilledRole"] == (6, 0)
    assert funnel["UnfulfilledConstraint"] == (6, 1)
    assert funnel["InsufficientCpus"] == (5, 4)
    assert funnel["InsufficientMemory"] == (1, 0)
    assert "lastUnusedOffers" not in doc


def test_a_queue_entry_in_backoff_and_its_last_unused_offers() -> None:
    doc = queue_json(entry(delay_until=NOW + 30.2), NOW + 10, last_unused_offers=True)
    assert doc["delay"] == {"timeLeftSeconds": 21, "overdue": False}
    assert doc["lastUnusedOffers"] == [{
        "offer": {"id": "o1", "agentId": "a1", "hostname": "h1"}, "timestamp": iso(NOW + 5),
        "reason": ["InsufficientCpus"], "message": "not enough cpus: 16 wanted, 8 offered"}]
