"""Reading Marathon app definitions into AppSpecs, every problem by path, and rendering them back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mensa.frameworks.reading import SpecError
from mensa.frameworks.service_fw.app_reading import (
    MAX_SPEC_BYTES,
    app_json,
    dependency_cycle,
    id_problem,
    ignored_fields,
    merge_app,
    parse_app,
    resolve_dependency,
    resolve_id,
)
from mensa.frameworks.service_fw.apps import (
    UNREACHABLE_NEVER,
    AppSpec,
    Constraint,
    DockerSpec,
    HealthCheckSpec,
    PortDefinition,
    PortMapping,
    UnreachableStrategy,
    UpgradeStrategy,
)


def app(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "/shop/web", "cmd": "sleep 100"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not ...}


def problems(doc: Any, **kwargs: Any) -> dict[str, list[str]]:
    """The (path -> reasons) parse_app raises for ``doc``; fails the test if it parses."""
    with pytest.raises(SpecError) as info:
        parse_app(doc, **kwargs)
    out: dict[str, list[str]] = {}
    for path, reason in info.value.details:
        out.setdefault(path, []).append(reason)
    return out


def round_trips(spec: AppSpec) -> None:
    doc = app_json(spec)
    again = parse_app(json.loads(json.dumps(doc)))
    assert again == spec
    assert app_json(again) == doc


# -- the whole document ----------------------------------------------------------------------------


def test_a_minimal_app_gets_marathons_defaults_and_one_port() -> None:
    spec = parse_app({"id": "web", "cmd": "python3 -m http.server $PORT0"})
    assert spec.id == "/web"
    assert (spec.instances, spec.cpus, spec.mem, spec.disk, spec.gpus) == (1, 1.0, 128.0, 0.0, 0.0)
    assert spec.port_definitions == (PortDefinition(port=0),)
    assert spec.upgrade_strategy == UpgradeStrategy(1.0, 1.0)
    assert spec.unreachable_strategy == UnreachableStrategy(300.0, 600.0)
    assert (spec.backoff_seconds, spec.backoff_factor, spec.max_launch_delay_seconds) == (1.0, 1.15, 300.0)
    assert spec.kill_selection == "YOUNGEST_FIRST"
    assert spec.container is None and spec.health_checks == () and spec.constraints == ()
    round_trips(spec)


@pytest.mark.parametrize("doc", [[], "app", 3, None, True])
def test_a_body_that_is_not_an_object_is_a_spec_error(doc: Any) -> None:
    assert list(problems(doc)) == [""]


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    found = problems({"id": "Shop_Web", "cmd": "x", "cpus": -1, "mem": "lots", "instances": -2,
                      "healthChecks": [{"protocol": "GOPHER"}], "constraints": [["host", "NEAR"]],
                      "env": {"A": 1}})
    assert set(found) == {"/id", "/cpus", "/mem", "/instances", "/healthChecks/0/protocol",
                          "/constraints/0", "/env/A"}


def test_spec_error_renders_marathons_error_body() -> None:
    with pytest.raises(SpecError) as info:
        parse_app(app(cpus=-1, mem=-1))
    body = info.value.to_json()
    assert body["message"] == "Object is not valid"
    assert {d["path"] for d in body["details"]} == {"/cpus", "/mem"}
    assert all(d["errors"] for d in body["details"])


def test_a_get_response_can_be_put_back() -> None:
    spec = parse_app(app(instances=3, healthChecks=[{"protocol": "HTTP", "path": "/health"}]))
    doc = app_json(spec)
    doc.update(version="2026-11-22T10:00:00.000Z", tasksStaged=0, tasksRunning=3, tasksHealthy=3,
               tasksUnhealthy=0, deployments=[{"id": "d1"}], tasks=[{"id": "shop_web.1"}],
               lastTaskFailure=None, taskStats={},
               versionInfo={"lastScalingAt": "x", "lastConfigChangeAt": "y"},
               uris=[], fetch=[], storeUrls=[], secrets={}, residency=None, ipAddress=None, executor="",
               readinessChecks=[], networks=[{"mode": "host"}])
    assert parse_app(doc) == spec


@pytest.mark.parametrize(("key", "value"), [
    ("version", 5), ("tasksRunning", "3"), ("tasksHealthy", True), ("deployments", {}), ("tasks", "x"),
    ("lastTaskFailure", []), ("versionInfo", "v"), ("uris", "http://x"), ("secrets", []), ("executor", 1),
])
def test_a_known_read_only_field_of_the_wrong_type_is_an_error(key: str, value: Any) -> None:
    assert f"/{key}" in problems(app(**{key: value}))


@pytest.mark.parametrize(("key", "value"), [
    ("uris", ["http://x/a.tgz"]), ("fetch", [{"uri": "http://x/a.tgz"}]), ("storeUrls", ["http://x"]),
    ("secrets", {"s": {"source": "x"}}), ("readinessChecks", [{"name": "r"}]), ("residency", {"x": 1}),
    ("ipAddress", {"networkName": "n"}), ("executor", "/usr/bin/my-executor"),
])
def test_fields_of_features_mensa_lacks_are_refused_unless_empty(key: str, value: Any) -> None:
    assert "not supported" in problems(app(**{key: value}))[f"/{key}"][0]


def test_executor_cmd_is_the_default_executor() -> None:
    assert parse_app(app(executor="//cmd")) == parse_app(app())


def test_unknown_fields_are_ignored_and_listed() -> None:
    doc = app(fancyNewField={"a": 1}, tty=True, version="v1")
    assert parse_app(doc) == parse_app(app())
    assert ignored_fields(doc) == ["fancyNewField", "tty"]
    assert ignored_fields([1]) == []


def test_an_app_larger_than_the_bound_is_refused() -> None:
    found = problems(app(env={f"V{i}": "x" * 1000 for i in range(70)}))
    assert "bytes" in found[""][0] and str(MAX_SPEC_BYTES) in found[""][0]


# -- ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "base", "want"), [
    ("web", "/", "/web"), ("/shop/web", "/", "/shop/web"), ("web", "/shop", "/shop/web"),
    ("/a//b/../c/", "/", "/a/c"), ("./web", "/shop", "/shop/web"), ("../db", "/shop/web", "/shop/db"),
    ("../../../x", "/a", "/x"), ("/", "/", "/"), ("a/./b", "/", "/a/b"),
])
def test_resolve_id(raw: str, base: str, want: str) -> None:
    assert resolve_id(raw, base) == want


@pytest.mark.parametrize(("raw", "want"), [
    ("../db", "/shop/db"), ("db", "/shop/db"), ("/other/db", "/other/db"), ("./db", "/shop/web/db"),
    ("../../db", "/db"), ("data/db", "/shop/data/db"),
])
def test_dependencies_resolve_like_marathon(raw: str, want: str) -> None:
    assert resolve_dependency(raw, "/shop/web") == want
    assert parse_app(app(dependencies=[raw])).dependencies == (want,)


@pytest.mark.parametrize("good", ["/web", "web", "/shop/web", "/a.b/c-d/e1", "/0", "/" + "a" * 199,
                                  "/shop/../web"])
def test_valid_ids(good: str) -> None:
    assert id_problem(good) is None


@pytest.mark.parametrize("bad", ["", "/", "//", 5, None, "/Shop", "/shop_web", "/-web", "/web-", "/we b",
                                 "/a..b", "/.web", "/web.", "/" + "a" * 200, "/a/../..", "/caf\u00e9"])
def test_invalid_ids(bad: Any) -> None:
    assert id_problem(bad) is not None
    if isinstance(bad, str):
        assert "/id" in problems(app(id=bad))


def test_id_is_required_unless_the_url_gives_it() -> None:
    assert problems({"cmd": "x"}) == {"/id": ["is required"]}
    assert parse_app({"cmd": "x"}, app_id="/shop/web").id == "/shop/web"
    assert parse_app({"cmd": "x"}, app_id="shop/web").id == "/shop/web"


def test_the_body_id_and_the_url_id_must_agree() -> None:
    assert parse_app(app(id="shop/web"), app_id="/shop/web").id == "/shop/web"
    assert "URL" in problems(app(id="/shop/api"), app_id="/shop/web")["/id"][0]
    assert "URL" in problems({"cmd": "x"}, app_id="/Bad_Id")["/id"][0]


# -- command, resources, scalars -------------------------------------------------------------------


def test_cmd_and_args_are_exclusive_and_one_is_needed_without_an_image() -> None:
    assert "/args" in problems(app(args=["sleep", "1"]))
    assert "" in problems({"id": "/a"})
    assert "" in problems({"id": "/a", "args": []})
    assert parse_app({"id": "/a", "args": ["sleep", "1"]}).args == ("sleep", "1")
    assert parse_app(app(args=[])).args is None
    assert "/args/0" in problems({"id": "/a", "args": [""]})
    assert "/args" in problems({"id": "/a", "args": ["a", 1]})
    assert "/cmd" in problems({"id": "/a", "cmd": " "})
    assert "/cmd" in problems({"id": "/a", "cmd": ["sleep"]})


def test_a_docker_image_alone_is_runnable_and_args_go_with_it() -> None:
    spec = parse_app({"id": "/a", "container": {"type": "DOCKER", "docker": {"image": "nginx"}},
                      "args": ["-g", "daemon off;"]})
    assert spec.container is not None and spec.container.image == "nginx"
    assert spec.args == ("-g", "daemon off;")
    round_trips(spec)


@pytest.mark.parametrize(("key", "value"), [
    ("cpus", 0), ("cpus", -0.5), ("cpus", "1"), ("cpus", True), ("cpus", float("inf")),
    ("cpus", float("nan")),
    ("cpus", 2e6), ("cpus", 10**400), ("mem", 0), ("mem", -1), ("mem", 1e13), ("disk", -1), ("gpus", -1),
    ("gpus", 0.5), ("instances", -1), ("instances", 1.5), ("instances", "3"), ("instances", 10_001),
    ("instances", 10**30), ("backoffSeconds", -1), ("backoffFactor", 0.5), ("backoffFactor", 1001),
    ("maxLaunchDelaySeconds", -1), ("maxLaunchDelaySeconds", 2e9), ("taskKillGracePeriodSeconds", -1),
    ("requirePorts", "yes"), ("user", 5), ("user", ""), ("killSelection", "RANDOM"), ("labels", ["a"]),
    ("labels", {"a": 1}), ("env", {"A": 1}), ("env", {"A": {"secret": "s"}}), ("env", {"": "x"}),
    ("env", "A=1"), ("role", "-bad"), ("role", 5), ("acceptedResourceRoles", "*"),
    ("acceptedResourceRoles", ["a b"]),
])
def test_bad_scalars_are_refused_at_their_path(key: str, value: Any) -> None:
    found = problems(app(**{key: value}))
    assert any(path == f"/{key}" or path.startswith(f"/{key}/") for path in found), found


def test_good_scalars_are_read() -> None:
    spec = parse_app(app(cpus=0.25, mem=64, disk=10, gpus=1, instances=0, backoffSeconds=2, backoffFactor=2,
                         maxLaunchDelaySeconds=60, taskKillGracePeriodSeconds=5, requirePorts=True,
                         user="nobody", killSelection="OldestFirst", labels={"team": "a"},
                         env={"B": "2", "A": "1"}, role="web", acceptedResourceRoles=["*", "web", "web"]))
    assert (spec.cpus, spec.mem, spec.disk, spec.gpus, spec.instances) == (0.25, 64.0, 10.0, 1.0, 0)
    assert (spec.backoff_seconds, spec.backoff_factor, spec.max_launch_delay_seconds) == (2.0, 2.0, 60.0)
    assert spec.task_kill_grace_period_seconds == 5.0 and spec.require_ports and spec.user == "nobody"
    assert spec.kill_selection == "OLDEST_FIRST" and spec.labels == (("team", "a"),)
    assert spec.env == (("A", "1"), ("B", "2"))
    assert spec.role == "web" and spec.accepted_resource_roles == ("*", "web")
    assert parse_app(app(instances=3.0)).instances == 3
    assert parse_app(app(acceptedResourceRoles=[])).accepted_resource_roles is None
    round_trips(spec)


def test_nulls_mean_defaults() -> None:
    doc = app(cpus=None, mem=None, instances=None, env=None, labels=None, container=None, healthChecks=None,
              constraints=None, upgradeStrategy=None, unreachableStrategy=None, dependencies=None, user=None,
              args=None, portDefinitions=None, ports=None, killSelection=None, role=None)
    assert parse_app(doc) == parse_app(app())


# -- ports, container, network ---------------------------------------------------------------------


def test_ports_short_form_becomes_port_definitions() -> None:
    spec = parse_app(app(ports=[0, 8080]))
    assert spec.port_definitions == (PortDefinition(0), PortDefinition(8080))
    assert parse_app(app(ports=[0, 8080], portDefinitions=[{"port": 0}, {"port": 8080}])) == spec
    assert "/ports" in problems(app(ports=[1, 2], portDefinitions=[{"port": 1}]))
    assert parse_app(app(ports=[])).port_definitions == ()
    round_trips(spec)


def test_port_definitions_are_read_and_checked() -> None:
    spec = parse_app(app(portDefinitions=[
        {"port": 0, "name": "http", "protocol": "tcp", "labels": {"VIP_0": "/web:80"}},
        {"port": 9000, "name": "metrics", "protocol": "udp,tcp"}], requirePorts=True))
    assert spec.port_definitions == (PortDefinition(0, "tcp", "http", (("VIP_0", "/web:80"),)),
                                     PortDefinition(9000, "udp,tcp", "metrics"))
    assert spec.port_names == ("http", "metrics") and spec.required_host_ports == (0, 9000)
    round_trips(spec)


@pytest.mark.parametrize(("defs", "path"), [
    ([{"port": 70000}], "/portDefinitions/0/port"), ([{"port": -1}], "/portDefinitions/0/port"),
    ([{"port": "80"}], "/portDefinitions/0/port"), ([{"protocol": "sctp"}], "/portDefinitions/0/protocol"),
    ([{"name": "Http"}], "/portDefinitions/0/name"),
    ([{"name": "a"}, {"name": "a"}], "/portDefinitions/1/name"),
    ([{"port": 80}, {"port": 80}], "/portDefinitions/1/port"), (["80"], "/portDefinitions/0"),
    ({"port": 80}, "/portDefinitions"), ([{"labels": {"a": 1}}], "/portDefinitions/0/labels/a"),
])
def test_bad_port_definitions(defs: Any, path: str) -> None:
    assert path in problems(app(portDefinitions=defs))


def test_bad_short_ports() -> None:
    assert "/ports/1" in problems(app(ports=[80, 65536]))
    assert "/ports" in problems(app(ports="80"))


def docker_app(**docker: Any) -> dict[str, Any]:
    return app(container={"type": "DOCKER", "docker": {"image": "nginx:1", **docker}})


def test_a_bridge_container_reads_its_port_mappings() -> None:
    spec = parse_app(docker_app(network="BRIDGE", privileged=True, forcePullImage=True,
                                parameters=[{"key": "label", "value": "a=1"},
                                            {"key": "label", "value": "b=2"}],
                                portMappings=[{"containerPort": 80, "hostPort": 0, "servicePort": 10000,
                                               "protocol": "tcp", "name": "http", "labels": {"x": "y"}},
                                              {"containerPort": 53, "protocol": "udp", "hostPort": 5353}]))
    assert spec.container == DockerSpec(
        image="nginx:1", network="BRIDGE", force_pull_image=True, privileged=True,
        parameters=(("label", "a=1"), ("label", "b=2")),
        port_mappings=(PortMapping(80, 0, 10000, "tcp", "http", (("x", "y"),)),
                       PortMapping(53, 5353, 0, "udp")))
    assert spec.port_definitions == () and spec.port_count == 2 and spec.required_host_ports == (0, 5353)
    round_trips(spec)


def test_port_mappings_may_sit_at_the_container_level_with_networks() -> None:
    legacy = parse_app(docker_app(network="BRIDGE", portMappings=[{"containerPort": 80}]))
    newer = parse_app(app(networks=[{"mode": "container/bridge"}],
                          container={"type": "DOCKER", "docker": {"image": "nginx:1"},
                                     "portMappings": [{"containerPort": 80}]}))
    assert newer == legacy
    both = app(container={"type": "DOCKER", "docker": {"image": "nginx:1", "network": "BRIDGE",
                                                       "portMappings": [{"containerPort": 80}]},
                          "portMappings": [{"containerPort": 80}]})
    assert parse_app(both) == legacy
    both["container"]["portMappings"] = [{"containerPort": 81}]
    assert "/container/portMappings" in problems(both)


def test_default_ports_per_network() -> None:
    assert parse_app(docker_app()).port_definitions == (PortDefinition(0),)
    bridge = parse_app(docker_app(network="BRIDGE"))
    assert bridge.container is not None and bridge.container.port_mappings == (PortMapping(0),)
    assert bridge.port_definitions == ()
    none = parse_app(docker_app(network="NONE"))
    assert none.port_definitions == () and none.port_count == 0


@pytest.mark.parametrize(("doc", "path"), [
    (docker_app(network="USER"), "/container/docker/network"),
    (docker_app(network="HOST", portMappings=[{"containerPort": 80}]), "/container/docker/portMappings"),
    (docker_app(network="BRIDGE", portMappings=[{"containerPort": 70000}]),
     "/container/docker/portMappings/0/containerPort"),
    (docker_app(network="BRIDGE", portMappings=[{"hostPort": 80}, {"hostPort": 80}]),
     "/container/docker/portMappings/1/hostPort"),
    (docker_app(network="BRIDGE", portMappings=[{"name": "a"}, {"name": "a"}]),
     "/container/docker/portMappings/1/name"),
    (docker_app(network="BRIDGE", portMappings={"containerPort": 80}), "/container/docker/portMappings"),
    (docker_app(network="BRIDGE", portMappings=[]) | {"portDefinitions": [{"port": 0}]}, "/portDefinitions"),
    (docker_app(privileged="yes"), "/container/docker/privileged"),
    (docker_app(forcePullImage=1), "/container/docker/forcePullImage"),
    (docker_app(parameters=[{"value": "x"}]), "/container/docker/parameters/0/key"),
    (docker_app(parameters={"a": "b"}), "/container/docker/parameters"),
    (docker_app(image=""), "/container/docker/image"),
    (app(container={"type": "DOCKER"}), "/container/docker"),
    (app(container={"type": "APPC", "docker": {"image": "x"}}), "/container/type"),
    (app(container={"docker": {"image": "x"}, "volumes": [{"containerPath": "/d", "hostPath": "/d"}]}),
     "/container/volumes"),
    (app(container="nginx"), "/container"),
    (app(networks=[{"mode": "container/bridge"}]), "/networks"),
    (app(networks=[{"mode": "container", "name": "dcos"}]), "/networks/0/mode"),
    (app(networks=[{"mode": "host"}, {"mode": "host"}]), "/networks"),
    (docker_app(network="HOST") | {"networks": [{"mode": "container/bridge"}]}, "/networks"),
])
def test_bad_containers_and_networks(doc: dict[str, Any], path: str) -> None:
    assert path in problems(doc)


def test_a_mesos_container_with_a_docker_image_runs_the_image() -> None:
    spec = parse_app(app(container={"type": "MESOS", "docker": {"image": "busybox"}}))
    assert spec.container == DockerSpec(image="busybox")
    assert parse_app(app(container={"type": "MESOS", "volumes": []})).container is None
    round_trips(spec)


# -- health checks ---------------------------------------------------------------------------------


def test_health_checks_with_defaults_and_mesos_protocols() -> None:
    spec = parse_app(app(portDefinitions=[{"port": 0}, {"port": 0}], healthChecks=[
        {"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 1, "gracePeriodSeconds": 30,
         "intervalSeconds": 5, "timeoutSeconds": 2, "maxConsecutiveFailures": 0, "delaySeconds": 1,
         "ignoreHttp1xx": True},
        {"protocol": "MESOS_TCP"},
        {"protocol": "TCP", "port": 8080},
        {"protocol": "COMMAND", "command": {"value": "curl -f localhost:$PORT0"}},
        {},
    ]))
    http, tcp, fixed, command, default = spec.health_checks
    assert http == HealthCheckSpec("HTTP", "/health", 1, None, None, 30.0, 5.0, 2.0, 0, 1.0, True)
    assert tcp.protocol == "TCP" and tcp.port_index == 0
    assert fixed.port == 8080 and fixed.port_index is None
    assert command.command == "curl -f localhost:$PORT0" and command.port_index is None
    assert default == HealthCheckSpec()
    round_trips(spec)


@pytest.mark.parametrize(("check", "extra", "path"), [
    ({"portIndex": 1}, {}, "/healthChecks/0/portIndex"),
    ({"protocol": "HTTP"}, {"ports": []}, "/healthChecks/0/portIndex"),
    ({"protocol": "TCP"}, {"container": {"docker": {"image": "x", "network": "NONE"}}},
     "/healthChecks/0/portIndex"),
    ({"protocol": "COMMAND"}, {}, "/healthChecks/0/command"),
    ({"protocol": "COMMAND", "command": {"value": ""}}, {}, "/healthChecks/0/command/value"),
    ({"protocol": "COMMAND", "command": "true"}, {}, "/healthChecks/0/command"),
    ({"protocol": "HTTP", "command": {"value": "true"}}, {}, "/healthChecks/0/command"),
    ({"portIndex": 0, "port": 80}, {}, "/healthChecks/0/port"),
    ({"port": 70000}, {}, "/healthChecks/0/port"),
    ({"portIndex": -1}, {}, "/healthChecks/0/portIndex"),
    ({"portIndex": "0"}, {}, "/healthChecks/0/portIndex"),
    ({"protocol": "http"}, {}, "/healthChecks/0/protocol"),
    ({"protocol": 1}, {}, "/healthChecks/0/protocol"),
    ({"intervalSeconds": 0}, {}, "/healthChecks/0/intervalSeconds"),
    ({"timeoutSeconds": -1}, {}, "/healthChecks/0/timeoutSeconds"),
    ({"gracePeriodSeconds": "300"}, {}, "/healthChecks/0/gracePeriodSeconds"),
    ({"maxConsecutiveFailures": -1}, {}, "/healthChecks/0/maxConsecutiveFailures"),
    ({"maxConsecutiveFailures": 1.5}, {}, "/healthChecks/0/maxConsecutiveFailures"),
    ({"delaySeconds": -1}, {}, "/healthChecks/0/delaySeconds"),
    ({"ignoreHttp1xx": "no"}, {}, "/healthChecks/0/ignoreHttp1xx"),
    ({"path": 5}, {}, "/healthChecks/0/path"),
    ("HTTP", {}, "/healthChecks/0"),
])
def test_bad_health_checks(check: Any, extra: dict[str, Any], path: str) -> None:
    assert path in problems(app(healthChecks=[check], **extra))


@pytest.mark.parametrize("key", ["gracePeriodSeconds", "intervalSeconds", "timeoutSeconds", "delaySeconds"])
def test_health_check_times_are_whole_seconds(key: str) -> None:
    # Marathon's schema has them as integers, and go-marathon reads them into ints.
    [reason] = problems(app(healthChecks=[{key: 2.5}]))[f"/healthChecks/0/{key}"]
    assert "whole number of seconds" in reason and "2.5" in reason
    spec = parse_app(app(healthChecks=[{key: 2.0}]))  # a whole float counts, rendered as an integer
    rendered = app_json(spec)["healthChecks"][0][key]
    assert rendered == 2 and isinstance(rendered, int)
    failures = problems(app(healthChecks=[{"maxConsecutiveFailures": 2.5}]))
    assert "/healthChecks/0/maxConsecutiveFailures" in failures


@pytest.mark.parametrize(("doc", "path"), [
    ({"backoffSeconds": 0.5}, "/backoffSeconds"),
    ({"maxLaunchDelaySeconds": 60.5}, "/maxLaunchDelaySeconds"),
    ({"taskKillGracePeriodSeconds": 1.5}, "/taskKillGracePeriodSeconds"),
    ({"unreachableStrategy": {"inactiveAfterSeconds": 0.5}}, "/unreachableStrategy/inactiveAfterSeconds"),
    ({"unreachableStrategy": {"expungeAfterSeconds": 700.5}}, "/unreachableStrategy/expungeAfterSeconds"),
])
def test_app_times_are_whole_seconds_as_in_marathons_schema(doc: dict[str, Any], path: str) -> None:
    [reason] = problems(app(**doc))[path]
    assert "whole number of seconds" in reason


def test_backoff_factor_and_capacities_may_be_fractions() -> None:
    spec = parse_app(app(backoffFactor=1.5, backoffSeconds=3.0,
                         upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25}))
    assert (spec.backoff_factor, spec.backoff_seconds) == (1.5, 3.0)
    assert app_json(spec)["backoffSeconds"] == 3 and isinstance(app_json(spec)["backoffSeconds"], int)
    round_trips(spec)


def test_a_health_check_on_a_missing_port_says_how_many_the_app_has() -> None:
    reason = problems(app(ports=[0, 0], healthChecks=[{"portIndex": 2}]))["/healthChecks/0/portIndex"][0]
    assert "2 ports" in reason
    bridge = docker_app(network="BRIDGE", portMappings=[{"containerPort": 80}])
    assert parse_app(bridge | {"healthChecks": [{"portIndex": 0}]}).health_checks[0].port_index == 0
    assert "/healthChecks/0/portIndex" in problems(bridge | {"healthChecks": [{"portIndex": 1}]})


def test_a_health_check_is_not_blamed_for_ports_that_are_wrong_themselves() -> None:
    found = problems(app(portDefinitions=[{"port": "x"}], healthChecks=[{"portIndex": 0}]))
    assert list(found) == ["/portDefinitions/0/port"]


# -- constraints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "want"), [
    (["hostname", "UNIQUE"], Constraint("hostname", "UNIQUE")),
    (["hostname", "UNIQUE", ""], Constraint("hostname", "UNIQUE")),
    (["rack", "CLUSTER", "r1"], Constraint("rack", "CLUSTER", "r1")),
    (["rack", "CLUSTER"], Constraint("rack", "CLUSTER")),
    (["rack", "GROUP_BY"], Constraint("rack", "GROUP_BY")),
    (["rack", "GROUP_BY", "3"], Constraint("rack", "GROUP_BY", "3")),
    (["rack", "GROUP_BY", "03"], Constraint("rack", "GROUP_BY", "3")),
    (["hostname", "LIKE", "node-[12]"], Constraint("hostname", "LIKE", "node-[12]")),
    (["hostname", "UNLIKE", "node-3.*"], Constraint("hostname", "UNLIKE", "node-3.*")),
    (["rack", "MAX_PER", "2"], Constraint("rack", "MAX_PER", "2")),
    (["zone", "IS", "a"], Constraint("zone", "IS", "a")),
    (["zone", "is", "a"], Constraint("zone", "IS", "a")),
    (["@region", "LIKE", "eu-.*"], Constraint("@region", "LIKE", "eu-.*")),
])
def test_every_constraint_operator(raw: list[str], want: Constraint) -> None:
    spec = parse_app(app(constraints=[raw]))
    assert spec.constraints == (want,)
    round_trips(spec)


@pytest.mark.parametrize("raw", [
    ["hostname", "UNIQUE", "x"], ["rack", "GROUP_BY", "0"], ["rack", "GROUP_BY", "x"],
    ["rack", "GROUP_BY", "-1"], ["rack", "GROUP_BY", "1" * 20], ["hostname", "LIKE"],
    ["hostname", "LIKE", "node-["], ["hostname", "UNLIKE"], ["hostname", "UNLIKE", "(("],
    ["hostname", "LIKE", "a{99999999999}"], ["hostname", "LIKE", "(" * 5000 + ")" * 5000],
    ["rack", "MAX_PER"], ["rack", "MAX_PER", "0"], ["rack", "MAX_PER", "two"], ["rack", "MAX_PER", "\u00b2"],
    ["zone", "IS"], ["zone", "IS", ""], ["zone", "NEAR", "a"], ["", "UNIQUE"], ["hostname"],
    ["hostname", "CLUSTER", "a", "b"], ["rack", "MAX_PER", 2], "hostname:UNIQUE", {"field": "hostname"},
])
def test_bad_constraints(raw: Any) -> None:
    assert "/constraints/0" in problems(app(constraints=[raw]))


def test_constraints_must_be_a_list() -> None:
    assert "/constraints" in problems(app(constraints={"hostname": "UNIQUE"}))


# -- strategies ------------------------------------------------------------------------------------


def test_upgrade_strategy() -> None:
    spec = parse_app(app(upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}))
    assert spec.upgrade_strategy == UpgradeStrategy(0.5, 0.0)
    low = parse_app(app(upgradeStrategy={"minimumHealthCapacity": 0}))
    assert low.upgrade_strategy == UpgradeStrategy(0, 1)
    round_trips(spec)


@pytest.mark.parametrize(("strategy", "path"), [
    ({"minimumHealthCapacity": 1.5}, "/upgradeStrategy/minimumHealthCapacity"),
    ({"minimumHealthCapacity": -0.1}, "/upgradeStrategy/minimumHealthCapacity"),
    ({"maximumOverCapacity": 2}, "/upgradeStrategy/maximumOverCapacity"),
    ({"maximumOverCapacity": "1"}, "/upgradeStrategy/maximumOverCapacity"),
    ({"minimumHealthCapacity": 1, "maximumOverCapacity": 0}, "/upgradeStrategy"),
    ({"maximumOverCapacity": 0}, "/upgradeStrategy"),
    ("rolling", "/upgradeStrategy"),
])
def test_bad_upgrade_strategies(strategy: Any, path: str) -> None:
    assert path in problems(app(upgradeStrategy=strategy))


def test_a_stuck_upgrade_strategy_says_why() -> None:
    reason = problems(app(upgradeStrategy={"maximumOverCapacity": 0}))["/upgradeStrategy"][0]
    assert "rolling restart" in reason


def test_unreachable_strategy_and_disabled() -> None:
    spec = parse_app(app(unreachableStrategy={"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}))
    assert spec.unreachable_strategy == UnreachableStrategy(0, 0) and not spec.unreachable_strategy.disabled
    assert parse_app(app(unreachableStrategy={"inactiveAfterSeconds": 60})).unreachable_strategy == \
        UnreachableStrategy(60, 600)
    never = parse_app(app(unreachableStrategy="disabled"))
    assert never.unreachable_strategy == UnreachableStrategy(UNREACHABLE_NEVER, UNREACHABLE_NEVER)
    assert never.unreachable_strategy.disabled
    assert app_json(never)["unreachableStrategy"] == "disabled"
    round_trips(spec)
    round_trips(never)


@pytest.mark.parametrize(("strategy", "path"), [
    ({"inactiveAfterSeconds": 900}, "/unreachableStrategy/expungeAfterSeconds"),
    ({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 5}, "/unreachableStrategy/expungeAfterSeconds"),
    ({"inactiveAfterSeconds": -1}, "/unreachableStrategy/inactiveAfterSeconds"),
    ({"expungeAfterSeconds": 2e9}, "/unreachableStrategy/expungeAfterSeconds"),
    ("enabled", "/unreachableStrategy"), (5, "/unreachableStrategy"),
])
def test_bad_unreachable_strategies(strategy: Any, path: str) -> None:
    assert path in problems(app(unreachableStrategy=strategy))


# -- dependencies ----------------------------------------------------------------------------------


def test_dependencies_are_deduplicated_and_checked() -> None:
    assert parse_app(app(dependencies=["db", "/shop/db", "../db"])).dependencies == ("/shop/db",)
    assert "cannot depend on itself" in problems(app(dependencies=["web"]))["/dependencies/0"][0]
    assert "/dependencies/1" in problems(app(dependencies=["db", "Bad_Db"]))
    assert "/dependencies/0" in problems(app(dependencies=[5]))
    assert "/dependencies" in problems(app(dependencies="/db"))


def test_dependency_cycles() -> None:
    def specs(**deps: tuple[str, ...]) -> dict[str, AppSpec]:
        return {f"/{k}": AppSpec(id=f"/{k}", cmd="x", dependencies=v) for k, v in deps.items()}

    assert dependency_cycle(specs(a=("/b",), b=("/c",), c=())) is None
    assert dependency_cycle(specs(a=("/missing",))) is None
    assert dependency_cycle({}) is None
    assert dependency_cycle(specs(a=("/a",))) == ["/a", "/a"]
    assert dependency_cycle(specs(a=("/b",), b=("/a",))) == ["/a", "/b", "/a"]
    assert dependency_cycle(specs(x=("/a",), a=("/b",), b=("/c",), c=("/a",))) == ["/a", "/b", "/c", "/a"]
    # A diamond is not a cycle.
    assert dependency_cycle(specs(a=("/b", "/c"), b=("/d",), c=("/d",), d=())) is None
    # A long chain does not hit the recursion limit.
    chain = {f"/n{i}": AppSpec(id=f"/n{i}", cmd="x", dependencies=(f"/n{i + 1}",)) for i in range(5000)}
    assert dependency_cycle(chain) is None
    chain["/n5000"] = AppSpec(id="/n5000", cmd="x", dependencies=("/n0",))
    cycle = dependency_cycle(chain)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 5002


# -- partial updates -------------------------------------------------------------------------------


def test_merge_app_replaces_top_level_keys() -> None:
    current = app_json(parse_app(app(instances=2, env={"A": "1"}, labels={"x": "y"})))
    merged = merge_app(current, {"instances": 5, "env": {"B": "2"}, "labels": None})
    spec = parse_app(merged, app_id="/shop/web")
    assert spec.instances == 5 and spec.env == (("B", "2"),) and spec.labels == (("x", "y"),)
    assert current["instances"] == 2  # not changed in place


def test_merge_app_swaps_alternative_fields() -> None:
    current = app_json(parse_app(app(portDefinitions=[{"port": 0, "name": "http"}])))
    spec = parse_app(merge_app(current, {"args": ["sleep", "5"], "ports": [0, 0]}))
    assert spec.cmd is None and spec.args == ("sleep", "5")
    assert spec.port_definitions == (PortDefinition(0), PortDefinition(0))
    assert parse_app(merge_app(current, {"ports": []})).port_definitions == ()
    again = parse_app(merge_app(app_json(spec), {"cmd": "sleep 6"}))
    assert again.cmd == "sleep 6" and again.args is None
    assert parse_app(merge_app(current, {"args": []})).cmd == "sleep 100"


def test_merge_app_with_a_non_object_patch_lets_parse_refuse_it() -> None:
    assert list(problems(merge_app(app_json(parse_app(app())), [1, 2]))) == [""]


# -- round trips -----------------------------------------------------------------------------------


def test_a_full_app_round_trips() -> None:
    spec = parse_app({
        "id": "/shop/web", "args": ["serve", "--port", "$PORT0"], "user": "www", "env": {"MODE": "prod"},
        "instances": 3, "cpus": 0.5, "mem": 256.5, "disk": 100, "gpus": 0,
        "container": {"type": "DOCKER", "docker": {"image": "shop/web:2", "network": "BRIDGE",
                                                   "portMappings": [{"containerPort": 8080, "name": "http"}],
                                                   "parameters": [{"key": "memory-swap", "value": "-1"}]}},
        "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"]],
        "healthChecks": [{"protocol": "HTTP", "path": "/ping", "portIndex": 0, "intervalSeconds": 2.0}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25},
        "unreachableStrategy": {"inactiveAfterSeconds": 30, "expungeAfterSeconds": 60},
        "backoffSeconds": 3, "backoffFactor": 2, "maxLaunchDelaySeconds": 120,
        "killSelection": "OLDEST_FIRST",
        "taskKillGracePeriodSeconds": 10, "dependencies": ["../db"], "labels": {"HAPROXY_GROUP": "external"},
        "role": "shop", "acceptedResourceRoles": ["shop"],
    })
    round_trips(spec)
    doc = app_json(spec)
    interval = doc["healthChecks"][0]["intervalSeconds"]
    assert interval == 2 and isinstance(interval, int)  # Marathon's integer
    assert doc["healthChecks"][0]["gracePeriodSeconds"] == 300 and isinstance(doc["cpus"], float)
    assert isinstance(doc["disk"], int)  # whole numbers render as integers, as Marathon's do


_names = st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)
_seconds = st.one_of(st.integers(0, 10**6), st.integers(0, 10**6).map(float))  # whole seconds
_sizes = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
_short_maps = st.dictionaries(_names, st.text(max_size=5), max_size=3)
_port_defs = st.lists(st.fixed_dictionaries(
    {"port": st.integers(0, 65535)},
    optional={"name": _names, "protocol": st.sampled_from(["tcp", "udp"]), "labels": _short_maps}),
    max_size=3)
_checks = st.lists(st.fixed_dictionaries({}, optional={
    "protocol": st.sampled_from(["HTTP", "HTTPS", "TCP", "MESOS_HTTP", "MESOS_TCP"]),
    "path": st.text(max_size=8), "portIndex": st.integers(0, 2), "gracePeriodSeconds": _seconds,
    "intervalSeconds": st.integers(1, 100), "timeoutSeconds": st.integers(1, 100),
    "maxConsecutiveFailures": st.integers(0, 10), "ignoreHttp1xx": st.booleans()}), max_size=2)
_constraints = st.lists(st.one_of(
    st.tuples(_names, st.just("UNIQUE")).map(list),
    st.tuples(_names, st.sampled_from(["CLUSTER", "IS", "LIKE", "UNLIKE"]), _names).map(list),
    st.tuples(_names, st.sampled_from(["GROUP_BY", "MAX_PER"]), st.integers(1, 9).map(str)).map(list)),
    max_size=3)
_docs = st.fixed_dictionaries(
    {"id": st.lists(_names, min_size=1, max_size=3).map("/".join), "cmd": st.text(min_size=1, max_size=10)},
    optional={
        "instances": st.integers(0, 100), "cpus": st.floats(0.01, 64), "mem": st.floats(1, 1e5),
        "disk": _sizes, "gpus": st.integers(0, 4), "env": _short_maps, "labels": _short_maps,
        "portDefinitions": _port_defs,
        "requirePorts": st.booleans(), "healthChecks": _checks, "constraints": _constraints,
        "upgradeStrategy": st.fixed_dictionaries({"minimumHealthCapacity": st.floats(0, 0.99),
                                                  "maximumOverCapacity": st.floats(0, 1)}),
        "unreachableStrategy": st.one_of(st.just("disabled"), st.just({"inactiveAfterSeconds": 5})),
        "backoffSeconds": _seconds, "backoffFactor": st.floats(1, 10), "maxLaunchDelaySeconds": _seconds,
        "killSelection": st.sampled_from(["YOUNGEST_FIRST", "OLDEST_FIRST", "OldestFirst"]),
        "taskKillGracePeriodSeconds": _seconds, "dependencies": st.lists(_names, max_size=3),
        "role": _names, "acceptedResourceRoles": st.lists(_names, max_size=2), "user": _names,
    })


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_docs)
def test_parse_render_parse_is_the_identity(doc: dict[str, Any]) -> None:
    try:
        spec = parse_app(doc)
    except SpecError:
        return  # e.g. a portIndex beyond the ports drawn, or duplicate port names
    round_trips(spec)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                  max_size=3), max_leaves=8)
_keys = st.sampled_from([
    "id", "cmd", "args", "env", "instances", "cpus", "container", "portDefinitions", "ports", "constraints",
    "healthChecks", "upgradeStrategy", "unreachableStrategy", "dependencies", "networks", "labels",
    "acceptedResourceRoles", "executor", "version", "killSelection"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=6))
def test_any_json_either_parses_or_is_a_spec_error(doc: dict[str, Any]) -> None:
    try:
        spec = parse_app({"id": "/a", "cmd": "x", **doc})
    except SpecError as exc:
        assert exc.details and all(isinstance(p, str) and isinstance(r, str) for p, r in exc.details)
        return
    round_trips(spec)


def _object(keys: list[str], values: st.SearchStrategy[Any] = _json) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), values, max_size=len(keys))


_port_objects = st.lists(
    _object(["port", "containerPort", "hostPort", "servicePort", "protocol", "name", "labels"]), max_size=2)
_docker_objects = _object(["image", "network", "portMappings", "privileged", "parameters", "forcePullImage"],
                          st.one_of(_json, _port_objects, st.sampled_from(["BRIDGE", "HOST", "NONE", "x"])))
_check_objects = _object(["protocol", "path", "portIndex", "port", "command", "gracePeriodSeconds",
                          "intervalSeconds", "maxConsecutiveFailures", "ignoreHttp1xx"],
                         st.one_of(_json, st.sampled_from(["COMMAND", "TCP"]), _object(["value"])))
_modes = st.sampled_from(["host", "container/bridge"])
_nested = st.fixed_dictionaries({}, optional={
    "container": _object(["type", "volumes", "portMappings", "docker"],
                         st.one_of(_json, _port_objects, _docker_objects)),
    "networks": st.lists(_object(["mode", "name"], st.one_of(_json, _modes)), max_size=2),
    "portDefinitions": _port_objects,
    "healthChecks": st.lists(_check_objects, max_size=2),
    "upgradeStrategy": _object(["minimumHealthCapacity", "maximumOverCapacity"]),
    "unreachableStrategy": _object(["inactiveAfterSeconds", "expungeAfterSeconds"]),
})


@settings(max_examples=300, deadline=None)
@given(_nested)
def test_any_json_inside_the_nested_objects_either_parses_or_is_a_spec_error(doc: dict[str, Any]) -> None:
    test_any_json_either_parses_or_is_a_spec_error.hypothesis.inner_test(doc)  # type: ignore[attr-defined]
