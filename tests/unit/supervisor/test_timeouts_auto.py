"""timeouts.ready: auto learned from stored transitions."""

from __future__ import annotations

from deploy_code.supervisor.timeouts import CEILING_S, FLOOR_S, learn_ready_timeouts


def _starts(service: str, durations: list[float]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    t = 1000.0
    for i, d in enumerate(durations):
        out.append({"service": service, "replica": i % 3, "new": "starting", "at": t})
        out.append({"service": service, "replica": i % 3, "new": "ready", "at": t + d})
        t += 10
    return out


def test_k_times_p99_clamped() -> None:
    learned = learn_ready_timeouts(_starts("api", [2.0] * 9 + [4.0]) + _starts("db", [0.1] * 10))
    assert learned["api"].seconds == 12.0 and learned["api"].samples == 10 and learned["api"].p99_s == 4.0
    assert learned["db"].seconds == FLOOR_S  # 0.3 s clamped up
    slow = learn_ready_timeouts(_starts("batch", [500.0] * 6))
    assert slow["batch"].seconds == CEILING_S


def test_too_few_samples_or_failed_starts_learn_nothing() -> None:
    assert learn_ready_timeouts(_starts("api", [1.0] * 4)) == {}
    failed = [
        {"service": "x", "replica": 0, "new": "starting", "at": 1.0},
        {"service": "x", "replica": 0, "new": "backoff", "at": 2.0},
        {"service": "x", "replica": 0, "new": "ready", "at": 50.0},  # no start open: not a sample
    ]
    assert learn_ready_timeouts(failed * 6) == {}
    assert learn_ready_timeouts([{"garbage": 1}, {"service": "x"}]) == {}
