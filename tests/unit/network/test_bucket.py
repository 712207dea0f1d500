"""TokenBucket on a FakeClock: burst, debt, refill cap, long-run rate."""

from __future__ import annotations

import asyncio

import pytest

from deploy_code.clock import FakeClock
from deploy_code.network import TokenBucket


def test_burst_is_free_then_debt_sets_the_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=100)
    assert bucket.reserve(100) == 0.0
    assert bucket.reserve(50) == pytest.approx(0.05)
    assert bucket.level == pytest.approx(-50)
    clock.advance(0.05)
    assert bucket.level == pytest.approx(0)


def test_idle_time_saves_at_most_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=100)
    bucket.reserve(100)
    clock.advance(60)
    assert bucket.level == pytest.approx(100)


def test_long_run_rate_is_exact_whatever_the_chunk_sizes() -> None:
    clock = FakeClock()
    rate = 2_000_000
    bucket = TokenBucket(rate, clock)
    sent = 0
    sizes = [1, 65536, 300, 262144, 17, 4096] * 40
    for n in sizes:
        at = bucket.reserve(n)
        if at > clock.now():
            clock.advance(at - clock.now())
        sent += n
    # Everything beyond the initial burst went at exactly `rate`.
    assert clock.now() == pytest.approx((sent - bucket.burst) / rate)


def test_default_burst_and_validation() -> None:
    clock = FakeClock()
    assert TokenBucket(2_000_000, clock).burst == pytest.approx(100_000)
    assert TokenBucket(1000, clock).burst == 16 * 1024
    with pytest.raises(ValueError):
        TokenBucket(0, clock)
    with pytest.raises(ValueError):
        TokenBucket(10, clock, burst=0)


async def test_throttle_sleeps_on_the_injected_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=10)
    await bucket.throttle(10)  # within the burst: no sleep
    task = asyncio.ensure_future(bucket.throttle(100))
    await asyncio.sleep(0)
    assert not task.done() and clock.sleeping == 1
    clock.advance(0.05)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.05)
    await asyncio.wait_for(task, 1)
