import random

from hypothesis import given
from hypothesis import strategies as st

from deploy_code.config.model import BackoffSpec, RestartSpec
from deploy_code.supervisor import CrashLoopDetector, next_delay
from deploy_code.supervisor.backoff import replay_rng


def test_exponential_then_capped_without_jitter() -> None:
    spec = BackoffSpec(initial=0.1, max=1.0, factor=2, jitter=0)
    delays = [next_delay(n, spec, random.Random(0)) for n in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_initial_zero_restarts_at_once() -> None:
    assert next_delay(5, BackoffSpec(initial=0), random.Random(0)) == 0.0


def test_replayable_jitter() -> None:
    spec = BackoffSpec(initial=1, max=30, jitter=0.5)
    a = [next_delay(n, spec, replay_rng("api.0", n)) for n in range(10)]
    b = [next_delay(n, spec, replay_rng("api.0", n)) for n in range(10)]
    assert a == b
    assert a != [next_delay(n, spec, replay_rng("api.1", n)) for n in range(10)]


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    initial=st.floats(min_value=0, max_value=10),
    mx=st.floats(min_value=0, max_value=100),
    factor=st.floats(min_value=1, max_value=100),
    jitter=st.floats(min_value=0, max_value=1),
    seed=st.integers(),
)
def test_delay_bounds(
    attempt: int, initial: float, mx: float, factor: float, jitter: float, seed: int
) -> None:
    spec = BackoffSpec(initial=initial, max=mx, factor=factor, jitter=jitter)
    d = next_delay(attempt, spec, random.Random(seed))
    assert 0.0 <= d <= max(mx, 0.0)


def test_crash_loop_window() -> None:
    det = CrashLoopDetector(RestartSpec(max_restarts=3, window=10))
    assert [det.record(t) for t in (0, 1, 2)] == [False, False, False]
    assert det.record(3) is True
    det.reset()
    # Restarts spread wider than the window never trip it, and the record stays bounded.
    assert not any(det.record(100 + 20 * i) for i in range(1000))
    assert len(det) <= 4
