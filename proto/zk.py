"""ZooKeeper URIs and the leader znodes, in Mesos's layout (pure: no kazoo, no sockets).

A master URI is ``zk://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/PATH``. Under PATH, each
contending master owns an ephemeral sequential znode ``json.info_NNNNNNNNNN`` holding its
MasterInfo as JSON (protobuf field names: ``address.hostname``, ``address.ip``,
``address.port`` = the HTTP port, and Mensa's ``zmq_endpoint``); the lowest sequence leads. Mesos
tooling (pymesos, mesos-dns, Traefik) reads the same znodes.

Usage::

    uri = parse_zk_uri("zk://10.0.0.1:2181,10.0.0.2:2181/mensa")
    election = elect({"json.info_0000000003": data3, "json.info_0000000001": data1})
    leader = Leader.from_info(election.leader)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import json_format

from mensa.proto import mensa_pb2
from mensa.proto.transport import Endpoint

MASTER_PREFIX = "json.info_"
REGISTRY_NODE = "registry"
MAX_MASTER_INFO_BYTES = 64 * 1024


class ZkUriError(ValueError):
    """A malformed ``zk://`` URI; ``str()`` says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ZkUri:
    """A parsed ``zk://`` URI: ``hosts`` for kazoo (``h1:p1,h2:p2``), the chroot ``path``, and
    digest credentials when given (``user:password``)."""

    hosts: str
    path: str
    auth: str | None = None

    def __str__(self) -> str:
        return f"zk://{self.hosts}{self.path}"

    def child(self, name: str) -> str:
        """Returns the full path of ``name`` under this URI's path."""
        return f"{self.path.rstrip('/')}/{name}"


def is_zk_uri(text: str) -> bool:
    return text.strip().startswith("zk://")


def parse_zk_uri(text: str) -> ZkUri:
    """Parses ``zk://[USER:PASSWORD@]HOST:PORT,.../PATH``; raises ZkUriError when malformed.

    Every host needs a port between 1 and 65535; the path must not be ``/`` or empty (as in
    Mesos, the masters need a node of their own) and may not hold empty or relative parts.
    """
    value = text.strip()
    if not value.startswith("zk://"):
        raise ZkUriError(f"{text!r} is not a zk:// URI")
    rest = value[len("zk://"):]
    auth: str | None = None
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        auth, _, authority = authority.rpartition("@")
        if ":" not in auth or auth.startswith(":"):
            raise ZkUriError(f"credentials in {text!r} must be USER:PASSWORD")
    if not authority:
        raise ZkUriError(f"{text!r} names no ZooKeeper server")
    hosts = []
    for server in authority.split(","):
        host, sep, port = server.rpartition(":")
        if not sep or not host:
            raise ZkUriError(f"server {server!r} in {text!r} must be HOST:PORT")
        if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ZkUriError(f"server {server!r} in {text!r} has a bad port")
        hosts.append(f"{host}:{int(port)}")
    path = path.rstrip("/")
    if not path:
        raise ZkUriError(f"{text!r} needs a path for the masters' znodes, e.g. zk://{authority}/mensa")
    parts = path.split("/")[1:]
    if any(p in ("", ".", "..") for p in parts):
        raise ZkUriError(f"path {path!r} in {text!r} has an empty or relative part")
    return ZkUri(",".join(hosts), path, auth)


def sequence_of(child: str) -> int | None:
    """Returns the sequence number of a ``json.info_N`` child, or None for any other name."""
    if not child.startswith(MASTER_PREFIX):
        return None
    digits = child[len(MASTER_PREFIX):]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def leader_child(children: Iterable[str]) -> str | None:
    """Returns the contender child with the lowest sequence (the leader's), or None."""
    best: tuple[int, str] | None = None
    for child in children:
        seq = sequence_of(child)
        if seq is not None and (best is None or seq < best[0]):
            best = (seq, child)
    return None if best is None else best[1]


def master_info_json(info: mensa_pb2.MasterInfo) -> bytes:
    """Returns the znode data for ``info``: its JSON with protobuf field names."""
    return json_format.MessageToJson(info, preserving_proto_field_name=True, indent=None).encode()


def parse_master_info(data: bytes | None) -> mensa_pb2.MasterInfo:
    """Parses a leader znode's data; raises ValueError when it is not a usable MasterInfo.

    Unknown fields (a newer Mesos's, say) are ignored; the result has an address with a port.
    """
    if not data:
        raise ValueError("the znode is empty")
    if len(data) > MAX_MASTER_INFO_BYTES:
        raise ValueError(f"the znode holds {len(data)} bytes, more than a MasterInfo")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the znode does not hold JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("the znode's JSON is not an object")  # noqa: TRY004 - bad data, not a bad call
    info = mensa_pb2.MasterInfo()
    try:
        json_format.ParseDict(obj, info, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(f"the znode's JSON is not a MasterInfo: {exc}") from None
    if not (info.address.hostname or info.address.ip or info.hostname):
        raise ValueError("the MasterInfo names no host")
    return info


@dataclass(frozen=True, slots=True)
class Leader:
    """Where the leading master is: its ZeroMQ endpoint, its HTTP ``host:port``, its info."""

    master_id: str
    zmq: Endpoint
    http: str
    info: mensa_pb2.MasterInfo

    @staticmethod
    def from_info(info: mensa_pb2.MasterInfo) -> Leader:
        """Builds a Leader; raises ValueError when ``info`` carries no ZeroMQ endpoint."""
        host = info.address.ip or info.address.hostname or info.hostname
        port = info.address.port or info.port
        if not info.zmq_endpoint:
            raise ValueError("the MasterInfo carries no zmq_endpoint (not a Mensa master?)")
        return Leader(info.id, Endpoint.parse(info.zmq_endpoint), f"{host}:{port}", info)

    def __str__(self) -> str:
        return f"{self.master_id}@{self.zmq}"


@dataclass(frozen=True, slots=True)
class Election:
    """The outcome of reading the contenders: the leading child and its info (None when no
    valid contender exists), and the children skipped because their data is not a MasterInfo."""

    leader_child: str | None
    leader: mensa_pb2.MasterInfo | None
    invalid: tuple[tuple[str, str], ...] = ()


def elect(nodes: dict[str, bytes | None]) -> Election:
    """Returns the leader among contender znodes (child name -> data; None when it vanished).

    The rule every master and detector applies: the lowest sequence among ``json.info_N``
    children whose data parses as a MasterInfo; a child holding garbage is skipped (and
    reported in ``invalid``) so it cannot stall the election.
    """
    invalid: list[tuple[str, str]] = []
    ordered = sorted((seq, child) for child in nodes if (seq := sequence_of(child)) is not None)
    for _seq, child in ordered:
        data = nodes[child]
        if data is None:
            continue
        try:
            info = parse_master_info(data)
        except ValueError as exc:
            invalid.append((child, str(exc)))
            continue
        return Election(child, info, tuple(invalid))
    return Election(None, None, tuple(invalid))
