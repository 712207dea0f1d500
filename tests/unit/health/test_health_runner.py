"""ProbeRunner driven by FakeClock: cadence, thresholds, transitions, backstop timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from deploy_code.clock import FakeClock
from deploy_code.config.model import ProbeSpec
from deploy_code.health import ProbeResult, ProbeRunner, ProbeTransition


class RecordingClock(FakeClock):
    """A FakeClock that remembers every sleep the runner asked for, as ``(now, deadline)``."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[tuple[float, float]] = []

    async def sleep_until(self, deadline: float) -> None:
        self.sleeps.append((self.now(), deadline))
        await super().sleep_until(deadline)

    @property
    def delays(self) -> list[float]:
        return [deadline - now for now, deadline in self.sleeps]


class ScriptedCheck:
    """Returns the scripted outcomes in order (then keeps the last one) and records when it ran."""

    def __init__(self, clock: FakeClock, outcomes: Iterable[bool]) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.calls: list[float] = []

    async def __call__(self) -> ProbeResult:
        i = min(len(self.calls), len(self.outcomes) - 1)
        self.calls.append(self.clock.now())
        ok = self.outcomes[i]
        return ProbeResult(ok, f"attempt {len(self.calls)}: {'pass' if ok else 'fail'}", 0.0)


def spec(**fields: Any) -> ProbeSpec:
    return ProbeSpec.model_validate({"tcp": {"port": 1}, **fields})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def step(clock: RecordingClock) -> None:
    """Let the runner reach its next sleep, then move time exactly to that sleep's deadline."""
    await settle()
    assert clock.sleeping == 1, "the runner should be sleeping"
    _now, deadline = clock.sleeps[-1]
    clock.advance(deadline - clock.now())
    await settle()


async def drive(runner: ProbeRunner, clock: RecordingClock, steps: int, **callbacks: Any) -> None:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(runner.run(callbacks.pop("on_transition", lambda t: None), **callbacks))
        for _ in range(steps):
            await step(clock)
        await settle()
        task.cancel()


async def test_fast_cadence_doubles_until_period() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [False])
    runner = ProbeRunner("web/0", spec(period=0.5, failure_threshold=10_000), check, clock)
    await drive(runner, clock, 9)
    assert clock.delays[:9] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5, 0.5])
    assert check.calls[:4] == pytest.approx([0.0, 0.01, 0.03, 0.07])


async def test_initial_delay_comes_first() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [False])
    runner = ProbeRunner("web/0", spec(period=1, initial_delay=2, failure_threshold=100), check, clock)
    await drive(runner, clock, 3)
    assert clock.delays[:3] == pytest.approx([2.0, 0.01, 0.02])
    assert check.calls[:3] == pytest.approx([2.0, 2.01, 2.03])


async def test_period_cadence_after_first_pass() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [False, False, True, False, False, True])
    runner = ProbeRunner("web/0", spec(period=3, failure_threshold=100), check, clock)
    await drive(runner, clock, 7)
    # Two fast retries, then a pass: from then on every period, failing or not.
    assert clock.delays[:7] == pytest.approx([0.01, 0.02, 3.0, 3.0, 3.0, 3.0, 3.0])


async def test_custom_fast_start() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [False])
    runner = ProbeRunner("w", spec(period=1, failure_threshold=100), check, clock, fast_start=0.1)
    await drive(runner, clock, 5)
    assert clock.delays[:5] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])


