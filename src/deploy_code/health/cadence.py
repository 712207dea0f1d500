"""When to probe next: fast while a replica is starting, every ``period`` once it has passed. Pure.

A replica that becomes ready 30 ms after spawn should be seen ready within milliseconds, not after a
whole ``period``; yet a replica that takes a minute to start should not be probed thousands of times.
So the delay starts at ``fast_start`` and doubles with every failed attempt until it reaches ``period``;
once the probe has passed once, the cadence is ``period`` for good.
"""

from __future__ import annotations

__all__ = ["next_delay"]

# 2.0**1000 is still a finite float; beyond it the doubling is far past any sane period anyway.
_MAX_EXPONENT = 1000


def next_delay(*, passed_once: bool, attempt: int, period: float, fast_start: float) -> float:
    """Seconds to wait after attempt number ``attempt`` (0-based) before the next one.

    Args:
        passed_once: whether the probe has succeeded at least once.
        attempt: how many attempts came before this one, starting at 0; negative counts as 0.
        period: the steady cadence (``ProbeSpec.period``), the cap of the fast phase.
        fast_start: the first delay of the fast phase (e.g. 0.01 s).

    Returns:
        ``period`` once passed; otherwise ``min(period, fast_start * 2**attempt)``. The result is never
        below ``min(fast_start, period)`` and never above ``period``; it does not decrease with
        ``attempt``.

    Raises:
        ValueError: ``period`` or ``fast_start`` is not positive.
    """
    if not period > 0:
        raise ValueError(f"period must be positive, got {period!r}")
    if not fast_start > 0:
        raise ValueError(f"fast_start must be positive, got {fast_start!r}")
    if passed_once:
        return period
    exponent = min(max(attempt, 0), _MAX_EXPONENT)
    # A huge fast_start times 2**1000 overflows to inf (no exception); min() then yields period.
    return min(period, fast_start * 2.0**exponent)
