"""Restart backoff and crash-loop detection. Pure: time and randomness come in as arguments."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from deploy_code.config.model import BackoffSpec, RestartSpec

__all__ = ["CrashLoopDetector", "next_delay", "replay_rng"]


def replay_rng(replica_id: str, attempt: int) -> random.Random:
    """A generator seeded from the replica and attempt, so a restart timeline can be replayed."""
    return random.Random(f"{replica_id}#{attempt}")


def next_delay(attempt: int, spec: BackoffSpec, rng: random.Random) -> float:
    """Delay before restart number ``attempt`` (0-based): ``initial * factor**attempt``, capped, ± jitter.

    Args:
        attempt: restarts since the last reset (0 for the first restart).
        spec: the backoff settings.
        rng: the random source for jitter.

    Returns:
        Seconds to wait, never negative and never above ``spec.max``.
    """
    if spec.initial <= 0:
        return 0.0
    # Cap the exponent first: factor**attempt overflows a float long before attempt overflows an int.
    base = spec.max if attempt >= 64 else min(spec.max, spec.initial * spec.factor**attempt)
    jitter = base * spec.jitter * (2.0 * rng.random() - 1.0)
    return max(0.0, min(spec.max, base + jitter))


@dataclass(slots=True)
class CrashLoopDetector:
    """Counts restarts in a sliding window; more than ``max_restarts`` in ``window`` is a crash loop.

    The deque is bounded by ``max_restarts + 1``: older restarts cannot change the verdict.
    """

    spec: RestartSpec
    _times: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self._times = deque(maxlen=self.spec.max_restarts + 1)

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; True when this restart makes a crash loop."""
        self._times.append(now)
        while self._times and now - self._times[0] > self.spec.window:
            self._times.popleft()
        return len(self._times) > self.spec.max_restarts

    def reset(self) -> None:
        """Forget past restarts (after a manual restart)."""
        self._times.clear()

    def __len__(self) -> int:
        return len(self._times)
