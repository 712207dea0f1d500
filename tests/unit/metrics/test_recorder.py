"""Unit tests for deploy_code.metrics.recorder: totals, ready latency, retention, the label cap."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_code.clock import FakeClock
from deploy_code.events import (
    DeploymentFinished,
    ProbeFailed,
    ReplicaExited,
    ReplicaState,
    ReplicaTransitioned,
)
from deploy_code.metrics.recorder import (
    DEPLOY_BUCKETS,
    MAX_OUTCOMES,
    MAX_PROBES_PER_SERVICE,
    PROBE_BUCKETS,
    READY_BUCKETS,
    Recorder,
    ServiceView,
)

S = ReplicaState


def move(service: str, replica: int, old: ReplicaState, new: ReplicaState, at: float) -> ReplicaTransitioned:
    return ReplicaTransitioned(service, replica, old, new, "test", at)


def by_name(rec: Recorder) -> dict[str, ServiceView]:
    return {s.name: s for s in rec.view().services}


def test_deployments_by_outcome_and_duration_histogram() -> None:
    rec = Recorder(FakeClock())
    for outcome, secs in [("ready", 2.0), ("ready", 5.0), ("failed", 0.1), ("cancelled", 4000.0)]:
        rec.publish(DeploymentFinished("up", outcome, secs, 0.0))
    v = rec.view()
    assert v.deployments == {"ready": 2, "failed": 1, "cancelled": 1}
    h = v.deploy_duration
    assert h.bounds == DEPLOY_BUCKETS
    assert sum(h.counts) == 4 and h.sum == pytest.approx(4007.1)
    # ``le`` is inclusive: 5.0 lands in the 5.0 bucket, 0.1 in the 0.1 bucket, 4000 only in +Inf.
    assert h.counts[DEPLOY_BUCKETS.index(5.0)] == 1
    assert h.counts[DEPLOY_BUCKETS.index(0.1)] == 1
    assert h.counts[-1] == 1


def test_outcomes_are_capped_into_other() -> None:
    rec = Recorder(FakeClock())
    for i in range(MAX_OUTCOMES + 5):
        rec.publish(DeploymentFinished("up", f"o{i}", 1.0, 0.0))
    d = rec.view().deployments
    assert len(d) == MAX_OUTCOMES + 1 and d["other"] == 5


def test_ready_latency_from_starting_to_ready() -> None:
    rec = Recorder(FakeClock())
    rec.publish(move("api", 0, S.PENDING, S.STARTING, 100.0))
    rec.publish(move("api", 1, S.PENDING, S.STARTING, 100.0))
    assert rec.pending_starts == 2
    rec.publish(move("api", 0, S.STARTING, S.READY, 100.04))
    rec.publish(move("api", 1, S.STARTING, S.FAILED, 101.0))  # never ready: no sample
    rec.publish(move("api", 0, S.READY, S.DEGRADED, 102.0))
    rec.publish(move("api", 0, S.DEGRADED, S.READY, 103.0))  # not a start: no sample
    assert rec.pending_starts == 0
    h = by_name(rec)["api"].ready_latency
    assert h is not None and h.bounds == READY_BUCKETS
    assert sum(h.counts) == 1 and h.sum == pytest.approx(0.04)
    assert h.counts[READY_BUCKETS.index(0.05)] == 1


def test_restarts_count_transitions_to_backoff() -> None:
    rec = Recorder(FakeClock())
    rec.publish(move("a", 0, S.PENDING, S.STARTING, 0.0))
    rec.publish(move("a", 0, S.STARTING, S.BACKOFF, 1.0))
    rec.publish(move("a", 0, S.BACKOFF, S.STARTING, 2.0))
    rec.publish(move("a", 0, S.STARTING, S.BACKOFF, 3.0))
    assert rec.view().restarts == 2


def test_probe_latency_failures_and_last_result() -> None:
    rec = Recorder(FakeClock())
    rec.observe_probe("api", "readiness", 0.003, True)
    rec.observe_probe("api", "readiness", 0.5, False)
    rec.publish(ProbeFailed("api", 0, "readiness", "timeout", 0.0))
    rec.publish(ProbeFailed("api", 0, "liveness", "refused", 0.0))
    probes = {p.probe: p for p in by_name(rec)["api"].probes}
    ready = probes["readiness"]
    assert ready.duration is not None and ready.duration.bounds == PROBE_BUCKETS
    assert sum(ready.duration.counts) == 2 and ready.duration.sum == pytest.approx(0.503)
    assert ready.failures == 1 and ready.last_ok is False
    assert probes["liveness"].failures == 1 and probes["liveness"].duration is None
    assert probes["liveness"].last_ok is None


def test_removed_service_is_dropped_after_retention() -> None:
    clock = FakeClock()
    rec = Recorder(clock, retention_s=600)
    rec.observe_probe("gone", "readiness", 0.01, True)
    rec.observe_probe("live", "readiness", 0.01, True)
    clock.advance(599)
    rec.touch(["live"])  # the collector does this for every service in the live snapshot
    assert set(by_name(rec)) == {"gone", "live"}
    clock.advance(1)
    assert set(by_name(rec)) == {"live"}
    clock.advance(598)  # 599 s since "live" was last seen
    assert rec.expire() == 0
    clock.advance(1)
    assert rec.expire() == 1 and rec.tracked_services == 0


def test_events_keep_a_service_alive_but_touch_never_creates_one() -> None:
    clock = FakeClock()
    rec = Recorder(clock, retention_s=10)
    rec.observe_probe("api", "readiness", 0.01, True)
    rec.touch(["never-seen"])
    for _ in range(5):
        clock.advance(9)
        rec.publish(ReplicaExited("api", 0, 123, 1, 0.0))
    assert set(by_name(rec)) == {"api"}


def test_pending_starts_expire_and_are_bounded() -> None:
    clock = FakeClock()
    rec = Recorder(clock, retention_s=60, max_pending_starts=3)
    for i in range(5):
        rec.publish(move("s", i, S.PENDING, S.STARTING, 0.0))
    assert rec.pending_starts == 3 and rec.evicted_starts == 2
    rec.publish(move("s", 0, S.STARTING, S.READY, 1.0))  # evicted: no latency sample, no error
    assert "s" not in by_name(rec)
    clock.advance(61)
    assert rec.expire() == 0 and rec.pending_starts == 0


def test_cardinality_cap_warns_once_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(FakeClock(), max_services=3)
    with caplog.at_level(logging.WARNING, logger="deploy_code.metrics"):
        for i in range(10):
            rec.observe_probe(f"s{i}", "readiness", 0.01, True)
        rec.observe_probe("s0", "readiness", 0.01, True)  # tracked ones still update
    assert rec.tracked_services == 3 and rec.dropped_series == 7
    assert set(by_name(rec)) == {"s0", "s1", "s2"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "max_services=3" in warnings[0].getMessage()
    assert rec.view().dropped_series == 7


def test_cap_frees_room_once_old_services_expire() -> None:
    clock = FakeClock()
    rec = Recorder(clock, retention_s=60, max_services=2)
    rec.observe_probe("a", "p", 0.01, True)
    rec.observe_probe("b", "p", 0.01, True)
    rec.observe_probe("c", "p", 0.01, True)
    assert rec.dropped_series == 1
    clock.advance(60)
    rec.observe_probe("c", "p", 0.01, True)
    assert set(by_name(rec)) == {"c"}


def test_probes_per_service_are_capped() -> None:
    rec = Recorder(FakeClock())
    for i in range(MAX_PROBES_PER_SERVICE + 3):
        rec.observe_probe("api", f"p{i}", 0.01, True)
    assert len(by_name(rec)["api"].probes) == MAX_PROBES_PER_SERVICE
    assert rec.dropped_series == 3


def test_views_are_copies() -> None:
    rec = Recorder(FakeClock())
    rec.observe_probe("api", "readiness", 0.01, True)
    before = by_name(rec)["api"].probes[0].duration
    rec.observe_probe("api", "readiness", 0.01, True)
    assert before is not None and sum(before.counts) == 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.floats(0, 50), st.sampled_from(["ev", "probe", "touch"])),
        max_size=200,
    )
)
def test_bounds_hold_for_any_sequence(ops: list[tuple[int, float, str]]) -> None:
    """Whatever arrives, the tables stay under their caps and nothing older than retention survives."""
    clock = FakeClock()
    rec = Recorder(clock, retention_s=20, max_services=5, max_pending_starts=4)
    seen: dict[str, float] = {}
    for n, dt, op in ops:
        clock.advance(dt)
        name = f"s{n}"
        if op == "ev":
            rec.publish(move(name, n % 3, S.PENDING, S.STARTING, clock.now()))
        elif op == "probe":
            rec.observe_probe(name, "readiness", 0.01, ok=True)
        else:
            rec.touch([name])
        assert rec.tracked_services <= 5 and rec.pending_starts <= 4
        if name in by_name(rec):
            seen[name] = clock.now()
    rec.expire()
    for name in by_name(rec):
        assert clock.now() - seen[name] < 20
