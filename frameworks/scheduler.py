"""Scheduler: the callbacks a framework author overrides; every one is a no-op by default.

The driver invokes them, one at a time and in the order the master's events arrive, on its
own thread. A callback may call any ``SchedulerDriver`` method (they are thread-safe and never
block on the master), including ``driver.stop()``. A callback that raises is logged
(``scheduler_callback_failed``) and the driver carries on; a ``status_update`` that raises is
not acknowledged, so the agent delivers the update again later. A callback that blocks delays every
event after it, heartbeats included, so hand long work to another thread.

Usage::

    class Echo(Scheduler):
        def resource_offers(self, driver, offers):
            for offer in offers:
                driver.decline_offer(offer.id, filters=30.0)

        def status_update(self, driver, status):
            print(status.task_id.value, mensa_pb2.TaskState.Name(status.state))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mensa.frameworks.driver import SchedulerDriver
    from mensa.proto import mensa_pb2


class Scheduler:
    """Base class of framework schedulers. Override the callbacks you need."""

    def registered(
        self,
        driver: SchedulerDriver,
        framework_id: mensa_pb2.FrameworkID,
        master_info: mensa_pb2.MasterInfo,
    ) -> None:
        """Invoked when the driver first subscribes, with the framework's id (keep it to fail
        over: pass it back in FrameworkInfo.id), and again if the master assigned a new id."""

    def reregistered(self, driver: SchedulerDriver, master_info: mensa_pb2.MasterInfo) -> None:
        """Invoked when the driver subscribes again after a disconnection (a master failover or
        restart, or a lost connection); the framework id is unchanged."""

    def disconnected(self, driver: SchedulerDriver) -> None:
        """Invoked when the master is lost (silent, connection dropped, or it forgot us); the
        driver keeps re-subscribing, and calls made meanwhile are queued until it succeeds."""

    def resource_offers(self, driver: SchedulerDriver, offers: list[mensa_pb2.Offer]) -> None:
        """Invoked with new offers. Answer each with launch_tasks, accept_offers or
        decline_offer; an offer left unanswered holds its resources until it is rescinded."""

    def offer_rescinded(self, driver: SchedulerDriver, offer_id: mensa_pb2.OfferID) -> None:
        """Invoked when an offer is no longer valid (its agent was lost, or it timed out);
        using it afterwards fails, with TASK_DROPPED updates for the tasks in it."""

    def status_update(self, driver: SchedulerDriver, status: mensa_pb2.TaskStatus) -> None:
        """Invoked with a task's new status. With implicit acknowledgements (the default) the
        driver acknowledges it when this returns; otherwise call acknowledge_status_update."""

    def framework_message(
        self,
        driver: SchedulerDriver,
        executor_id: mensa_pb2.ExecutorID,
        agent_id: mensa_pb2.AgentID,
        data: bytes,
    ) -> None:
        """Invoked with a message an executor sent (best effort: it may be lost)."""

    def agent_lost(self, driver: SchedulerDriver, agent_id: mensa_pb2.AgentID) -> None:
        """Invoked when an agent was removed; its tasks get TASK_LOST/TASK_GONE updates."""

    def executor_lost(
        self,
        driver: SchedulerDriver,
        executor_id: mensa_pb2.ExecutorID,
        agent_id: mensa_pb2.AgentID,
        status: int,
    ) -> None:
        """Invoked when an executor terminated, with its exit status."""

    def error(self, driver: SchedulerDriver, message: str) -> None:
        """Invoked on an unrecoverable error (e.g. the framework was removed); the driver has
        already aborted, so run()/join() return DriverStatus.ABORTED after this."""
