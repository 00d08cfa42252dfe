"""A private Docker Engine (for tests and benchmarks): its own socket and directories, a busybox image.

``Dockerd.start(root)`` runs ``dockerd`` under ``root`` (without touching the host network:
no iptables, no bridge), waits until it answers a ping, and imports ``mensa-test/busybox:latest``
built from the host's static busybox. ``stop()`` removes the containers labelled
``mensa.container_id``, then stops that dockerd by its pid (SIGTERM, then SIGKILL); no other
dockerd is ever touched. ``missing()`` says why the engine cannot be run here (None when it can).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

DOCKERD = "dockerd"
BUSYBOX = "/usr/bin/busybox"
IMAGE = "mensa-test/busybox:latest"
START_TIMEOUT_SECONDS = 30.0
APPLETS = (
    "sh", "echo", "sleep", "cat", "true", "false", "env", "dd", "head", "tail", "ls", "ps",
    "kill", "printf", "test", "[", "wc", "yes", "nc", "httpd", "id", "pwd", "mkdir", "rm",
)  # fmt: skip


def missing() -> str | None:
    """Returns why a test dockerd cannot run on this machine, or None."""
    if shutil.which(DOCKERD) is None:
        return "dockerd is not installed (deploy/test.sh installs Debian's docker.io)"
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing (deploy/test.sh installs busybox-static)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


def busybox_tar() -> bytes:
    """Returns a rootfs tarball: bin/busybox plus applet symlinks, and empty tmp/etc/proc/dev."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "dev", "sys", "mnt"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    return buf.getvalue()


@dataclass(slots=True)
class Dockerd:
    """One running test dockerd (see the module docstring)."""

    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> str:
        return str(self.root / "docker.sock")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @classmethod
    def start(cls, root: Path) -> Dockerd:
        """Starts dockerd under ``root`` (a short path: sockets are limited to 107 bytes)."""
        root.mkdir(parents=True, exist_ok=True)
        logfile = open(root / "dockerd.log", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            [
                DOCKERD,
                "--host",
                f"unix://{root}/docker.sock",
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "dockerd.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                # Its own cgroup parent: engines side by side do not share /docker.
                "--cgroup-parent",
                f"mensa-{root.name}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        engine = cls(root, process)
        try:
            engine._wait_ready()
            engine._import_busybox()
        except BaseException:
            engine.stop()
            raise
        return engine

    def client(self, timeout: int = 30) -> docker.DockerClient:
        """A client of this engine; close it (``contextlib.closing``)."""
        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "dockerd.log").read_text().splitlines()[-lines:])
        return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.process.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.socket):
                with contextlib.suppress(Exception), contextlib.closing(self.client(timeout=5)) as c:
                    if c.ping():
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT_SECONDS} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _import_busybox(self) -> None:
        repository, tag = IMAGE.rsplit(":", 1)
        with contextlib.closing(self.client()) as c:
            c.api.import_image_from_data(busybox_tar(), repository=repository, tag=tag)
            c.images.get(IMAGE)

    def remove_mensa_containers(self) -> int:
        """Removes every container labelled as Mensa's; returns how many there were."""
        with contextlib.closing(self.client()) as c:
            found = c.containers.list(all=True, filters={"label": "mensa.container_id"})
            for container in found:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
            return len(found)

    def stop(self) -> None:
        """Removes Mensa's containers, then ends this dockerd: SIGTERM, SIGKILL after 10 s."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.remove_mensa_containers()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # dockerd's own containerd runs in its session; make sure it went with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        # Mounts under the data root (overlay, shm) are gone once dockerd has stopped cleanly.
        shutil.rmtree(self.root, ignore_errors=True)
