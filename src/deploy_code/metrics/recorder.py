"""Running totals and histograms fed by events, in bounded per-service structures.

:class:`Recorder` is an :class:`~deploy_code.events.EventSink`: the orchestrator adds it to its sinks and
it counts, from the event stream,

- deployments by outcome and their duration (``DeploymentFinished``);
- ready latency per service: from a replica's transition to STARTING to its next READY
  (``ReplicaTransitioned``; the start time waits in a bounded table until READY or another state);
- restarts, orchestrator-wide (a transition to BACKOFF is one restart, as the supervisor counts them);
- probe failures per service and probe (``ProbeFailed``).

The supervisor also calls :meth:`Recorder.observe_probe` after every probe run, for probe latency and
the result of the last run. The collector reads everything at scrape time through :meth:`Recorder.view`.

Why our own counts instead of ``prometheus_client.Histogram`` objects: a labelled ``Histogram`` child
holds one value object (and lock) per bucket, and label sets can only be forgotten one by one through
``remove``; here a histogram is one list of ints and a float, a whole service is dropped with one
``dict`` pop, and the exposition still uses prometheus_client's bucket semantics (``le`` is an
inclusive upper bound, buckets are cumulative, ``+Inf`` equals the count) through
``HistogramMetricFamily``.

Bounds (H12):

- services: at most ``max_services`` (default 10,000). A service unseen for ``retention_s`` (default
  600 s on the injected clock) is dropped with its histograms; "seen" means named by an event, an
  ``observe_probe`` call, or a :meth:`Recorder.touch` (the collector touches every service in the live
  snapshot, so a quiet but running service keeps its series). When the table is full, a new name is
  not tracked: its updates are dropped and counted (``dropped_series``, exposed as
  ``deploy_code_metrics_dropped_series_total``) and one warning is logged per recorder.
- probes per service: ``MAX_PROBES_PER_SERVICE``; outcomes: ``MAX_OUTCOMES`` (then ``other``).
- pending starts (replicas in STARTING): ``max_pending_starts``; the oldest is evicted when full, and
  entries older than ``retention_s`` are expired.

Threading: ``publish``/``observe_probe`` run on the orchestrator's loop and do O(1) work under a
``threading.Lock``; a scrape on another thread holds the same lock only while it copies the table
(O(services), list copies, no formatting), so ``publish`` never waits on string building.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from deploy_code.clock import Clock
from deploy_code.events import (
    DeploymentFinished,
    Event,
    ProbeFailed,
    ReplicaExited,
    ReplicaState,
    ReplicaTransitioned,
)

__all__ = [
    "DEPLOY_BUCKETS",
    "MAX_OUTCOMES",
    "MAX_PROBES_PER_SERVICE",
    "PROBE_BUCKETS",
    "READY_BUCKETS",
    "HistogramView",
    "ProbeView",
    "Recorder",
    "RecorderView",
    "ServiceView",
]

log = logging.getLogger("deploy_code.metrics")

INF = math.inf
# Upper bounds (``le``), ending in +Inf as Prometheus requires. Probes are network round trips.
PROBE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, INF,
)  # fmt: skip
# Spawn to ready: from a few ms (a trivial server) to the 5-minute ready timeout.
READY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, INF,
)  # fmt: skip
# A whole ``up``: seconds to many minutes.
DEPLOY_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, INF,
)  # fmt: skip

DEFAULT_RETENTION_S = 600.0
DEFAULT_MAX_SERVICES = 10_000
# Probes are startup / readiness / liveness today; a little room, never a label set that grows.
MAX_PROBES_PER_SERVICE = 8
# Outcomes are ready / failed / cancelled; anything past this many distinct values is "other".
MAX_OUTCOMES = 16
# Replicas in STARTING at once; the oldest start is forgotten (no latency recorded) past this.
DEFAULT_MAX_PENDING_STARTS = 20_000


class HistogramView(NamedTuple):
    """A copy of one histogram: per-bucket (not cumulative) counts aligned with ``bounds``, and the sum."""

    bounds: tuple[float, ...]
    counts: list[int]
    sum: float


class ProbeView(NamedTuple):
    """One (service, probe) pair: latency histogram (None before any run), failures, last result."""

    probe: str
    duration: HistogramView | None
    failures: int
    last_ok: bool | None


class ServiceView(NamedTuple):
    """Everything recorded for one service."""

    name: str
    ready_latency: HistogramView | None
    probes: tuple[ProbeView, ...]


class RecorderView(NamedTuple):
    """A copy of the recorder's state, taken under its lock at scrape time."""

    deployments: dict[str, int]
    deploy_duration: HistogramView
    restarts: int
    dropped_series: int
    services: list[ServiceView]


