"""Sandbox paths, id checks, command lines, attributes: the agent's pure helpers."""

from __future__ import annotations

import pytest

from mensa.agent.resources_detect import detect_resources
from mensa.agent.sandbox import InvalidTask, command_line, id_problem, sandbox_path, task_ports
from mensa.proto import mensa_pb2
from mensa.proto.attributes import attributes_json, parse_attributes
from mensa.proto.resources import Resources


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "/abs", "nul\0", "x" * 256])
def test_bad_ids_are_refused(value: str) -> None:
    assert id_problem("task id", value) is not None
    with pytest.raises(InvalidTask):
        sandbox_path("/w", "agent", "fw", value)


@pytest.mark.parametrize("value", ["t1", "my-app.instance-1", "a b", "...", "x" * 255, "ünï"])
def test_good_ids_are_accepted(value: str) -> None:
    assert id_problem("task id", value) is None
    path = sandbox_path("/w/", "agent", "fw", value)
    assert path == f"/w/agents/agent/frameworks/fw/executors/{value}/runs/latest"


def test_command_line_requires_a_value() -> None:
    with pytest.raises(InvalidTask):
        command_line(mensa_pb2.CommandInfo())
    assert command_line(mensa_pb2.CommandInfo(value="echo $HOME")) == (
        "/bin/sh",
        ("/bin/sh", "-c", "echo $HOME"),
    )


def test_task_ports_are_ascending_across_ranges() -> None:
    info = mensa_pb2.TaskInfo()
    info.resources.extend(Resources.parse("ports:[40-41,10-10];cpus:1").to_proto())
    assert task_ports(info) == [10, 40, 41]


def test_task_ports_with_invalid_resources_are_invalid_task() -> None:
    info = mensa_pb2.TaskInfo()
    info.resources.add(name="ports", type=mensa_pb2.Value.RANGES).ranges.range.add(begin=5, end=1)
    with pytest.raises(InvalidTask):
        task_ports(info)


def test_attributes_numbers_are_scalar_others_text() -> None:
    attrs = parse_attributes("rack:a; zone:z1;generation:3;ratio:0.5")
    assert [(a.name, a.type) for a in attrs] == [
        ("rack", mensa_pb2.Value.TEXT),
        ("zone", mensa_pb2.Value.TEXT),
        ("generation", mensa_pb2.Value.SCALAR),
        ("ratio", mensa_pb2.Value.SCALAR),
    ]
    assert attributes_json(attrs) == {"rack": "a", "zone": "z1", "generation": 3.0, "ratio": 0.5}
    assert parse_attributes("") == []


@pytest.mark.parametrize("text", ["rack", "rack:", ":a", "rack:a;rack:b", "ra ck:a"])
def test_malformed_attributes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_attributes(text)


def test_detected_resources_leave_room_for_the_system(tmp_path: object) -> None:
    resources = detect_resources(str(tmp_path))
    assert resources.scalar("cpus") >= 1
    assert resources.scalar("mem") > 0 and resources.scalar("disk") > 0
    assert resources.ranges("ports") == ((31000, 32000),)
