"""The master's HTTP endpoints (tornado, on the master's asyncio loop).

``/health`` answers 200 while the process serves (saying whether it leads); ``/version`` and
``/flags`` describe the process; ``/redirect`` sends the client to the leading master;
``/state`` (and Mesos's ``/master/state``) the cluster document from ``state_json``; the
scheduler API is in ``scheduler_api.py``, metrics in ``metrics_api.py``, operator calls in
``operator_api.py``. A master that does not lead answers the cluster's endpoints with 307 and a
Location on the leader (same path and query), or 503 while no leader is known.

``/state`` for a big cluster is costly to build (about 0.15 s with its JSON encoding for 1,000
agents and 10,000 tasks), and the master has one loop: a document is reused while recent
(``recent.py``), so dashboards polling it take at most a tenth of the loop's time.
"""

from __future__ import annotations

import json
import re
import socket
import time
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from mensa.master.http.recent import Recent
from mensa.master.http.state_json import roles_json, state_json

if TYPE_CHECKING:
    from mensa.master.service import MasterService
    from mensa.master.state import MasterState


class _Base(tornado.web.RequestHandler):
    def initialize(self, master: MasterService) -> None:
        self.master = master

    def write_json(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def leading_state(self) -> MasterState | None:
        """The state when this master leads; otherwise answers 307 or 503 and returns None."""
        state = self.master.state
        if state is not None and self.master.leading:
            return state
        leader = self.master.leader
        if (leader is not None and self.master.role == "standby" and leader.address.port
                and leader.id != self.master.master_id):
            host = leader.address.ip or leader.address.hostname or leader.hostname
            self.set_status(307)
            self.set_header("Location", f"http://{host}:{leader.address.port}{self.request.uri}")
            self.write_json({"leader": f"{host}:{leader.address.port}", "leading": False})
            return None
        self.set_status(503)
        self.write_json({"error": "no master leads right now; retry shortly", "leading": False})
        return None


    def leader_url(self) -> str | None:
        """``http://HOST:PORT`` of the leading master (this one when it leads), when known."""
        master = self.master
        leader = master.leader
        if master.leading:
            leader = master.state.config.master_info if master.state is not None else leader
        elif leader is not None and (master.role != "standby" or leader.id == master.master_id):
            leader = None  # our own znode from before a step-down, or leadership in doubt
        if leader is None or not leader.address.port:
            return None
        host = leader.address.ip or leader.address.hostname or leader.hostname
        return f"http://{host}:{leader.address.port}"


class HealthHandler(_Base):
    def get(self) -> None:
        master = self.master
        leader = master.leader
        self.write_json({"healthy": True, "time": time.time(), "leading": master.leading,
                         "role": master.role, "master_id": master.master_id,
                         "leader": leader.zmq_endpoint if leader is not None else None})


class VersionHandler(_Base):
    def get(self) -> None:
        from mensa.master.service import VERSION

        self.write_json({"version": VERSION, "build_date": None, "build_time": None,
                         "build_user": None, "api": "mesos/v1"})


class FlagsHandler(_Base):
    def get(self) -> None:
        self.write_json({"flags": {name: redact(value) for name, value in self.master.opts.flags.items()}})


def redact(value: str) -> str:
    """Hides credentials in URIs (``zk://user:secret@host/...`` -> ``zk://user:***@host/...``)."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", value)


class RedirectHandler(_Base):
    """Mesos's ``/redirect``: 307 to the leading master's address (503 while none leads)."""

    def get(self) -> None:
        url = self.leader_url()
        if url is None:
            self.set_status(503)
            self.write_json({"error": "no master leads right now; retry shortly"})
            return
        self.redirect(url + "/", status=307)


def _encode(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class StateHandler(_Base):
    """``GET /state``: the cluster document, a recent one (``recent.Recent``) per master."""

    def initialize(self, master: MasterService, documents: Recent[bytes]) -> None:  # type: ignore[override]
        super().initialize(master)
        self.documents = documents

    def get(self) -> None:
        state = self.leading_state()
        if state is None:
            return
        master = self.master
        body = self.documents.get(state, lambda: _encode(state_json(
            state, started_at=master.started_at, elected_at=master.elected_at, now=time.time())))
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class RolesHandler(_Base):
    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.write_json({"roles": roles_json(state)})


def start_http(master: MasterService, ip: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Starts serving on ``ip:port`` (0 picks a free port); returns the server and its port."""
    from mensa.master.http.metrics_api import metrics_routes
    from mensa.master.http.operator_api import operator_routes
    from mensa.master.http.scheduler_api import scheduler_routes
    from mensa.master.http.ui import ui_routes

    state = {"documents": Recent[bytes]()}  # one per master: its /state, reused while recent
    routes: list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]] = [
        (r"/health", HealthHandler, {}),
        (r"/version", VersionHandler, {}),
        (r"/flags", FlagsHandler, {}),
        (r"/redirect", RedirectHandler, {}),
        (r"/master/redirect", RedirectHandler, {}),
        (r"/state", StateHandler, state),
        (r"/master/state", StateHandler, state),
        (r"/state\.json", StateHandler, state),
        (r"/roles", RolesHandler, {}),
        *metrics_routes(), *operator_routes(), *ui_routes(), *scheduler_routes(),
    ]
    app = tornado.web.Application([(path, handler, {"master": master, **extra})
                                   for path, handler, extra in routes])
    # Bodies over the message limit are refused before they are read whole (scheduler calls
    # are checked against the exact limit, with a clear answer).
    server = tornado.httpserver.HTTPServer(app, max_body_size=master.opts.max_message_bytes + 65536)
    sockets = tornado.netutil.bind_sockets(port, address=ip, family=socket.AF_INET)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
