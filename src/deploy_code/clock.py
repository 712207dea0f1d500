"""One injected clock for every deadline, lease, backoff and timeout.

``now()`` is monotonic seconds and is used for every deadline; ``wall_time()`` is only for timestamps that
people read. Pure layers take ``now`` as a parameter and need no clock. :class:`FakeClock` ships in the
package so tests and benchmarks can advance time without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "sleep_until_or"]


class Clock(Protocol):
    """Time source used by every layer that has deadlines."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    def wall_time(self) -> float:
        """Seconds since the epoch, for display and records."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Monotonic seconds."""
        return time.monotonic()

    def wall_time(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the monotonic ``deadline``."""
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """A clock that only moves when told to; sleepers wake when :meth:`advance` passes their deadline.

    Args:
        start: the initial monotonic time.
        wall_start: the wall time that corresponds to ``start``.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        # Bounded by the number of concurrently sleeping tasks; woken entries are popped.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Current fake monotonic time."""
        return self._now

    def wall_time(self) -> float:
        """Current fake wall time."""
        return self._now + self._wall_offset

    async def sleep_until(self, deadline: float) -> None:
        """Wait until :meth:`advance` moves time to ``deadline`` or past it."""
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    @property
    def sleeping(self) -> int:
        """How many sleepers wait (test helper)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())


async def sleep_until_or(clock: Clock, deadline: float, wake: Awaitable[object]) -> None:
    """Sleep until ``deadline`` on ``clock``, or less if ``wake`` completes first; both are cancelled."""
    timer = asyncio.ensure_future(clock.sleep_until(deadline))
    woken = asyncio.ensure_future(wake)
    try:
        await asyncio.wait((timer, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (timer, woken):
            t.cancel()
        await asyncio.gather(timer, woken, return_exceptions=True)
