"""Unit tests for deploy_code.metrics.history: ring bounds, downsampling, retention, the key cap."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_code.metrics.history import (
    COARSE_POINTS,
    COARSE_S,
    FINE_POINTS,
    FINE_S,
    History,
    Point,
    record_snapshot,
)
from deploy_code.metrics.process import ProcSample
from deploy_code.metrics.source import ReplicaSample, ServiceSample, Snapshot


def reference(records: list[tuple[float, float]]) -> tuple[list[Point], list[Point]]:
    """The naive model: group by second, then group the seconds by minute; keep the newest points."""
    seconds: dict[int, list[float]] = defaultdict(list)
    for t, v in records:
        seconds[int(t // FINE_S)].append(v)
    fine = [Point(s * FINE_S, sum(vs) / len(vs), max(vs)) for s, vs in sorted(seconds.items())]
    minutes: dict[int, list[Point]] = defaultdict(list)
    for p in fine:
        minutes[int(p.t // COARSE_S)].append(p)
    coarse = [
        Point(m * COARSE_S, sum(p.mean for p in ps) / len(ps), max(p.max for p in ps))
        for m, ps in sorted(minutes.items())
    ]
    return fine[-FINE_POINTS:], coarse[-COARSE_POINTS:]


def assert_points(got: list[Point], want: list[Point]) -> None:
    assert [p.t for p in got] == [p.t for p in want]
    for g, w in zip(got, want, strict=True):
        assert g.mean == pytest.approx(w.mean, rel=1e-6, abs=1e-6)  # stored as float32
        assert g.max == pytest.approx(w.max, rel=1e-6, abs=1e-6)


def test_fine_point_is_mean_and_max_of_its_second() -> None:
    h = History()
    for t, v in [(10.0, 1.0), (10.5, 3.0), (10.9, 2.0), (11.2, 7.0)]:
        h.record("k", v, t)
    assert h.series("k", 0) == [Point(10.0, 2.0, 3.0), Point(11.0, 7.0, 7.0)]


def test_coarse_point_weighs_seconds_equally() -> None:
    h = History()
    for v in (0.0, 0.0, 0.0, 12.0):  # three records in second 0 ...
        h.record("k", v, 0.25)
    h.record("k", 1.0, 1.0)  # ... and one in second 1
    h.record("k", 100.0, 60.0)  # the next minute
    [m0, m1] = h.series("k", 0, COARSE_S)
    assert m0 == Point(0.0, (3.0 + 1.0) / 2, 12.0)
    assert m1 == Point(60.0, 100.0, 100.0)


def test_open_minute_is_current() -> None:
    h = History()
    h.record("k", 2.0, 0.0)
    assert h.series("k", 0, COARSE_S) == [Point(0.0, 2.0, 2.0)]
    h.record("k", 4.0, 0.5)  # same second: the fine mean is 3, and the minute shows it at once
    assert h.series("k", 0, COARSE_S) == [Point(0.0, 3.0, 4.0)]


def test_rings_are_bounded() -> None:
    h = History(retention_s=10 * 86400)
    for t in range(3 * 86400):  # three days at one record a second
        h.record("k", float(t % 100), float(t))
    assert h.points("k") == (FINE_POINTS, COARSE_POINTS)
    fine = h.series("k", 0)
    assert len(fine) == FINE_POINTS and fine[0].t == 3 * 86400 - FINE_POINTS and fine[-1].t == 3 * 86400 - 1
    coarse = h.series("k", 0, COARSE_S)
    assert len(coarse) == COARSE_POINTS and coarse[-1].t == (3 * 86400 // 60 - 1) * 60


def test_since_and_gaps() -> None:
    h = History()
    for t in (0.0, 1.0, 5.0, 9.0):  # seconds 2-4 and 6-8 have no records: no points
        h.record("k", t, t)
    assert [p.t for p in h.series("k", 0)] == [0.0, 1.0, 5.0, 9.0]
    assert [p.t for p in h.series("k", 4.5)] == [5.0, 9.0]
    assert h.series("k", 10) == []
    assert h.series("unknown", 0) == []


def test_any_clock_origin_fits() -> None:
    h = History()
    t0 = 1e11  # far past int32 seconds: slots are stored as offsets from the first
    h.record("k", 1.0, t0)
    h.record("k", 2.0, t0 + 61)
    assert h.series("k", t0) == [Point(t0, 1.0, 1.0), Point(t0 + 61, 2.0, 2.0)]
    assert [p.t for p in h.series("k", t0 + 60, COARSE_S)] == [math.floor((t0 + 61) / 60) * 60]


def test_only_two_resolutions() -> None:
    with pytest.raises(ValueError, match="resolution"):
        History().series("k", 0, 10.0)


def test_nan_is_ignored() -> None:
    h = History()
    h.record("k", math.nan, 0.0)
    assert len(h) == 0


def test_keys_expire_after_retention() -> None:
    h = History(retention_s=60)
    h.record("old", 1.0, 0.0)
    h.record("new", 1.0, 30.0)
    h.record("new", 1.0, 60.0)
    assert h.keys() == ["new"]
    assert h.expire(119.0) == 0 and h.expire(120.0) == 1 and len(h) == 0


def test_key_cap_refuses_new_keys_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    h = History(max_keys=2, retention_s=60)
    with caplog.at_level(logging.WARNING, logger="deploy_code.metrics"):
        for i in range(5):
            h.record(f"k{i}", 1.0, 0.0)
    assert h.keys() == ["k0", "k1"] and h.dropped == 3
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    h.record("k9", 1.0, 60.0)  # the old keys expired: room again
    assert h.keys() == ["k9"]


def test_record_snapshot_keys() -> None:
    h = History()
    snap = Snapshot(
        services=[ServiceSample("api", "ready", 2, 2, 0)],
        replicas=[ReplicaSample("api", 0, "ready", 10, 0), ReplicaSample("api", 1, "starting", None, 0)],
        queue_length=3,
        loop_lag_s=0.002,
    )
    record_snapshot(h, snap, {10: ProcSample(None, 4096, 7, 0.0)}, 5.0)
    assert sorted(h.keys()) == [
        "api.0/memory_bytes",
        "api.0/open_files",
        "api.0/restarts",
        "api.1/restarts",  # restarts are known without a process sample
        "api/ready",
        "orchestrator/loop_lag_s",
        "orchestrator/queue_length",
    ]
    assert h.series("api.0/open_files", 0) == [Point(5.0, 7.0, 7.0)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 200, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False, width=32)),
        min_size=1,
        max_size=300,
    )
)
def test_matches_the_naive_model(steps: list[tuple[float, float]]) -> None:
    """Fine and coarse rings equal a group-by over all records (times only move forward)."""
    times = list(accumulate(dt for dt, _ in steps))
    records = [(t, v) for t, (_, v) in zip(times, steps, strict=True)]
    h = History(retention_s=1e12)
    for t, v in records:
        h.record("k", v, t)
    fine, coarse = reference(records)
    assert_points(h.series("k", -1), fine)
    assert_points(h.series("k", -1, COARSE_S), coarse)


def test_small_rings_match_the_naive_model_past_wraparound() -> None:
    """Enough sparse records to wrap both rings several times."""
    records = [(t * 7.3, float(t % 13)) for t in range(COARSE_POINTS * 12)]
    h = History(retention_s=1e12)
    for t, v in records:
        h.record("k", v, t)
    fine, coarse = reference(records)
    assert_points(h.series("k", -1), fine)
    assert_points(h.series("k", -1, COARSE_S), coarse)
