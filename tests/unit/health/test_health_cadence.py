"""cadence.next_delay: fast doubling while starting, period once passed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy_code.health import next_delay

periods = st.floats(min_value=1e-4, max_value=3600.0, allow_nan=False)
fast_starts = st.floats(min_value=1e-4, max_value=10.0, allow_nan=False)
attempts = st.integers(min_value=0, max_value=100_000)


def test_fast_phase_doubles_from_fast_start_and_caps_at_period() -> None:
    delays = [next_delay(passed_once=False, attempt=a, period=0.5, fast_start=0.01) for a in range(9)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5, 0.5])


def test_period_once_passed() -> None:
    for attempt in (0, 1, 7, 10_000):
        assert next_delay(passed_once=True, attempt=attempt, period=5.0, fast_start=0.01) == 5.0


def test_huge_attempt_does_not_overflow() -> None:
    assert next_delay(passed_once=False, attempt=10**9, period=2.0, fast_start=0.01) == 2.0
    assert next_delay(passed_once=False, attempt=2000, period=2.0, fast_start=1e300) == 2.0


def test_negative_attempt_counts_as_first() -> None:
    assert next_delay(passed_once=False, attempt=-3, period=1.0, fast_start=0.01) == 0.01


@pytest.mark.parametrize(("period", "fast_start"), [(0.0, 0.01), (-1.0, 0.01), (1.0, 0.0), (1.0, -0.5)])
def test_rejects_non_positive(period: float, fast_start: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        next_delay(passed_once=False, attempt=0, period=period, fast_start=fast_start)


@given(period=periods, fast_start=fast_starts, attempt=attempts, passed=st.booleans())
def test_capped_and_at_least_fast_start(period: float, fast_start: float, attempt: int, passed: bool) -> None:
    delay = next_delay(passed_once=passed, attempt=attempt, period=period, fast_start=fast_start)
    assert delay <= period
    assert delay >= min(fast_start, period)
    if period >= fast_start:
        assert delay >= fast_start


@given(period=periods, fast_start=fast_starts, attempt=attempts)
def test_monotone_in_attempt(period: float, fast_start: float, attempt: int) -> None:
    here = next_delay(passed_once=False, attempt=attempt, period=period, fast_start=fast_start)
    after = next_delay(passed_once=False, attempt=attempt + 1, period=period, fast_start=fast_start)
    assert after >= here
    assert next_delay(passed_once=True, attempt=attempt, period=period, fast_start=fast_start) >= here
