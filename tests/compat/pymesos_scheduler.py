"""A Mesos framework written against pymesos, run unmodified against Mensa by the tests.

Run as ``python pymesos_scheduler.py MASTER NAME [--explicit-acks] [--framework-id ID]``:
MASTER is what a pymesos user passes (``HOST:PORT`` or ``zk://HOST:PORT/PATH``). It prints one
JSON object per line on stdout for each callback pymesos makes, and takes one JSON command per
line on stdin (what a scheduler author would call on the driver):

    {"op": "launch", "tasks": [{"id": "t1", "cmd": "echo hi", "cpus": 0.1, "mem": 32}]}
        launches the tasks on the next offer that fits them all (the other offers are declined)
    {"op": "decline", "refuse_seconds": 3600}   declines every offer from now on with that filter
    {"op": "hold"}                               keeps offers (neither accept nor decline)
    {"op": "revive"} / {"op": "suppress"}
    {"op": "kill", "task_id": "t1"}
    {"op": "reconcile", "task_ids": ["t1"]}      [] asks for implicit reconciliation
    {"op": "ack", "task_id": "t1", "state": "TASK_RUNNING"}   (with --explicit-acks)
    {"op": "stop", "failover": false}            driver.stop(failover): TEARDOWN unless failover

Everything here is pymesos's public API (MesosSchedulerDriver, Scheduler, encode_data); the
process exits when the driver stops.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import uuid
from typing import Any

from pymesos import MesosSchedulerDriver, Scheduler, encode_data

LOCK = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    with LOCK:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()


def scalar(offer: dict[str, Any], name: str) -> float:
    return sum(r["scalar"]["value"] for r in offer.get("resources", []) if r["name"] == name)


class Recorder(Scheduler):  # type: ignore[misc]
    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.mode = "decline"
        self.refuse_seconds = 5.0
        self.updates: dict[tuple[str, str], dict[str, Any]] = {}

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        emit("registered", framework_id=framework_id["value"], master=master_info)

    def reregistered(self, driver: Any, master_info: Any) -> None:
        emit("reregistered", master=master_info)

    def disconnected(self, driver: Any) -> None:
        emit("disconnected")

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:
        emit("offers", offers=[{"id": o["id"]["value"], "agent_id": o["agent_id"]["value"],
                                "hostname": o.get("hostname"), "cpus": scalar(o, "cpus"),
                                "mem": scalar(o, "mem"), "ports": [r["ranges"]["range"] for r in
                                                                   o["resources"] if r["name"] == "ports"]}
                               for o in offers])
        with LOCK:
            pending, self.pending = self.pending, []
        for offer in offers:
            wanted_cpus = sum(t["cpus"] for t in pending)
            wanted_mem = sum(t["mem"] for t in pending)
            if pending and scalar(offer, "cpus") >= wanted_cpus and scalar(offer, "mem") >= wanted_mem:
                tasks = [self.task_info(offer, t) for t in pending]
                driver.launchTasks(offer["id"], tasks)
                emit("launched", offer_id=offer["id"]["value"], task_ids=[t["id"] for t in pending])
                pending = []
            elif self.mode == "decline":
                driver.declineOffer(offer["id"], {"refuse_seconds": self.refuse_seconds})
                emit("declined", offer_id=offer["id"]["value"], refuse_seconds=self.refuse_seconds)
        if pending:
            with LOCK:
                self.pending = pending + self.pending

    @staticmethod
    def task_info(offer: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "task_id": {"value": spec["id"]},
            "agent_id": {"value": offer["agent_id"]["value"]},
            "name": spec.get("name", spec["id"]),
            "command": {"value": spec["cmd"]},
            "resources": [
                {"name": "cpus", "type": "SCALAR", "scalar": {"value": spec["cpus"]}},
                {"name": "mem", "type": "SCALAR", "scalar": {"value": spec["mem"]}},
            ],
            "labels": {"labels": [{"key": "origin", "value": "pymesos"}]},
        }

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        emit("rescinded", offer_id=offer_id["value"])

    def statusUpdate(self, driver: Any, update: dict[str, Any]) -> None:
        task_id = update["task_id"]["value"]
        self.updates[(task_id, update["state"])] = update
        emit("update", task_id=task_id, state=update["state"], reason=update.get("reason"),
             message=update.get("message"), source=update.get("source"),
             agent_id=update.get("agent_id", {}).get("value"), has_uuid="uuid" in update)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:
        emit("message", data=data)

    def slaveLost(self, driver: Any, agent_id: Any) -> None:
        emit("agent_lost", agent_id=agent_id["value"])

    def error(self, driver: Any, message: str) -> None:
        emit("error", message=message)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("master")
    parser.add_argument("name")
    parser.add_argument("--explicit-acks", action="store_true")
    parser.add_argument("--framework-id")
    parser.add_argument("--failover-timeout", type=float, default=3600.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    sched = Recorder()
    framework: dict[str, Any] = {"user": "root", "name": args.name, "hostname": "localhost",
                                 "failover_timeout": args.failover_timeout,
                                 "capabilities": [{"type": "PARTITION_AWARE"}]}
    if args.framework_id:
        framework["id"] = {"value": args.framework_id}
    driver = MesosSchedulerDriver(sched, framework, args.master, use_addict=False,
                                  implicit_acknowledgements=not args.explicit_acks)
    driver.start()
    emit("started", driver_id=str(uuid.uuid4()))
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        op = command["op"]
        try:
            if op == "launch":
                with LOCK:
                    sched.pending += command["tasks"]
                driver.reviveOffers()
            elif op == "decline":
                sched.mode = "decline"
                sched.refuse_seconds = command.get("refuse_seconds", 5.0)
            elif op == "hold":
                sched.mode = "hold"
            elif op == "revive":
                driver.reviveOffers()
            elif op == "suppress":
                driver.suppressOffers()
            elif op == "kill":
                driver.killTask({"value": command["task_id"]})
            elif op == "reconcile":
                driver.reconcileTasks([{"task_id": {"value": t}} for t in command["task_ids"]])
            elif op == "ack":
                driver.acknowledgeStatusUpdate(sched.updates[(command["task_id"], command["state"])])
            elif op == "message":
                driver.sendFrameworkMessage({"value": "none"}, {"value": command["agent_id"]},
                                            encode_data(command["data"].encode()))
            elif op == "stop":
                driver.stop(failover=command.get("failover", False))
                driver.join()
                emit("stopped")
                return 0
            emit("done", op=op)
        except Exception as exc:  # reported to the test, which decides whether it is expected
            emit("failed", op=op, error=f"{type(exc).__name__}: {exc}")
    driver.stop(failover=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
