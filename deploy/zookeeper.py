"""A real ZooKeeper ensemble (or one standalone server) on 127.0.0.1, for tests and benchmarks.

``ZooKeeperEnsemble(base_dir, size=3)`` writes one conf dir per node (``zoo.cfg`` with its own
``dataDir``, free client/peer/election ports on 127.0.0.1, ``myid``, a ``log4j.properties`` that
logs WARN and above to the console, which goes to ``node<N>/zookeeper.log``), starts Debian's
ZooKeeper (``/usr/share/java/zookeeper.jar``) with ``java ... QuorumPeerMain zoo.cfg`` directly
(never ``zkServer.sh``, which ignores the conf dir), and waits until every node answers ``ruok``
with ``imok`` and reports a mode (``leader``/``follower``, or ``standalone`` for size 1).

Nodes are numbered from 0 (node ``n`` has ``myid`` ``n + 1``). ``kill(n)`` SIGKILLs a node by
pid, ``start(n)`` restarts it with the same ports and data; ``stop()`` stops exactly the
processes this object started, by pid, and removes the directory it created. ``size=1`` runs
one standalone server.

Usage::

    with ZooKeeperEnsemble(tmp_path / "zk", size=3) as zk:
        uri = zk.uri("/mensa")          # zk://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mensa
        zk.kill(zk.leader_index())      # an ensemble leader dies; the others elect a new one
"""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mensa.deploy.processes import ManagedProcess

