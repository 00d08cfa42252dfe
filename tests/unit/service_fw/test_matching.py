"""Matching an offer against one waiting app: scalars, ports, roles, constraints, and the reasons
(Marathon's names) an offer could not take (more) instances."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from mensa.frameworks.placement import OfferView
from mensa.frameworks.service_fw.apps import (
    AppSpec,
    Constraint,
    DockerSpec,
    PortDefinition,
    PortMapping,
)
from mensa.frameworks.service_fw.constraints import Placement
from mensa.frameworks.service_fw.matching import (
    MatchResult,
    match_offer,
    pick_ports,
    usable_roles,
)
from mensa.proto.resources import Resources

APP = AppSpec(id="/shop/web", cmd="serve", cpus=1, mem=128)


def offer(resources: str, hostname: str = "h1", role: str | None = None, **attributes: str) -> OfferView:
    return OfferView(f"agent-{hostname}", hostname, tuple(attributes.items()), Resources.parse(resources),
                     role)


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"shop_web.t{next(counter)}"


def match(spec: AppSpec, view: OfferView, wanted: int, placed: list[Placement] | None = None,
          role: str = "*") -> MatchResult:
    return match_offer(spec, "v1", view, placed or [], wanted, ids(), role)


def ports_of(result: MatchResult) -> list[tuple[int, ...]]:
    return [p.host_ports for p in result.placed]


def test_places_what_fits_and_says_why_no_more() -> None:
    result = match(APP, offer("cpus:2.5;mem:1024;disk:100"), wanted=5)
    assert [p.task_id for p in result.placed] == ["shop_web.t1", "shop_web.t2"]
    assert result.left.free == Resources.parse("cpus:0.5;mem:768;disk:100")
    assert result.reasons == ("InsufficientCpus",)
    assert result.message == "not enough cpus: needs 1, the offer has 0.5"
    assert (result.agent_id, result.hostname) == ("agent-h1", "h1")
    task = result.placed[0].task
    assert Resources.from_proto(task.resources) == Resources.parse("cpus:1;mem:128")
    assert result.placed[0].resources == Resources.parse("cpus:1;mem:128")


def test_all_wanted_placed_gives_no_reason() -> None:
    result = match(APP, offer("cpus:8;mem:1024"), wanted=3)
    assert len(result.placed) == 3
    assert result.reasons == () and result.message == ""
    assert result.left.free == Resources.parse("cpus:5;mem:640")


def test_wanting_none_places_none() -> None:
    result = match(APP, offer("cpus:8;mem:1024"), wanted=0)
    assert result.placed == () and result.reasons == ()


def test_every_shortage_is_named_in_marathon_order() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=2, mem=512, disk=10, gpus=1,
                   port_definitions=(PortDefinition(),), constraints=(Constraint("rack", "IS", "r1"),))
    result = match(spec, offer("cpus:1;mem:256;disk:5", rack="r2"), wanted=1)
    assert result.placed == ()
    assert result.reasons == ("UnfulfilledConstraint", "InsufficientCpus", "InsufficientMemory",
                              "InsufficientDisk", "InsufficientGpus", "InsufficientPorts")
    assert "constraint [rack IS r1] not met" in result.message
    assert "not enough mem: needs 512, the offer has 256" in result.message
    assert result.left.free == Resources.parse("cpus:1;mem:256;disk:5")


def test_dynamic_ports_take_the_lowest_free_never_twice() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1,
                   port_definitions=(PortDefinition(), PortDefinition()))
    result = match(spec, offer("cpus:4;mem:1024;ports:[31000-31002,31010-31012]"), wanted=5)
    assert ports_of(result) == [(31000, 31001), (31002, 31010), (31011, 31012)]
    assert result.reasons == ("InsufficientPorts",)
    assert result.message == "not enough ports: needs 2, the offer has 0"
    taken = Resources.from_proto(result.placed[1].task.resources)
    assert taken.ranges("ports") == ((31002, 31002), (31010, 31010))
    env = {v.name: v.value for v in result.placed[1].task.command.environment.variables}
    assert env["PORTS"] == "31002,31010"


def test_required_ports_are_taken_exactly_and_only_once() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, require_ports=True,
                   port_definitions=(PortDefinition(port=31001), PortDefinition(port=31003)))
    result = match(spec, offer("cpus:4;mem:1024;ports:[31000-31005]"), wanted=2)
    assert ports_of(result) == [(31001, 31003)]
    assert result.reasons == ("InsufficientPorts",)
    assert result.message == "host port(s) 31001, 31003 not offered"
    assert result.left.free.ranges("ports") == ((31000, 31000), (31002, 31002), (31004, 31005))
    missing = match(spec, offer("cpus:4;mem:1024;ports:[31002-31003]"), wanted=1)
    assert missing.placed == ()
    assert missing.message == "host port(s) 31001 not offered"


def test_dynamic_ports_avoid_the_required_ones_of_the_same_instance() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, container=DockerSpec(
        image="i", network="BRIDGE",
        port_mappings=(PortMapping(container_port=80, host_port=0),
                       PortMapping(container_port=443, host_port=31000))))
    result = match(spec, offer("cpus:4;mem:1024;ports:[31000-31001]"), wanted=1)
    assert ports_of(result) == [(31001, 31000)]
    mappings = result.placed[0].task.container.docker.port_mappings
    assert [(m.host_port, m.container_port) for m in mappings] == [(31001, 80), (31000, 443)]


def test_an_offer_for_another_role_is_refused() -> None:
    result = match(APP, offer("cpus:8;mem:1024", role="batch"), wanted=1, role="web")
    assert result.placed == ()
    assert result.reasons == ("UnfulfilledRole",)
    assert "'batch'" in result.message and "'web'" in result.message
    own_role = AppSpec(id="/a", cmd="x", cpus=1, mem=1, role="batch")
    assert len(match(own_role, offer("cpus:8;mem:1024", role="batch"), wanted=1, role="web").placed) == 1


def test_reserved_resources_of_the_app_role_go_first() -> None:
    view = offer("cpus(web):1;cpus:4;mem:1024;ports(web):[5000-5000];ports:[31000-31005]", role="web")
    spec = AppSpec(id="/a", cmd="x", cpus=1.5, mem=100, port_definitions=(PortDefinition(),))
    result = match(spec, view, wanted=1, role="web")
    taken = result.placed[0].resources
    assert taken == Resources.parse("cpus(web):1;cpus:0.5;mem:100;ports(web):[5000-5000]")
    task_resources = result.placed[0].task.resources
    reserved = [r for r in task_resources if len(r.reservations)]
    assert {r.name for r in reserved} == {"cpus", "ports"}
    assert all(r.reservations[-1].role == "web" for r in reserved)


def test_accepted_resource_roles_narrow_what_may_be_used() -> None:
    view = offer("cpus(web):2;mem(web):512;cpus:0.5;mem:64", role="web")
    unreserved_only = AppSpec(id="/a", cmd="x", cpus=1, mem=128, accepted_resource_roles=("*",))
    result = match(unreserved_only, view, wanted=1, role="web")
    assert result.placed == ()
    assert result.reasons == ("UnfulfilledRole",)
    assert "reserved for roles the app may not use (it uses *)" in result.message
    reserved_only = AppSpec(id="/a", cmd="x", cpus=1, mem=128, accepted_resource_roles=("web",))
    placed = match(reserved_only, view, wanted=3, role="web")
    assert len(placed.placed) == 2
    assert placed.left.free == Resources.parse("mem(web):256;cpus:0.5;mem:64")
    assert usable_roles(reserved_only, "web") == frozenset({"web"})
    assert usable_roles(APP, "web") == frozenset({"*", "web"})
    # A role the app does not run as is never usable, accepted or not.
    assert usable_roles(AppSpec(id="/a", accepted_resource_roles=("other", "*")), "web") == {"*"}


def test_reserved_ports_the_app_may_not_use_are_a_role_problem() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, accepted_resource_roles=("*",),
                   port_definitions=(PortDefinition(),))
    result = match(spec, offer("cpus:1;mem:64;ports(web):[5000-5001]", role="web"), wanted=1, role="web")
    assert result.reasons == ("UnfulfilledRole",)


def test_unique_hostname_takes_one_per_offer_and_none_where_one_runs() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, constraints=(Constraint("hostname", "UNIQUE"),))
    result = match(spec, offer("cpus:4;mem:1024"), wanted=3)
    assert len(result.placed) == 1
    assert result.reasons == ("UnfulfilledConstraint",)
    again = match(spec, offer("cpus:4;mem:1024"), wanted=3, placed=[Placement("h1")])
    assert again.placed == () and again.reasons == ("UnfulfilledConstraint",)
    elsewhere = match(spec, offer("cpus:4;mem:1024", hostname="h2"), wanted=3, placed=[Placement("h1")])
    assert len(elsewhere.placed) == 1


def test_max_per_fills_a_rack_up_to_its_limit() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, constraints=(Constraint("rack", "MAX_PER", "2"),))
    result = match(spec, offer("cpus:4;mem:1024", rack="r1"), wanted=5,
                   placed=[Placement("h0", (("rack", "r2"),))])
    assert len(result.placed) == 2
    assert "at most 2" in result.message


def test_group_by_spreads_across_offers() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.1, mem=1, constraints=(Constraint("rack", "GROUP_BY", "2"),))
    placed: list[Placement] = []
    wanted = 6
    for view in [offer("cpus:4;mem:1024", "h1", rack="r1"), offer("cpus:4;mem:1024", "h2", rack="r2")] * 4:
        result = match(spec, view, wanted, placed)
        placed += [Placement(result.hostname, result.attributes)] * len(result.placed)
        wanted -= len(result.placed)
    assert wanted == 0
    racks = [dict(p.attributes)["rack"] for p in placed]
    assert racks.count("r1") == racks.count("r2") == 3


def test_the_rest_of_the_offer_serves_the_next_app() -> None:
    first = match(APP, offer("cpus:3;mem:1024;ports:[31000-31001]"), wanted=2)
    other = AppSpec(id="/b", cmd="y", cpus=1, mem=128, port_definitions=(PortDefinition(),))
    second = match_offer(other, "v2", first.left, [], 3, ids(), "*")
    assert len(second.placed) == 1
    assert second.placed[0].host_ports == (31000,)
    assert second.reasons == ("InsufficientCpus",)


def test_five_hundred_instances_on_a_few_offers() -> None:
    spec = AppSpec(id="/a", cmd="x", cpus=0.01, mem=1, port_definitions=(PortDefinition(),),
                   constraints=(Constraint("rack", "MAX_PER", "200"), Constraint("hostname", "GROUP_BY")))
    placed: list[Placement] = []
    wanted = 500
    seen_ports: set[tuple[str, int]] = set()
    for i in range(5):
        view = offer("cpus:8;mem:8192;ports:[31000-31999]", f"h{i}", rack=f"r{i % 3}")
        result = match(spec, view, wanted, placed)
        for p in result.placed:
            seen_ports.add((view.hostname, p.host_ports[0]))
        placed += [Placement(view.hostname, view.attributes)] * len(result.placed)
        wanted -= len(result.placed)
    assert wanted == 0
    assert len(seen_ports) == 500  # no port taken twice on an agent
    racks = [dict(p.attributes)["rack"] for p in placed]
    assert max(racks.count(r) for r in ("r0", "r1", "r2")) <= 200


def test_pick_ports() -> None:
    free = Resources.parse("ports(web):[80-80];ports:[31000-31001]")
    picked = pick_ports(free, (0, 0))
    assert picked is not None
    assert picked[0] == (80, 31000)  # reserved first
    assert picked[1] == Resources.parse("ports(web):[80-80];ports:[31000-31000]")
    assert pick_ports(free, (31001, 0, 0)) is not None
    assert pick_ports(free, (0, 0, 0, 0)) is None
    assert pick_ports(free, (31001, 31001)) is None  # never twice
    assert pick_ports(free, ()) == ((), Resources.empty())
