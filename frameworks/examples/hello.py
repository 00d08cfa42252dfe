"""hello: a complete Mensa framework on one page.

It launches MENSA_HELLO_TASKS (default 10) small shell tasks, packing as many into each offer
as fit, logs every status update, and stops once each task has finished or failed:

    mensa scheduler run mensa.frameworks.examples.hello:HelloScheduler --master 127.0.0.1:5050
"""

from __future__ import annotations

import os

import structlog

from mensa.frameworks import Scheduler, SchedulerDriver, is_terminal
from mensa.proto import mensa_pb2
from mensa.proto.resources import Resources

log = structlog.get_logger(__name__)

# What one task needs, and what it runs (the agent sets MESOS_TASK_ID and HOST).
TASK_RESOURCES = Resources.parse("cpus:0.1;mem:32")
COMMAND = 'echo "hello from $MESOS_TASK_ID on $HOST"; sleep 1'
# Resources we leave unused are not offered to us again for this many seconds.
REFUSE_SECONDS = 5.0


class HelloScheduler(Scheduler):
    """Launches N hello tasks, then stops the driver when all of them are done."""

    def __init__(self) -> None:
        self.total = int(os.environ.get("MENSA_HELLO_TASKS", "10"))
        self.launched = 0  # tasks handed to the master so far
        self.done: dict[str, int] = {}  # task id -> its terminal state

    def registered(
        self,
        driver: SchedulerDriver,
        framework_id: mensa_pb2.FrameworkID,
        master_info: mensa_pb2.MasterInfo,
    ) -> None:
        log.info("hello_registered", framework_id=framework_id.value, tasks=self.total)

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        for offer in offers:
            free = Resources.from_proto(offer.resources)
            tasks = []
            while self.launched < self.total and free.contains(TASK_RESOURCES):
                free -= TASK_RESOURCES  # pack as many tasks into this offer as fit
                tasks.append(self.new_task(offer))
            if not tasks:
                driver.decline_offer(offer.id, filters=REFUSE_SECONDS)
                continue
            # Accepting uses the offer; what the tasks leave unused goes back to the pool.
            driver.launch_tasks(offer.id, tasks, filters=REFUSE_SECONDS)
            if self.launched == self.total:
                driver.suppress_offers()  # everything is launched: no more offers, please

    def new_task(self, offer: mensa_pb2.Offer) -> mensa_pb2.TaskInfo:
        task_id = f"hello-{self.launched}"
        self.launched += 1
        return mensa_pb2.TaskInfo(
            name=task_id,
            task_id=mensa_pb2.TaskID(value=task_id),
            agent_id=offer.agent_id,
            resources=TASK_RESOURCES.to_proto(),
            command=mensa_pb2.CommandInfo(value=COMMAND),
        )

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        task_id, state = status.task_id.value, status.state
        name = mensa_pb2.TaskState.Name(state)
        log.info("hello_task_updated", task_id=task_id, state=name, message=status.message)
        # Updates are delivered at least once: count each task's end only once.
        if not is_terminal(state) or task_id in self.done:
            return
        self.done[task_id] = state
        if len(self.done) == self.total:
            finished = sum(1 for s in self.done.values() if s == mensa_pb2.TASK_FINISHED)
            log.info("hello_done", finished=finished, failed=self.total - finished)
            driver.stop()  # tears the framework down; `mensa scheduler run` then exits 0
