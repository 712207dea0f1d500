"""AlertEngine: each condition fires once and resolves once, from plain inputs and explicit times."""

from __future__ import annotations

import asyncio
from typing import Any

from deploy_code.clock import FakeClock
from deploy_code.config import AlertsSpec
from deploy_code.events import AlertFired, AlertResolved, Event
from deploy_code.supervisor import AlertEngine, ServiceHealth, evaluate_every

READY = ServiceHealth("ready", ready=1, desired=1)
DOWN = ServiceHealth("backoff", ready=0, desired=1)


def _engine(*rules: dict[str, Any]) -> AlertEngine:
    return AlertEngine(AlertsSpec.model_validate({"rules": list(rules)}))


def _kinds(events: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.rule, e.service) for e in events]


def test_down_for_fires_after_the_duration_and_resolves_once_ready() -> None:
    eng = _engine({"name": "down", "service": "api", "down_for": "30s"})
    assert eng.evaluate(0.0, {"api": DOWN}, wall=100.0) == []
    assert eng.evaluate(29.0, {"api": DOWN}, wall=129.0) == []
    [fired] = eng.evaluate(30.0, {"api": DOWN}, wall=130.0)
    assert isinstance(fired, AlertFired)
    assert (fired.condition, fired.value, fired.threshold, fired.at) == ("down_for", 30.0, 30.0, 130.0)
    assert "no ready replica for 30s" in fired.message
    assert eng.evaluate(31.0, {"api": DOWN}, wall=131.0) == []  # fires once
    assert eng.firing == {("down", "api"): 30.0}
    [resolved] = eng.evaluate(45.0, {"api": READY}, wall=145.0)
    assert isinstance(resolved, AlertResolved)
    assert (resolved.duration_s, resolved.at) == (15.0, 145.0)
    assert eng.firing == {}
    # Down again: the clock starts over.
    assert eng.evaluate(50.0, {"api": DOWN}, wall=150.0) == []
    assert eng.evaluate(79.0, {"api": DOWN}, wall=179.0) == []
    assert len(eng.evaluate(80.0, {"api": DOWN}, wall=180.0)) == 1


def test_a_service_stopped_on_purpose_or_with_no_replicas_is_not_down() -> None:
    eng = _engine({"name": "down", "down_for": 0})
    services = {
        "stopped": ServiceHealth("stopped", 0, 1),
        "done": ServiceHealth("completed", 0, 1),
        "none": ServiceHealth("ready", 0, 0),
        "up": READY,
    }
    assert eng.evaluate(0.0, services, wall=0.0) == []


def test_a_rule_without_service_covers_every_service() -> None:
    eng = _engine({"name": "down", "down_for": "1s"}, {"name": "db-down", "service": "db", "down_for": "1s"})
    services = {"api": DOWN, "db": DOWN, "web": READY}
    assert eng.evaluate(0.0, services, wall=0.0) == []
    assert _kinds(eng.evaluate(1.0, services, wall=1.0)) == [
        ("alert.fired", "down", "api"),
        ("alert.fired", "down", "db"),
        ("alert.fired", "db-down", "db"),
    ]


def test_restart_rate_counts_restarts_within_the_window() -> None:
    eng = _engine({"name": "flapping", "restart_rate": {"above": 2, "per": "60s"}})

    def at(t: float, restarts: int) -> list[Any]:
        return eng.evaluate(t, {"api": ServiceHealth("ready", 1, 1, restarts=restarts)}, wall=t)

    assert at(0.0, 5) == []  # the first sample is the baseline: earlier restarts do not count
    assert at(10.0, 6) == []
    assert at(20.0, 7) == []
    [fired] = at(30.0, 8)  # three restarts within 60 s: above 2
    assert (fired.kind, fired.value, fired.threshold) == ("alert.fired", 3.0, 2.0)
    assert at(40.0, 8) == []
    [resolved] = at(71.0, 8)  # the restart at t=10 left the window
    assert resolved.kind == "alert.resolved"
    assert resolved.duration_s == 41.0
    assert at(72.0, 0) == []  # a smaller total (the service was redeployed) starts the count afresh
    assert at(73.0, 10) != []  # a burst of ten restarts at once fires (the deque keeps only above + 1)


def test_memory_above_percent_looks_at_the_largest_replica() -> None:
    eng = _engine({"name": "mem", "service": "api", "memory_above_percent": 90})
    low = ServiceHealth("ready", 2, 2, memory_percent=(10.0, 89.9))
    high = ServiceHealth("ready", 2, 2, memory_percent=(10.0, 93.25))
    assert eng.evaluate(0.0, {"api": low}, wall=0.0) == []
    [fired] = eng.evaluate(1.0, {"api": high}, wall=1.0)
    assert (fired.value, fired.threshold) == (93.25, 90.0)
    assert "93.2%" in fired.message
    [resolved] = eng.evaluate(2.0, {"api": low}, wall=2.0)
    assert resolved.kind == "alert.resolved"


def test_a_service_that_leaves_resolves_its_alerts_and_its_state_is_dropped() -> None:
    eng = _engine({"name": "down", "down_for": 0})
    assert len(eng.evaluate(0.0, {"api": DOWN, "db": READY}, wall=0.0)) == 1
    [resolved] = eng.evaluate(1.0, {"db": READY}, wall=1.0)
    assert (resolved.kind, resolved.service, resolved.message) == (
        "alert.resolved",
        "api",
        "api is no longer deployed",
    )
    assert eng.evaluate(2.0, {"db": READY}, wall=2.0) == []
    assert set(eng._tracks) == {("down", "db")}


async def test_evaluate_every_publishes_on_the_clock() -> None:
    clock = FakeClock()
    eng = _engine({"name": "down", "down_for": "2s"})
    got: list[Event] = []
    task = asyncio.create_task(evaluate_every(eng, clock, lambda: {"api": DOWN}, got.append))
    for _ in range(2):
        await asyncio.sleep(0)
        clock.advance(1.0)
        await asyncio.sleep(0)
    assert got == []  # ticks at t=1 (first seen down) and t=2: down for 1 s
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert [e.kind for e in got] == ["alert.fired"]  # t=3: down for 2 s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_evaluate_every_returns_without_rules() -> None:
    await evaluate_every(_engine(), FakeClock(), dict, lambda e: None)
