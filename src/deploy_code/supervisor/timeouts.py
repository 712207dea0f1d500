"""``timeouts.ready: auto``: learned from the store's history of earlier starts.

From the stored ``replica.transition`` events, each replica's time from ``starting`` to ``ready`` is a
sample. With at least ``MIN_SAMPLES`` for a service, its ready timeout is ``K x p99`` of its newest
``MAX_SAMPLES`` samples, clamped to ``[FLOOR_S, CEILING_S]``; otherwise ``DEFAULT_S``. ``status`` shows
the value in use and where it came from.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CEILING_S", "DEFAULT_S", "FLOOR_S", "K", "LearnedTimeout", "learn_ready_timeouts"]

K = 3.0
FLOOR_S = 5.0
CEILING_S = 300.0
DEFAULT_S = 60.0
MIN_SAMPLES = 5
MAX_SAMPLES = 200  # per service: bounded, newest kept


@dataclass(frozen=True, slots=True)
class LearnedTimeout:
    """A ready timeout and its source: ``learned`` (with the sample count and p99) or ``default``."""

    seconds: float
    source: str
    samples: int = 0
    p99_s: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain data for status."""
        return {
            "ready_s": round(self.seconds, 3),
            "source": self.source,
            "samples": self.samples,
            "p99_s": self.p99_s,
        }


def _p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)]


def learn_ready_timeouts(bodies: Iterable[Mapping[str, Any]]) -> dict[str, LearnedTimeout]:
    """Ready timeouts per service from transition event bodies (oldest first).

    Args:
        bodies: stored ``replica.transition`` event bodies: ``service``, ``replica``, ``old``, ``new``,
            ``at`` (wall time).
    """
    started: dict[tuple[str, int], float] = {}
    samples: dict[str, deque[float]] = {}
    for b in bodies:
        try:
            key = (str(b["service"]), int(b["replica"]))
            new, at = str(b["new"]), float(b["at"])
        except (KeyError, TypeError, ValueError):
            continue
        if new == "starting":
            started[key] = at
        elif new == "ready" and key in started:
            took = at - started.pop(key)
            if took >= 0:
                samples.setdefault(key[0], deque(maxlen=MAX_SAMPLES)).append(took)
        elif key in started and new in ("backoff", "failed", "stopped", "stopping"):
            del started[key]
    out: dict[str, LearnedTimeout] = {}
    for service, xs in samples.items():
        if len(xs) >= MIN_SAMPLES:
            p99 = _p99(list(xs))
            out[service] = LearnedTimeout(
                min(CEILING_S, max(FLOOR_S, K * p99)), "learned", len(xs), round(p99, 4)
            )
    return out
