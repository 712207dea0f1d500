"""Autoscaling: replica counts that follow a measured figure, with hysteresis and cooldowns.

The decision is pure (:func:`decide`): Kubernetes' HPA rule, ``desired = ceil(current x value /
target)``, ignored while ``value`` is within ``TOLERANCE`` of ``target`` (hysteresis), clamped to
``[min, max]``, and held back by the cooldowns: a scale-up waits ``scale_up_cooldown`` after the last
change, a scale-down ``scale_down_cooldown`` after the last change *and* uses the highest
recommendation seen during that window (so one quiet sample does not shed replicas). The orchestrator
measures, calls :func:`decide` every ``interval`` and applies the result through ``scale``; a
scale-up that does not fit the machine waits for resources like any start (its reason shows in
``status``), and no further scale-up is decided while replicas still wait.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from deploy_code.config.model import AutoscaleSpec

__all__ = ["TOLERANCE", "AutoscaleState", "Decision", "decide"]

TOLERANCE = 0.1  # |value / target - 1| below this changes nothing


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: ``new`` replicas (== current when nothing changes) and why."""

    new: int
    reason: str


@dataclass(slots=True)
class AutoscaleState:
    """What one service's autoscaler remembers between evaluations (bounded)."""

    last_change: float = -math.inf
    # (time, recommendation) over the scale-down window; one entry per evaluation, trimmed by age.
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=10_000))


def decide(
    spec: AutoscaleSpec,
    state: AutoscaleState,
    current: int,
    value: float | None,
    now: float,
    *,
    waiting: int = 0,
) -> Decision:
    """The replica count for ``current`` replicas measuring ``value`` at ``now``.

    Args:
        spec: the service's ``autoscale``.
        state: this service's memory (updated here: the recommendation window, the last change).
        current: replicas now (desired count).
        value: the measured figure; None when nothing could be measured (no ready replica, no traffic).
        now: monotonic seconds.
        waiting: replicas placed but still waiting for resources (no scale-up while there are any).
    """
    if value is None:
        base = max(spec.min, min(spec.max, current))
        return Decision(base, "no measurement" if base == current else "clamped to min/max")
    ratio = value / spec.target
    want = current if abs(ratio - 1.0) <= TOLERANCE else math.ceil(max(current, 1) * ratio - 1e-9)
    want = max(spec.min, min(spec.max, want))
    window = spec.scale_down_cooldown
    state.recent.append((now, want))
    while state.recent and state.recent[0][0] < now - window:
        state.recent.popleft()
    figures = f"{value:.3g} against target {spec.target:g}"
    if want > current:
        if waiting:
            return Decision(current, f"{figures}: {waiting} replica(s) still wait for resources")
        if now - state.last_change < spec.scale_up_cooldown:
            return Decision(current, f"{figures}: in scale-up cooldown")
        state.last_change = now
        return Decision(want, f"{figures}: scale up")
    if want < current:
        stable = max(w for _, w in state.recent)  # the highest recommendation of the window
        if now - state.last_change < window or stable >= current:
            return Decision(current, f"{figures}: in scale-down cooldown")
        state.last_change = now
        return Decision(stable, f"{figures}: scale down")
    return Decision(current, f"{figures}: within {TOLERANCE:.0%} of target")
