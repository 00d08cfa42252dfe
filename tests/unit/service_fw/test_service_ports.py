"""Service ports: assigned once per app, unique across apps, kept across updates."""

from __future__ import annotations

import pytest

from mensa.frameworks.service_fw.app_reading import parse_app
from mensa.frameworks.service_fw.service_ports import SERVICE_PORTS, assign_service_ports, service_ports_of

from .service_harness import Harness, app


def test_zero_ports_get_the_lowest_free_service_ports_and_named_ones_stay() -> None:
    spec = parse_app(app(portDefinitions=[{"port": 0}, {"port": 10000}, {"port": 0}]))
    assigned = assign_service_ports(spec, None, used={10001})
    assert service_ports_of(assigned) == [10002, 10000, 10003]


def test_an_update_keeps_the_ports_it_had_and_require_ports_keeps_zero() -> None:
    first = assign_service_ports(parse_app(app(portDefinitions=[{"port": 0}])), None, used=set())
    changed = parse_app(app(portDefinitions=[{"port": 0}], cmd="other"))
    again = assign_service_ports(changed, first, used=set())
    assert service_ports_of(again) == service_ports_of(first) == [SERVICE_PORTS.start]
    fixed = parse_app(app(portDefinitions=[{"port": 0}], requirePorts=True))
    assert assign_service_ports(fixed, None, used=set()) == fixed


def test_bridge_mappings_get_service_ports_and_the_range_can_run_out() -> None:
    spec = parse_app(app(container={"type": "DOCKER", "docker": {
        "image": "busybox", "network": "BRIDGE", "portMappings": [{"containerPort": 80}]}}))
    assert service_ports_of(assign_service_ports(spec, None, used=set())) == [SERVICE_PORTS.start]
    with pytest.raises(ValueError, match="no free service port"):
        assign_service_ports(spec, None, used=set(SERVICE_PORTS))


def test_the_engine_assigns_distinct_ports_and_a_scale_does_not_restart() -> None:
    h = Harness()
    h.deploy(app("/a"))
    h.deploy(app("/b"))
    ports = [service_ports_of(h.engine.app_record(a).spec) for a in ("/a", "/b")]
    assert ports == [[10000], [10001]]
    h.offer("a1")
    h.run_all("/a")
    dep = h.deploy(app("/a", instances=3))
    assert service_ports_of(h.engine.app_record("/a").spec) == [10000]
    assert [a.kind for step in dep.steps for a in step] == ["ScaleApplication"]
