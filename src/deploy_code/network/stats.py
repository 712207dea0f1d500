"""Counters of one front port: running totals and fixed-bucket latency histograms.

Everything here is a number or a fixed-size list, so a port's stats stay the same size however long
it runs. :meth:`PortStats.to_dict` is the plain-data form the metrics layer and the API read.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["LATENCY_BOUNDS", "Histogram", "PortStats"]

# Upper bounds in seconds, Prometheus style (each bucket counts samples <= its bound, plus +Inf).
# Loopback connects take tens of microseconds, a remote one milliseconds, a retried one up to the
# connect timeout: the bounds span all three.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(slots=True)
class Histogram:
    """Counts per latency bucket (the last one is +Inf), their sum and how many."""

    bounds: tuple[float, ...] = LATENCY_BOUNDS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Add one sample."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None when empty; inf past the last)."""
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return self.bounds[i] if i < len(self.bounds) else float("inf")
        return float("inf")

    def to_dict(self) -> dict[str, object]:
        """Cumulative buckets as ``[[le, count], ...]`` (``le`` is ``"+Inf"`` last), sum and count."""
        cumulative: list[list[object]] = []
        running = 0
        for i, c in enumerate(self.counts):
            running += c
            le: object = self.bounds[i] if i < len(self.bounds) else "+Inf"
            cumulative.append([le, running])
        return {"buckets": cumulative, "sum": self.total, "count": self.count}


@dataclass(slots=True)
class PortStats:
    """Running totals of one front port since it started."""

    connections_total: int = 0
    connections_active: int = 0
    queued: int = 0  # waiting now for a slot (max_connections) or for a ready backend
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client
    connect_retries: int = 0  # failed connects to a backend that were followed by another try
    refused: int = 0  # closed unserved: the wait queue was full or its wait timed out
    no_backend: int = 0  # closed unserved: no backend could be reached within the connect timeout
    closed_at_drain: int = 0  # still open when a drain's deadline passed, so closed by the proxy
    errors: int = 0  # unexpected errors in a connection's handler (each one closed that connection)
    replays: int = 0  # bytes sent again to another backend after one ended without answering
    upstream_connect: Histogram = field(default_factory=Histogram)
    upstream_first_byte: Histogram = field(default_factory=Histogram)

    def to_dict(self) -> dict[str, object]:
        """Plain data, for JSON and the metrics collectors."""
        return {
            "connections_total": self.connections_total,
            "connections_active": self.connections_active,
            "queued": self.queued,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "connect_retries": self.connect_retries,
            "refused": self.refused,
            "no_backend": self.no_backend,
            "closed_at_drain": self.closed_at_drain,
            "errors": self.errors,
            "replays": self.replays,
            "upstream_connect_seconds": self.upstream_connect.to_dict(),
            "upstream_first_byte_seconds": self.upstream_first_byte.to_dict(),
        }
