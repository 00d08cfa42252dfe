"""Launch backoff: how long a crash-looping app waits before its next launch (pure).

Marathon's rule, per app: after a failure (an instance that failed, or a launch that never got
running) the app launches nothing for ``backoffSeconds``; each further failure multiplies the
delay by ``backoffFactor``, up to ``maxLaunchDelaySeconds``. The delay counts from the latest
failure: the app is held until ``failed_at + delay``, then every instance it waits for may
launch. Each failure counts, so ten instances crashing together grow the delay ten times.

The delay starts over (the next failure waits ``backoffSeconds`` again):

- when the app gets a new configuration (the engine calls ``reset``; a scale does not), when
  ``DELETE /v2/queue/{app}/delay`` asks for it, or when the app is removed (``reset`` too);
- after the app has run well: if an instance of the app was reported running (healthy, when the
  app has health checks; the engine calls ``running``) at least ``max(STABLE_SECONDS,
  backoffSeconds)`` before the next failure, that failure counts as a first one. The notice
  is per app: the first one after the latest failure counts, whichever instance it came from.

Unlike Marathon, a delay is not forgotten merely because time passed: a crash loop at the cap
stays at the cap instead of dropping back to ``backoffSeconds`` after each long wait.

Pure: time comes in through ``now`` arguments. Usage::

    delays = LaunchDelays()
    delays.failed("/shop/web", spec, now=100.0)   # 101.0: held for backoffSeconds (1 s)
    delays.is_delayed("/shop/web", 100.5)         # True
    delays.failed("/shop/web", spec, now=102.0)   # 103.15: 1.15 s after this failure
    delays.reset("/shop/web")                     # a new version: no delay
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from mensa.frameworks.service_fw.apps import AppSpec

log = structlog.get_logger(__name__)

STABLE_SECONDS = 60.0  # running at least this long (or backoffSeconds, if longer) resets the delay


@dataclass(slots=True)
class Delay:
    """One app's backoff: ``delay`` seconds counted from its latest failure at ``failed_at``;
    ``running_since`` is the first running notice after that failure (None: none yet)."""

    delay: float
    failed_at: float
    running_since: float | None = None

    @property
    def ready_at(self) -> float:
        return self.failed_at + self.delay

    def to_json(self) -> dict[str, Any]:
        return {"delay": self.delay, "failedAt": self.failed_at, "runningSince": self.running_since}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Delay:
        running = doc.get("runningSince")
        return Delay(float(doc["delay"]), float(doc["failedAt"]),
                     None if running is None else float(running))


class LaunchDelays:
    """The launch backoff of every app (see the module docstring)."""

    def __init__(self) -> None:
        self._delays: dict[str, Delay] = {}

    def failed(self, app_id: str, spec: AppSpec, now: float) -> float:
        """Records a failure of ``app_id`` (running ``spec``) at ``now``; returns the time until
        which the app launches nothing."""
        cap = spec.max_launch_delay_seconds
        prev = self._delays.get(app_id)
        stable_for = max(STABLE_SECONDS, spec.backoff_seconds)
        if prev is None or (prev.running_since is not None and now - prev.running_since >= stable_for):
            delay = min(spec.backoff_seconds, cap)
        else:
            delay = min(prev.delay * spec.backoff_factor, cap)
        entry = Delay(max(0.0, delay), now)
        self._delays[app_id] = entry
        log.info("launch_delay_increased", app_id=app_id, delay_seconds=round(entry.delay, 3),
                 ready_at=entry.ready_at)
        return entry.ready_at

    def running(self, app_id: str, now: float) -> None:
        """Notes that an instance of ``app_id`` is running (and healthy, when the app has health
        checks) at ``now``; only the first notice after a failure matters."""
        entry = self._delays.get(app_id)
        if entry is not None and entry.running_since is None:
            entry.running_since = now

    def reset(self, app_id: str) -> None:
        """Forgets ``app_id``'s backoff: it may launch at once, and its next failure waits
        ``backoffSeconds``."""
        if self._delays.pop(app_id, None) is not None:
            log.info("launch_delay_reset", app_id=app_id)

    def ready_at(self, app_id: str, now: float | None = None) -> float | None:
        """When ``app_id``'s current delay ends; None when it has none, or (given ``now``) when
        that time has come."""
        entry = self._delays.get(app_id)
        if entry is None or (now is not None and now >= entry.ready_at):
            return None
        return entry.ready_at

    def is_delayed(self, app_id: str, now: float) -> bool:
        """True while ``app_id`` must not launch (its delay has not ended at ``now``)."""
        return self.ready_at(app_id, now) is not None

    def current(self, app_id: str) -> float:
        """The length in seconds of ``app_id``'s latest delay (what its next failure grows);
        0.0 when it has none."""
        entry = self._delays.get(app_id)
        return 0.0 if entry is None else entry.delay

    def to_json(self) -> dict[str, Any]:
        """Every app's backoff, by app id (for storing; ``from_json`` reads it back)."""
        return {app_id: entry.to_json() for app_id, entry in sorted(self._delays.items())}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> LaunchDelays:
        """Reads ``to_json``'s output; raises (KeyError, TypeError, ValueError) when malformed."""
        delays = LaunchDelays()
        delays._delays = {str(app_id): Delay.from_json(entry) for app_id, entry in doc.items()}
        return delays
