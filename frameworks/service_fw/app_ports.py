"""An app definition's ports, container and network: read with every problem by path, and rendered (pure).

Part of reading Marathon app documents (``app_reading.py`` holds the public API and its rules):
``portDefinitions`` and their short form ``ports``, ``container`` (Docker image, network, port
mappings, privileged, parameters) and Marathon 1.5's ``networks``. As everywhere in reading,
unknown keys are ignored and known keys of the wrong type or out of range are errors.
"""

from __future__ import annotations

import re
from typing import Any

from mensa.frameworks.reading import Problems, read_string, read_string_map
from mensa.frameworks.service_fw.app_parts import port_number, read_bool, read_dict, read_list
from mensa.frameworks.service_fw.apps import DockerSpec, Pairs, PortDefinition, PortMapping

NETWORKS = ("HOST", "BRIDGE", "NONE")
# ``networks: [{"mode": ...}]`` (Marathon 1.5+) for what ``container.docker.network`` says.
NETWORK_MODES = {"host": "HOST", "container/bridge": "BRIDGE"}
PORT_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "udp,tcp": "udp,tcp", "tcp,udp": "udp,tcp"}
PORT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")


# -- ports -----------------------------------------------------------------------------------------


def _port_extras(obj: dict[str, Any], at: str, errors: Problems) -> tuple[str, str | None, Pairs]:
    """(protocol, name, labels) of a port definition or mapping."""
    protocol = obj.get("protocol")
    if protocol is None:
        protocol = "tcp"
    elif not isinstance(protocol, str) or protocol not in PORT_PROTOCOLS:
        errors.add(f"{at}/protocol", "must be one of tcp, udp, udp,tcp")
        protocol = "tcp"
    name = read_string(obj, "name", at, errors)
    if name is not None and not PORT_NAME_RE.match(name):
        errors.add(f"{at}/name", "must be lowercase letters, digits and '-', starting with a letter")
        name = None
    labels = read_string_map(obj.get("labels"), f"{at}/labels", errors, "labels")
    return PORT_PROTOCOLS[protocol], name, labels


def read_port_definitions(doc: dict[str, Any], errors: Problems) -> tuple[PortDefinition, ...] | None:
    """The app's ``portDefinitions``, or its short form ``ports`` (a list of port numbers); None
    when it gives neither. Both given must name the same ports."""
    definitions: list[PortDefinition] | None = None
    if doc.get("portDefinitions") is not None:
        definitions = []
        for i, item in enumerate(read_list(doc, "portDefinitions", "", errors)):
            at = f"/portDefinitions/{i}"
            obj = read_dict(item, at, errors)
            if obj is None:
                continue
            port = 0 if obj.get("port") is None else port_number(obj["port"], f"{at}/port", errors)
            protocol, name, labels = _port_extras(obj, at, errors)
            definitions.append(PortDefinition(port or 0, protocol, name, labels))
    if doc.get("ports") is not None:
        raw = read_list(doc, "ports", "", errors)
        numbers = [port_number(p, f"/ports/{i}", errors) for i, p in enumerate(raw)]
        if definitions is None:
            definitions = [PortDefinition(p or 0) for p in numbers]
        elif numbers != [d.port for d in definitions]:
            errors.add("/ports", "names other ports than portDefinitions: give one of the two")
    if definitions is None:
        return None
    _unique([d.name for d in definitions], "/portDefinitions", "name", errors)
    _unique([d.port or None for d in definitions], "/portDefinitions", "port", errors)
    return tuple(definitions)


def _unique(values: list[Any], path: str, key: str, errors: Problems) -> None:
    """Each non-None value at most once (port names, fixed port numbers)."""
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value is not None and value in seen:
            errors.add(f"{path}/{i}/{key}", f"{value!r} is used by another port of this app")
        seen.add(value)


def _port_mappings(value: Any, path: str, errors: Problems) -> tuple[PortMapping, ...]:
    if not isinstance(value, list):
        errors.add(path, "must be a list")
        return ()
    out: list[PortMapping] = []
    for i, item in enumerate(value):
        at = f"{path}/{i}"
        obj = read_dict(item, at, errors)
        if obj is None:
            continue
        numbers = [0 if obj.get(k) is None else port_number(obj[k], f"{at}/{k}", errors)
                   for k in ("containerPort", "hostPort", "servicePort")]
        protocol, name, labels = _port_extras(obj, at, errors)
        out.append(PortMapping(numbers[0] or 0, numbers[1] or 0, numbers[2] or 0, protocol, name, labels))
    _unique([m.name for m in out], path, "name", errors)
    _unique([m.host_port or None for m in out], path, "hostPort", errors)
    return tuple(out)


# -- container and network -------------------------------------------------------------------------


def _parameters(value: Any, path: str, errors: Problems) -> Pairs:
    if not isinstance(value, list):
        errors.add(path, "must be a list of {\"key\", \"value\"}")
        return ()
    out: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        obj = read_dict(item, f"{path}/{i}", errors)
        if obj is None:
            continue
        key = read_string(obj, "key", f"{path}/{i}", errors, required=True)
        val = read_string(obj, "value", f"{path}/{i}", errors)
        if key is not None:
            out.append((key, val or ""))
    return tuple(out)


