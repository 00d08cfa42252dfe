"""The agent's HTTP endpoints (tornado, on the agent's asyncio loop).

* ``GET /health`` -> ``200 {"healthy": true}``
* ``GET /state`` (also ``/state.json``) -> the agent as Mesos's agent /state shows it: ``id``,
  ``hostname``, ``master``, ``registered``, ``resources``, ``attributes``, ``frameworks`` (each
  with its ``executors``, ``tasks`` and ``completed_tasks``), and flat ``tasks`` and
  ``completed_tasks`` lists. A task has ``id``, ``name``, ``framework_id``, ``state``,
  ``sandbox``, ``pid``, ``resources`` and its latest ``statuses``.
* ``GET /files/read?path=ABS&offset=N&length=N`` -> ``{"data": ..., "offset": N}`` (Mesos's
  files API) for a file under the work dir, e.g. a task's ``<sandbox>/stdout``; ``offset=-1``
  returns the file's size as ``offset``. Paths outside the work dir are refused (403).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import tornado.web

from mensa.agent.state import AgentState
from mensa.agent.tasks import TaskRecord
from mensa.proto import mensa_pb2
from mensa.proto.attributes import attributes_json
from mensa.proto.resources import ResourceError, Resources

MAX_READ_BYTES = 1024 * 1024


def _resources_json(resources: Iterable[mensa_pb2.Resource]) -> dict[str, float | str]:
    try:
        return Resources.from_proto(resources).to_json()
    except ResourceError:
        return {}


def task_json(record: TaskRecord, agent_id: str | None) -> dict[str, Any]:
    """Returns one task the Mesos /state way."""
    statuses = []
    if record.latest_status is not None:
        s = record.latest_status
        statuses.append(
            {
                "state": mensa_pb2.TaskState.Name(s.state),
                "timestamp": s.timestamp,
                "message": s.message,
            }
        )
    return {
        "id": record.task_id,
        "name": record.task_info.name,
        "framework_id": record.framework_id,
        "executor_id": record.task_id,
        "agent_id": agent_id,
        "state": mensa_pb2.TaskState.Name(record.state),
        "sandbox": record.sandbox,
        "pid": record.pid,
        "resources": _resources_json(record.task_info.resources),
        "statuses": statuses,
    }


def state_json(state: AgentState, master: str) -> dict[str, Any]:
    """Returns the agent's /state document (see the module docstring)."""
    agent_id = state.agent_id
    active = [task_json(r, agent_id) for r in state.tasks.values()]
    completed = [task_json(r, agent_id) for r in state.completed]
    frameworks: dict[str, dict[str, Any]] = {}

    def framework_doc(record: TaskRecord) -> dict[str, Any]:
        return frameworks.setdefault(
            record.framework_id,
            {
                "id": record.framework_id,
                "name": record.framework.name,
                "role": record.framework.role,
                "executors": [],
                "tasks": [],
                "completed_tasks": [],
            },
        )

    for record, doc in zip(state.tasks.values(), active, strict=True):
        fw = framework_doc(record)
        fw["tasks"].append(doc)
        fw["executors"].append({"id": record.task_id, "directory": record.sandbox, "tasks": [doc]})
    for record, doc in zip(state.completed, completed, strict=True):
        framework_doc(record)["completed_tasks"].append(doc)
    config = state.config
    return {
        "id": agent_id,
        "hostname": config.hostname,
        "master": master,
        "registered": state.registered,
        "http_port": config.http_port,
        "resources": _resources_json(config.resources),
        "attributes": attributes_json(list(config.attributes)),
        "frameworks": list(frameworks.values()),
        "tasks": active,
        "completed_tasks": completed,
    }


class _JsonHandler(tornado.web.RequestHandler):
    def write_json(self, doc: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason, "code": status_code}))


class HealthHandler(_JsonHandler):
    def get(self) -> None:
        self.write_json({"healthy": True})


class StateHandler(_JsonHandler):
    def initialize(self, state: AgentState, master: str) -> None:
        self.state = state
        self.master = master

    def get(self) -> None:
        self.write_json(state_json(self.state, self.master))


class FilesReadHandler(_JsonHandler):
    def initialize(self, work_dir: str) -> None:
        self.root = os.path.realpath(work_dir)

    def get(self) -> None:
        path = self.get_query_argument("path", "")
        try:
            offset = int(self.get_query_argument("offset", "0"))
            length = int(self.get_query_argument("length", str(MAX_READ_BYTES)))
        except ValueError:
            raise tornado.web.HTTPError(400, reason="offset and length must be integers") from None
        if not path or "\0" in path:
            raise tornado.web.HTTPError(400, reason="missing path")
        real = os.path.realpath(os.path.join(self.root, path))
        if os.path.commonpath([self.root, real]) != self.root:
            raise tornado.web.HTTPError(403, reason="path is outside the agent's work dir")
        if not os.path.isfile(real):
            raise tornado.web.HTTPError(404, reason="no such file")
        size = os.path.getsize(real)
        if offset == -1:
            self.write_json({"data": "", "offset": size})
            return
        if offset < 0 or length < 0:
            raise tornado.web.HTTPError(400, reason="offset and length must not be negative")
        with open(real, "rb") as f:
            f.seek(offset)
            data = f.read(min(length, MAX_READ_BYTES))
        self.write_json({"data": data.decode("utf-8", errors="replace"), "offset": offset})


def make_app(state: AgentState, master: str) -> tornado.web.Application:
    """Returns the agent's tornado application."""
    return tornado.web.Application(
        [
            (r"/health", HealthHandler),
            (r"/state(?:\.json)?", StateHandler, {"state": state, "master": master}),
            (r"/files/read(?:\.json)?", FilesReadHandler, {"work_dir": state.config.work_dir}),
        ]
    )
