"""Admission: who may start now. A priority queue with aging under a concurrency limit.

Replaces the fixed semaphore of the earlier design. The limit comes from the machine (cores, load) or
the file; waiters are served by effective priority ``priority + AGING_PER_S * waited``, so a
low-priority start is never starved: anything that waits long enough overtakes newer high-priority work.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from deploy_code.clock import Clock

__all__ = ["AGING_PER_S", "Admission", "derive_limit"]

AGING_PER_S = 1.0  # one priority point per second waited
MAX_WAITERS = 100_000  # bound on queued starts; more than any file we accept (10,000 replicas x 10)


def derive_limit(cores: int, load1: float, configured: int | str) -> int:
    """Concurrent starts allowed: the file's number, or derived from the machine.

    ``auto`` allows 8 starts in flight per core (starts mostly wait on exec and readiness, not CPU),
    halved while the one-minute load is above the core count, and never fewer than 2.

    Args:
        cores: logical cores of the machine.
        load1: one-minute load average.
        configured: ``settings.max_parallel`` (an int or ``"auto"``).
    """
    if isinstance(configured, int):
        return configured
    limit = 8 * max(1, cores)
    if load1 > cores:
        limit //= 2
    return max(2, limit)


@dataclass(order=True, slots=True)
class _Waiter:
    key: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class Admission:
    """Grants start slots by aged priority. ``async with admission.slot(priority): ...``.

    Args:
        limit: concurrent slots.
        clock: the time source for aging.
    """

    def __init__(self, limit: int, clock: Clock) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._clock = clock
        self._in_use = 0
        self._heap: list[_Waiter] = []  # bounded by MAX_WAITERS
        self._seq = itertools.count()
        self.granted_total = 0

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Starts queued now."""
        return sum(1 for w in self._heap if not w.future.done())

    async def acquire(self, priority: int) -> None:
        """Wait for a slot. Higher ``priority`` goes first; waiting time raises priority."""
        if self._in_use < self.limit and not self._heap:
            self._in_use += 1
            self.granted_total += 1
            return
        if len(self._heap) >= MAX_WAITERS:
            raise RuntimeError(f"admission queue full ({MAX_WAITERS} waiters)")
        # Effective priority p + a*(now - t0) orders waiters like p - a*t0, which does not change
        # with time, so a plain heap keyed on a*t0 - p serves them in aged order.
        key = AGING_PER_S * self._clock.now() - priority
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Waiter(key, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted and cancelled in the same tick: give the slot to the next waiter.
                self.release()
            raise

    def release(self) -> None:
        """Return a slot; wakes the best waiter."""
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if not waiter.future.done():
                waiter.future.set_result(None)
                self.granted_total += 1
                return
        self._in_use = max(0, self._in_use - 1)

    def slot(self, priority: int) -> _Slot:
        """Context manager holding one slot."""
        return _Slot(self, priority)


class _Slot:
    def __init__(self, admission: Admission, priority: int) -> None:
        self._admission = admission
        self._priority = priority

    async def __aenter__(self) -> None:
        await self._admission.acquire(self._priority)

    async def __aexit__(self, *exc: object) -> None:
        self._admission.release()
