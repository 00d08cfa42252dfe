"""The TaskInfo built for an instance: command, environment, Docker networks and port mappings,
health checks, labels, discovery, kill policy and resources; read back by the agent's own pure
readers (sandbox environment, health checker, Docker container config) where it matters."""

from __future__ import annotations

from mensa.agent.containerizer.base import LaunchSpec
from mensa.agent.containerizer.docker_config import container_config
from mensa.agent.health import health_checker
from mensa.agent.sandbox import command_line, task_environment
from mensa.frameworks.placement import OfferView
from mensa.frameworks.service_fw.apps import (
    AppSpec,
    DockerSpec,
    HealthCheckSpec,
    PortDefinition,
    PortMapping,
)
from mensa.frameworks.service_fw.tasks import health_check, task_env, task_info, task_name
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

VIEW = OfferView("agent-1", "h1.example", (("rack", "r1"),), Resources.parse("cpus:4;mem:4096"), "web")
TAKEN = Resources.parse("cpus:0.5;mem:64;ports:[31002-31002,31005-31005]")


def build(spec: AppSpec, host_ports: tuple[int, ...] = (31005, 31002),
          resources: Resources = TAKEN) -> mensa_pb2.TaskInfo:
    return task_info(spec, "2026-11-22T10:00:00.000Z", "shop_web.t1", VIEW, resources, host_ports)


def env_of(info: mensa_pb2.TaskInfo) -> dict[str, str]:
    return {v.name: v.value for v in info.command.environment.variables}


def agent_env(info: mensa_pb2.TaskInfo) -> dict[str, str]:
    return task_environment(task_info=info, framework_id="fw", agent_id="agent-1", sandbox="/sb",
                            hostname="h1.example", path="/bin")


WEB = AppSpec(id="/shop/web", cmd="python3 -m http.server $PORT0", cpus=0.5, mem=64,
              port_definitions=(PortDefinition(port=10000, name="http"), PortDefinition(port=0)),
              labels=(("tier", "front"), ("haproxy.0-vhost", "shop.example")),
              env=(("GREETING", "hi"), ("HOST", "overridden")))


def test_the_basics_name_ids_resources_and_labels() -> None:
    info = build(WEB)
    assert info.name == "web.shop" == task_name("/shop/web")
    assert info.task_id.value == "shop_web.t1"
    assert info.agent_id.value == "agent-1"
    assert Resources.from_proto(info.resources) == TAKEN
    assert all(r.allocation_info.role == "web" for r in info.resources)
    labels = {lab.key: lab.value for lab in info.labels.labels}
    assert labels == {"tier": "front", "haproxy.0-vhost": "shop.example", "mensa.app": "/shop/web",
                      "mensa.version": "2026-11-22T10:00:00.000Z"}
    assert not info.HasField("health_check")
    assert not info.HasField("kill_policy")
    assert not info.HasField("container")


def test_cmd_runs_in_a_shell_and_args_as_an_argv() -> None:
    info = build(WEB)
    assert info.command.shell and info.command.value == WEB.cmd
    assert command_line(info.command)[1] == ("/bin/sh", "-c", WEB.cmd)
    args = build(AppSpec(id="/a", args=("/usr/bin/server", "--port", "80"), user="nobody"), ())
    assert not args.command.shell
    assert command_line(args.command) == ("/usr/bin/server", ("/usr/bin/server", "--port", "80"))
    assert args.command.user == "nobody"