async def test_thresholds_produce_exactly_the_expected_transitions() -> None:
    clock = RecordingClock()
    script = list("FFFFTTTFFFTFTT")
    check = ScriptedCheck(clock, [s == "T" for s in script] + [True])
    runner = ProbeRunner("web/0", spec(period=1, success_threshold=2, failure_threshold=3), check, clock)
    transitions: list[ProbeTransition] = []
    statuses: list[bool | None] = []

    def on_result(result: ProbeResult) -> None:
        statuses.append(runner.status)

    await drive(runner, clock, len(script) - 1, on_transition=transitions.append, on_result=on_result)
    assert len(check.calls) == len(script)
    assert [(t.healthy, t.consecutive, t.result.message) for t in transitions] == [
        (False, 3, "attempt 3: fail"),
        (True, 2, "attempt 6: pass"),
        (False, 3, "attempt 10: fail"),
        (True, 2, "attempt 14: pass"),
    ]
    # on_result sees the status before that attempt's transition; it starts unknown.
    assert statuses[:3] == [None, None, None]
    assert statuses[3] is False
    assert runner.status is True


async def test_unknown_status_until_a_threshold_is_reached() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [False, False, True])
    runner = ProbeRunner("w", spec(period=1, success_threshold=2, failure_threshold=3), check, clock)
    transitions: list[ProbeTransition] = []
    await drive(runner, clock, 2, on_transition=transitions.append)
    assert transitions == []
    assert runner.status is None
    assert runner.passed_once


async def test_first_success_is_healthy_with_default_thresholds() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [True])
    runner = ProbeRunner("w", spec(period=1), check, clock)
    transitions: list[ProbeTransition] = []
    await drive(runner, clock, 3, on_transition=transitions.append)
    assert [(t.healthy, t.consecutive) for t in transitions] == [(True, 1)]
    assert clock.delays[:3] == [1.0, 1.0, 1.0]


async def test_on_result_runs_before_on_transition() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [True])
    runner = ProbeRunner("w", spec(period=1), check, clock)
    order: list[str] = []
    await drive(
        runner,
        clock,
        1,
        on_transition=lambda t: order.append("transition"),
        on_result=lambda r: order.append("result"),
    )
    assert order[:3] == ["result", "transition", "result"]


async def test_rerun_starts_from_unknown() -> None:
    clock = RecordingClock()
    check = ScriptedCheck(clock, [True, True, False])
    runner = ProbeRunner("w", spec(period=1, failure_threshold=5), check, clock)
    await drive(runner, clock, 1)
    assert runner.status is True
    await drive(runner, clock, 0)
    assert runner.status is None
    assert not runner.passed_once


async def test_hanging_check_is_bounded_by_spec_timeout() -> None:
    clock = RecordingClock()

    async def hangs() -> ProbeResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    runner = ProbeRunner("web/0 readiness", spec(period=1, timeout=0.05, failure_threshold=1), hangs, clock)
    transitions: list[ProbeTransition] = []
    changed = asyncio.Event()

    def on_transition(transition: ProbeTransition) -> None:
        transitions.append(transition)
        changed.set()

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(runner.run(on_transition))
        await changed.wait()
        task.cancel()
    [transition] = transitions
    assert not transition.healthy
    assert transition.result.message == "web/0 readiness: check ignored its timeout of 0.05s (cancelled)"
    assert transition.result.latency_s == 0.0  # FakeClock time does not move on its own


async def test_raising_check_is_a_failed_attempt() -> None:
    clock = RecordingClock()

    async def raises() -> ProbeResult:
        raise RuntimeError("boom")

    runner = ProbeRunner("w", spec(period=1, failure_threshold=1), raises, clock)
    results: list[ProbeResult] = []
    await drive(runner, clock, 0, on_result=results.append)
    assert results[0] == ProbeResult(False, "w: check raised RuntimeError: boom", 0.0)
    assert runner.status is False


async def test_callback_errors_propagate() -> None:
    clock = RecordingClock()
    runner = ProbeRunner("w", spec(period=1), ScriptedCheck(clock, [True]), clock)

    def broken(t: ProbeTransition) -> None:
        raise LookupError("supervisor bug")

    with pytest.raises(LookupError, match="supervisor bug"):
        await runner.run(broken)


def test_rejects_non_positive_fast_start() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="fast_start"):
        ProbeRunner("w", spec(), ScriptedCheck(clock, [True]), clock, fast_start=0)
