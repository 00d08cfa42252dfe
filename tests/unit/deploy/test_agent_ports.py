"""Local clusters give agents task ports below the kernel's ephemeral range."""

from __future__ import annotations

import pytest

from mensa.deploy.processes import agent_ports
from mensa.proto.resources import Resources


def test_each_agent_gets_its_own_hundred_ports_below_32768() -> None:
    ranges = [Resources.parse(agent_ports(i)).ranges("ports") for i in range(17)]
    assert ranges[0] == ((31000, 31099),) and ranges[1] == ((31100, 31199),)
    assert all(end < 32768 for ((_, end),) in ranges)
    assert len({r for ((r, _),) in ranges}) == 17
    with pytest.raises(ValueError, match="ephemeral"):
        agent_ports(17)
