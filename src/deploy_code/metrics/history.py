"""In-memory history for the dashboard and ``deploy-code top``: bounded ring buffers with downsampling.

Each key (e.g. ``"api.0/cpu_percent"``, ``"api/ready"``) has two rings:

- **fine**: one point per ``FINE_S`` (1 s) second, the last ``FINE_POINTS`` (600 = 10 min of points).
  A point holds the mean and the max of the values recorded in that second;
- **coarse**: one point per ``COARSE_S`` (60 s), the last ``COARSE_POINTS`` (1440 = 24 h of points).
  A coarse point aggregates the fine points of its minute: its mean is the mean of the fine means (each
  second weighs the same, however many records it had) and its max is the max of the fine maxes. Both
  rings are updated on every record, so the open second and the open minute are always current. Seconds
without records leave no point (the rings store (slot, mean, max) and skip gaps), so a ring may reach
further back than 10 min / 24 h when a key is recorded sparsely.

Bounds (H12): a ring grows to its capacity and then overwrites its oldest point; values are float32
and slots int32 offsets (12 bytes a point), so a key costs at most ~24 KiB. At most ``max_keys`` keys (default
1024, ~24 MiB when every key holds a full day); a key not recorded for ``retention_s`` (default
600 s) is dropped. When the table is full of live keys, a new key is refused, counted in ``dropped``
and one warning is logged per history.

Pure Python, no clock: ``now`` is a parameter (monotonic seconds). Not thread-safe: one owner (the
orchestrator's loop) records and reads, or callers serialise.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

from deploy_code.metrics.process import ProcSample
from deploy_code.metrics.source import Snapshot

__all__ = ["COARSE_S", "FINE_S", "History", "Point", "record_snapshot"]

log = logging.getLogger("deploy_code.metrics")

FINE_S = 1.0
FINE_POINTS = 600  # 10 minutes of 1 s points
COARSE_S = 60.0
COARSE_POINTS = 1440  # 24 hours of 1 min points
DEFAULT_MAX_KEYS = 1024  # ~24 MiB worst case (every key a full day)
DEFAULT_RETENTION_S = 600.0


class Point(NamedTuple):
    """One point of a series: ``t`` is the start of its slot (monotonic seconds)."""

    t: float
    mean: float
    max: float


class _Ring:
    """Fixed-capacity ring of (slot, mean, max); grows to capacity, then overwrites the oldest."""

    __slots__ = ("_head", "base", "capacity", "maxs", "means", "slots")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Slots are stored as int32 offsets from the first one, so any clock origin fits
        # (68 years of seconds from a key's first record).
        self.base = 0
        self.slots = array("i")
        self.means = array("f")
        self.maxs = array("f")
        self._head = 0  # index of the oldest point once full

    def __len__(self) -> int:
        return len(self.slots)

    def _last(self) -> int:
        return (self._head - 1) % len(self.slots)

    def last_slot(self) -> int | None:
        return self.base + self.slots[self._last()] if self.slots else None

    def set_last(self, mean: float, mx: float) -> None:
        i = self._last()
        self.means[i] = mean
        self.maxs[i] = mx

    def append(self, slot: int, mean: float, mx: float) -> None:
        if not self.slots:
            self.base = slot
        slot -= self.base
        if len(self.slots) < self.capacity:
            self.slots.append(slot)
            self.means.append(mean)
            self.maxs.append(mx)
            self._head = 0
            return
        i = self._head
        self.slots[i] = slot
        self.means[i] = mean
        self.maxs[i] = mx
        self._head = (i + 1) % self.capacity

    def points(self, since_slot: int, width: float) -> list[Point]:
        n = len(self.slots)
        out: list[Point] = []
        since_slot -= self.base
        # Newest first, stop at the first point older than since_slot, then reverse.
        for k in range(n):
            i = (self._head - 1 - k) % n
            s = self.slots[i]
            if s < since_slot:
                break
            out.append(Point((self.base + s) * width, self.means[i], self.maxs[i]))
        out.reverse()
        return out


class _Series:
    """One key: the fine and coarse rings, the open second's and the open minute's accumulators.

    ``c_*`` hold the *finished* seconds of the open minute; the open second is added on top when the
    minute's point is updated, and joins ``c_*`` when the next second starts.
    """

    __slots__ = ("c_max", "c_n", "c_slot", "c_sum", "coarse", "f_max", "f_n", "f_sum", "fine", "last_seen")

    def __init__(self) -> None:
        self.fine = _Ring(FINE_POINTS)
        self.coarse = _Ring(COARSE_POINTS)
        self.last_seen = -math.inf
        self.f_sum = 0.0  # the open second
        self.f_n = 0
        self.f_max = -math.inf
        self.c_slot: int | None = None  # the open minute
        self.c_sum = 0.0
        self.c_n = 0
        self.c_max = -math.inf

    def record(self, value: float, now: float) -> None:
        slot = int(now // FINE_S)
        last = self.fine.last_slot()
        if last is not None and slot <= last:  # same second (or a clock that did not move on)
            self.f_sum += value
            self.f_n += 1
            self.f_max = max(self.f_max, value)
        else:
            if last is not None:  # the previous second is finished: it joins its minute for good
                self.c_sum += self.f_sum / self.f_n
                self.c_n += 1
                self.c_max = max(self.c_max, self.f_max)
            self.f_sum, self.f_n, self.f_max = value, 1, value
            self.fine.append(slot, value, value)
            minute = int(slot * FINE_S // COARSE_S)
            if minute != self.c_slot:
                self.c_slot, self.c_sum, self.c_n, self.c_max = minute, 0.0, 0, -math.inf
                self.coarse.append(minute, value, value)
        f_mean = self.f_sum / self.f_n
        self.fine.set_last(f_mean, self.f_max)
        # The open minute shows its finished seconds plus the open one, so coarse reads are current.
        self.coarse.set_last((self.c_sum + f_mean) / (self.c_n + 1), max(self.c_max, self.f_max))
        self.last_seen = now


class History:
    """Bounded per-key history with 1 s and 60 s resolutions.

    Args:
        max_keys: the most keys held at once.
        retention_s: a key not recorded for this long is dropped.
    """

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS, retention_s: float = DEFAULT_RETENTION_S) -> None:
        if max_keys <= 0 or retention_s <= 0:
            raise ValueError("max_keys and retention_s must be positive")
        self.max_keys = max_keys
        self.retention_s = retention_s
        # Ordered by last record (move_to_end), so expiry pops from the front.
        self._series: OrderedDict[str, _Series] = OrderedDict()
        self.dropped = 0  # records refused because the key table was full of live keys
        self._warned = False

    def record(self, key: str, value: float, now: float) -> None:
        """Add one value for ``key`` at monotonic time ``now`` (NaN is ignored)."""
        if math.isnan(value):
            return
        s = self._series.get(key)
        if s is None:
            self.expire(now)
            if len(self._series) >= self.max_keys:
                self.dropped += 1
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "metrics history: %d keys held, %r and further new keys are not recorded "
                        "(this warning is logged once)",
                        self.max_keys,
                        key,
                    )
                return
            s = self._series[key] = _Series()
        else:
            self._series.move_to_end(key)
        s.record(value, now)
        self.expire(now)

    def series(self, key: str, since: float, resolution: float = FINE_S) -> list[Point]:
        """Points of ``key`` whose slot starts at or after the slot holding ``since``, oldest first.

        Args:
            key: the key recorded.
            since: monotonic seconds; the slot containing it is included.
            resolution: ``FINE_S`` (1 s) or ``COARSE_S`` (60 s).

        Returns:
            The points, oldest first; an empty list for an unknown (or expired) key.

        Raises:
            ValueError: for any other resolution.
        """
        if resolution == FINE_S:
            width, pick = FINE_S, True
        elif resolution == COARSE_S:
            width, pick = COARSE_S, False
        else:
            raise ValueError(f"resolution must be {FINE_S:g} or {COARSE_S:g} seconds, not {resolution!r}")
        s = self._series.get(key)
        if s is None:
            return []
        ring = s.fine if pick else s.coarse
        return ring.points(math.floor(since / width), width)

    def expire(self, now: float) -> int:
        """Drop keys not recorded for ``retention_s``; return how many went."""
        cutoff = now - self.retention_s
        n = 0
        series = self._series
        while series:
            key, s = next(iter(series.items()))
            if s.last_seen > cutoff:
                break
            del series[key]
            n += 1
        return n

    def keys(self) -> list[str]:
        """Keys held now, least recently recorded first."""
        return list(self._series)

    def __len__(self) -> int:
        return len(self._series)

    def points(self, key: str) -> tuple[int, int]:
        """(fine, coarse) points held for ``key`` (tests, bench); (0, 0) if unknown."""
        s = self._series.get(key)
        return (len(s.fine), len(s.coarse)) if s is not None else (0, 0)


def record_snapshot(
    history: History, snapshot: Snapshot, processes: Mapping[int, ProcSample], now: float
) -> None:
    """Record the usual dashboard keys from one snapshot and its process samples.

    Keys: ``<service>/ready``, ``<service>.<i>/restarts``, ``<service>.<i>/cpu_percent``,
    ``<service>.<i>/memory_bytes``, ``<service>.<i>/open_files``, ``orchestrator/queue_length``,
    ``orchestrator/loop_lag_s``.
    """
    items: list[tuple[str, float]] = [
        ("orchestrator/queue_length", float(snapshot.queue_length)),
        ("orchestrator/loop_lag_s", snapshot.loop_lag_s),
    ]
    items.extend((f"{s.name}/ready", float(s.ready)) for s in snapshot.services)
    for r in snapshot.replicas:
        rid = f"{r.service}.{r.index}"
        items.append((f"{rid}/restarts", float(r.restarts)))
        p = processes.get(r.pid) if r.pid is not None else None
        if p is None:
            continue
        if p.cpu_percent is not None:
            items.append((f"{rid}/cpu_percent", p.cpu_percent))
        items.append((f"{rid}/memory_bytes", float(p.memory_bytes)))
        items.append((f"{rid}/open_files", float(p.open_files)))
    for key, value in items:
        history.record(key, value, now)