def test_marathon_environment_in_port_order() -> None:
    env = env_of(build(WEB))
    assert env["PORT0"] == "31005" and env["PORT1"] == "31002"
    assert env["PORT"] == "31005" and env["PORTS"] == "31005,31002"
    assert env["PORT_10000"] == "31005"  # the declared port
    assert env["PORT_31002"] == "31002"  # declared 0: the host port
    assert env["PORT_HTTP"] == "31005"
    assert env["MARATHON_APP_ID"] == "/shop/web"
    assert env["MARATHON_APP_VERSION"] == "2026-11-22T10:00:00.000Z"
    assert env["MARATHON_APP_RESOURCE_CPUS"] == "0.5"
    assert env["MARATHON_APP_RESOURCE_MEM"] == "64.0"
    assert env["MARATHON_APP_RESOURCE_DISK"] == "0.0"
    assert env["MARATHON_APP_LABELS"] == "TIER HAPROXY_0_VHOST"
    assert env["MARATHON_APP_LABEL_TIER"] == "front"
    assert env["MARATHON_APP_LABEL_HAPROXY_0_VHOST"] == "shop.example"
    assert env["MESOS_TASK_ID"] == "shop_web.t1"
    assert env["GREETING"] == "hi"
    assert env["HOST"] == "overridden"  # the app's env wins
    assert "MARATHON_APP_DOCKER_IMAGE" not in env
    # The agent's own PORTn (ascending) give way to the app's order.
    final = agent_env(build(WEB))
    assert final["PORT0"] == "31005" and final["PORTS"] == "31005,31002"


def test_host_is_the_agent_hostname_and_long_labels_are_left_out() -> None:
    spec = AppSpec(id="/a", cmd="x", labels=(("big", "v" * 600), ("ok", "1")))
    env = dict(task_env(spec, "v1", "a.1", "h9", ()))
    assert env["HOST"] == "h9"
    assert env["MARATHON_APP_LABELS"] == "OK"
    assert "MARATHON_APP_LABEL_BIG" not in env
    assert "PORT" not in env and "PORTS" not in env and "PORT0" not in env


def test_docker_bridge_maps_host_ports_to_container_ports() -> None:
    spec = AppSpec(id="/shop/web", cpus=0.5, mem=64, container=DockerSpec(
        image="nginx:1.25", network="BRIDGE", force_pull_image=True,
        parameters=(("label", "team=shop"),),
        port_mappings=(PortMapping(container_port=80, name="http", labels=(("VIP_0", "/web:80"),)),
                       PortMapping(container_port=0, host_port=0, protocol="tcp,udp"))))
    info = build(spec)
    docker = info.container.docker
    assert info.container.type == mensa_pb2.ContainerInfo.DOCKER
    assert docker.image == "nginx:1.25" and docker.force_pull_image
    assert docker.network == mensa_pb2.ContainerInfo.DockerInfo.BRIDGE
    assert [(p.key, p.value) for p in docker.parameters] == [("label", "team=shop")]
    assert [(m.host_port, m.container_port, m.protocol) for m in docker.port_mappings] == [
        (31005, 80, "tcp"), (31002, 31002, "tcp"), (31002, 31002, "udp")]
    env = env_of(info)
    assert env["PORT0"] == "31005" and env["PORT_80"] == "31005" and env["PORT_HTTP"] == "31005"
    assert env["MARATHON_APP_DOCKER_IMAGE"] == "nginx:1.25"
    assert not info.command.shell and not info.command.value  # the image's entrypoint
    ports = [(p.number, p.name, p.protocol) for p in info.discovery.ports.ports]
    assert ports == [(31005, "http", "tcp"), (31002, "", "tcp"), (31002, "", "udp")]
    assert [(lab.key, lab.value) for lab in info.discovery.ports.ports[0].labels.labels] == [
        ("VIP_0", "/web:80")]
    # The agent's Docker containerizer accepts it as is.
    launch = LaunchSpec(container_id="c1", framework_id="fw", task_id="shop_web.t1", executable="",
                        argv=(), env=agent_env(info), sandbox="/sb", task_info=info)
    config = container_config(launch)
    assert config.network_mode == "bridge"
    assert config.ports == {"80/tcp": 31005, "31002/tcp": 31002, "31002/udp": 31002}


