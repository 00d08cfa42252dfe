"""The master's web dashboard: its static page, and a read-only proxy to the agents' HTTP API.

Routes (``ui_routes()``; each handler also gets ``master``):

* ``GET /`` -> the dashboard (``dashboard/index.html``). A standby that knows the leader answers 307
  with a Location on the leader's ``/`` (as every endpoint of a standby does), so a browser lands
  on the leader; with no leader known it serves the page, which shows that no master leads.
* ``GET /ui/NAME`` -> one of the flat assets in ``dashboard/`` (``app.js``, ``app.css``, ``index.html``);
  anything else is 404. Served by standbys too.
* ``GET /ui/leader`` -> ``{"leading", "role", "leader_url"}``: never redirects, so the page can
  tell a dead master from a standby whose 307 the browser refused to follow (another origin).
* ``GET /agents/AGENT_ID/state`` -> that agent's ``/state``.
* ``GET /agents/AGENT_ID/files/read?path=P&offset=N&length=N`` -> that agent's ``/files/read``.

The browser cannot reach agents itself (another origin, and often another network), so the
master forwards these two GETs, and only these, to the agent's advertised HTTP address (its
``AgentRecord``: ``ip`` or hostname, and ``http_port``), with timeouts. The agent id must look
like an id (letters, digits, ``.``, ``_``, ``-``; 400 otherwise) and name a registered agent
(404 otherwise); the URL is built from the master's record, never from the request, and the
agent's own path checks decide what may be read. The agent's answer (status and JSON body) is
passed through; an agent that cannot be reached is 502. A standby redirects these (307).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import tornado.httpclient
import tornado.web

from mensa.master.http.server import _Base

if TYPE_CHECKING:
    from mensa.master.records import AgentRecord
    from mensa.master.service import MasterService

log = structlog.get_logger(__name__)

UI_DIR = Path(__file__).parent / "dashboard"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
# The page loads only its own assets and talks only to its own origin; data from the cluster is
# put in the DOM as text (app.js), and this policy is the second line against injected script.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
AGENT_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
MAX_PATH_LENGTH = 4096
MAX_READ_LENGTH = 1024 * 1024
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 10.0


class ProxyError(Exception):
    """A proxied request refused before reaching the agent: ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_agent_id(agent_id: str) -> None:
    """Raises ProxyError(400) unless ``agent_id`` looks like an agent id (no path tricks)."""
    if not AGENT_ID_RE.fullmatch(agent_id):
        raise ProxyError(400, "invalid agent id")


def agent_base_url(agent: AgentRecord) -> str:
    """Returns ``http://HOST:PORT`` of the agent's HTTP API; raises ProxyError(502) if it has none."""
    if not agent.http_port:
        raise ProxyError(502, f"agent {agent.agent_id} serves no HTTP")
    host = agent.ip or agent.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{agent.http_port}"


def files_read_query(path: str, offset: str, length: str) -> str:
    """Returns the query string for the agent's /files/read; raises ProxyError(400) when the
    arguments are not a path and integers (offset -1 or more, length 0 to 1 MiB)."""
    if not path or len(path) > MAX_PATH_LENGTH or "\0" in path:
        raise ProxyError(400, "missing or invalid path")
    try:
        offset_n, length_n = int(offset), int(length)
    except ValueError:
        raise ProxyError(400, "offset and length must be integers") from None
    if offset_n < -1:
        raise ProxyError(400, "offset must be -1 or more")
    if not 0 <= length_n <= MAX_READ_LENGTH:
        raise ProxyError(400, f"length must be between 0 and {MAX_READ_LENGTH}")
    return urllib.parse.urlencode({"path": path, "offset": offset_n, "length": length_n})


class _UiBase(_Base):
    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-cache")

    def write_asset(self, name: str) -> None:
        path = UI_DIR / name
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or path.parent != UI_DIR or not path.is_file():
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", content_type)
        if path.suffix == ".html":
            self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.set_header("X-Frame-Options", "DENY")
        self.finish(path.read_bytes())


class IndexHandler(_UiBase):
    """``GET /``: the dashboard; a standby that knows the leader redirects there (307)."""

    def get(self) -> None:
        if not self.master.leading and self.master.role == "standby" and self.leader_url():
            self.leading_state()  # Answers the 307 to the leader's "/".
            return
        self.write_asset("index.html")


class AssetHandler(_UiBase):
    """``GET /ui/NAME``: a static asset of the dashboard."""

    def get(self, name: str) -> None:
        self.write_asset(name)


class LeaderHandler(_UiBase):
    """``GET /ui/leader``: whether this master leads and where the leader is (never a redirect)."""

    def get(self) -> None:
        master = self.master
        self.write_json({"leading": master.leading, "role": master.role, "leader_url": self.leader_url()})


class AgentProxyHandler(_UiBase):
    """``GET /agents/AGENT_ID/<endpoint>``: forwards to the agent's own ``endpoint``."""

    def initialize(self, master: MasterService, endpoint: str) -> None:  # type: ignore[override]
        super().initialize(master)
        self.endpoint = endpoint

    async def get(self, agent_id: str) -> None:
        state = self.leading_state()
        if state is None:
            return
        try:
            check_agent_id(agent_id)
            agent = state.agents.get(agent_id)
            if agent is None:
                raise ProxyError(404, f"no agent {agent_id} is registered")
            url = agent_base_url(agent) + self.endpoint
            if self.endpoint == "/files/read":
                url += "?" + files_read_query(self.get_query_argument("path", ""),
                                              self.get_query_argument("offset", "0"),
                                              self.get_query_argument("length", str(MAX_READ_LENGTH)))
        except ProxyError as exc:
            self.fail(exc.status, exc.reason)
            return
        await self.forward(agent_id, url)

    async def forward(self, agent_id: str, url: str) -> None:
        """Fetches ``url`` from the agent and answers with its status and body (502 when the
        agent cannot be reached in time, or answers with a redirect)."""
        client = tornado.httpclient.AsyncHTTPClient()
        try:
            response = await client.fetch(url, raise_error=False, follow_redirects=False,
                                          connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT)
        except (OSError, tornado.httpclient.HTTPClientError) as exc:  # refused, timed out, ...
            log.info("agent_proxy_failed", agent_id=agent_id, endpoint=self.endpoint, error=str(exc))
            self.fail(502, f"agent {agent_id} cannot be reached: {exc}")
            return
        if 300 <= response.code < 400:
            self.fail(502, f"agent {agent_id} answered {response.code}")
            return
        self.set_status(response.code)
        self.set_header("Content-Type", "application/json")
        self.finish(response.body)

    def fail(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason, "code": status}))


def ui_routes() -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The dashboard's routes, as ``(path, handler, extra initialize kwargs)``; each handler
    also gets ``master``."""
    return [
        (r"/", IndexHandler, {}),
        (r"/ui/leader", LeaderHandler, {}),
        (r"/ui/([A-Za-z0-9_-]+\.[a-z]+)", AssetHandler, {}),
        (r"/agents/([^/]+)/state", AgentProxyHandler, {"endpoint": "/state"}),
        (r"/agents/([^/]+)/files/read", AgentProxyHandler, {"endpoint": "/files/read"}),
    ]
