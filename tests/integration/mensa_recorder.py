"""Recording Schedulers for integration tests: ``Recorder`` launches what it is given and records
every callback; ``Launcher`` launches shell commands by task id and keeps each task's state."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from mensa_cluster import Cluster

from mensa.frameworks import Scheduler, SchedulerDriver
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

S = mensa_pb2


def _value(x: Any) -> str:
    return x if isinstance(x, str) else x.value


def task(task_id: str, command: str, resources: str = "cpus:0.5;mem:64") -> mensa_pb2.TaskInfo:
    info = mensa_pb2.TaskInfo(name=task_id)
    info.task_id.value = task_id
    info.resources.extend(Resources.parse(resources).to_proto())
    info.command.value = command
    return info


class Recorder(Scheduler):
    """Launches the tasks it is given on the first offer they fit in; records every callback."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.seen: list[tuple[Any, ...]] = []
        self.pending: list[tuple[mensa_pb2.TaskInfo, str | None]] = []
        self.lock = threading.Lock()
        self.agent_of: dict[str, str] = {}

    def submit(self, driver: SchedulerDriver, *tasks: mensa_pb2.TaskInfo,
               hostname: str | None = None) -> None:
        with self.lock:
            self.pending += [(t, hostname) for t in tasks]
        driver.revive_offers()

    def registered(self, driver: SchedulerDriver, framework_id: Any, master_info: Any) -> None:
        self.events.put(("registered", _value(framework_id)))

    def reregistered(self, driver: SchedulerDriver, master_info: Any) -> None:
        self.events.put(("reregistered",))

    def disconnected(self, driver: SchedulerDriver) -> None:
        self.events.put(("disconnected",))

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            left = Resources.from_proto(offer.resources)
            chosen = []
            with self.lock:
                for item in list(self.pending):
                    info, hostname = item
                    need = Resources.from_proto(info.resources)
                    if (hostname is None or hostname == offer.hostname) and left.contains(need):
                        left = left - need
                        chosen.append(info)
                        self.pending.remove(item)
                        self.agent_of[info.task_id.value] = offer.agent_id.value
            if chosen:
                driver.launch_tasks([offer.id], chosen, 0.2)
            else:
                driver.decline_offer([offer.id], 0.2)

    def offer_rescinded(self, driver: SchedulerDriver, offer_id: Any) -> None:
        self.events.put(("rescinded", _value(offer_id)))

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        healthy = status.healthy if status.HasField("healthy") else None
        self.events.put(("update", status.task_id.value, S.TaskState.Name(status.state), status.message,
                         status.reason, healthy))

    def agent_lost(self, driver: SchedulerDriver, agent_id: Any) -> None:
        self.events.put(("agent_lost", _value(agent_id)))

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.events.put(("error", message))

    def wait(self, check: Callable[[tuple[Any, ...]], bool], timeout: float = 30.0) -> tuple[Any, ...]:
        """Returns the first event (seen or coming) that passes ``check``."""
        for event in self.seen:
            if check(event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(event)
            if check(event):
                return event
        raise AssertionError(f"no matching event within {timeout}s; seen: {self.seen}")

    def state_of(self, task_id: str, state: str, timeout: float = 30.0) -> tuple[Any, ...]:
        return self.wait(lambda e: e[0] == "update" and e[1] == task_id and e[2] == state, timeout)


def framework_info(name: str = "e2e", failover_timeout: float = 0.0) -> mensa_pb2.FrameworkInfo:
    return mensa_pb2.FrameworkInfo(name=name, user="root", failover_timeout=failover_timeout)


def start(cluster: Cluster, sched: Recorder, **info: Any) -> tuple[SchedulerDriver, str]:
    driver = SchedulerDriver(sched, framework_info(**info), cluster.master_endpoint)
    driver.start()
    framework_id = sched.wait(lambda e: e[0] == "registered")[1]
    return driver, framework_id


@contextlib.contextmanager
def running(cluster: Cluster, **info: Any) -> Iterator[tuple[Recorder, SchedulerDriver, str]]:
    """A subscribed Recorder framework (``info``: FrameworkInfo fields), stopped afterwards."""
    sched = Recorder()
    driver, framework_id = start(cluster, sched, **info)
    try:
        yield sched, driver, framework_id
    finally:
        driver.stop()
        driver.join()


class Launcher(Scheduler):
    """Launches each of its tasks (task id -> shell command, ``resources`` each, named
    ``<id><name_suffix>``) on the first offer it fits; records each task's latest state."""

    def __init__(self, tasks: dict[str, str], resources: str = "cpus:0.1;mem:32",
                 name_suffix: str = "") -> None:
        self.pending = list(tasks.items())
        self.states: dict[str, str] = {}
        self.lock = threading.Lock()
        self.resources = Resources.parse(resources)
        self.name_suffix = name_suffix

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            left = Resources.from_proto(offer.resources)
            chosen = []
            with self.lock:
                while self.pending and left.contains(self.resources):
                    task_id, command = self.pending.pop(0)
                    info = mensa_pb2.TaskInfo(name=f"{task_id}{self.name_suffix}")
                    info.task_id.value = task_id
                    info.command.value = command
                    info.resources.extend(self.resources.to_proto())
                    left = left - self.resources
                    chosen.append(info)
            if chosen:
                driver.launch_tasks([offer.id], chosen, 0.2)
            else:
                driver.decline_offer([offer.id], 5)

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        with self.lock:
            self.states[status.task_id.value] = mensa_pb2.TaskState.Name(status.state)

    def wait_state(self, task_id: str, *states: str) -> str:
        from mensa_cluster import wait_until

        return wait_until(lambda: self.states.get(task_id) in states and self.states[task_id],
                          what=f"{task_id} in {states}")