def test_docker_args_become_the_image_command() -> None:
    spec = AppSpec(id="/a", args=("--listen", "80"), container=DockerSpec(image="srv", network="HOST"))
    info = build(spec, ())
    assert info.container.docker.network == mensa_pb2.ContainerInfo.DockerInfo.HOST
    assert not info.container.docker.port_mappings
    launch = LaunchSpec(container_id="c1", framework_id="fw", task_id="a.1", executable="", argv=(),
                        env={}, sandbox="/sb", task_info=info)
    config = container_config(launch)
    assert config.entrypoint is None and config.command == ["--listen", "80"]
    assert config.network_mode == "host"
    none = build(AppSpec(id="/a", cmd="x", container=DockerSpec(image="srv", network="NONE")), ())
    assert none.container.docker.network == mensa_pb2.ContainerInfo.DockerInfo.NONE


def test_http_health_check_probes_the_host_port_of_its_index() -> None:
    check = HealthCheckSpec(protocol="HTTP", path="/health", port_index=1, grace_period_seconds=30,
                            interval_seconds=5, timeout_seconds=2, max_consecutive_failures=4,
                            delay_seconds=1)
    info = build(AppSpec(id="/a", cmd="x", port_definitions=(PortDefinition(), PortDefinition()),
                         health_checks=(check, HealthCheckSpec(protocol="TCP"))))
    hc = info.health_check
    assert hc.type == mensa_pb2.HealthCheck.HTTP
    assert (hc.http.port, hc.http.path, hc.http.scheme) == (31002, "/health", "http")
    assert (hc.grace_period_seconds, hc.interval_seconds, hc.timeout_seconds) == (30, 5, 2)
    assert (hc.consecutive_failures, hc.delay_seconds) == (4, 1)
    assert not hc.HasField("tcp")  # only the first check goes in
    checker = health_checker(hc, env={}, sandbox="/sb")
    assert checker.probe.describe() == "HTTP GET http://127.0.0.1:31002/health"
    assert checker.policy.consecutive_failures == 4


def test_https_tcp_command_and_fixed_port_checks() -> None:
    https = health_check(HealthCheckSpec(protocol="HTTPS"), (31000,))
    assert https is not None and https.http.scheme == "https" and https.http.port == 31000
    tcp = health_check(HealthCheckSpec(protocol="TCP", port_index=None, port=8443), (31000,))
    assert tcp is not None and tcp.type == mensa_pb2.HealthCheck.TCP and tcp.tcp.port == 8443
    cmd = health_check(HealthCheckSpec(protocol="COMMAND", port_index=None, command="curl -f localhost"), ())
    assert cmd is not None and cmd.type == mensa_pb2.HealthCheck.COMMAND
    assert cmd.command.shell and cmd.command.value == "curl -f localhost"
    probe = health_checker(cmd, env={"A": "1"}, sandbox="/sb").probe
    assert probe.argv == ("/bin/sh", "-c", "curl -f localhost")
    # A bridge app's check probes the host side of the mapping.
    bridge = AppSpec(id="/a", cmd="x", health_checks=(HealthCheckSpec(protocol="HTTP"),),
                     container=DockerSpec(image="i", network="BRIDGE",
                                          port_mappings=(PortMapping(container_port=8080),)))
    assert build(bridge, (31005,)).health_check.http.port == 31005
    # An index the instance has no port for gives no check.
    assert health_check(HealthCheckSpec(port_index=2), (31000,)) is None


def test_kill_grace_period_and_ports_missing_from_resources() -> None:
    spec = AppSpec(id="/a", cmd="x", task_kill_grace_period_seconds=2.5,
                   port_definitions=(PortDefinition(),))
    info = build(spec, (32000,), Resources.parse("cpus:1;mem:128"))
    assert info.kill_policy.grace_period.nanoseconds == 2_500_000_000
    assert Resources.from_proto(info.resources).ranges("ports") == ((32000, 32000),)
    assert info.discovery.name == "a" and info.discovery.version == "2026-11-22T10:00:00.000Z"
