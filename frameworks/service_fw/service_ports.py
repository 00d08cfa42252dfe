"""Service ports: the cluster-wide port each of an app's ports is known by (pure).

As in Marathon, a port definition (or a BRIDGE port mapping's ``servicePort``) given as 0 is
assigned a service port from ``SERVICE_PORTS`` that no other app uses, when the app is created
or changed; an app keeps the ports it was assigned across updates (by position), so load
balancers such as marathon-lb keep their frontends. Ports the user names are kept as they are.
With ``requirePorts`` the definitions are host ports the app asks for, and 0 keeps meaning "any".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from mensa.frameworks.service_fw.apps import AppSpec

SERVICE_PORTS = range(10000, 20001)


def service_ports_of(spec: AppSpec) -> list[int]:
    """The service ports the app declares (0 where none is assigned)."""
    if spec.container is not None and spec.container.network == "BRIDGE":
        return [m.service_port for m in spec.container.port_mappings]
    return [p.port for p in spec.port_definitions]


def assign_service_ports(spec: AppSpec, previous: AppSpec | None, used: Iterable[int]) -> AppSpec:
    """Returns ``spec`` with each 0 service port replaced: by the port ``previous`` (the app's
    current version) had at that position, else by the lowest free one of ``SERVICE_PORTS``
    (``used``: every other app's service ports). Raises ValueError when the range is used up."""
    bridge = spec.container is not None and spec.container.network == "BRIDGE"
    if not bridge and spec.require_ports:
        return spec
    wanted = service_ports_of(spec)
    if 0 not in wanted:
        return spec
    before = service_ports_of(previous) if previous is not None else []
    taken = set(used) | {p for p in wanted if p}
    free = (p for p in SERVICE_PORTS if p not in taken)
    assigned: list[int] = []
    for index, port in enumerate(wanted):
        if port:
            assigned.append(port)
        elif index < len(before) and before[index] and before[index] not in taken:
            assigned.append(before[index])
            taken.add(before[index])
        else:
            chosen = next((p for p in free if p not in taken), None)
            if chosen is None:
                last = SERVICE_PORTS.stop - 1
                raise ValueError(f"no free service port left in {SERVICE_PORTS.start}-{last}")
            assigned.append(chosen)
            taken.add(chosen)
    if bridge:
        assert spec.container is not None
        mappings = tuple(dataclasses.replace(m, service_port=p)
                         for m, p in zip(spec.container.port_mappings, assigned, strict=True))
        container = dataclasses.replace(spec.container, port_mappings=mappings)
        return dataclasses.replace(spec, container=container)
    definitions = tuple(dataclasses.replace(d, port=p)
                        for d, p in zip(spec.port_definitions, assigned, strict=True))
    return dataclasses.replace(spec, port_definitions=definitions)
