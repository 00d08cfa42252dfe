"""Operator endpoints on the master's HTTP port, in Mesos's (v0) request and response shapes.

- ``GET /quota`` -> ``{"infos": [{"role", "guarantee": [Resource], "limit": [Resource]}]}``;
  ``POST /quota`` with ``{"role": "ml", "guarantee": [Resource] | "cpus:4;mem:8192",
  "limit": ..., "force": false}`` sets a role's quota (a guarantee beyond the cluster needs
  ``force``); ``DELETE /quota/ROLE`` removes it.
- ``GET /weights`` -> ``[{"role", "weight"}]``; ``PUT /weights`` with ``[{"role", "weight"}]``.
- ``POST /reserve`` and ``POST /unreserve`` with the form fields ``agentId`` (or Mesos's
  ``slaveId``) and ``resources`` (a JSON list of Resource objects carrying ``reservations``, or
  text like ``cpus(ml):2;mem(ml):1024``): 202 when done, 409 when the resources are not there.

Every change is validated first (400 with the reason and nothing changed), persisted in the
registry, and only then answered. A master that does not lead redirects (307) or answers 503.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from mensa.master.http.server import _Base
from mensa.master.operator import (
    OperatorError,
    ResourcesUnavailable,
    parse_resources,
    remove_quota,
    reserve,
    set_quota,
    set_weights,
    unreserve,
    zero_names,
)
from mensa.master.state import MasterState, Send
from mensa.proto.resources import Resources

Operation = Callable[[MasterState, float], list[Send]]


def _resources_json(resources: Resources) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in resources.to_proto()]


class _Operator(_Base):
    def body_json(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OperatorError(f"the body is not JSON: {exc}") from None

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.write_json({"error": message})

    async def run(self, operation: Operation, status: int = 200) -> None:
        if self.leading_state() is None:
            return
        try:
            done = await self.master.operate(operation)
        except OperatorError as exc:
            self.fail(409 if isinstance(exc, ResourcesUnavailable) else 400, str(exc))
            return
        if not done:
            self.fail(503, "this master stopped leading; retry")
            return
        self.set_status(status)
        self.write_json({"ok": True})


class QuotaHandler(_Operator):
    def get(self, role: str = "") -> None:
        state = self.leading_state()
        if state is None:
            return
        infos = []
        for name, quota in sorted(state.allocator.quotas().items()):
            if role and name != role:
                continue
            entry: dict[str, Any] = {"role": name, "guarantee": _resources_json(quota.guarantee)}
            if quota.limit is not None or quota.zero_limits:
                entry["limit"] = [{"name": n, "type": "SCALAR", "scalar": {"value": 0.0}}
                                  for n in sorted(quota.zero_limits)]
                entry["limit"] += _resources_json(quota.limit) if quota.limit is not None else []
            infos.append(entry)
        self.write_json({"infos": infos})

    async def post(self, role: str = "") -> None:
        try:
            body = self.body_json()
            if not isinstance(body, dict):
                raise OperatorError("the body must be a JSON object with role and guarantee")
            name = body.get("role") or role
            if not isinstance(name, str) or not name:
                raise OperatorError("role is missing")
            guarantee = parse_resources(body.get("guarantee", []), "guarantee")
            limit = parse_resources(body["limit"], "limit") if body.get("limit") is not None else None
            zeros = zero_names(body.get("limit"))
        except OperatorError as exc:
            self.fail(400, str(exc))
            return

        force = body.get("force") is True

        def operation(state: MasterState, now: float) -> list[Send]:
            set_quota(state, name, guarantee, limit, force=force, zero_limits=zeros)
            return []

        await self.run(operation)

    async def delete(self, role: str = "") -> None:
        name = urllib.parse.unquote(role)
        if not name:
            self.fail(400, "name the role: DELETE /quota/ROLE")
            return

        def operation(state: MasterState, now: float) -> list[Send]:
            remove_quota(state, name)
            return []

        await self.run(operation)


class WeightsHandler(_Operator):
    def get(self) -> None:
        state = self.leading_state()
        if state is not None:
            self.write_json([{"role": role, "weight": weight}
                             for role, weight in sorted(state.allocator.weights().items())])

    async def put(self) -> None:
        try:
            body = self.body_json()
            if not isinstance(body, list) or not all(isinstance(w, dict) for w in body):
                raise OperatorError('the body must be a JSON list like [{"role": "ml", "weight": 2}]')
            items = [(w.get("role"), w.get("weight")) for w in body]
            if any(not isinstance(role, str) for role, _ in items):
                raise OperatorError("every weight needs a role")
        except OperatorError as exc:
            self.fail(400, str(exc))
            return

        def operation(state: MasterState, now: float) -> list[Send]:
            set_weights(state, items)  # type: ignore[arg-type]
            return []

        await self.run(operation)


class ReservationHandler(_Operator):
    def initialize(self, master: Any, action: str = "reserve") -> None:  # type: ignore[override]
        super().initialize(master)
        self.action = action

    async def post(self) -> None:
        try:
            agent_id = self.get_body_argument("agentId", None) or self.get_body_argument("slaveId", None)
            text = self.get_body_argument("resources", None)
            if not agent_id or text is None:
                raise OperatorError("give agentId (or slaveId) and resources as form fields")
            try:
                value: Any = json.loads(text)
            except json.JSONDecodeError:
                value = text
            resources = parse_resources(value, "resources")
        except OperatorError as exc:
            self.fail(400, str(exc))
            return
        act = reserve if self.action == "reserve" else unreserve

        def operation(state: MasterState, now: float) -> list[Send]:
            return act(state, agent_id, resources, now)

        await self.run(operation, status=202)


def operator_routes() -> list[tuple[str, type, dict[str, Any]]]:
    """The routes to add to the master's application (each also gets ``master``)."""
    return [
        (r"/quota", QuotaHandler, {}),
        (r"/quota/(.+)", QuotaHandler, {}),
        (r"/weights", WeightsHandler, {}),
        (r"/reserve", ReservationHandler, {"action": "reserve"}),
        (r"/unreserve", ReservationHandler, {"action": "unreserve"}),
    ]
