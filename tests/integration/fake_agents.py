"""Many fake agents in one process, registered with a real master over ZeroMQ (for scale tests).

Starting a thousand agent processes is out of the question on a test machine, but the master
only sees what arrives on its ROUTER socket: one DEALER socket per fake agent (the master maps
each routing identity to an agent) sending a RegisterAgent, then answering every Ping with a
Pong, is an agent as far as the master can tell. Each fake agent may report tasks it "runs"
(of one framework the master then recovers), so a test gets thousands of tasks in /state too.

Usage::

    with FakeAgents(cluster.master_endpoint, 1000, tasks_per_agent=10) as agents:
        agents.wait_registered(timeout=60)
        ...  # the master's /state lists 1,000 agents, fake-0000 .. fake-0999

One background thread owns every socket (ZeroMQ sockets are not thread-safe): it registers the
agents (again, for those not answered within ``retry_seconds``), answers pings, and closes the
sockets when ``close()`` is called.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import zmq

from mensa.proto import internal_pb2, mensa_pb2
from mensa.proto.resources import Resources
from mensa.proto.transport import Endpoint, decode, encode

FRAMEWORK_ID = "fake-framework-0000"


def hostname(index: int) -> str:
    """The hostname of fake agent ``index``: ``fake-0000``, ``fake-0001``, ..."""
    return f"fake-{index:04d}"


def register_message(index: int, resources: str, tasks: int, http_port: int = 0) -> internal_pb2.Envelope:
    """Returns the RegisterAgent of fake agent ``index``, reporting ``tasks`` running tasks and
    an HTTP port on 127.0.0.1 (nothing serves it: fake agents have no HTTP API)."""
    register = internal_pb2.RegisterAgent(version="fake", http_port=http_port, advertise_ip="127.0.0.1")
    info = register.agent_info
    info.hostname = hostname(index)
    total = Resources.parse(resources)
    info.resources.extend(total.to_proto())
    rack = info.attributes.add(name="rack", type=mensa_pb2.Value.TEXT)
    rack.text.value = f"r{index % 20:02d}"
    if tasks:
        framework = register.frameworks.add(name="fake-framework", user="root", failover_timeout=3600)
        framework.id.value = FRAMEWORK_ID
        each = Resources.parse("cpus:0.1;mem:32").to_proto()
        for n in range(tasks):
            task = register.tasks.add(name=f"task {n} of {hostname(index)}", state=mensa_pb2.TASK_RUNNING)
            task.task_id.value = f"{hostname(index)}-task-{n:02d}"
            task.framework_id.value = FRAMEWORK_ID
            task.resources.extend(each)
            status = task.statuses.add(state=mensa_pb2.TASK_RUNNING, timestamp=time.time())
            status.task_id.CopyFrom(task.task_id)
    return internal_pb2.Envelope(register_agent=register)


class FakeAgents:
    """``count`` fake agents registered with the master at ``master_endpoint`` (HOST:PORT)."""

    def __init__(self, master_endpoint: str, count: int, *, tasks_per_agent: int = 0,
                 resources: str = "cpus:8;mem:16384;disk:100000", http_port: int = 0,
                 retry_seconds: float = 5.0) -> None:
        self.endpoint = Endpoint.parse(master_endpoint)
        self.count = count
        self.tasks_per_agent = tasks_per_agent
        self.resources = resources
        self.http_port = http_port
        self.retry_seconds = retry_seconds
        self.agent_ids: dict[int, str] = {}
        self.pings_answered = 0
        self.errors: list[str] = []
        self._registered = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fake-agents", daemon=True)

    def start(self) -> FakeAgents:
        self._thread.start()
        return self

    def wait_registered(self, timeout: float = 60.0) -> dict[int, str]:
        """Blocks until every fake agent has its AgentRegistered; returns index -> agent id."""
        if not self._registered.wait(timeout):
            with self._lock:
                done = len(self.agent_ids)
            raise AssertionError(f"only {done} of {self.count} fake agents registered within "
                                 f"{timeout:g}s (errors: {self.errors[:3]})")
        with self._lock:
            return dict(self.agent_ids)

    def close(self) -> None:
        """Stops answering pings and closes every socket (the master will mark them lost)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeAgents:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        ctx = zmq.Context()
        ctx.set(zmq.MAX_SOCKETS, self.count + 64)
        sockets: list[zmq.Socket] = []
        try:
            poller = zmq.Poller()
            index_of: dict[zmq.Socket, int] = {}
            messages = [encode(register_message(i, self.resources, self.tasks_per_agent, self.http_port))
                        for i in range(self.count)]
            for i in range(self.count):
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(self.endpoint.url)
                sockets.append(sock)
                index_of[sock] = i
                poller.register(sock, zmq.POLLIN)
                sock.send(messages[i])
            sent_at = time.monotonic()
            while not self._stop.is_set():
                for sock, _ in poller.poll(100):
                    while sock.poll(0):
                        self._handle(sock, index_of[sock], sock.recv())
                if not self._registered.is_set() and time.monotonic() - sent_at > self.retry_seconds:
                    with self._lock:
                        missing = [i for i in range(self.count) if i not in self.agent_ids]
                    for i in missing:
                        sockets[i].send(messages[i])
                    sent_at = time.monotonic()
        finally:
            for sock in sockets:
                sock.close(linger=0)
            ctx.term()

    def _handle(self, sock: zmq.Socket, index: int, payload: bytes) -> None:
        envelope = decode(payload)
        kind = envelope.WhichOneof("message")
        if kind == "agent_registered":
            with self._lock:
                self.agent_ids[index] = envelope.agent_registered.agent_id.value
                if len(self.agent_ids) == self.count:
                    self._registered.set()
        elif kind == "ping":
            sock.send(encode(internal_pb2.Envelope(pong=internal_pb2.Pong())))
            self.pings_answered += 1
        elif kind == "error":
            self.errors.append(envelope.error.message)
