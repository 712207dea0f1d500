"""A token bucket for byte rates, on an injected clock.

Bytes are *reserved* rather than waited for up front: :meth:`TokenBucket.reserve` takes ``n`` tokens
at once, letting the level go negative (a debt), and returns the monotonic time at which the debt is
paid. The caller has already read the bytes; it forwards them and stops reading until then. Over any
long window the rate is exact, whatever the chunk sizes, and one large chunk never starves behind
smaller ones. ``burst`` caps how much unused allowance piles up while idle.
"""

from __future__ import annotations

from deploy_code.clock import Clock

__all__ = ["DEFAULT_BURST_S", "MIN_BURST_BYTES", "TokenBucket"]

# A burst of 50 ms of traffic smooths scheduling jitter without letting an idle link send much
# faster than the limit afterwards; at least 16 KiB so one socket read fits in it.
DEFAULT_BURST_S = 0.05
MIN_BURST_BYTES = 16 * 1024


class TokenBucket:
    """``rate`` tokens (bytes) per second, at most ``burst`` saved; shared by every user of the limit.

    Args:
        rate: bytes per second, > 0.
        clock: where ``now`` comes from.
        burst: bucket size in bytes; default ``max(rate * DEFAULT_BURST_S, MIN_BURST_BYTES)``.
    """

    def __init__(self, rate: float, clock: Clock, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(rate * DEFAULT_BURST_S, MIN_BURST_BYTES)
        if self.burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst}")
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock.now()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve(self, n: int) -> float:
        """Take ``n`` tokens now; returns the monotonic time from which the caller may go on.

        The returned time is ``now`` when the bucket had enough, later when it is in debt.
        """
        now = self._clock.now()
        self._refill(now)
        self._tokens -= n
        if self._tokens >= 0:
            return now
        return now + (-self._tokens) / self.rate

    async def throttle(self, n: int) -> None:
        """Reserve ``n`` tokens and sleep until they are paid for."""
        deadline = self.reserve(n)
        if deadline > self._clock.now():
            await self._clock.sleep_until(deadline)

    @property
    def level(self) -> float:
        """Tokens available now (negative while in debt)."""
        self._refill(self._clock.now())
        return self._tokens
