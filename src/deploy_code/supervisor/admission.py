"""Admission: who may start now. A priority queue with aging under an adaptive, weighted limit.

Replaces the fixed semaphore of the earlier design:

* Waiters are served by effective priority ``priority + AGING_PER_S * waited``, so a low-priority start
  is never starved: anything that waits long enough overtakes newer high-priority work. The best waiter
  is never bypassed, not even by a lighter one that would fit, so a heavy start is not starved either.
* Each start holds ``weight`` units of the limit (:func:`start_weight`: bigger services cost more).
* The limit starts from the machine (:func:`derive_limit`) or the file. With ``max_parallel: auto`` it
  adapts AIMD-style to what the machine shows: every start reports its spawn latency (:meth:`observe`);
  latencies near the best seen, with the load below the core count, add one unit; a latency far above
  it, a failed spawn or a load above twice the cores halves the limit (never below ``min_limit``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy_code.clock import Clock

__all__ = ["AGING_PER_S", "Admission", "derive_limit", "start_weight"]

AGING_PER_S = 1.0  # one priority point per second waited
MAX_WAITERS = 100_000  # bound on queued starts; more than any file we accept (10,000 replicas x 10)
SLOW_FACTOR = 4.0  # a spawn this many times slower than the best recent one signals overload
FAST_FACTOR = 2.0  # within this factor of the best, the machine keeps up: grow
BEST_DECAY = 1.05  # the "best recent" latency drifts up 5% per observation, so it follows the machine


def start_weight(cpu_cores: float, memory_mb: float, gpu_count: int) -> int:
    """Units of the admission limit one start of this size holds: 1, plus 1 per whole core, per GiB
    of memory and 4 per GPU (GPU initialisation is the heaviest part of a start)."""
    return 1 + int(cpu_cores) + int(memory_mb // 1024) + 4 * int(gpu_count)


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
    weight: int = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class Admission:
    """Grants start slots by aged priority. ``async with admission.slot(priority, weight): ...``.

    Args:
        limit: units of concurrent starts to begin with.
        clock: the time source for aging.
        adaptive: adapt the limit to observed spawn latency and load (``max_parallel: auto``).
        min_limit: the adaptive limit never goes below this.
        max_limit: nor above this (default: 4 x ``limit``).
        load: returns the one-minute load average (default ``os.getloadavg``); tests inject one.
        cores: the machine's logical cores, for the load rule.
    """

    def __init__(
        self,
        limit: int,
        clock: Clock,
        *,
        adaptive: bool = False,
        min_limit: int = 2,
        max_limit: int | None = None,
        load: Callable[[], float] | None = None,
        cores: int | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.adaptive = adaptive
        self.min_limit = max(1, min(min_limit, limit))
        self.max_limit = max(limit, max_limit if max_limit is not None else 4 * limit)
        self._clock = clock
        self._load = load or (lambda: os.getloadavg()[0])
        self._cores = cores or os.cpu_count() or 1
        self._in_use = 0
        self._heap: list[_Waiter] = []  # bounded by MAX_WAITERS
        self._seq = itertools.count()
        self._best: float | None = None  # best recent spawn latency (decaying)
        self.granted_total = 0
        self.increases = 0
        self.decreases = 0

    @property
    def in_use(self) -> int:
        """Units held now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Starts queued now (cancelled ones leave lazily; this counts live ones)."""
        return sum(1 for w in self._heap if not w.future.done())

    def _fits(self, weight: int) -> bool:
        # A start heavier than the whole limit runs alone rather than never.
        return self._in_use + weight <= self.limit or self._in_use == 0

    async def acquire(self, priority: int, weight: int = 1) -> None:
        """Wait for ``weight`` units. Higher ``priority`` goes first; waiting raises priority."""
        weight = max(1, weight)
        if not self._heap and self._fits(weight):
            self._in_use += weight
            self.granted_total += 1
            return
        if len(self._heap) >= MAX_WAITERS:
            raise RuntimeError(f"admission queue full ({MAX_WAITERS} waiters)")
        # Effective priority p + a*(now - t0) orders waiters like p - a*t0, which does not change
        # with time, so a plain heap keyed on a*t0 - p serves them in aged order.
        key = AGING_PER_S * self._clock.now() - priority
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, _Waiter(key, next(self._seq), weight, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted and cancelled in the same tick: give the units back.
                self.release(weight)
            raise

    def release(self, weight: int = 1) -> None:
        """Return ``weight`` units; wakes the best waiters that now fit, in order."""
        self._in_use = max(0, self._in_use - max(1, weight))
        self._grant()

    def _grant(self) -> None:
        while self._heap:
            head = self._heap[0]
            if head.future.done():  # cancelled while waiting
                heapq.heappop(self._heap)
                continue
            if not self._fits(head.weight):
                return  # the best waiter is never bypassed
            heapq.heappop(self._heap)
            self._in_use += head.weight
            self.granted_total += 1
            head.future.set_result(None)

    def observe(self, latency_s: float, ok: bool = True) -> None:
        """Feed one spawn's latency (or failure) to the adaptive limit (no-op when not adaptive)."""
        if not self.adaptive:
            return
        load = self._load()
        best = latency_s if self._best is None else min(self._best * BEST_DECAY, latency_s)
        self._best = best
        if not ok or load > 2 * self._cores or latency_s > SLOW_FACTOR * best:
            new = max(self.min_limit, self.limit // 2)
            if new < self.limit:
                self.limit = new
                self.decreases += 1
        elif latency_s <= FAST_FACTOR * best and load <= self._cores and self.limit < self.max_limit:
            self.limit += 1
            self.increases += 1
            self._grant()

    def snapshot(self) -> dict[str, object]:
        """Plain data for status."""
        return {
            "limit": self.limit,
            "adaptive": self.adaptive,
            "in_use": self._in_use,
            "waiting": self.waiting,
            "granted_total": self.granted_total,
            "increases": self.increases,
            "decreases": self.decreases,
        }

    def slot(self, priority: int, weight: int = 1) -> _Slot:
        """Context manager holding ``weight`` units; reports the time held to :meth:`observe`."""
        return _Slot(self, priority, weight)


class _Slot:
    def __init__(self, admission: Admission, priority: int, weight: int) -> None:
        self._admission = admission
        self._priority = priority
        self._weight = max(1, weight)
        self._t0 = 0.0

    async def __aenter__(self) -> None:
        await self._admission.acquire(self._priority, self._weight)
        self._t0 = time.perf_counter()

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        held = time.perf_counter() - self._t0
        self._admission.release(self._weight)
        if exc_type is None:  # a failed start says more about its command than about the machine
            self._admission.observe(held)