class _Histogram:
    """Per-bucket counts and a sum; ``bounds`` is shared, not stored."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0

    def observe(self, bounds: Sequence[float], value: float) -> None:
        # bisect_left finds the first bound >= value: ``le`` is inclusive, as in Prometheus.
        self.counts[bisect.bisect_left(bounds, value)] += 1
        self.total += value

    def view(self, bounds: tuple[float, ...]) -> HistogramView:
        return HistogramView(bounds, self.counts[:], self.total)


class _Probe:
    __slots__ = ("duration", "failures", "last_ok")

    def __init__(self) -> None:
        self.duration: _Histogram | None = None
        self.failures = 0
        self.last_ok: bool | None = None


class _Service:
    __slots__ = ("last_seen", "probes", "ready")

    def __init__(self, now: float) -> None:
        self.last_seen = now
        self.ready: _Histogram | None = None
        self.probes: dict[str, _Probe] = {}  # at most MAX_PROBES_PER_SERVICE keys


class Recorder:
    """Event sink keeping bounded running totals and histograms; read by the collector.

    Args:
        clock: the injected clock; ``now()`` drives retention.
        retention_s: a service unseen this long is dropped with its series.
        max_services: the most services tracked at once; new names past it are counted, not kept.
        max_pending_starts: the most replicas waiting between STARTING and READY.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        max_services: int = DEFAULT_MAX_SERVICES,
        max_pending_starts: int = DEFAULT_MAX_PENDING_STARTS,
    ) -> None:
        if retention_s <= 0 or max_services <= 0 or max_pending_starts <= 0:
            raise ValueError("retention_s, max_services and max_pending_starts must be positive")
        self._clock = clock
        self.retention_s = retention_s
        self.max_services = max_services
        self.max_pending_starts = max_pending_starts
        self._lock = threading.Lock()
        # Ordered by last_seen (touch moves to the end), so expiry pops from the front in O(expired).
        self._services: OrderedDict[str, _Service] = OrderedDict()
        # (service, replica) -> (wall time of STARTING, monotonic time it was recorded); insertion order
        # is start order, so the oldest is at the front for eviction and expiry.
        self._starts: OrderedDict[tuple[str, int], tuple[float, float]] = OrderedDict()
        self._deployments: dict[str, int] = {}
        self._deploy = _Histogram(len(DEPLOY_BUCKETS))
        self._restarts = 0
        self._dropped = 0
        self._evicted_starts = 0
        self._warned = False

    # --- EventSink ----------------------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Take one event (O(1), never blocks on a scrape's formatting)."""
        now = self._clock.now()
        with self._lock:
            if isinstance(event, ReplicaTransitioned):
                self._transition(event, now)
            elif isinstance(event, ProbeFailed):
                svc = self._service(event.service, now, create=True)
                if svc is not None and (probe := self._probe(svc, event.probe)) is not None:
                    probe.failures += 1
            elif isinstance(event, DeploymentFinished):
                outcome = event.outcome
                if outcome not in self._deployments and len(self._deployments) >= MAX_OUTCOMES:
                    outcome = "other"
                self._deployments[outcome] = self._deployments.get(outcome, 0) + 1
                if not math.isnan(event.duration_s):
                    self._deploy.observe(DEPLOY_BUCKETS, event.duration_s)
            elif isinstance(event, ReplicaExited):
                self._service(event.service, now, create=False)
            self._expire(now)

    def observe_probe(self, service: str, probe: str, seconds: float, ok: bool) -> None:
        """Record one probe run: its latency and whether it passed (``deploy_code_probe_success``).

        Called by the supervisor after every probe run, passing or not. Failures are *counted* from
        ``ProbeFailed`` events, not here, so a failed run is never counted twice.
        """
        now = self._clock.now()
        with self._lock:
            svc = self._service(service, now, create=True)
            if svc is not None and (p := self._probe(svc, probe)) is not None:
                if not math.isnan(seconds):
                    if p.duration is None:
                        p.duration = _Histogram(len(PROBE_BUCKETS))
                    p.duration.observe(PROBE_BUCKETS, seconds)
                p.last_ok = ok
            self._expire(now)

    def touch(self, services: Iterable[str]) -> None:
        """Mark tracked services as seen now (the collector passes the live snapshot's names)."""
        now = self._clock.now()
        with self._lock:
            for name in services:
                self._service(name, now, create=False)
            self._expire(now)

    def expire(self) -> int:
        """Drop services and pending starts unseen for ``retention_s``; return how many services went."""
        with self._lock:
            return self._expire(self._clock.now())

    def view(self) -> RecorderView:
        """Copy the state for one scrape (expired services are dropped first)."""
        with self._lock:
            self._expire(self._clock.now())
            services = [
                ServiceView(
                    name,
                    svc.ready.view(READY_BUCKETS) if svc.ready is not None else None,
                    tuple(
                        ProbeView(
                            probe,
                            p.duration.view(PROBE_BUCKETS) if p.duration is not None else None,
                            p.failures,
                            p.last_ok,
                        )
                        for probe, p in svc.probes.items()
                    ),
                )
                for name, svc in self._services.items()
            ]
            return RecorderView(
                dict(self._deployments),
                self._deploy.view(DEPLOY_BUCKETS),
                self._restarts,
                self._dropped,
                services,
            )

    # --- sizes (tests, bench) -------------------------------------------------------------------
    @property
    def tracked_services(self) -> int:
        """Services currently tracked (at most ``max_services``)."""
        return len(self._services)

    @property
    def pending_starts(self) -> int:
        """Replicas between STARTING and READY (at most ``max_pending_starts``)."""
        return len(self._starts)

    @property
    def dropped_series(self) -> int:
        """Updates dropped because their service could not be tracked (the cap was reached)."""
        return self._dropped

    @property
    def evicted_starts(self) -> int:
        """Pending starts forgotten because the table was full."""
        return self._evicted_starts

    # --- internals (lock held) ----------------------------------------------------------------
    def _transition(self, ev: ReplicaTransitioned, now: float) -> None:
        key = (ev.service, ev.replica)
        if ev.new == ReplicaState.STARTING:
            self._starts.pop(key, None)  # re-insert at the end: start order stays insertion order
            if len(self._starts) >= self.max_pending_starts:
                self._starts.popitem(last=False)
                self._evicted_starts += 1
            self._starts[key] = (ev.at, now)
            self._service(ev.service, now, create=False)
            return
        started = self._starts.pop(key, None)
        if ev.new == ReplicaState.BACKOFF:
            self._restarts += 1
        if ev.new == ReplicaState.READY and started is not None:
            latency = ev.at - started[0]
            svc = self._service(ev.service, now, create=True)
            if svc is not None and latency >= 0:  # a wall clock stepped back gives no sample
                if svc.ready is None:
                    svc.ready = _Histogram(len(READY_BUCKETS))
                svc.ready.observe(READY_BUCKETS, latency)
        else:
            self._service(ev.service, now, create=False)

    def _service(self, name: str, now: float, *, create: bool) -> _Service | None:
        svc = self._services.get(name)
        if svc is not None:
            svc.last_seen = now
            self._services.move_to_end(name)
            return svc
        if not create:
            return None
        if len(self._services) >= self.max_services:
            self._expire(now)
        if len(self._services) >= self.max_services:
            self._drop(f"service {name!r}")
            return None
        svc = self._services[name] = _Service(now)
        return svc

    def _probe(self, svc: _Service, probe: str) -> _Probe | None:
        p = svc.probes.get(probe)
        if p is None:
            if len(svc.probes) >= MAX_PROBES_PER_SERVICE:
                self._drop(f"probe {probe!r}")
                return None
            p = svc.probes[probe] = _Probe()
        return p

    def _drop(self, what: str) -> None:
        self._dropped += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "metrics: label cap reached (max_services=%d, %d probes per service); %s and any "
                "further new series are not tracked (counted in "
                "deploy_code_metrics_dropped_series_total; this warning is logged once)",
                self.max_services,
                MAX_PROBES_PER_SERVICE,
                what,
            )

    def _expire(self, now: float) -> int:
        cutoff = now - self.retention_s
        dropped = 0
        services = self._services
        while services:
            name, svc = next(iter(services.items()))
            if svc.last_seen > cutoff:
                break
            del services[name]
            dropped += 1
        starts = self._starts
        while starts:
            key, (_, recorded) = next(iter(starts.items()))
            if recorded > cutoff:
                break
            del starts[key]
        return dropped