def _network_of_networks(doc: dict[str, Any], errors: Problems) -> str | None:
    """What the top-level ``networks`` (Marathon 1.5+) asks for: HOST, BRIDGE, or None."""
    items = read_list(doc, "networks", "", errors)
    if len(items) > 1:
        errors.add("/networks", "at most one network is supported")
        return None
    for item in items:
        obj = read_dict(item, "/networks/0", errors)
        if obj is None:
            return None
        mode = obj.get("mode", "container")
        if not isinstance(mode, str) or mode not in NETWORK_MODES:
            errors.add("/networks/0/mode",
                       "must be host or container/bridge (user networks are not supported)")
            return None
        return NETWORK_MODES[mode]
    return None


def read_container(doc: dict[str, Any], errors: Problems) -> tuple[DockerSpec | None, str]:
    """The app's Docker container (None without one) and its network (HOST, BRIDGE or NONE).

    ``container: {type: DOCKER|MESOS, docker: {...}, portMappings, volumes}``; a MESOS container
    with a ``docker.image`` runs that image like a DOCKER one. The network is
    ``container.docker.network`` or, if absent, what ``networks`` says; HOST by default. Port
    mappings sit at ``container.docker.portMappings`` or (newer Marathon) ``container.portMappings``.
    A BRIDGE container that gives no port mappings gets one (container port 0: the host port),
    as every app gets one port by default."""
    from_networks = _network_of_networks(doc, errors)
    value = doc.get("container")
    if value is None:
        if from_networks == "BRIDGE":
            errors.add("/networks", "BRIDGE networking needs a Docker container (container.docker.image)")
        return None, from_networks or "HOST"
    obj = read_dict(value, "/container", errors)
    if obj is None:
        return None, from_networks or "HOST"
    kind = obj.get("type")
    if kind is None:
        kind = "DOCKER"
    elif kind not in ("DOCKER", "MESOS"):
        errors.add("/container/type", "must be DOCKER or MESOS")
    if read_list(obj, "volumes", "/container", errors):
        errors.add("/container/volumes", "volumes are not supported")
    outer = None if obj.get("portMappings") is None else _port_mappings(
        obj["portMappings"], "/container/portMappings", errors)
    docker = obj.get("docker")
    if docker is None:
        if kind == "DOCKER":
            errors.add("/container/docker", "is required for a DOCKER container (at least its image)")
        elif outer or from_networks == "BRIDGE":
            errors.add("/container", "port mappings and BRIDGE networking need a Docker image")
        return None, from_networks or "HOST"
    d = read_dict(docker, "/container/docker", errors)
    if d is None:
        return None, from_networks or "HOST"
    at = "/container/docker"
    image = read_string(d, "image", at, errors, required=True)
    network = d.get("network")
    if network is not None and network not in NETWORKS:
        errors.add(f"{at}/network", "must be HOST, BRIDGE or NONE (user networks are not supported)")
        network = None
    elif network is not None and from_networks is not None and network != from_networks:
        errors.add("/networks",
                   f"asks for {from_networks} networking but container.docker.network is {network}")
    network = network or from_networks or "HOST"
    inner = None if d.get("portMappings") is None else _port_mappings(
        d["portMappings"], f"{at}/portMappings", errors)
    if inner is not None and outer is not None and inner != outer:
        errors.add("/container/portMappings",
                   "differs from container.docker.portMappings: give one of the two")
    mappings = inner if inner is not None else outer
    if mappings is None:
        mappings = (PortMapping(container_port=0),) if network == "BRIDGE" else ()
    elif mappings and network != "BRIDGE":
        where = f"{at}/portMappings" if inner is not None else "/container/portMappings"
        errors.add(where, f"port mappings need BRIDGE networking (this container's is {network}; "
                   "with HOST networking give portDefinitions)")
    spec = DockerSpec(
        image=image or "",
        network=network,
        port_mappings=mappings,
        force_pull_image=read_bool(d, "forcePullImage", at, errors),
        privileged=read_bool(d, "privileged", at, errors),
        parameters=() if d.get("parameters") is None else _parameters(d["parameters"], f"{at}/parameters",
                                                                      errors),
    )
    return spec, network


def container_json(docker: DockerSpec | None) -> dict[str, Any] | None:
    """``container`` as Marathon renders it (null without one). Network and port mappings are
    rendered in one place only, ``container.docker``, so a client that edits what it got and
    PUTs it back never sends two that disagree."""
    if docker is None:
        return None
    return {"type": "DOCKER", "volumes": [], "docker": {
        "image": docker.image,
        "network": docker.network,
        "portMappings": [_mapping_json(m) for m in docker.port_mappings],
        "privileged": docker.privileged,
        "parameters": [{"key": k, "value": v} for k, v in docker.parameters],
        "forcePullImage": docker.force_pull_image,
    }}


def _mapping_json(m: PortMapping) -> dict[str, Any]:
    out: dict[str, Any] = {"containerPort": m.container_port, "hostPort": m.host_port,
                           "servicePort": m.service_port, "protocol": m.protocol, "labels": dict(m.labels)}
    if m.name is not None:
        out["name"] = m.name
    return out


def port_definition_json(p: PortDefinition) -> dict[str, Any]:
    out: dict[str, Any] = {"port": p.port, "protocol": p.protocol, "labels": dict(p.labels)}
    if p.name is not None:
        out["name"] = p.name
    return out
