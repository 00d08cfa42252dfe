"""Documents built from the live state, reused while recent (pure, but for the clock).

The master has one loop: an operator document (/state, /state-summary, /metrics/snapshot) for a
big cluster takes a while to build, and dashboards poll. A document that took ``t`` seconds to
build (and encode) is reused for ``t * (1 / duty - 1)`` seconds, so however often it is asked
for, building takes at most ``duty`` of the loop's time (10 %: a 100 ms build is reused for
900 ms, a small cluster's 1 ms one for 9 ms). A new leadership term (another ``key``: the state
object) builds afresh. Building is synchronous, so a document is always one consistent moment of
one term; requests arriving while it is built wait for the loop and then share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
DUTY = 0.1


class Recent(Generic[T]):
    """The last document built, reused while it is recent (see the module's docstring)."""

    def __init__(self, duty: float = DUTY) -> None:
        self._duty = duty
        self._document: T | None = None
        self._key: object = None
        self._until = 0.0

    def get(self, key: object, build: Callable[[], T]) -> T:
        if self._document is not None and self._key is key and time.monotonic() < self._until:
            return self._document
        started = time.perf_counter()
        document = build()
        built = time.perf_counter() - started
        self._document, self._key = document, key
        self._until = time.monotonic() + built * (1 / self._duty - 1)
        return document
