"""DockerContainerizer against a private dockerd: commands, logs, limits, kills, bad images, a lost engine.

The pure translation (``container_config``, ``port_bindings``, ``termination_of``) is tested
first, without an engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import docker
import pytest

from mensa.agent.containerizer.base import Containerizer, LaunchError, LaunchSpec, Termination
from mensa.agent.containerizer.docker import DockerContainerizer, DockerHandle
from mensa.agent.containerizer.docker_config import container_config, port_bindings, termination_of
from mensa.agent.sandbox import command_line, task_environment
from mensa.deploy.dockerd import IMAGE, Dockerd
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

T = TypeVar("T")
pytestmark = pytest.mark.integration
Net = mensa_pb2.ContainerInfo.DockerInfo
MEM_REASON = mensa_pb2.TaskStatus.REASON_CONTAINER_LIMITATION_MEMORY
LOST_REASON = mensa_pb2.TaskStatus.REASON_EXECUTOR_TERMINATED


def make_spec(
    sandbox: Path,
    command: mensa_pb2.CommandInfo | None = None,
    *,
    image: str = IMAGE,
    resources: str = "",
    network: int = Net.NONE,
    mappings: tuple[tuple[int, int], ...] = (),
    force_pull: bool = False,
    container_id: str = "c1",
) -> LaunchSpec:
    sandbox.mkdir(parents=True, exist_ok=True)
    info = mensa_pb2.TaskInfo(name="t")
    if command is not None:
        info.command.CopyFrom(command)
    info.task_id.value = f"task-{container_id}"
    if resources:
        info.resources.extend(Resources.parse(resources).to_proto())
    info.container.type = mensa_pb2.ContainerInfo.DOCKER
    info.container.docker.image = image
    info.container.docker.network = network  # type: ignore[assignment]
    info.container.docker.force_pull_image = force_pull
    for host, inside in mappings:
        info.container.docker.port_mappings.add(host_port=host, container_port=inside)
    executable, argv = command_line(info.command) if info.command.value else ("", ())
    env = task_environment(
        task_info=info,
        framework_id="fw",
        agent_id="ag",
        sandbox=str(sandbox),
        hostname="localhost",
        path="/agent/only/bin",
    )
    return LaunchSpec(
        container_id=container_id,
        framework_id="fw",
        task_id=info.task_id.value,
        executable=executable,
        argv=argv,
        env=env,
        sandbox=str(sandbox),
        task_info=info,
    )


def shell(script: str, **env: str) -> mensa_pb2.CommandInfo:
    cmd = mensa_pb2.CommandInfo(value=script)
    for name, value in env.items():
        cmd.environment.variables.add(name=name, value=value)
    return cmd


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def read(sandbox: Path, name: str) -> str:
    path = sandbox / name
    return path.read_text() if path.exists() else ""


async def until_output(sandbox: Path, text: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in read(sandbox, "stdout"):
        assert loop.time() < deadline, f"{text!r} never appeared in stdout"
        await asyncio.sleep(0.05)


# -- pure translation ---------------------------------------------------------------------------


def test_shell_command_env_limits_labels_and_sandbox_mount(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "sb", shell("echo hi", FOO="bar"), resources="cpus:0.5;mem:64")
    cfg = container_config(spec)
    assert cfg.entrypoint == ["/bin/sh", "-c"]
    assert cfg.command == ["echo hi"]
    assert cfg.environment["FOO"] == "bar"
    assert cfg.environment["MESOS_SANDBOX"] == "/mnt/mesos/sandbox"
    assert "PATH" not in cfg.environment  # the agent's PATH means nothing inside the image
    assert cfg.mem_limit == 64 * 1024 * 1024
    assert cfg.nano_cpus == 500_000_000
    assert cfg.name == "mensa-c1"
    assert cfg.labels["mensa.task_id"] == "task-c1"
    assert cfg.labels["mensa.framework_id"] == "fw"
    assert cfg.labels["mensa.agent_id"] == "ag"
    assert cfg.volumes == {str(tmp_path / "sb"): {"bind": "/mnt/mesos/sandbox", "mode": "rw"}}
    assert cfg.network_mode == "none"


def test_non_shell_command_and_image_default(tmp_path: Path) -> None:
    cmd = mensa_pb2.CommandInfo(value="/bin/echo", shell=False, arguments=["a", "b"])
    cfg = container_config(make_spec(tmp_path, cmd))
    assert cfg.entrypoint is None
    assert cfg.command == ["/bin/echo", "a", "b"]
    cfg = container_config(make_spec(tmp_path, None))
    assert cfg.entrypoint is None and cfg.command is None


def test_network_modes_and_port_mappings(tmp_path: Path) -> None:
    bridge = make_spec(
        tmp_path, shell("true"), resources="ports:[31000-31001]", network=Net.BRIDGE,
        mappings=((31001, 80),),
    )  # fmt: skip
    cfg = container_config(bridge)
    assert cfg.network_mode == "bridge"
    assert cfg.ports == {"80/tcp": 31001}
    assert container_config(make_spec(tmp_path, shell("true"), network=Net.HOST)).network_mode == "host"
    with pytest.raises(LaunchError, match="USER"):
        container_config(make_spec(tmp_path, shell("true"), network=Net.USER))
    outside = make_spec(
        tmp_path, shell("true"), resources="ports:[31000-31001]", network=Net.BRIDGE,
        mappings=((8080, 80),),
    )  # fmt: skip
    with pytest.raises(LaunchError, match="host port 8080 is not one of the task's ports"):
        container_config(outside)


def test_port_bindings_protocols() -> None:
    mapping = Net.PortMapping
    assert port_bindings([mapping(host_port=5, container_port=53, protocol="UDP")], [5]) == {"53/udp": 5}
    with pytest.raises(LaunchError, match="sctp"):
        port_bindings([mapping(host_port=5, container_port=53, protocol="sctp")], [5])
    with pytest.raises(LaunchError, match="container port"):
        port_bindings([mapping(host_port=5, container_port=0)], [5])


def test_termination_of_engine_states() -> None:
    assert termination_of({"ExitCode": 3}, killed_by_us=False, mem_mb=0) == Termination(exit_code=3)
    assert termination_of({"ExitCode": 137}, killed_by_us=True, mem_mb=0) == Termination(
        signal=9, killed_by_us=True
    )
    oom = termination_of({"ExitCode": 137, "OOMKilled": True}, killed_by_us=False, mem_mb=16)
    assert oom.reason == MEM_REASON and "16 MB" in oom.message


def test_can_run_only_docker_tasks_with_an_image(tmp_path: Path) -> None:
    docker_c = DockerContainerizer("/nonexistent/docker.sock")
    assert isinstance(docker_c, Containerizer)
    assert docker_c.can_run(make_spec(tmp_path, shell("true")).task_info)
    assert not docker_c.can_run(make_spec(tmp_path, shell("true"), image="").task_info)
    assert not docker_c.can_run(mensa_pb2.TaskInfo(command=shell("true")))


# -- an engine that is not there ----------------------------------------------------------------


def test_unreachable_engine_launch_fails_clearly(tmp_path: Path) -> None:
    docker_c = DockerContainerizer(str(tmp_path / "no-docker.sock"))
    with pytest.raises(LaunchError, match="Docker Engine unreachable at unix://"):
        run(docker_c.launch(make_spec(tmp_path / "sb", shell("true"))))
    assert docker_c.describe()["docker"] == "unreachable"
    assert run(docker_c.probe()) is False
    assert run(docker_c.find_containers()) == []


def test_engine_lost_mid_task_is_reported_not_hung(tmp_path: Path) -> None:
    docker_c = DockerContainerizer(str(tmp_path / "gone.sock"), poll_seconds=0.05, unreachable_limit=0.3)

    async def scenario() -> tuple[Termination, Termination]:
        handle = DockerHandle("c1", docker_id="deadbeef", sandbox=str(tmp_path))
        handle.logs_done = asyncio.get_running_loop().create_future()
        handle.logs_done.set_result(False)  # the output stream broke with the engine
        await docker_c.kill(handle, 1.0)  # does not raise either
        return await docker_c.wait(handle), await docker_c.wait(handle)

    first, again = run(scenario())
    assert first.reason == LOST_REASON
    assert "Docker Engine unreachable" in first.message and first.killed_by_us
    assert again == first


# -- a real engine ------------------------------------------------------------------------------


@pytest.fixture
def docker_c(dockerd: Dockerd) -> DockerContainerizer:
    return DockerContainerizer(dockerd.socket, poll_seconds=0.5)


def _exists(dockerd: Dockerd, name: str) -> bool:
    with contextlib.closing(dockerd.client()) as c:
        try:
            c.containers.get(name)
        except docker.errors.NotFound:
            return False
        return True


def test_task_env_exit_code_logs_and_sandbox(
    docker_c: DockerContainerizer, dockerd: Dockerd, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sb"
    script = (
        'echo "out-$FOO"; echo "sandbox=$MESOS_SANDBOX"; echo err-line >&2; '
        'echo x > "$MESOS_SANDBOX/made"; exit 3'
    )
    spec = make_spec(sandbox, shell(script, FOO="bar"), resources="cpus:0.5;mem:32")

    async def scenario() -> Termination:
        handle = await docker_c.launch(spec)
        assert handle.pid is None or handle.pid > 0
        return await docker_c.wait(handle)

    assert run(scenario()) == Termination(exit_code=3)
    stdout = read(sandbox, "stdout")
    assert "out-bar" in stdout
    assert "sandbox=/mnt/mesos/sandbox" in stdout
    assert read(sandbox, "stderr").strip() == "err-line"
    assert (sandbox / "made").read_text().strip() == "x"
    assert not _exists(dockerd, "mensa-c1"), "exited container was not removed"
    assert docker_c.describe()["docker"]["socket"] == f"unix://{dockerd.socket}"


def test_non_shell_command_exits_zero(docker_c: DockerContainerizer, tmp_path: Path) -> None:
    cmd = mensa_pb2.CommandInfo(value="/bin/echo", shell=False, arguments=["hello", "world"])
    spec = make_spec(tmp_path, cmd, container_id="c2")

    async def scenario() -> Termination:
        return await docker_c.wait(await docker_c.launch(spec))

    assert run(scenario()) == Termination(exit_code=0)
    assert read(tmp_path, "stdout") == "hello world\n"


def test_network_none_has_only_loopback(docker_c: DockerContainerizer, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, shell("ls /sys/class/net"), container_id="c3")

    async def scenario() -> Termination:
        return await docker_c.wait(await docker_c.launch(spec))

    assert run(scenario()) == Termination(exit_code=0)
    assert read(tmp_path, "stdout").split() == ["lo"]


def test_memory_limit_oom_is_reported(docker_c: DockerContainerizer, tmp_path: Path) -> None:
    # dd allocates (and fills) a 64 MB buffer: far over a 16 MB limit without swap.
    spec = make_spec(
        tmp_path, shell("dd if=/dev/zero of=/dev/null bs=64M count=1"), resources="mem:16",
        container_id="c4",
    )  # fmt: skip

    async def scenario() -> Termination:
        return await docker_c.wait(await docker_c.launch(spec))

    termination = run(scenario())
    assert termination.reason == MEM_REASON
    assert "16 MB" in termination.message and "OOM" in termination.message
    assert not termination.killed_by_us


def test_labels_find_containers_and_kill_of_sigterm_trapper(
    docker_c: DockerContainerizer, dockerd: Dockerd, tmp_path: Path
) -> None:
    script = 'trap "echo got-term; exit 0" TERM; echo ready; while true; do sleep 0.1; done'
    spec = make_spec(tmp_path, shell(script), container_id="c5")

    async def scenario() -> Termination:
        handle = await docker_c.launch(spec)
        await until_output(tmp_path, "ready")  # streamed while it runs
        found = await docker_c.find_containers(agent_id="ag")
        assert [(f.container_id, f.framework_id, f.task_id, f.running) for f in found] == [
            ("c5", "fw", "task-c5", True)
        ]
        assert found[0].sandbox == str(tmp_path)
        await docker_c.kill(handle, 20.0)
        await docker_c.kill(handle, 20.0)  # twice is harmless
        return await docker_c.wait(handle)

    termination = run(scenario())
    assert termination == Termination(exit_code=0, killed_by_us=True)  # ended on SIGTERM, in grace
    assert "got-term" in read(tmp_path, "stdout")
    assert not _exists(dockerd, "mensa-c5")


def test_kill_of_sigterm_ignorer_needs_sigkill(docker_c: DockerContainerizer, tmp_path: Path) -> None:
    script = 'trap "" TERM; echo ready; while true; do sleep 0.1; done'
    spec = make_spec(tmp_path, shell(script), container_id="c6")

    async def scenario() -> Termination:
        handle = await docker_c.launch(spec)
        await until_output(tmp_path, "ready")
        await docker_c.kill(handle, 1.0)
        return await docker_c.wait(handle)

    assert run(scenario()) == Termination(signal=9, killed_by_us=True)


def test_missing_image_and_force_pull_fail_clearly(
    docker_c: DockerContainerizer, dockerd: Dockerd, tmp_path: Path
) -> None:
    docker_c.pull_timeout = 20.0
    with pytest.raises(
        LaunchError, match=r"image mensa-test/nope:1 not found locally and cannot be pulled: .+"
    ):
        spec = make_spec(tmp_path, shell("true"), image="mensa-test/nope:1", container_id="c7")
        run(docker_c.launch(spec))
    # No registry here: forcing a pull of even a local image fails, and says why.
    with pytest.raises(LaunchError, match=r"force_pull_image is set and cannot be pulled"):
        run(docker_c.launch(make_spec(tmp_path, shell("true"), force_pull=True, container_id="c8")))
    assert not _exists(dockerd, "mensa-c7") and not _exists(dockerd, "mensa-c8")


def test_engine_refusal_is_a_launch_error(docker_c: DockerContainerizer, tmp_path: Path) -> None:
    # Below Docker's 6 MB minimum: the engine refuses to create the container.
    spec = make_spec(tmp_path, shell("true"), resources="mem:1", container_id="c9")
    with pytest.raises(LaunchError, match="Docker Engine refused the container"):
        run(docker_c.launch(spec))


def test_no_mensa_containers_left_behind(dockerd: Dockerd) -> None:
    assert dockerd.remove_mensa_containers() == 0
    assert os.path.exists(dockerd.socket)


def test_exec_in_sees_the_images_path_and_a_hung_check_is_killed(
    docker_c: DockerContainerizer, dockerd: Dockerd, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, shell("sleep 60"), container_id="c-exec")

    async def scenario() -> tuple[int, str, list[str]]:
        handle = await docker_c.launch(spec)
        try:
            code = await docker_c.exec_in(
                handle, ["sh", "-c", "echo $PATH > /mnt/mesos/sandbox/path"], {"PATH": "/agent/only"})
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(docker_c.exec_in(handle, ["sleep", "37"], {}), 0.5)
            await asyncio.sleep(1.0)
            assert isinstance(handle, DockerHandle)
            top = dockerd.client().api.top(handle.docker_id)
            commands = [" ".join(p[-1:]) for p in top["Processes"]]
            return code, (tmp_path / "path").read_text().strip(), commands
        finally:
            await docker_c.kill(handle, 0)
            await docker_c.wait(handle)

    code, path, commands = run(scenario())
    assert code == 0
    assert path and path != "/agent/only"
    assert not [c for c in commands if "sleep 37" in c], commands


def test_a_launch_given_up_on_leaves_no_container(
    docker_c: DockerContainerizer, dockerd: Dockerd, tmp_path: Path
) -> None:
    spec = make_spec(tmp_path, shell("sleep 60"), container_id="c-abandoned")

    async def scenario() -> None:
        launching = asyncio.ensure_future(docker_c.launch(spec))
        await asyncio.sleep(0.05)  # The create is on its way to the engine.
        launching.cancel()
        with contextlib.suppress(asyncio.CancelledError, LaunchError):
            await launching

    run(scenario())
    client = dockerd.client()
    for _ in range(100):
        if not client.containers.list(all=True, filters={"name": "mensa-c-abandoned"}):
            break
        time.sleep(0.1)
    assert not client.containers.list(all=True, filters={"name": "mensa-c-abandoned"})
