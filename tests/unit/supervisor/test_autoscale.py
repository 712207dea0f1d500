"""The autoscaler's decision: HPA rule, hysteresis, clamping, cooldowns, the scale-down window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from deploy_code.config.model import AutoscaleSpec
from deploy_code.supervisor.autoscale import AutoscaleState, decide

SPEC = AutoscaleSpec(min=1, max=8, target=50, interval=5, scale_up_cooldown=10, scale_down_cooldown=60)


def test_scale_up_follows_the_ratio_and_is_clamped() -> None:
    st_ = AutoscaleState()
    assert decide(SPEC, st_, 2, 100.0, now=0).new == 4  # twice the target: twice the replicas
    assert decide(SPEC, AutoscaleState(), 2, 1000.0, now=0).new == 8  # max
    assert decide(SPEC, AutoscaleState(), 0, 80.0, now=0).new == 2  # from zero, as from one


def test_within_tolerance_nothing_changes() -> None:
    d = decide(SPEC, AutoscaleState(), 3, 54.0, now=0)
    assert d.new == 3 and "within" in d.reason


def test_scale_up_cooldown() -> None:
    s = AutoscaleState()
    assert decide(SPEC, s, 1, 100.0, now=0).new == 2
    held = decide(SPEC, s, 2, 100.0, now=5)
    assert held.new == 2 and "cooldown" in held.reason
    assert decide(SPEC, s, 2, 100.0, now=10).new == 4


def test_no_scale_up_while_replicas_wait_for_resources() -> None:
    d = decide(SPEC, AutoscaleState(), 2, 100.0, now=0, waiting=1)
    assert d.new == 2 and "wait for resources" in d.reason


def test_scale_down_waits_the_window_and_takes_its_highest_recommendation() -> None:
    s = AutoscaleState()
    assert decide(SPEC, s, 1, 200.0, now=0).new == 4
    # Quiet from t=30: the window still remembers t=0's "4" until t=60.
    assert decide(SPEC, s, 4, 10.0, now=30).new == 4
    assert decide(SPEC, s, 4, 52.0, now=50).new == 4  # within tolerance: recommends 4
    d = decide(SPEC, s, 4, 10.0, now=70)  # window [10, 70]: recommendations 1 (t=30), 4 (t=50) -> 4 kept
    assert d.new == 4
    d = decide(SPEC, s, 4, 10.0, now=115)  # window [55, 115]: only 1s
    assert d.new == 1 and "scale down" in d.reason


def test_no_measurement_keeps_the_count_inside_bounds() -> None:
    assert decide(SPEC, AutoscaleState(), 3, None, now=0).new == 3
    assert decide(SPEC, AutoscaleState(), 12, None, now=0).new == 8


@given(
    current=st.integers(0, 20),
    value=st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False)),
    now=st.floats(0, 1e6, allow_nan=False),
    waiting=st.integers(0, 3),
)
def test_never_outside_min_max_and_never_up_while_waiting(
    current: int, value: float | None, now: float, waiting: int
) -> None:
    d = decide(SPEC, AutoscaleState(), current, value, now, waiting=waiting)
    if SPEC.min <= current <= SPEC.max:
        assert SPEC.min <= d.new <= SPEC.max
        if waiting:
            assert d.new <= current
