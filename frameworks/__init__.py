"""The scheduler SDK: subclass ``Scheduler``, run it with a ``SchedulerDriver``.

Usage::

    from mensa.frameworks import Scheduler, SchedulerDriver
    from mensa.proto import mensa_pb2

    class Hello(Scheduler):
        def resource_offers(self, driver, offers):
            ...

    SchedulerDriver(Hello(), mensa_pb2.FrameworkInfo(name="hello"), "127.0.0.1:5050").run()

or, for any Scheduler class: ``mensa scheduler run MODULE:CLASS --master HOST:PORT``. The
master may also be ``zk://HOST:PORT,.../PATH`` (the driver follows the leading master), and
``framework_id_file=PATH`` lets a restarted scheduler fail over to its running tasks.
"""

from __future__ import annotations

from mensa.frameworks.driver import DriverStatus, SchedulerDriver
from mensa.frameworks.scheduler import Scheduler
from mensa.proto.states import TERMINAL_STATES, is_terminal

__all__ = ["TERMINAL_STATES", "DriverStatus", "Scheduler", "SchedulerDriver", "is_terminal"]
