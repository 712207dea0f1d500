"""Changing a running deployment: ``apply`` (diff, then per service add / remove / scale / roll out)
and ``rollback``.

Strategies, per service (``deploy.strategy``):

* ``rolling``: ``max_surge`` new replicas start beside the old ones; once they are ready, as many old
  ones are drained and stopped (``max_unavailable`` old ones may go first). The old version serves
  until its replacement is ready, through the front port when the service exposes one.
* ``blue-green``: the whole new set starts on new ports, kept out of the front ports (gated); when every
  one is ready, traffic moves to them at once and the old set drains and stops.
* ``recreate``: stop all, start all (a gap; the only way for a service with a fixed port, which two
  versions cannot hold at once: rolling and blue-green fall back to it there).

A rollout fails when a new replica fails, crashes or is not ready within ``deploy.timeout``. Then it
is rolled back: the new replicas stop, the old spec comes back, replaced old replicas are started
again, and every service this ``apply`` had already changed is rolled back too (newest first). The
deployment row ends ``rolled_back``; the old version kept serving throughout (rolling, blue-green).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deploy_code.config import Project
from deploy_code.config.model import ServiceSpec
from deploy_code.errors import ConfigError, DeployCodeError, ErrorCode, PlacementError
from deploy_code.events import DeploymentFinished, DeploymentStarted, ReplicaState
from deploy_code.scheduling import Plan, check, make_graph
from deploy_code.scheduling.diff import Change, diff, settings_changed

if TYPE_CHECKING:
    from deploy_code.supervisor.orchestrator import Orchestrator
    from deploy_code.supervisor.replica import Replica
    from deploy_code.supervisor.service import ServiceRuntime

__all__ = ["ApplyResult", "RolloutFailed", "apply", "wait_ready"]

log = logging.getLogger("deploy_code.rollout")
S = ReplicaState
POLL_S = 0.05  # readiness is read from replica states; a bounded poll until the rollout deadline


class RolloutFailed(Exception):
    """A service's new replicas did not get ready; the message says which and why."""


