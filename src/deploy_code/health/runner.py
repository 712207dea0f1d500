"""``ProbeRunner``: drives one check on the cadence of ``cadence.next_delay`` and reports transitions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploy_code.clock import sleep_until_or
from deploy_code.health.cadence import next_delay
from deploy_code.health.result import ProbeResult, short

if TYPE_CHECKING:
    from collections.abc import Callable

    from deploy_code.clock import Clock
    from deploy_code.config.model import ProbeSpec
    from deploy_code.health.result import Check

__all__ = ["BACKSTOP_GRACE_S", "ProbeRunner", "ProbeTransition"]

# How long past ``spec.timeout`` the runner waits before cancelling a check that ignores its timeout.
BACKSTOP_GRACE_S = 0.05


@dataclass(frozen=True, slots=True)
class ProbeTransition:
    """The probe's verdict changed.

    Attributes:
        healthy: the new status.
        result: the attempt that crossed the threshold.
        consecutive: how many results in a row agreed, that one included.
    """

    healthy: bool
    result: ProbeResult
    consecutive: int


class ProbeRunner:
    """Runs one probe of one replica until cancelled.

    The status starts unknown (``None``). It becomes healthy after ``spec.success_threshold`` passes in
    a row and unhealthy after ``spec.failure_threshold`` failures in a row; each change is reported
    once. Before the first pass the runner probes fast (``fast_start``, doubling up to
    ``spec.period``) so that a ready replica is seen within milliseconds, and a check with a ``hint()``
    coroutine (tcp and http: their port started listening) cuts that wait short; after it, every
    ``spec.period``. It sleeps only through ``clock.sleep_until``, so a ``FakeClock`` drives it in
    tests. Each check bounds itself by ``spec.timeout``; the runner adds a real-time backstop
    (``asyncio.timeout``) of ``spec.timeout + BACKSTOP_GRACE_S`` for checks that do not.

    Args:
        name: a label for messages, e.g. ``"web/0 readiness"``.
        spec: cadence, timeout and thresholds.
        check: the bound check (see ``make_check``).
        clock: the orchestrator's clock.
        fast_start: the first delay of the fast phase, in seconds.

    Raises:
        ValueError: ``fast_start`` is not positive.
    """

    def __init__(
        self, name: str, spec: ProbeSpec, check: Check, clock: Clock, *, fast_start: float = 0.01
    ) -> None:
        if not fast_start > 0:
            raise ValueError(f"fast_start must be positive, got {fast_start!r}")
        self.name = name
        self.spec = spec
        self.check = check
        self.clock = clock
        self.fast_start = fast_start
        self.status: bool | None = None
        self.passed_once = False
        self.last_result: ProbeResult | None = None
        self._successes = 0
        self._failures = 0

    async def run(
        self,
        on_transition: Callable[[ProbeTransition], None],
        on_result: Callable[[ProbeResult], None] | None = None,
    ) -> None:
        """Probe until cancelled, starting from an unknown status.

        Args:
            on_transition: called (synchronously, on the loop) when the status changes.
            on_result: called with every attempt's result, before ``on_transition`` for that attempt.

        Exceptions raised by the callbacks propagate and end the run.
        """
        self.status = None
        self.passed_once = False
        self.last_result = None
        self._successes = self._failures = 0
        spec = self.spec
        if spec.initial_delay > 0:
            await self.clock.sleep_until(self.clock.now() + spec.initial_delay)
        elif getattr(self.check, "hint", None) is not None:
            # A port cannot accept before its process listens: with a hint, the first attempt waits for
            # it (or for the first fast delay), instead of failing against a process that just started.
            await self._pause(self.fast_start)
        attempt = 0
        while True:
            result = await self._attempt()
            self._record(result, on_transition, on_result)
            delay = next_delay(
                passed_once=self.passed_once,
                attempt=attempt,
                period=spec.period,
                fast_start=self.fast_start,
            )
            attempt += 1
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay``; before the first pass, wake early when the check's hint fires."""
        hint = None if self.passed_once else getattr(self.check, "hint", None)
        if hint is None:
            await self.clock.sleep_until(self.clock.now() + delay)
            return
        await sleep_until_or(self.clock, self.clock.now() + delay, hint())

    async def _attempt(self) -> ProbeResult:
        start = self.clock.now()
        try:
            # A backstop: checks bound themselves (and say more about what timed out), but a misbehaving
            # one must not stall the runner. The grace lets a check's own timeout fire first.
            async with asyncio.timeout(self.spec.timeout + BACKSTOP_GRACE_S):
                return await self.check()
        except TimeoutError:
            message = f"{self.name}: check ignored its timeout of {self.spec.timeout:g}s (cancelled)"
        except Exception as exc:  # a check should never raise; if one does, it is a failed attempt
            message = f"{self.name}: check raised {type(exc).__name__}: {exc}"
        return ProbeResult(False, short(message), self.clock.now() - start)

    def _record(
        self,
        result: ProbeResult,
        on_transition: Callable[[ProbeTransition], None],
        on_result: Callable[[ProbeResult], None] | None,
    ) -> None:
        self.last_result = result
        if on_result is not None:
            on_result(result)
        if result.ok:
            self.passed_once = True
            self._successes += 1
            self._failures = 0
            if self._successes >= self.spec.success_threshold and self.status is not True:
                self.status = True
                on_transition(ProbeTransition(True, result, self._successes))
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.spec.failure_threshold and self.status is not False:
                self.status = False
                on_transition(ProbeTransition(False, result, self._failures))