JAVA_DIR = Path("/usr/share/java")
# zookeeper.jar's manifest names its other dependencies (jute, netty, slf4j-api, ...).
ZOOKEEPER_JARS = ("zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
INSTALL_HINT = "install it with `apt-get install -y --no-install-recommends zookeeper`"
MODES = ("leader", "follower", "observer", "standalone")

LOG4J_PROPERTIES = """\
log4j.rootLogger=WARN, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.Threshold=WARN
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] %-5p [%t:%C{1}@%L] - %m%n
"""


class ZooKeeperUnavailable(RuntimeError):
    """Java or Debian's ZooKeeper is not installed; ``str()`` says what is missing and how to fix it."""


class ZooKeeperStartError(RuntimeError):
    """A ZooKeeper node did not come up (or the ensemble formed no quorum) in time."""


def zookeeper_missing(java_dir: Path = JAVA_DIR) -> str | None:
    """Returns why ZooKeeper cannot run here (java or a jar missing), or None when it can."""
    if shutil.which("java") is None:
        return f"java is not installed; {INSTALL_HINT} (it brings a Java runtime)"
    missing = [name for name in ZOOKEEPER_JARS if not (java_dir / name).exists()]
    if missing:
        return f"{', '.join(missing)} not found in {java_dir}; {INSTALL_HINT}"
    return None


def four_letter(port: int, command: str, timeout: float = 1.0, host: str = "127.0.0.1") -> str | None:
    """Sends a four-letter-word command (``ruok``, ``srvr``, ``mntr``...); returns the answer,
    or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Returns ``count`` distinct ports that were free on ``host`` a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(slots=True)
class ZooKeeperNode:
    """One server: its 0-based index, ports, directory and (while started) process."""

    index: int
    client_port: int
    peer_port: int
    election_port: int
    directory: Path
    process: ManagedProcess | None = None

    @property
    def myid(self) -> int:
        return self.index + 1

    @property
    def log_path(self) -> Path:
        return self.directory / "zookeeper.log"

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers on 127.0.0.1 (one standalone server when ``size == 1``).

    Started by the constructor (``start=False`` to defer to ``start_all()``); stopped by
    ``stop()`` or on leaving a ``with`` block. Raises ZooKeeperUnavailable when java or the
    jars are missing, ZooKeeperStartError when the servers do not come up within ``timeout``.
    """

    def __init__(self, base_dir: Path | str | None = None, size: int = 3, *, tick_ms: int = 500,
                 timeout: float = 30.0, java_dir: Path = JAVA_DIR, fsync: bool = False,
                 heap_mb: int = 256, keep_files: bool = False, start: bool = True) -> None:
        if size < 1:
            raise ValueError(f"an ensemble needs at least one node, not {size}")
        why = zookeeper_missing(java_dir)
        if why is not None:
            raise ZooKeeperUnavailable(why)
        self.size = size
        self.tick_ms = tick_ms
        self.timeout = timeout
        self.java_dir = java_dir
        self.fsync = fsync
        self.heap_mb = heap_mb
        self.keep_files = keep_files
        if base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="mensa-zk-"))
            self._created_base = True
        else:
            self.base_dir = Path(base_dir)
            self._created_base = not self.base_dir.exists()
            self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3 * size)
        self.nodes = [
            ZooKeeperNode(i, ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], self.base_dir / f"node{i + 1}")
            for i in range(size)
        ]
        for node in self.nodes:
            self._write_config(node)
        self._stopped = False
        atexit.register(self.stop)  # An interpreter that exits without stop() leaves no server.
        if start:
            self.start_all()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def connect_string(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...``: every node's client address, for kazoo."""
        return ",".join(f"127.0.0.1:{node.client_port}" for node in self.nodes)

    def uri(self, path: str = "/mensa") -> str:
        """Returns ``zk://<connect_string><path>`` (``path`` gets a leading ``/`` when missing)."""
        return f"zk://{self.connect_string}/{path.lstrip('/')}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start_all(self) -> None:
        """Starts every node not running and waits until all serve; stops them all on failure."""
        try:
            for node in self.nodes:
                if not node.alive():
                    self._spawn(node)
            self.wait_serving(range(self.size))
        except BaseException:
            self.stop()
            raise

    def start(self, n: int, *, wait: bool = True) -> None:
        """Restarts node ``n`` (after ``kill(n)``) with its ports and data; with ``wait``, waits
        until it serves in a mode (which needs a quorum of the ensemble to be up)."""
        node = self.nodes[n]
        if node.alive():
            raise RuntimeError(f"ZooKeeper node {n} is already running (pid {self.pid(n)})")
        self._spawn(node)
        if wait:
            self.wait_serving([n])

    def kill(self, n: int) -> None:
        """SIGKILLs node ``n`` by pid (as a crash would) and waits for it to die."""
        node = self.nodes[n]
        if node.process is not None:
            node.process.kill()

    def stop(self) -> None:
        """Stops every process this ensemble started (SIGTERM, SIGKILL after 5 s), by pid, waits
        for them, and removes the directory this ensemble created (unless ``keep_files``)."""
        processes = [node.process for node in self.nodes if node.process is not None]
        for proc in processes:
            proc.signal(signal.SIGTERM)
        for proc in processes:
            proc.stop(grace=5.0)
        if not self._stopped and not self.keep_files:
            self._remove_files()
        self._stopped = True
        atexit.unregister(self.stop)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------

    def mode(self, n: int) -> str | None:
        """Returns node ``n``'s mode (``leader``, ``follower``, ``standalone``), or None when it
        is down or not serving (no quorum)."""
        answer = four_letter(self.nodes[n].client_port, "srvr")
        if answer is None:
            return None
        match = re.search(r"^Mode:\s*(\w+)", answer, re.MULTILINE)
        return match.group(1) if match and match.group(1) in MODES else None

    def ruok(self, n: int) -> bool:
        """Returns True when node ``n`` answers ``ruok`` with ``imok``."""
        return four_letter(self.nodes[n].client_port, "ruok") == "imok"

    def leader_index(self) -> int | None:
        """Returns the index of the node that leads (the standalone node for size 1), or None."""
        for node in self.nodes:
            if self.mode(node.index) in ("leader", "standalone"):
                return node.index
        return None

    def pid(self, n: int) -> int | None:
        node = self.nodes[n]
        return node.process.pid if node.alive() and node.process is not None else None

    def wait_serving(self, indices: range | list[int], timeout: float | None = None) -> None:
        """Waits until every node in ``indices`` answers ``imok`` and reports a mode."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pending = list(indices)
        while pending:
            for n in list(pending):
                node = self.nodes[n]
                if not node.alive():
                    raise ZooKeeperStartError(
                        f"ZooKeeper node {n} exited with {self._returncode(node)}; {self._log_tail(node)}")
                if self.ruok(n) and self.mode(n) is not None:
                    pending.remove(n)
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "; ".join(f"node {n}: {self._log_tail(self.nodes[n])}" for n in pending)
                raise ZooKeeperStartError(f"ZooKeeper nodes {pending} did not serve in time; {details}")
            time.sleep(0.05)

    # -- internals -----------------------------------------------------------------------------

    def _write_config(self, node: ZooKeeperNode) -> None:
        data = node.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            "minSessionTimeout=1000",
            "maxSessionTimeout=60000",
            f"dataDir={data}",
            f"clientPort={node.client_port}",
            "clientPortAddress=127.0.0.1",
            "maxClientCnxns=0",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "preAllocSize=4096",
            # Unknown keys become zookeeper.* system properties: skip fsync for speed in tests.
            f"forceSync={'yes' if self.fsync else 'no'}",
        ]
        if self.size > 1:
            lines += [f"server.{other.myid}=127.0.0.1:{other.peer_port}:{other.election_port}"
                      for other in self.nodes]
            (data / "myid").write_text(f"{node.myid}\n")
        (node.directory / "zoo.cfg").write_text("\n".join(lines) + "\n")
        (node.directory / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def _argv(self, node: ZooKeeperNode) -> list[str]:
        classpath = ":".join([str(node.directory), *(str(self.java_dir / jar) for jar in ZOOKEEPER_JARS)])
        return [
            "java", f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{node.directory / 'log4j.properties'}",
            "-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
            "-cp", classpath, MAIN_CLASS, str(node.directory / "zoo.cfg"),
        ]

    def _spawn(self, node: ZooKeeperNode) -> None:
        if node.process is not None:
            node.process.stop(grace=0)  # Closes the old log file of a killed node.
        node.process = ManagedProcess(f"zookeeper{node.myid}", self._argv(node), node.directory,
                                      log_path=node.log_path)
        try:
            node.process.start()
        except FileNotFoundError as exc:
            raise ZooKeeperUnavailable(f"cannot run java: {exc}; {INSTALL_HINT}") from None

    @staticmethod
    def _returncode(node: ZooKeeperNode) -> int | None:
        proc = node.process.proc if node.process is not None else None
        return proc.returncode if proc is not None else None

    @staticmethod
    def _log_tail(node: ZooKeeperNode, lines: int = 5) -> str:
        try:
            tail = node.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return f"no log at {node.log_path}"
        return f"log {node.log_path}: " + (" | ".join(tail) if tail else "(empty)")

    def _remove_files(self) -> None:
        if self._created_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            for node in self.nodes:
                shutil.rmtree(node.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"ZooKeeperEnsemble({self.connect_string}, size={self.size})"


def main() -> int:
    """Runs an ensemble in the foreground until Ctrl-C (``python -m mensa.deploy.zookeeper [SIZE]``)."""
    import sys

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with ZooKeeperEnsemble(size=size) as zk:
        print(zk.uri("/mensa"), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

