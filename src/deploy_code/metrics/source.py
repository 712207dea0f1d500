"""What the orchestrator hands the metrics layer at scrape time: plain frozen values, no behaviour.

The collector calls :meth:`MetricsSource.metrics_snapshot` once per scrape and turns the result into
exposition samples; nothing here is kept between scrapes, so a service that leaves the snapshot leaves
``/metrics`` at the next scrape. Running totals and histograms do not live here: they come from
events, through :class:`~deploy_code.metrics.recorder.Recorder`.

The orchestrator (``supervisor``) implements :class:`MetricsSource`; ``metrics`` never imports
``supervisor``. Strings are used for states so that this module does not depend on the state enum's
type, but callers should pass ``ReplicaState`` values (a ``StrEnum``, so they *are* strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FrontSample", "LevelSample", "MetricsSource", "ReplicaSample", "ServiceSample", "Snapshot"]


@dataclass(frozen=True, slots=True)
class ServiceSample:
    """One service as the supervisor sees it now.

    Attributes:
        name: the service name (a label value; the set of names is capped by the collector).
        state: the service's summary state (e.g. ``ready``, ``starting``, ``degraded``, ``failed``).
        ready: replicas that are READY.
        desired: replicas the spec asks for.
        restarts: restarts of all its replicas since the orchestrator started (never decreases
            while the service exists).
    """

    name: str
    state: str
    ready: int
    desired: int
    restarts: int


@dataclass(frozen=True, slots=True)
class ReplicaSample:
    """One replica: its state and, while a process runs, its pid (sampled for CPU / memory / files).

    Attributes:
        service: the owning service's name.
        index: the replica index (0-based).
        state: a ``ReplicaState`` value.
        pid: the process id while one runs, else None (no process metrics then).
        restarts: restarts of this replica.
    """

    service: str
    index: int
    state: str
    pid: int | None
    restarts: int


@dataclass(frozen=True, slots=True)
class LevelSample:
    """Capacity of one resource at one level: a node (``pool`` None) or a pool on a node.

    Attributes:
        node: node name (``local`` for the single-machine backend).
        pool: pool name, or None for the node itself.
        resource: ``cpu_cores``, ``memory_mb``, ``gpu_count``, ...
        capacity: effective capacity (after overrides and headroom).
        allocated: what bookings hold now.
    """

    node: str
    pool: str | None
    resource: str
    capacity: float
    allocated: float

    @property
    def utilization(self) -> float:
        """``allocated / capacity``; 0 when the capacity is 0."""
        return self.allocated / self.capacity if self.capacity > 0 else 0.0


@dataclass(frozen=True, slots=True)
class FrontSample:
    """One exposed port's front-port counters (running totals since it opened).

    Attributes:
        service: the service.
        port: the exposed port's name.
        available: whether a replica is ready behind it.
        active: connections open now.
        total: connections accepted.
        bytes_in: client to replica bytes.
        bytes_out: replica to client bytes.
        retries: failed connects to a replica followed by another try.
        refused: connections closed unserved (queue full or its wait timed out).
        no_backend: connections closed because no replica was ready within the connect timeout.
        latency: upstream first-byte latency as per-bucket counts aligned with ``latency_bounds``
            (the last count is the ``+Inf`` bucket), and ``latency_sum`` in seconds.
    """

    service: str
    port: str
    available: bool
    active: int
    total: int
    bytes_in: int
    bytes_out: int
    retries: int
    refused: int
    no_backend: int
    latency_bounds: tuple[float, ...] = ()
    latency_counts: tuple[int, ...] = ()
    latency_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything read at one scrape.

    Attributes:
        services: one sample per service.
        replicas: one sample per replica (of any service in ``services``).
        levels: capacity per (node, pool, resource).
        queue_length: services waiting in the admission queue.
        loop_lag_s: the event loop's most recent measured lag, in seconds.
        fronts: one sample per exposed port.
    """

    services: Sequence[ServiceSample] = ()
    replicas: Sequence[ReplicaSample] = ()
    levels: Sequence[LevelSample] = ()
    queue_length: int = 0
    loop_lag_s: float = 0.0
    fronts: Sequence[FrontSample] = ()


class MetricsSource(Protocol):
    """Implemented by the orchestrator; called by the collector once per scrape."""

    def metrics_snapshot(self) -> Snapshot:
        """Return the live state now.

        Called on whatever thread serves ``/metrics`` (the API's loop, or a worker thread); it must
        be cheap (O(services + replicas), no I/O, no awaiting) and must not raise. The sequences may
        be shared with the orchestrator only if it never mutates them afterwards.
        """
        ...
