"""The master's HTTP endpoints (tornado, on the master's asyncio loop).

``/health`` answers 200 while the process serves; ``/state`` (and Mesos's ``/master/state``) the
cluster document from ``state_json``; ``/metrics/snapshot`` Mesos-style counters.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING, Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from mensa.master.http.state_json import metrics_json, state_json

if TYPE_CHECKING:
    from mensa.master.service import MasterService


class _Base(tornado.web.RequestHandler):
    def initialize(self, master: MasterService) -> None:
        self.master = master

    def write_json(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class HealthHandler(_Base):
    def get(self) -> None:
        self.write_json({"healthy": True, "time": time.time()})


class StateHandler(_Base):
    def get(self) -> None:
        self.write_json(state_json(self.master.state, started_at=self.master.started_at,
                                   elected_at=self.master.elected_at))


class MetricsHandler(_Base):
    def get(self) -> None:
        self.write_json(metrics_json(self.master.state))


def start_http(master: MasterService, ip: str, port: int) -> tuple[tornado.httpserver.HTTPServer, int]:
    """Starts serving on ``ip:port`` (0 picks a free port); returns the server and its port."""
    routes = [
        (r"/health", HealthHandler),
        (r"/state", StateHandler),
        (r"/master/state", StateHandler),
        (r"/state\.json", StateHandler),
        (r"/metrics/snapshot", MetricsHandler),
    ]
    app = tornado.web.Application([(path, handler, {"master": master}) for path, handler in routes])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, address=ip, family=socket.AF_INET)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
