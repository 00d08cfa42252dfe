"""The agent's /files endpoints (browse, read, download) against a real agent process.

The agent's master is a silent ROUTER socket: the HTTP server answers before registration, and
the sandboxes are laid out by hand under the agent's work dir the way the agent lays them out.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from mensa.deploy.processes import ManagedProcess, kill_processes_under, mensa_argv
from mensa.proto.transport import bind_router

pytestmark = pytest.mark.integration


class Agent:
    def __init__(self, url: str, sandbox: Path, work_dir: Path) -> None:
        self.url = url
        self.sandbox = sandbox
        self.work_dir = work_dir

    def get(self, endpoint: str, **query: Any) -> tuple[int, bytes]:
        url = f"{self.url}{endpoint}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, endpoint: str, **query: Any) -> tuple[int, Any]:
        status, body = self.get(endpoint, **query)
        return status, json.loads(body)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    root = tmp_path_factory.mktemp("files")
    work = root / "agent"
    sandbox = work / "agents" / "a1" / "frameworks" / "fw" / "executors" / "t1" / "runs" / "latest"
    (sandbox / "sub").mkdir(parents=True)
    (sandbox / "stdout").write_bytes(b"0123456789\n" + "héllo\n".encode())
    (sandbox / "stderr").write_bytes(b"")
    (sandbox / "binary").write_bytes(bytes(range(256)))
    (sandbox / "sub" / "nested.txt").write_text("deep\n")
    (root / "secret").write_text("outside\n")
    os.symlink(root / "secret", sandbox / "escape")
    os.symlink("/etc", sandbox / "etc")
    os.symlink(sandbox / "stdout", sandbox / "inside-link")
    ctx = zmq.Context()
    sock, port = bind_router(ctx, "127.0.0.1", 0)
    proc = ManagedProcess("agent", mensa_argv(
        "agent", "--master", f"127.0.0.1:{port}", "--work-dir", str(work), "--http-port", "0",
        "--resources", "cpus:1;mem:128", "--log-level", "debug"), work).start()
    try:
        http = proc.endpoints()["http_port"]
        yield Agent(f"http://127.0.0.1:{http}", sandbox, work)
    finally:
        proc.stop()
        sock.close(linger=0)
        ctx.term()
        kill_processes_under(root)


def test_browse_lists_the_sandbox_the_mesos_way(agent: Agent) -> None:
    status, entries = agent.json("/files/browse", path=str(agent.sandbox))
    assert status == 200
    by_name = {Path(e["path"]).name: e for e in entries}
    assert set(by_name) == {"stdout", "stderr", "binary", "sub", "escape", "etc", "inside-link"}
    stdout = by_name["stdout"]
    assert stdout["path"] == f"{agent.sandbox}/stdout"
    assert stdout["size"] == 18 and stdout["mode"].startswith("-rw")
    assert stdout["nlink"] == 1 and stdout["uid"] and stdout["gid"]
    assert stdout["mtime"] == pytest.approx(os.stat(agent.sandbox / "stdout").st_mtime)
    assert by_name["sub"]["mode"].startswith("d")
    assert by_name["escape"]["mode"].startswith("l")  # listed, not followed
    status, nested = agent.json("/files/browse", path=f"{agent.sandbox}/sub")
    assert [e["path"] for e in nested] == [f"{agent.sandbox}/sub/nested.txt"]


def test_read_honours_offset_and_length(agent: Agent) -> None:
    path = f"{agent.sandbox}/stdout"
    assert agent.json("/files/read", path=path) == (200, {"data": "0123456789\nhéllo\n", "offset": 0})
    assert agent.json("/files/read", path=path, offset=3, length=4) == (200, {"data": "3456", "offset": 3})
    # "é" is two bytes: a read that would split it stops before it.
    assert agent.json("/files/read", path=path, offset=11, length=2)[1] == {"data": "h", "offset": 11}
    assert agent.json("/files/read", path=path, offset=12, length=100)[1] == {"data": "éllo\n", "offset": 12}
    assert agent.json("/files/read", path=path, offset=0, length=0)[1] == {"data": "", "offset": 0}
    # Past the end: no data, and the size as the offset.
    assert agent.json("/files/read", path=path, offset=500)[1] == {"data": "", "offset": 18}
    # Relative paths are relative to the work dir.
    rel = os.path.relpath(path, agent.work_dir)
    assert agent.json("/files/read", path=rel, offset=0, length=3)[1]["data"] == "012"


def test_read_with_offset_minus_one_gives_the_size_for_tailing(agent: Agent) -> None:
    assert agent.json("/files/read", path=f"{agent.sandbox}/stdout", offset=-1) == (
        200, {"data": "", "offset": 18})


def test_invalid_utf8_reads_as_one_question_mark_per_byte(agent: Agent) -> None:
    status, doc = agent.json("/files/read", path=f"{agent.sandbox}/binary")
    assert status == 200 and doc["data"].startswith("\x00\x01") and doc["data"].endswith("??")
    assert len(doc["data"].encode()) == 256  # the next read starts right after these bytes


def test_download_returns_the_raw_bytes(agent: Agent) -> None:
    assert agent.get("/files/download", path=f"{agent.sandbox}/binary") == (200, bytes(range(256)))
    url = f"{agent.url}/files/download?path={urllib.parse.quote(str(agent.sandbox))}/stdout"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert 'filename="stdout"' in response.headers["Content-Disposition"]


def test_a_symlink_inside_the_sandboxes_tree_is_followed(agent: Agent) -> None:
    assert agent.json("/files/read", path=f"{agent.sandbox}/inside-link", length=4)[1]["data"] == "0123"


@pytest.mark.parametrize("endpoint", ["/files/read", "/files/browse", "/files/download"])
@pytest.mark.parametrize("path", [
    "{sandbox}/../../../../../../../../secret",  # climbs out with ..
    "{sandbox}/sub/../stdout",  # any .. is refused, even one that stays inside
    "/etc/passwd",  # absolute, outside
    "{root}/secret",  # absolute, in the agent's parent dir
    "{work}/agent.log",  # the agent's own files are not sandboxes
    "{sandbox}/escape",  # a symlink out of the sandbox
    "{sandbox}/etc/passwd",  # through a symlinked directory
    "../secret",  # relative, climbing out of the work dir
])
def test_paths_outside_the_sandboxes_are_refused(agent: Agent, endpoint: str, path: str) -> None:
    path = path.format(sandbox=agent.sandbox, root=agent.work_dir.parent, work=agent.work_dir)
    status, doc = agent.json(endpoint, path=path)
    assert status == 403, doc
    assert doc["code"] == 403 and doc["error"]


@pytest.mark.parametrize("endpoint", ["/files/read", "/files/browse", "/files/download"])
def test_missing_paths_are_not_found(agent: Agent, endpoint: str) -> None:
    status, doc = agent.json(endpoint, path=f"{agent.sandbox}/nope")
    assert (status, doc["code"]) == (404, 404)


@pytest.mark.parametrize("query", [
    {"offset": "x"}, {"offset": "-2"}, {"length": "-1"}, {"length": "many"},
])
def test_bad_offsets_and_lengths_are_bad_requests(agent: Agent, query: dict[str, str]) -> None:
    status, doc = agent.json("/files/read", path=f"{agent.sandbox}/stdout", **query)
    assert status == 400, doc


def test_wrong_kinds_of_path_are_bad_requests(agent: Agent) -> None:
    assert agent.json("/files/read", path=str(agent.sandbox))[0] == 400  # a directory
    assert agent.json("/files/browse", path=f"{agent.sandbox}/stdout")[0] == 400  # a file
    assert agent.json("/files/read", path="")[0] == 400
