"""Cron schedules with a timezone: when a job's schedule fires next (pure).

``CronSchedule.parse(expr, timezone)`` checks an expression and a IANA timezone name;
``next_after(t)`` returns the first firing strictly after epoch second ``t``. Firings are computed
by the ``cronsim`` library on zoneinfo-aware datetimes, which follows Debian cron across daylight
saving changes:

- a job at a fixed local time that falls into the hour skipped in spring (``30 2 * * *`` in
  America/New_York on the day clocks go from 02:00 to 03:00) runs once, at the first valid
  minute after the gap (03:00 local);
- a job at a fixed local time inside the hour repeated in autumn (``30 1 * * *``) runs once, at
  the first occurrence;
- jobs with a wildcard minute or hour (``*/30 * * * *``) follow elapsed time, so they also run
  in the repeated hour.

Expressions have five fields (minute hour day-of-month month day-of-week), or six with a leading
seconds field (a Mensa extension, for schedules every few seconds), or one of the aliases
``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly``.

Six fields with a single seconds value (``15 30 2 * * *``) fire at that second of each minute
the other five fields give, with the five-field rules above across daylight saving changes
(cronsim gives those rules to five-field expressions only). A seconds field that is not a single
value (``*/10 * * * * *``) is a sub-minute schedule: it follows elapsed time across daylight
saving changes, as interval (``*/N``) jobs do in Debian cron, so it also runs in the repeated
autumn hour and simply has no firings in the skipped spring hour.

Usage::

    daily = CronSchedule.parse("30 2 * * *", "America/New_York")
    t = daily.next_after(1772917200.0)   # 2026-03-07 21:00 UTC -> 2026-03-08 03:00 EDT (07:00 UTC)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# How many cronsim steps next_after takes before it gives up on finding a firing after ``t``
# (more than one only around a repeated autumn hour; see next_after).
_MAX_STEPS = 8


def zone(name: str) -> tzinfo:
    """Returns the timezone named ``name`` (IANA, e.g. "Europe/Paris"; "UTC"); raises ValueError."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"unknown timezone {name!r}")
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown timezone {name!r} (want an IANA name such as Europe/Paris)") from None


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression in a timezone. Build with ``parse``."""

    expression: str
    timezone: str
    _expr: str = field(repr=False)  # the expression cronsim reads (aliases expanded)
    _tz: tzinfo = field(repr=False)
    _second: int = field(default=0, repr=False)  # added to each firing of _expr (see the docstring)

    @staticmethod
    def parse(expression: str, timezone: str = "UTC") -> CronSchedule:
        """Returns the schedule; raises ValueError saying what is wrong with the expression or
        the timezone."""
        tz = zone(timezone)
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError("cron expression is empty")
        text = " ".join(expression.split())
        expr = ALIASES.get(text.lower(), text)
        if expr.startswith("@"):
            raise ValueError(f"unknown cron alias {text!r} (known: {', '.join(sorted(ALIASES))})")
        fields = len(expr.split())
        if fields not in (5, 6):
            raise ValueError(f"cron expression {text!r} has {fields} fields; want 5 "
                             "(minute hour day-of-month month day-of-week) or 6 (seconds first)")
        try:
            it = CronSim(expr, datetime(2000, 1, 1, tzinfo=tz))
            next(it)
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {text!r}: {exc}") from None
        except StopIteration:
            raise ValueError(f"cron expression {text!r} never fires") from None
        parts = expr.split()
        if len(parts) == 6 and parts[0].isdigit():
            # A single second: the five other fields (with cronsim's DST rules), plus that second.
            return CronSchedule(text, timezone, " ".join(parts[1:]), tz, int(parts[0]))
        return CronSchedule(text, timezone, expr, tz)

    def next_after(self, t: float) -> float:
        """Returns the first firing strictly after epoch second ``t`` (``math.inf`` when the
        expression has no firing within cronsim's 50-year horizon, or ``t`` is out of range)."""
        base = t - self._second  # a firing f of _expr fires at f + _second, which is > t iff f > base
        try:
            start = datetime.fromtimestamp(base, self._tz)
        except (OverflowError, OSError, ValueError):
            return math.inf
        try:
            it = CronSim(self._expr, start)
            for _ in range(_MAX_STEPS):
                # A fixed-time job is iterated in local wall time: from inside the repeated
                # autumn hour, the first candidate may be the earlier occurrence (before t).
                fire = next(it).timestamp()
                if fire > base:
                    return fire + self._second
        except (StopIteration, OverflowError):
            pass
        return math.inf
