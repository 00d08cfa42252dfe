"""An agent pointed at a master that does not lead follows its NOT_LEADER hint to the leader;
a bad --master is refused with exit code 2 (real processes, a scripted standby on loopback)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import zmq
from mensa_cluster import Cluster, wait_until

from mensa.deploy.processes import mensa_argv
from mensa.proto import internal_pb2, transport


def standby(ctx: zmq.Context, leader_endpoint: str,  # type: ignore[type-arg]
            stop: threading.Event) -> tuple[int, list[str], threading.Thread]:
    """A ROUTER that answers everything with NOT_LEADER naming ``leader_endpoint``."""
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    seen: list[str] = []

    def serve() -> None:
        try:
            while not stop.is_set():
                if not sock.poll(50):
                    continue
                peer, *frames = sock.recv_multipart()
                seen.append(str(transport.decode(frames[-1]).WhichOneof("message")))
                error = internal_pb2.Error(code=internal_pb2.Error.NOT_LEADER, message="standby")
                error.leader.zmq_endpoint = leader_endpoint
                error.leader.id = "leader"
                error.leader.address.ip = "127.0.0.1"
                error.leader.address.port = 1
                sock.send_multipart([peer, transport.encode(internal_pb2.Envelope(error=error))])
        finally:
            sock.close(linger=0)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, seen, thread


def test_agent_follows_not_leader_hint(cluster: Cluster) -> None:
    cluster.start_master()
    stop = threading.Event()
    ctx = zmq.Context()
    port, seen, thread = standby(ctx, f"tcp://{cluster.master_endpoint}", stop)
    try:
        real = cluster.master_endpoint
        cluster.master_endpoint = f"127.0.0.1:{port}"
        agent = cluster.start_agent("agent1")
        cluster.master_endpoint = real
        (registered,) = cluster.wait_agents(1)
        assert registered["hostname"] == "agent1"
        assert "register_agent" in seen
        wait_until(lambda: agent.endpoints().get("agent_id") == registered["id"], what="agent id")
    finally:
        stop.set()
        thread.join(5)
        ctx.term()


def test_malformed_master_is_refused(tmp_path: Path) -> None:
    for bad in ("zk://", "zk://127.0.0.1:2181", "127.0.0.1:notaport"):
        done = subprocess.run(mensa_argv("agent", "--master", bad, "--work-dir", str(tmp_path),
                                         "--http-port", "0"),
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        assert "--master" in done.stdout + done.stderr