@dataclass(slots=True)
class ApplyResult:
    """What ``apply`` did: ``outcome`` is ready, rolled_back or unchanged; ``changes`` one line each."""

    outcome: str
    changes: list[str] = field(default_factory=list)
    message: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain data for the API."""
        return {
            "outcome": self.outcome,
            "changes": list(self.changes),
            "message": self.message,
            "duration_s": round(self.duration_s, 3),
        }


async def wait_ready(orch: Orchestrator, reps: list[Replica], timeout: float) -> None:
    """Return once every replica is ready.

    Raises:
        RolloutFailed: one failed or crashed (restarted), or they were not all ready within ``timeout``.
    """
    deadline = orch.clock.now() + timeout
    while True:
        bad = [r for r in reps if r.state in (S.FAILED, S.BACKOFF) or r.restarts > 0]
        if bad:
            raise RolloutFailed(f"{bad[0].id} {bad[0].state}: {bad[0].reason}")
        if all(r.state == S.READY for r in reps):
            return
        if orch.clock.now() >= deadline:
            late = ", ".join(f"{r.id} {r.state}" for r in reps if r.state != S.READY)
            raise RolloutFailed(f"not ready within {timeout:g}s: {late}")
        await asyncio.sleep(POLL_S)


def _strategy(spec: ServiceSpec) -> str:
    fixed = any(v != "auto" for v in spec.ports.values())
    return "recreate" if fixed else spec.deploy.strategy


async def roll(orch: Orchestrator, svc: ServiceRuntime, new: ServiceSpec) -> None:
    """Replace ``svc``'s replicas by ``new.replicas`` replicas of ``new``; roll back on failure.

    Raises:
        RolloutFailed: the new replicas did not get ready; the old version is back.
    """
    old_spec = svc.spec
    old = [svc.replicas[i] for i in sorted(svc.replicas)]
    strategy = _strategy(new)
    timeout = new.deploy.timeout
    svc.spec = new
    started: list[Replica] = []
    stopped = 0  # old replicas already stopped (to start again on rollback)
    try:
        if strategy == "blue-green":
            started = orch._add_replicas(svc, new.replicas, gated=True)
            await wait_ready(orch, started, timeout)
            orch.ungate(started)
            await orch._retire(old)
        elif strategy == "recreate":
            await orch._retire(old)
            stopped = len(old)
            started = orch._add_replicas(svc, new.replicas)
            await wait_ready(orch, started, timeout)
        else:
            surge, unavailable = new.deploy.max_surge, new.deploy.max_unavailable
            remaining = list(old)
            while len(started) < new.replicas:
                first = remaining[:unavailable] if unavailable else []
                if first:
                    remaining = remaining[len(first) :]
                    await orch._retire(first)
                    stopped += len(first)
                batch = orch._add_replicas(svc, min(max(1, surge + len(first)), new.replicas - len(started)))
                started += batch
                await wait_ready(orch, batch, timeout)
                extra = max(0, len(started) + len(remaining) - new.replicas)
                if extra:
                    victims, remaining = remaining[:extra], remaining[extra:]
                    await orch._retire(victims)
                    stopped += len(victims)
            if remaining:
                await orch._retire(remaining)
        svc.desired = new.replicas
        svc.refresh()
    except RolloutFailed:
        log.warning("rollout of %s failed: rolling back", svc.name)
        still = {r.id for r in svc.replicas.values()}
        await orch._retire([r for r in started if r.id in still])
        svc.spec = old_spec
        if stopped:
            back = orch._add_replicas(svc, stopped)
            try:
                await wait_ready(orch, back, old_spec.deploy.timeout)
            except RolloutFailed as exc:  # the old version no longer starts either: say so, keep going
                log.error("rollback of %s did not get ready: %s", svc.name, exc)
        svc.desired = old_spec.replicas
        svc.refresh()
        raise


async def _add_service(orch: Orchestrator, name: str, spec: ServiceSpec) -> ServiceRuntime:
    from deploy_code.supervisor.service import ServiceRuntime

    svc = ServiceRuntime(orch, name, spec)
    orch.services[name] = svc
    orch._add_replicas(svc, spec.replicas)
    await orch._open_fronts_of(name)
    orch._spawn_starter(svc)
    await wait_ready(orch, list(svc.replicas.values()), spec.deploy.timeout)
    return svc


async def _remove_service(orch: Orchestrator, name: str) -> None:
    svc = orch.services[name]
    await orch._retire(list(svc.replicas.values()))
    await orch._close_fronts_of(name)
    del orch.services[name]


async def apply(orch: Orchestrator, new: Project, *, dry_run: bool = False) -> ApplyResult:
    """Bring the running deployment to ``new``: only what changed is redeployed.

    Raises:
        DeployCodeError: E002 when ``settings``/``pools``/``api`` changed (they need down and up) or
            the file is invalid for this machine (E004...); nothing changes then.
    """
    t0 = orch.clock.now()
    changes = diff(orch.project.spec, new.spec)
    lines = [c.describe() for c in changes]
    blocked = settings_changed(orch.project.spec, new.spec)
    if blocked:
        raise ConfigError(
            f"apply cannot change {', '.join(blocked)} of a running deployment",
            location=new.locate(blocked[0]),
            hint="run `deploy-code down` then `up` for these",
        )
    diags = check(new, orch.ledger.capacity)
    if diags:
        raise PlacementError.from_diagnostics(diags)
    if dry_run or not changes:
        return ApplyResult("unchanged" if not changes else "planned", lines)
    old_project = orch.project
    orch.project = new
    orch.publish(DeploymentStarted(new.spec.name, orch.clock.wall_time()))
    done: list[tuple[ServiceRuntime, ServiceSpec]] = []  # rolled services and their old spec
    added: list[str] = []
    outcome, message = "ready", ""
    try:
        # Removed services go first (reverse start order: dependants before what they use), which
        # also frees their resources for what comes next.
        for ch in sorted(changes, key=lambda c: c.kind != "removed"):
            await _apply_one(orch, ch, new, done, added)
    except (RolloutFailed, DeployCodeError) as exc:
        outcome = "rolled_back"
        message = f"{exc}"
        orch.project = old_project
        for name in reversed(added):
            await _remove_service(orch, name)
        for svc, spec in reversed(done):
            try:
                await roll(orch, svc, spec)
            except RolloutFailed as again:
                log.error("rolling %s back failed too: %s", svc.name, again)
    # Stop order and dependants now follow the file that runs (ports of the old plan's replicas were
    # released as they were retired; what runs is released at close from the services themselves).
    orch.plan = Plan(make_graph(orch.project), orch.plan.waves if orch.plan else (), {})
    orch.start_autoscalers()
    duration = orch.clock.now() - t0
    orch.publish(DeploymentFinished(new.spec.name, outcome, duration, orch.clock.wall_time(), message))
    if outcome == "ready":
        orch.config_text = new.path.read_text() if new.path.exists() else orch.config_text
        orch._snapshot()
    return ApplyResult(outcome, lines, message, duration)


async def _apply_one(
    orch: Orchestrator,
    ch: Change,
    new: Project,
    done: list[tuple[ServiceRuntime, ServiceSpec]],
    added: list[str],
) -> None:
    name = ch.service
    if ch.kind == "removed":
        await _remove_service(orch, name)
        return
    spec = new.spec.services[name]
    if ch.kind == "added":
        await _add_service(orch, name, spec)
        added.append(name)
        return
    svc = orch.services[name]
    if ch.kind == "scaled":
        await orch.scale(name, spec.replicas)
        svc.spec = spec
        return
    if ch.kind == "in-place":
        svc.spec = spec
        return
    old_spec = svc.spec
    try:
        await roll(orch, svc, spec)
    except RolloutFailed as exc:
        raise RolloutFailed(f"{name}: {exc}") from None
    done.append((svc, old_spec))


def snapshot_config(orch: Orchestrator, deployment: int | None) -> str:
    """The file text to roll back to: the snapshot of ``deployment``, else the newest snapshot whose
    file differs from the running one.

    Raises:
        DeployCodeError: S006 when there is no such snapshot.
    """
    current = orch.config_text
    for info in orch.store.snapshots():
        if deployment is not None and info.deployment_id != deployment:
            continue
        body = orch.store.snapshot(info.id)
        text = str(body.get("config", "")) if body else ""
        if deployment is not None or (text and text != current):
            return text
    what = f"deployment {deployment}" if deployment is not None else "an earlier version"
    raise DeployCodeError(f"no snapshot of {what} to roll back to", code=ErrorCode.E009)
