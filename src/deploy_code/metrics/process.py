"""CPU, memory and open files per replica process, sampled with psutil at a bounded rate.

The collector calls :meth:`ProcessSampler.sample` once per scrape with the pids of the running replicas.
Reading ``/proc`` costs tens of microseconds per process, so three bounds keep a scrape cheap however
often ``/metrics`` is fetched and however many replicas there are:

- **rate**: a pid is read at most once per ``min_interval_s`` (default 1 s on the injected clock); a
  scrape inside the interval gets the cached sample;
- **work per scrape**: at most ``max_per_pass`` pids (default 256) are read in one call, the
  never-read first and then the stalest; the others keep their previous sample (or have none yet);
- **cache**: only pids asked for in the latest call are kept, so exited replicas cost nothing.

``cpu_percent`` is psutil's: the share of one core since the previous read of that pid (so above 100
for a multi-threaded process); it is None on a pid's first read, which only sets the baseline.
``open_files`` counts file descriptors (``num_fds``: files, sockets and pipes), which is what hits
``RLIMIT_NOFILE``; psutil's ``open_files()`` lists regular files only and is far slower.
A pid that vanished or cannot be read (another user's process) is left out of the result.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

from deploy_code.clock import Clock

__all__ = ["ProcSample", "ProcessSampler"]

DEFAULT_MIN_INTERVAL_S = 1.0
# About 256 x ~60 us of /proc reads: ~15 ms per scrape at most, whatever the replica count.
DEFAULT_MAX_PER_PASS = 256


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One read of one process.

    Attributes:
        cpu_percent: percent of one core since the previous read; None on the first read.
        memory_bytes: resident set size.
        open_files: open file descriptors.
        at: the sampler clock's ``now()`` when it was read.
    """

    cpu_percent: float | None
    memory_bytes: int
    open_files: int
    at: float


class _Entry:
    __slots__ = ("proc", "sample")

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.sample: ProcSample | None = None


class ProcessSampler:
    """Bounded-rate, bounded-cache process sampler.

    Args:
        clock: the injected clock; ``now()`` drives the rate bound.
        min_interval_s: a pid is read at most once per this many seconds.
        max_per_pass: the most pids read in one :meth:`sample` call.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        max_per_pass: int = DEFAULT_MAX_PER_PASS,
    ) -> None:
        if min_interval_s < 0 or max_per_pass <= 0:
            raise ValueError("min_interval_s must be >= 0 and max_per_pass positive")
        self._clock = clock
        self.min_interval_s = min_interval_s
        self.max_per_pass = max_per_pass
        # Only the pids of the latest call (H12); rebuilt on each call.
        self._cache: dict[int, _Entry] = {}
        # Two scrapes on two threads must not read the same pid twice or race on the cache.
        self._lock = threading.Lock()
        self.reads = 0  # processes read from /proc since creation (tests, bench)

    def sample(self, pids: Iterable[int]) -> Mapping[int, ProcSample]:
        """Return a sample for each readable pid, reading at most ``max_per_pass`` of them now.

        Args:
            pids: the pids to report (duplicates are ignored).

        Returns:
            pid -> its latest sample; pids never read yet (over the per-pass budget) or unreadable
            are absent.
        """
        now = self._clock.now()
        with self._lock:
            old = self._cache
            cache: dict[int, _Entry] = {}
            due: list[tuple[float, int]] = []
            for pid in pids:
                if pid in cache:
                    continue
                entry = old.get(pid)
                if entry is None:
                    try:
                        entry = _Entry(psutil.Process(pid))
                    except (psutil.Error, ValueError):
                        continue
                cache[pid] = entry
                last = entry.sample.at if entry.sample is not None else None
                if last is None or now - last >= self.min_interval_s:
                    due.append((-1.0 if last is None else last, pid))
            if len(due) > self.max_per_pass:
                due.sort()  # never-read first (-1), then the stalest
                del due[self.max_per_pass :]
            for _, pid in due:
                entry = cache[pid]
                sample = self._read(entry, now)
                if sample is None:
                    del cache[pid]
                else:
                    entry.sample = sample
            self._cache = cache
            return {pid: e.sample for pid, e in cache.items() if e.sample is not None}

    @property
    def cached(self) -> int:
        """Pids held in the cache (those of the latest call that could be read)."""
        return len(self._cache)

    def _read(self, entry: _Entry, now: float) -> ProcSample | None:
        proc = entry.proc
        self.reads += 1
        try:
            with proc.oneshot():
                cpu = proc.cpu_percent(interval=None)
                rss = proc.memory_info().rss
                fds = proc.num_fds()
        except psutil.Error:
            return None
        # psutil's first cpu_percent for a Process only records the baseline and returns 0.0.
        return ProcSample(cpu if entry.sample is not None else None, rss, fds, now)
