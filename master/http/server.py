"""The master's HTTP endpoints (tornado, on the master's asyncio loop).

``/health`` answers 200 while the process serves (saying whether it leads); ``/state`` (and
Mesos's ``/master/state``) the cluster document from ``state_json``; ``/metrics/snapshot``
Mesos-style counters. A master that does not lead answers every endpoint but ``/health`` with
307 and a Location on the leader (same path and query), or 503 while no leader is known.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from mensa.master.http.state_json import metrics_json, roles_json, state_json

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
        if leader is not None and self.master.role == "standby" and leader.address.port:
            host = leader.address.ip or leader.address.hostname or leader.hostname
            self.set_status(307)
            self.set_header("Location", f"http://{host}:{leader.address.port}{self.request.uri}")
            self.write_json({"leader": f"{host}:{leader.address.port}", "leading": False})
            return None
        self.set_status(503)
        self.write_json({"error": "no master leads right now; retry shortly", "leading": False})
        return None


class HealthHandler(_Base):
    def get(self) -> None:
        master = self.master
        leader = master.leader
        self.write_json({"healthy": True, "time": time.time(), "leading": master.leading,
                         "role": master.role, "master_id": master.master_id,
                         "leader": leader.zmq_endpoint if leader is not None else None})


class StateHandler(_Base):
    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.write_json(state_json(state, started_at=self.master.started_at,
                                       elected_at=self.master.elected_at, now=time.time()))


class RolesHandler(_Base):
    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.write_json({"roles": roles_json(state)})


class MetricsHandler(_Base):
    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.write_json(metrics_json(state))


def start_http(master: MasterService, ip: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Starts serving on ``ip:port`` (0 picks a free port); returns the server and its port."""
    routes = [
        (r"/health", HealthHandler),
        (r"/state", StateHandler),
        (r"/master/state", StateHandler),
        (r"/state\.json", StateHandler),
        (r"/metrics/snapshot", MetricsHandler),
        (r"/roles", RolesHandler),
    ]
    from mensa.master.http.operator_api import operator_routes

    handlers: list[Any] = [(path, handler, {"master": master}) for path, handler in routes]
    handlers += [(path, handler, {"master": master, **extra}) for path, handler, extra in operator_routes()]
    app = tornado.web.Application(handlers)
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, address=ip, family=socket.AF_INET)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
