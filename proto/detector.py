"""Finding the master: parse a ``--master`` value and ask the master who and where it is.

Today a master is given by a fixed ``HOST:PORT`` (its ZeroMQ port); leader detection through
``zk://`` arrives with high availability. ``fetch_master_info`` asks a master for its MasterInfo
(which carries its HTTP port) with a MasterInfoRequest, as the CLI does.
"""

from __future__ import annotations

import zmq

from mensa.proto import internal_pb2
from mensa.proto.transport import Endpoint, TransportError, connect_dealer, decode, encode


class MasterUnreachable(RuntimeError):
    """No answer from the master within the timeout."""


def parse_master(text: str) -> Endpoint:
    """Parses a ``--master`` value (``HOST:PORT`` or ``tcp://HOST:PORT``); raises ValueError."""
    if text.startswith("zk://"):
        raise ValueError("zk:// master addresses need ZooKeeper support, which is not built yet")
    return Endpoint.parse(text)


def fetch_master_info(endpoint: Endpoint, timeout: float = 5.0) -> internal_pb2.MasterInfoResponse:
    """Asks the master at ``endpoint`` for its MasterInfo; raises MasterUnreachable on timeout."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = connect_dealer(ctx, endpoint)
    try:
        request = internal_pb2.Envelope(master_info_request=internal_pb2.MasterInfoRequest())
        sock.send(encode(request))
        if not sock.poll(int(timeout * 1000)):
            raise MasterUnreachable(f"no answer from the master at {endpoint} within {timeout:g}s")
        try:
            reply = decode(sock.recv())
        except TransportError as exc:
            raise MasterUnreachable(f"bad answer from {endpoint}: {exc}") from None
        if reply.WhichOneof("message") != "master_info_response":
            raise MasterUnreachable(f"unexpected answer from {endpoint}: {reply.WhichOneof('message')}")
        return reply.master_info_response
    finally:
        sock.close(linger=0)
