"""The orchestrator: owns the plan, the replicas, and the order in which they start and stop.

One asyncio loop owns every mutable structure here (ledger, ports, replica tables); mutations are
synchronous and never hold anything across an ``await``. The task tree is orchestrator -> service
starters and replica tasks, all in one TaskGroup that ``down`` drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_code.clock import Clock, SystemClock, sleep_until_or
from deploy_code.config import InterpolationContext, Project, ServiceAddress
from deploy_code.config.model import AutoscaleSpec, ServiceSpec
from deploy_code.errors import DeployCodeError, ErrorCode, PlacementError, SupervisionError
from deploy_code.events import (
    DeploymentFinished,
    DeploymentStarted,
    Event,
    EventSink,
    LeaseExpired,
    LogProblem,
    ReplicaState,
    ScaleDecision,
)
from deploy_code.health import HttpClientFactory, ListenWatcher
from deploy_code.metrics import (
    FrontSample,
    History,
    LevelSample,
    ProcessSampler,
    Recorder,
    ReplicaSample,
    ServiceSample,
    Snapshot,
    record_snapshot,
)
from deploy_code.network import FrontPort, ProxySettings
from deploy_code.ports import PortAllocator
from deploy_code.resources import LOCAL_NODE, Ledger
from deploy_code.runtime import (
    LocalBackend,
    LogFollower,
    ProcessHandle,
    ProcessIdentity,
    marked_groups,
    port_is_free,
)
from deploy_code.scheduling import (
    Placement,
    Plan,
    effective_capacity,
    place,
    plan,
    release_plan,
)
from deploy_code.state import StateStore
from deploy_code.supervisor.admission import Admission, derive_limit
from deploy_code.supervisor.alerts import AlertEngine, ServiceHealth, WebhookSender, evaluate_every
from deploy_code.supervisor.autoscale import AutoscaleState, decide
from deploy_code.supervisor.registry import Registry
from deploy_code.supervisor.replica import MARKER_VAR, Replica, spec_hash
from deploy_code.supervisor.service import ServiceRuntime
from deploy_code.supervisor.timeouts import DEFAULT_S as DEFAULT_READY_S
from deploy_code.supervisor.timeouts import LearnedTimeout, learn_ready_timeouts

__all__ = ["DeployOutcome", "Orchestrator"]

log = logging.getLogger("deploy_code.orchestrator")
MAX_REPLICAS = 10_000  # per service, as the file allows
FOLLOW_QUEUE = 1024  # lines buffered per `logs -f` client; a slow client loses the oldest lines


@dataclass(frozen=True, slots=True)
class DeployOutcome:
    """How a deployment ended up: ``ready`` or ``failed``, with the failing services and why."""

    outcome: str
    duration_s: float
    failures: tuple[tuple[str, str], ...] = ()


class Orchestrator:
    """Deploys a project and supervises it until :meth:`request_down`.

    Args:
        project: the loaded file.
        backend: where processes run.
        store: the state directory's SQLite store.
        clock: time source.
        selected: services to deploy (plus dependencies); None for all.
        sinks: extra event consumers (each must not block).
    """

    def __init__(
        self,
        project: Project,
        *,
        backend: LocalBackend,
        store: StateStore,
        clock: Clock | None = None,
        selected: Iterable[str] | None = None,
        sinks: Iterable[EventSink] = (),
    ) -> None:
        self.project = project
        self.settings = project.spec.settings
        self.backend = backend
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.selected = list(selected) if selected else None
        self.webhooks = WebhookSender(project.spec.alerts, project=project.spec.name, clock=self.clock)
        self.recorder = Recorder(self.clock)  # running totals and histograms for /metrics
        self.sinks: list[EventSink] = [store, self.webhooks, self.recorder, *sinks]
        self.procs = ProcessSampler(self.clock)  # CPU / memory / fds per replica, at most once a second
        self.history = History()  # 1 s for 10 min, 1 min for 24 h; fed only while someone watches
        self._registry: Any = None  # prometheus_client registry, built on the first scrape
        self._scraped = _Scraped()
        self._scrape_lock = asyncio.Lock()
        self._apply_lock = asyncio.Lock()  # one apply / rollback at a time
        self._autoscalers: dict[str, asyncio.Task[None]] = {}  # one per autoscaled service
        self._learned_ready: dict[str, LearnedTimeout] = {}  # timeouts.ready: auto, per service
        try:
            self.config_text = project.path.read_text()  # the file as deployed, for snapshots
        except OSError:
            self.config_text = ""
        self._loop_lag = 0.0
        self._watched_until = 0.0  # `top` / the dashboard keep the history sampler running
        self._log_problems: dict[str, str] = {}  # replica log path -> why it cannot be rotated
        self.state_dir = project.state_dir
        self.logs_dir = project.state_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_follower = LogFollower()
        self.http = HttpClientFactory()
        self.listen = ListenWatcher()
        cores = os.cpu_count() or 1
        self.admission = Admission(
            derive_limit(cores, os.getloadavg()[0], self.settings.max_parallel),
            self.clock,
            adaptive=self.settings.max_parallel == "auto",
            cores=cores,
        )
        self.capacity = backend.capacity(str(self.state_dir))
        self.ledger = Ledger(effective_capacity(project, self.capacity.total))
        low, high = self.settings.port_bounds
        self.ports = PortAllocator(
            low, high, quarantine_s=self.settings.port_quarantine, is_free=self._port_free
        )
        self.services: dict[str, ServiceRuntime] = {}
        # Front ports of exposed services: service -> port name -> proxy (bounded by the file).
        self.fronts: dict[str, dict[str, FrontPort]] = {}
        self.registry = Registry()
        self._unsettled = 0  # services not yet healthy or completed
        self._failures: list[tuple[str, str]] = []  # one entry per failed service: bounded
        self.plan: Plan | None = None
        self.started_wall = self.clock.wall_time()
        self._t0 = self.clock.now()
        self._environ = dict(os.environ)
        self._outcome: asyncio.Future[DeployOutcome] | None = None
        self._shutdown = asyncio.Event()
        self._outcome_made = asyncio.Event()  # set once run() has created the outcome future
        self._freed = asyncio.Event()  # pulsed (set, then replaced) whenever a booking is released
        self._down_timeout: float | None = None
        self._finished = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._adopted: dict[str, ProcessHandle] = {}
        self._orphans: list[ProcessHandle] = []
        # Tasks to cancel once everything is stopped (service starters still waiting on dependencies,
        # replica tasks); each one removes itself when done, so the set is bounded by the replicas.
        self._tasks: set[asyncio.Task[None]] = set()
        self.phase = "starting"

    # --- helpers used by replicas --------------------------------------------------------------
    def publish(self, event: Event) -> None:
        """Fan an event out to every sink."""
        for sink in self.sinks:
            sink.publish(event)

    def _port_free(self, port: int) -> bool:
        # The OS has the last word: a port another program holds is skipped, not handed out.
        return port_is_free(self.settings.host, port)

    def interpolation_context(self, service: str, index: int, ports: dict[str, int]) -> InterpolationContext:
        """What ``${...}`` may refer to for one replica."""
        deps: dict[str, ServiceAddress] = {}
        for dep in self.project.spec.services[service].depends_on:
            rt = self.services.get(dep)
            first = rt.replicas.get(0) if rt else None
            dep_ports = dict(first.ports) if first else {}
            # An exposed port resolves to its front port: one address through restarts and scaling.
            dep_ports.update({p: fp.port for p, fp in self.fronts.get(dep, {}).items()})
            deps[dep] = ServiceAddress(self.settings.host, dep_ports)
        return InterpolationContext(environ=self._environ, ports=ports, services=deps, replica=index)

    def working_dir(self, service: str) -> str:
        """The service's working directory (relative to the file's directory)."""
        wd = self.project.spec.services[service].working_dir
        return str((self.project.base_dir / wd).resolve() if wd else self.project.base_dir)

    def on_service_settled(self, svc: ServiceRuntime) -> None:
        """A service is deployed (healthy or completed); called once per service."""
        self._unsettled -= 1
        self._settle_outcome()

    def on_service_failed(self, svc: ServiceRuntime) -> None:
        """A service failed; called once per service."""
        self._failures.append((svc.name, svc.failure))
        self._settle_outcome()

    def _settle_outcome(self) -> None:
        """Settle the deployment outcome once every service is settled or one failed (O(1))."""
        fut = self._outcome
        if fut is None or fut.done():
            return
        if self._failures:
            fut.set_result(DeployOutcome("failed", self.clock.now() - self._t0, tuple(self._failures)))
        elif self._unsettled <= 0 and self.services:
            fut.set_result(DeployOutcome("ready", self.clock.now() - self._t0))

    # --- adoption ------------------------------------------------------------------------------
    def _adopt_previous(self) -> dict[str, dict[str, int]]:
        """Re-adopt replicas recorded by an earlier orchestrator; stop the ones the file dropped."""
        wanted = self.project.spec.services
        ports: dict[str, dict[str, int]] = {}
        kept: dict[str, int] = {}
        # Lowest indices first: after a rollout a service's replicas may be numbered 2, 3 (the plan
        # keeps adopted indices, see scheduling.plan); at most `replicas` of them are kept.
        for rec in sorted(self.store.load_replicas(), key=lambda r: (r.service, r.index)):
            handle = self.backend.adopt(ProcessIdentity(rec.pid, rec.pgid, rec.start_time))
            svc = wanted.get(rec.service)
            keep = (
                handle is not None
                and svc is not None
                and kept.get(rec.service, 0) < svc.replicas
                and set(rec.ports) == set(svc.ports)
                # Started from another version of the service (a rollout was interrupted, or the
                # file changed while no orchestrator ran): replaced by the file's version.
                and (not rec.spec_hash or rec.spec_hash == spec_hash(svc))
            )
            if keep:
                kept[rec.service] = kept.get(rec.service, 0) + 1
            if keep and handle is not None:
                owner = f"{rec.service}.{rec.index}"
                self._adopted[owner] = handle
                ports[owner] = dict(rec.ports)
            else:
                self.store.delete_replica(rec.service, rec.index)
                if handle is not None:
                    self._orphans.append(handle)
        return ports

    async def _sweep_unrecorded(self) -> None:
        """Queue for stopping every marked process group that no record accounts for.

        A replica spawned moments before an earlier orchestrator died may have missed the store; it
        carries our marker all the same, so it is found here instead of running unmanaged.
        """
        known = {h.identity.pgid for h in self._adopted.values()} | {h.identity.pgid for h in self._orphans}
        found = await asyncio.to_thread(marked_groups, MARKER_VAR, str(self.state_dir))
        for ident in found:
            if ident.pgid in known:
                continue
            handle = self.backend.adopt(ident)
            if handle is not None:
                log.warning("stopping unrecorded replica process group %d", ident.pgid)
                self._orphans.append(handle)

    # --- main ----------------------------------------------------------------------------------
    async def run(self, on_outcome: Callable[[DeployOutcome], None] | None = None) -> DeployOutcome:
        """Deploy, report the outcome once through ``on_outcome``, then supervise until down.

        Raises:
            DeployCodeError: the plan could not be made (E004, S004, S001); nothing is left booked.
        """
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        self._outcome_made.set()
        self.publish(DeploymentStarted(self.project.spec.name, self.clock.wall_time()))
        assigned = self._adopt_previous()
        self._learn_timeouts()
        await self._sweep_unrecorded()
        if self._orphans:
            await asyncio.gather(*(o.stop(signal.SIGTERM, 5.0) for o in self._orphans))
            for orphan in self._orphans:
                orphan.close()
            self._orphans.clear()
        try:
            self._add_pools()
            self.plan = plan(
                self.project,
                self.ledger.capacity,
                self.ports,
                now=self.clock.now(),
                selected=self.selected,
                assigned=assigned,
            )
            await self._open_fronts()
        except DeployCodeError:
            for h in self._adopted.values():
                h.close()
            await self._close()
            raise
        for name in self.plan.graph.start_order():
            if name not in self.plan.placements:
                continue
            svc = ServiceRuntime(self, name, self.project.spec.services[name])
            for p in self.plan.placements[name]:
                rep = Replica(self, svc, p)
                svc.add(rep)
                self.registry.add(name, p.index, p.ports, rep.state, node=p.node)
            self.services[name] = svc
        self._unsettled = len(self.services)
        self.store.set_meta("pid", str(os.getpid()))
        self.store.set_meta("config", str(self.project.path))
        outcome: DeployOutcome | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for svc in self.services.values():
                    self._own(tg.create_task(self._start_service(svc), name=f"start:{svc.name}"))
                if not self.services:
                    self._outcome.set_result(DeployOutcome("ready", 0.0))
                self.start_autoscalers()
                outcome_task = tg.create_task(self._report(on_outcome))
                leases_task = tg.create_task(self._keep_leases(), name="leases")
                background = [
                    leases_task,
                    tg.create_task(self._observe(), name="observe"),
                    tg.create_task(self.webhooks.run(), name="webhooks"),
                    tg.create_task(
                        evaluate_every(
                            AlertEngine(self.project.spec.alerts), self.clock, self._health, self.publish
                        ),
                        name="alerts",
                    ),
                ]
                await self._shutdown.wait()
                self.phase = "stopping"
                await self._stop_all(self._down_timeout)
                outcome_task.cancel()
                for task in background:
                    task.cancel()
                for task in tuple(self._tasks):
                    task.cancel()
        finally:
            self.phase = "stopped"
            if self._outcome.done() and not self._outcome.cancelled():
                outcome = self._outcome.result()
            await self._close()
            self._finished.set()
        return outcome or DeployOutcome("cancelled", self.clock.now() - self._t0)

    async def _report(self, on_outcome: Callable[[DeployOutcome], None] | None) -> None:
        assert self._outcome is not None
        result = await asyncio.shield(self._outcome)
        self.phase = "running"
        self.publish(
            DeploymentFinished(
                self.project.spec.name,
                result.outcome,
                result.duration_s,
                self.clock.wall_time(),
                "; ".join(f"{n}: {why}" for n, why in result.failures),
            )
        )
        if result.outcome == "ready":
            self._snapshot()
        if on_outcome is not None:
            on_outcome(result)

    async def _start_service(self, svc: ServiceRuntime) -> None:
        # Each service waits for its own dependencies only: no wave barrier.
        for dep, cond in svc.spec.depends_on.items():
            dsvc = self.services[dep]
            met = dsvc.condition(cond)
            if not met.is_set():
                waits = [asyncio.ensure_future(met.wait()), asyncio.ensure_future(dsvc.failed.wait())]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
            if not met.is_set():
                for rep in svc.replicas.values():
                    rep._set(
                        ReplicaState.FAILED,
                        f"not started: dependency {dep!r} failed (E007): {dsvc.failure}",
                    )
                return
        svc.deploy_started = self.clock.now()
        if not await self._book(list(svc.replicas.values())):
            return
        svc.launched = True
        for rep in svc.replicas.values():
            if rep.task is None:  # `scale` may have launched some while this waited for capacity
                self._launch(rep)
        svc.refresh()  # a service with no replicas is settled at once

    async def _book(self, reps: list[Replica]) -> bool:
        """Book the replicas' resources, all or nothing; wait while they do not fit what is free now.

        The wait ends when another booking is released (a replica completed, failed or stopped) and
        the batch fits, or after the service's ``timeouts.schedule``: then every replica fails with
        E004. Returns whether they are booked.
        """
        todo = [r for r in reps if not r.booked]
        if not todo:
            return True
        spec = todo[0].spec
        deadline = self.clock.now() + spec.timeouts.schedule
        while True:
            try:
                self.ledger.allocate_batch(
                    [(r.id, r.resources) for r in todo],
                    pool=spec.pool,
                    ttl=self.settings.lease_ttl,
                    now=self.clock.now(),
                )
            except PlacementError as exc:
                left = deadline - self.clock.now()
                if left <= 0:
                    for r in todo:
                        r._set(
                            ReplicaState.FAILED,
                            f"E004 no room within {spec.timeouts.schedule:g}s: {exc.message}",
                        )
                    return False
                for r in todo:
                    r._set(ReplicaState.PENDING, f"waiting for resources ({left:.0f}s left): {exc.message}")
                await sleep_until_or(self.clock, deadline, self._freed.wait())
                continue
            for r in todo:
                r.booked = True
            return True

    async def _keep_leases(self) -> None:
        """Renew the lease of every booking whose replica task is alive; reap the rest.

        Runs every third of ``settings.lease_ttl``, so a live owner renews twice before its lease
        could lapse. A booking whose task ended without releasing it (a bug, or a task cancelled
        while its process ran) is not renewed: the reaper frees it and publishes ``LeaseExpired``.
        """
        period = self.settings.lease_ttl / 3
        while True:
            await self.clock.sleep_until(self.clock.now() + period)
            self.renew_and_reap()

    # --- observability ---------------------------------------------------------------------------
    async def _observe(self, period: float = 1.0) -> None:
        """Once a second: measure the event loop's lag (how late this wake-up is); while someone
        watches (``top``, the dashboard), also sample the replicas' processes into the history.
        Idle and unwatched it costs one timer wake-up a second."""
        deadline = self.clock.now()
        while True:
            deadline += period
            await self.clock.sleep_until(deadline)
            now = self.clock.now()
            self._loop_lag = max(0.0, now - deadline)
            self._check_logs()
            if now < self._watched_until:
                snap = self.metrics_snapshot()
                pids = [r.pid for r in snap.replicas if r.pid is not None]
                procs = await asyncio.to_thread(self.procs.sample, pids)
                record_snapshot(self.history, snap, procs, now)

    def _check_logs(self) -> None:
        """Publish a ``log.problem`` event when a replica log starts or stops failing to rotate."""
        now_failing = self.backend.log_problems()
        if now_failing == self._log_problems:
            return
        wall = self.clock.wall_time()
        for path, why in now_failing.items():
            if self._log_problems.get(path) is None:
                log.warning("replica log %s cannot be rotated: %s", path, why)
                self.publish(LogProblem(_service_of_log(path), path, why, False, wall))
        for path in self._log_problems.keys() - now_failing.keys():
            self.publish(LogProblem(_service_of_log(path), path, "rotation works again", True, wall))
        self._log_problems = now_failing

    def watch(self, seconds: float = 60.0) -> None:
        """Keep the history sampler running for ``seconds`` more (a `top` or dashboard client)."""
        self._watched_until = max(self._watched_until, self.clock.now() + seconds)

    def health_report(self) -> dict[str, object]:
        """Per service: healthy or not, ready / desired, and the replicas that are not ready with why.

        A service is healthy when every desired replica is ready, or when it ran to completion; the
        deployment is healthy when every service is.
        """
        services: dict[str, object] = {}
        healthy_all = True
        for name, svc in self.services.items():
            state = svc.state
            healthy = state == "completed" or (state == "ready" and svc.ready_count >= svc.desired)
            healthy_all = healthy_all and healthy
            problems = [
                {"id": r.id, "state": str(r.state), "reason": r.reason}
                for _, r in sorted(svc.replicas.items())
                if r.state not in (ReplicaState.READY, ReplicaState.COMPLETED)
            ]
            services[name] = {
                "healthy": healthy,
                "state": state,
                "ready": svc.ready_count,
                "desired": svc.desired,
                "restarts": sum(r.restarts for r in svc.replicas.values()),
                "not_ready": problems[:20],  # bounded: the first 20 are enough to act on
            }
        return {
            "healthy": healthy_all and self.phase == "running",
            "phase": self.phase,
            "services": services,
        }

    async def top(self) -> dict[str, object]:
        """Live per-replica CPU, memory, open files and restarts (``deploy-code top``, the dashboard).

        Samples the processes now (at most once a second, in a thread) and keeps the history sampler
        running for another minute, so the dashboard's plots fill while someone looks.
        """
        self.watch(60.0)
        now = self.clock.now()
        rows: list[dict[str, object]] = []
        pids: list[int] = []
        for name, svc in self.services.items():
            for idx in sorted(svc.replicas):
                r = svc.replicas[idx]
                pid = r.pid
                if pid is not None:
                    pids.append(pid)
                uptime = round(now - r.started_at, 1) if r.started_at and r.handle else None
                rows.append(
                    {
                        "id": r.id,
                        "service": name,
                        "index": idx,
                        "state": str(r.state),
                        "pid": pid,
                        "restarts": r.restarts,
                        "uptime_s": uptime,
                    }
                )
        procs = await asyncio.to_thread(self.procs.sample, pids)
        for row in rows:
            sample = procs.get(row["pid"]) if isinstance(row["pid"], int) else None
            row["cpu_percent"] = None if sample is None else sample.cpu_percent
            row["memory_bytes"] = None if sample is None else sample.memory_bytes
            row["open_files"] = None if sample is None else sample.open_files
        return {"at": self.clock.wall_time(), "replicas": rows}

    def history_series(self, keys: Iterable[str], since_s: float, resolution: float) -> dict[str, object]:
        """Points of the named history keys over the last ``since_s`` seconds (``Point(t, mean, max)``
        with ``t`` as wall time), for the dashboard's plots."""
        self.watch(60.0)
        now, wall = self.clock.now(), self.clock.wall_time()
        out: dict[str, object] = {}
        for key in keys:
            points = self.history.series(key, since=now - since_s, resolution=resolution)
            out[key] = [[round(wall - (now - p.t), 3), p.mean, p.max] for p in points]
        return {"keys": self.history_keys(), "series": out}

    def history_keys(self) -> list[str]:
        """Every key the history holds now (bounded by ``History.max_keys``)."""
        return self.history.keys()

    def metrics_snapshot(self) -> Snapshot:
        """Live state for the metrics collector: plain values, no I/O (MetricsSource)."""
        services: list[ServiceSample] = []
        replicas: list[ReplicaSample] = []
        for name, svc in self.services.items():
            restarts = 0
            for r in svc.replicas.values():
                restarts += r.restarts
                replicas.append(ReplicaSample(name, r.index, str(r.state), r.pid, r.restarts))
            services.append(ServiceSample(name, svc.state, svc.ready_count, svc.desired, restarts))
        levels: list[LevelSample] = []
        book = self.ledger.snapshot()
        allocated = self.ledger.allocated.to_dict()
        for dim, cap in self.ledger.capacity.to_dict().items():
            levels.append(LevelSample(LOCAL_NODE, None, dim, float(cap), float(allocated[dim])))
        pools = book.get("pools")
        if isinstance(pools, dict):
            for pool, doc in pools.items():
                for dim, cap in doc["limit"].items():
                    levels.append(
                        LevelSample(LOCAL_NODE, pool, dim, float(cap), float(doc["allocated"][dim]))
                    )
        fronts = [
            _front_sample(name, port_name, fp)
            for name, by_port in self.fronts.items()
            for port_name, fp in by_port.items()
        ]
        return Snapshot(services, replicas, levels, self.admission.waiting, self._loop_lag, fronts)

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition: the snapshot is taken here on the loop, rendered in a thread."""
        from deploy_code.metrics import build_registry, render

        async with self._scrape_lock:  # one scrape at a time: the source holds this scrape's snapshot
            self._scraped.snap = self.metrics_snapshot()
            if self._registry is None:
                self._registry = build_registry(self._scraped, self.recorder, self.procs)
            text: bytes = await asyncio.to_thread(render, self._registry)
            return text

    # --- autoscaling -------------------------------------------------------------------------------
    def start_autoscalers(self) -> None:
        """One autoscaler task per service with ``autoscale`` that has none running (at ``up``, and
        after an apply added a service or turned autoscaling on). Each ends with its service."""
        assert self._tg is not None
        for name, svc in self.services.items():
            spec = svc.spec.autoscale
            running = self._autoscalers.get(name)
            if spec is not None and (running is None or running.done()):
                task = self._tg.create_task(self._autoscale(name, spec), name=f"autoscale:{name}")
                self._autoscalers[name] = self._own(task)
        for name in [n for n, t in self._autoscalers.items() if t.done()]:
            del self._autoscalers[name]

    async def _autoscale(self, name: str, spec: AutoscaleSpec) -> None:
        """Every ``spec.interval``: measure, decide (``autoscale.decide``), publish the decision with
        its inputs, and scale. Runs until the deployment stops."""
        state = AutoscaleState()
        svc = self.services[name]
        previous: list[int] = []  # the latency histogram's cumulative counts at the last evaluation
        deadline = self.clock.now()
        while True:
            deadline += spec.interval
            await self.clock.sleep_until(deadline)
            if self.services.get(name) is not svc:
                return  # an apply removed the service
            if svc.spec.autoscale is None:
                return  # an apply turned autoscaling off
            spec = svc.spec.autoscale  # an apply may have changed it in place
            if not svc.launched or self.phase in ("stopping", "stopped") or self._apply_lock.locked():
                continue  # not started, shutting down, or an apply / rollback owns the counts now
            value = await self._measure(svc, spec.metric, previous)
            waiting = sum(1 for r in svc.replicas.values() if r.state == ReplicaState.PENDING)
            decision = decide(spec, state, svc.desired, value, self.clock.now(), waiting=waiting)
            if decision.new == svc.desired:
                continue
            self.publish(
                ScaleDecision(
                    name,
                    svc.desired,
                    decision.new,
                    spec.metric,
                    -1.0 if value is None else value,
                    spec.target,
                    decision.reason,
                    self.clock.wall_time(),
                )
            )
            try:
                await self.scale(name, decision.new)
            except DeployCodeError as exc:  # shutting down, or a placement that cannot be met
                log.warning("autoscale %s to %d: %s", name, decision.new, exc.message)

    async def _measure(self, svc: ServiceRuntime, metric: str, previous: list[int]) -> float | None:
        """The autoscaler's figure for ``svc``: mean CPU % of its ready replicas, open front-port
        connections per ready replica, or the p95 of the front port's upstream latency (ms) since the
        last evaluation. None when there is nothing to measure."""
        ready = [r for r in svc.replicas.values() if r.state == ReplicaState.READY and r.handle is not None]
        if not ready:
            return None
        if metric == "cpu":
            pids = [pid for r in ready if (pid := r.pid) is not None]
            procs = await asyncio.to_thread(self.procs.sample, pids)
            cpu = [p.cpu_percent for p in procs.values() if p.cpu_percent is not None]
            return sum(cpu) / len(cpu) if cpu else None
        fronts = list(self.fronts.get(svc.name, {}).values())
        if metric == "connections":
            return sum(fp.counters.connections_active for fp in fronts) / len(ready)
        counts: list[int] = []  # per bucket (the last is +Inf), summed over the service's front ports
        bounds: tuple[float, ...] = ()
        for fp in fronts:
            hist = fp.counters.upstream_first_byte
            bounds = hist.bounds
            if not counts:
                counts = [0] * len(hist.counts)
            for i, c in enumerate(hist.counts):
                counts[i] += c
        delta = [c - (previous[i] if i < len(previous) else 0) for i, c in enumerate(counts)]
        previous[:] = counts
        total = sum(delta)
        if total <= 0:
            return None
        rank, seen = 0.95 * total, 0
        for le, c in zip(bounds, delta, strict=False):  # the last (+Inf) bucket has no bound
            seen += c
            if seen >= rank:
                return le * 1000.0
        return math.inf  # p95 past the largest bound

    # --- front ports -------------------------------------------------------------------------------
    async def _open_fronts(self) -> None:
        """Bind one front port per exposed port (fixed, or auto from the port range), before any
        replica starts, so that dependants' ``${services.X.ports.P}`` resolve to it.

        Raises:
            DeployCodeError: S004 when a front port is taken (naming the holder when visible).
        """
        assert self.plan is not None
        for name in self.plan.placements:
            await self._open_fronts_of(name)

    async def _open_fronts_of(self, name: str) -> None:
        """The front ports of one service (see :meth:`_open_fronts`)."""
        now = self.clock.now()
        for port_name, exp in self.project.spec.services[name].expose.items():
            owner = f"{name}/front/{port_name}"
            if exp.port == "auto":
                port = self.ports.allocate(owner, now)
            else:
                port = int(exp.port)
                self.ports.reserve(port, owner)
            fp = FrontPort(
                f"{name}.{port_name}",
                exp.host or self.settings.host,
                port,
                ProxySettings(
                    balance=exp.balance,
                    connect_timeout=exp.connect_timeout,
                    bandwidth=exp.bandwidth,
                    max_connections=exp.max_connections,
                    queue_timeout=exp.queue_timeout,
                ),
                clock=self.clock,
            )
            try:
                await fp.start()
            except BaseException:
                self.ports.release_owner(owner, now)
                raise
            self.fronts.setdefault(name, {})[port_name] = fp

    async def _close_fronts_of(self, name: str) -> None:
        now = self.clock.now()
        for port_name, fp in self.fronts.pop(name, {}).items():
            await fp.close()
            self.ports.release_owner(f"{name}/front/{port_name}", now)

    def route(self, rep: Replica, old: ReplicaState) -> None:
        """A replica became ready (it joins its service's front ports) or stopped being ready (it
        leaves them at once: no new connections; open ones are left to finish or to the drain)."""
        fronts = self.fronts.get(rep.service.name)
        if not fronts:
            return
        if rep.state == ReplicaState.READY:
            if rep.gated:  # a blue-green set waits for the switch
                return
            for port_name, fp in fronts.items():
                fp.add_backend(rep.id, self.settings.host, rep.ports[port_name])
        elif old == ReplicaState.READY:
            for fp in fronts.values():
                fp.remove_backend(rep.id)

    async def drain(self, rep: Replica, timeout: float) -> None:
        """Before a replica is stopped: wait (up to ``timeout``) for its proxied connections to end."""
        fronts = self.fronts.get(rep.service.name)
        if fronts:
            await asyncio.gather(*(fp.drain(rep.id, timeout) for fp in fronts.values()))

    async def _close_fronts(self) -> None:
        for name in list(self.fronts):
            await self._close_fronts_of(name)

    def _health(self) -> dict[str, ServiceHealth]:
        """What alert rules look at, per service (cheap: counters kept on every transition). Replica
        memory (as a percentage of the machine's, as the rule reads) is sampled only when a rule asks."""
        memory: dict[str, tuple[float, ...]] = {}
        if any(rule.memory_above_percent is not None for rule in self.project.spec.alerts.rules):
            total = self.capacity.total.memory_mb * 2**20 or 1.0
            pids = {
                name: [pid for r in svc.replicas.values() if (pid := r.pid) is not None]
                for name, svc in self.services.items()
            }
            procs = self.procs.sample([p for ps in pids.values() for p in ps])  # rate-bounded, ~50 µs/pid
            for name, ps in pids.items():
                memory[name] = tuple(100.0 * procs[p].memory_bytes / total for p in ps if p in procs)
        return {
            name: ServiceHealth.from_snapshot(svc.summary(), memory_percent=memory.get(name, ()))
            for name, svc in self.services.items()
        }

    def _snapshot(self) -> None:
        """Record the deployed state (the file as deployed, replicas and ports) for rollback."""
        text = self.config_text
        services = {
            name: {
                "replicas": svc.desired,
                "ports": [dict(r.ports) for _, r in sorted(svc.replicas.items())],
            }
            for name, svc in self.services.items()
        }
        self.store.save_snapshot(text, services, at=self.clock.wall_time())

    def renew_and_reap(self) -> list[str]:
        """One pass of the lease keeper (see ``_keep_leases``). Returns the owners reaped."""
        now = self.clock.now()
        for svc in self.services.values():
            for rep in svc.replicas.values():
                if rep.booked and rep.task is not None and not rep.task.done():
                    # KeyError: lapsed before this pass (the loop was starved); reaped below.
                    with contextlib.suppress(KeyError):
                        self.ledger.renew(rep.id, now)
        reaped = self.ledger.cluster.reap(now)
        wall = self.clock.wall_time()
        for lease in reaped:
            service, _, index = lease.owner.rpartition(".")
            owner_svc = self.services.get(service)
            if owner_svc is not None and index.isdigit() and int(index) in owner_svc.replicas:
                owner_svc.replicas[int(index)].booked = False
            log.warning("lease of %s expired unrenewed: its booking is freed", lease.owner)
            self.publish(
                LeaseExpired(lease.owner, service, lease.request.to_dict(), lease.expires_at or now, wall)
            )
        if reaped:
            self._pulse_freed()
        return [lease.owner for lease in reaped]

    def _add_pools(self) -> None:
        """Create the file's pools in the ledger, parents first. A pool the node cannot hold is E004."""
        pools = self.project.spec.pools
        added: set[str] = set()

        def add(name: str) -> None:
            if name in added:
                return
            parent = pools[name].parent
            if parent is not None:
                add(parent)
            try:
                self.ledger.add_pool(name, pools[name].quotas(), parent)
            except ValueError as exc:
                raise PlacementError(
                    f"pool {name!r}: {exc}",
                    location=self.project.locate("pools", name),
                    hint="lower the pool's quota, or raise settings.capacity / lower settings.headroom",
                ) from None
            added.add(name)

        for name in pools:  # the config layer rejected unknown parents and cycles
            add(name)

    def _unbook(self, rep: Replica) -> None:
        """Give a replica's resources back and wake whoever waits for capacity."""
        if rep.booked:
            self.ledger.release(rep.id)
            rep.booked = False
            self._pulse_freed()

    def _pulse_freed(self) -> None:
        """Wake whoever waits for capacity (set, then replaced: later waiters wait for the next one)."""
        self._freed.set()
        self._freed = asyncio.Event()

    def _launch(self, rep: Replica) -> None:
        assert self._tg is not None
        adopted = self._adopted.pop(rep.id, None)
        rep.stop_requested = False
        rep.task = self._own(self._tg.create_task(self._guard(rep, adopted), name=f"replica:{rep.id}"))

    def _own(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, rep: Replica, adopted: ProcessHandle | None) -> None:
        # A bug in one replica's task must not tear down the whole tree: report it as that replica's failure.
        try:
            if not rep.booked and not await self._book([rep]):  # relaunched after it had ended
                return
            await rep.run(adopted)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            log.exception("replica %s crashed in the orchestrator", rep.id)
            with contextlib.suppress(DeployCodeError):
                if rep.handle is not None:
                    await rep.stop()
                if not rep.state.is_terminal:
                    rep._set(ReplicaState.FAILED, f"internal error: {exc!r}")
        finally:
            if rep.handle is None or rep.handle.exited:  # its task is over: nothing runs on the booking
                self._unbook(rep)

    async def _stop_all(self, timeout: float | None) -> None:
        """Stop every service once all its dependants have stopped (reverse dependency order)."""
        stopped = {name: asyncio.Event() for name in self.services}
        assert self.plan is not None
        graph = self.plan.graph

        async def stop_one(name: str) -> None:
            for dependant in graph.dependants(name):
                if dependant in stopped:
                    await stopped[dependant].wait()
            svc = self.services[name]
            async with asyncio.TaskGroup() as tg:
                for rep in svc.replicas.values():
                    tg.create_task(rep.stop(timeout))
            stopped[name].set()

        async with asyncio.TaskGroup() as tg:
            for name in self.services:
                tg.create_task(stop_one(name))

    async def _close(self) -> None:
        # Every replica's task released its own booking as it ended; what is still held now leaked.
        # Recorded (then released anyway) so that tests and `history` can check the books balance.
        leaked = {"owners": self.ledger.owners, "allocated": self.ledger.allocated.to_dict()}
        await self._close_fronts()
        now = self.clock.now()
        if self.plan is not None:
            release_plan(self.plan, self.ledger, self.ports, now=now)
        for svc in self.services.values():  # replicas added by `scale` are not in the plan
            for rep in svc.replicas.values():
                self.ledger.release(rep.id)
                self.ports.release_owner(rep.id, now)
        leaked["ports_in_use"] = self.ports.in_use
        self.store.set_meta("books_at_close", json.dumps(leaked))
        await self.http.aclose()
        self.listen.close()
        await self.log_follower.aclose()
        self.store.flush()

    # --- control (API) -------------------------------------------------------------------------
    def _service(self, name: str) -> ServiceRuntime:
        svc = self.services.get(name)
        if svc is None:
            known = ", ".join(sorted(self.services)) or "none"
            raise SupervisionError(
                f"service {name!r} is not deployed", code=ErrorCode.S001, hint=f"deployed services: {known}"
            )
        return svc

    def request_down(self, timeout: float | None = None) -> None:
        """Ask for an orderly stop of everything (reverse dependency order)."""
        self._down_timeout = timeout
        self._shutdown.set()

    async def wait_finished(self) -> None:
        """Return once :meth:`run` has stopped everything and released its resources."""
        await self._finished.wait()

    async def wait_outcome(self) -> DeployOutcome:
        """The deployment outcome, once known (callable before :meth:`run` has begun)."""
        await self._outcome_made.wait()
        assert self._outcome is not None
        return await asyncio.shield(self._outcome)

    def restart(self, names: Iterable[str]) -> list[str]:
        """Restart every replica of the named services. Returns the replica ids restarted."""
        services = [self._service(n) for n in names]
        done: list[str] = []
        for svc in services:
            for rep in svc.replicas.values():
                if rep.task is not None and not rep.task.done() and rep.handle is not None:
                    rep.post("restart")
                else:
                    rep.crash.reset()
                    rep.attempt = 0
                    self._launch(rep)
                done.append(rep.id)
        return done

    async def scale(self, name: str, replicas: int, timeout: float | None = None) -> dict[str, object]:
        """Run ``replicas`` replicas of ``name``: new ones are placed (ports now, resources when they
        start, as at ``up``) and start at once if the service has started; surplus ones (highest
        index first) are stopped, then their ports and bookings are released.

        Raises:
            DeployCodeError: S001 unknown service, S003 while shutting down, E002 for a count out of
                range, S004 when a fixed port makes a second replica impossible (nothing changes).
        """
        svc = self._service(name)
        if self.phase in ("stopping", "stopped"):
            raise SupervisionError(
                f"cannot scale {name!r}: the deployment is {self.phase}", code=ErrorCode.S003
            )
        if not 0 <= replicas <= MAX_REPLICAS:
            raise DeployCodeError(
                f"replicas must be between 0 and {MAX_REPLICAS:,}, got {replicas}", code=ErrorCode.E002
            )
        assert self.plan is not None
        known = self.project.spec.services  # during an apply, the new file's services
        counts = {n: other.desired for n, other in self.services.items() if n in known}
        counts[name] = replicas
        by_service, diags = place(self.project, self.ledger.capacity, list(counts), counts)
        if diags:
            raise PlacementError.from_diagnostics(diags)
        nodes = list(by_service[name])
        added: list[str] = []
        removed: list[str] = []
        if replicas > len(svc.replicas):
            count = replicas - len(svc.replicas)
            added = [r.id for r in self._add_replicas(svc, count, nodes[len(nodes) - count :])]
        elif replicas < len(svc.replicas):
            victims = [
                svc.replicas[i] for i in sorted(svc.replicas, reverse=True)[: len(svc.replicas) - replicas]
            ]
            await self._retire(victims, timeout)
            removed = [r.id for r in victims]
        svc.desired = replicas
        svc.refresh()
        return {"service": name, "replicas": replicas, "added": added, "removed": removed}

    def _add_replicas(
        self, svc: ServiceRuntime, count: int, nodes: list[str] | None = None, *, gated: bool = False
    ) -> list[Replica]:
        """Place ``count`` new replicas of ``svc`` with its current spec (lowest free indices; ports
        now, resources when they start) and start them if the service has started. ``gated`` ones
        stay out of the front ports until :meth:`ungate` (blue-green).

        Raises:
            DeployCodeError: S004 when a fixed port cannot be shared (nothing is placed).
        """
        free = (i for i in range(MAX_REPLICAS) if i not in svc.replicas)
        new = [next(free) for _ in range(count)]
        placed = self._place_ports(svc, new, nodes or [LOCAL_NODE] * count)
        out: list[Replica] = []
        for p in placed:
            rep = Replica(self, svc, p)
            rep.gated = gated
            svc.add(rep)
            self.registry.add(svc.name, p.index, p.ports, rep.state, node=p.node)
            out.append(rep)
            if svc.launched:
                rep._set(ReplicaState.PENDING, "new replica: waiting for resources")
                self._launch(rep)
        return out

    async def _retire(self, victims: list[Replica], timeout: float | None = None) -> None:
        """Stop replicas (each drained out of its front ports first), then forget them and give back
        their ports and bookings."""
        async with asyncio.TaskGroup() as tg:
            for rep in victims:
                tg.create_task(rep.stop(timeout))
        now = self.clock.now()
        for rep in victims:
            self._unbook(rep)
            rep.service.remove(rep)
            self.registry.remove(rep.id)
            self.ports.release_owner(rep.id, now)

    def _spawn_starter(self, svc: ServiceRuntime) -> None:
        """Start a service added by ``apply`` once its dependencies allow (as at ``up``)."""
        assert self._tg is not None
        self._own(self._tg.create_task(self._start_service(svc), name=f"start:{svc.name}"))

    async def apply(self, project: Project | None = None, *, dry_run: bool = False) -> dict[str, object]:
        """Bring the deployment to ``project`` (default: the file again, re-read from disk).

        Raises:
            DeployCodeError: the file is invalid (E002...), changes what apply cannot (E002), or the
                deployment is not running (S003).
        """
        from deploy_code.config import load
        from deploy_code.supervisor.rollout import apply as run_apply

        if self.phase == "starting":
            await self.wait_outcome()  # the first deployment settles first
            await asyncio.sleep(0)  # ...and its outcome is reported (phase -> running)
        if self.phase != "running":
            raise SupervisionError(f"cannot apply: the deployment is {self.phase}", code=ErrorCode.S003)
        async with self._apply_lock:
            new = project if project is not None else await asyncio.to_thread(load, self.project.path)
            result = await run_apply(self, new, dry_run=dry_run)
        return result.to_dict()

    async def rollback(self, deployment: int | None = None) -> dict[str, object]:
        """Apply the file of an earlier snapshot: ``deployment``'s, else the newest one that differs
        from what runs.

        Raises:
            DeployCodeError: E009 when there is no such snapshot; as :meth:`apply` otherwise.
        """
        from deploy_code.config import load_text
        from deploy_code.supervisor.rollout import snapshot_config

        text = await asyncio.to_thread(snapshot_config, self, deployment)
        project = load_text(
            text, filename=self.project.path.name, base_dir=self.project.base_dir, environ=self._environ
        )
        return await self.apply(project)

    def ready_timeout(self, name: str) -> float:
        """``timeouts.ready: auto`` for ``name``: learned from earlier starts, else the default."""
        learned = self._learned_ready.get(name)
        return learned.seconds if learned is not None else DEFAULT_READY_S

    def _timeouts_in_use(self, svc: ServiceRuntime) -> dict[str, object]:
        """What ``status`` shows of a service's timeouts: the ready timeout in use and its source."""
        limit = svc.spec.timeouts.ready
        if limit != "auto":
            return {"ready_s": float(limit), "source": "file"}
        learned = self._learned_ready.get(svc.name)
        if learned is not None:
            return learned.to_dict()
        return {"ready_s": DEFAULT_READY_S, "source": "default (fewer than 5 earlier starts)"}

    def _learn_timeouts(self) -> None:
        """Read the store's history of starts once, at ``up`` (bounded: the newest 10,000 transitions)."""
        try:
            rows = self.store.events(limit=10_000, kind="replica.transition")
        except Exception:  # a damaged history must not stop a deployment: fall back to the default
            log.warning("could not read start history for timeouts.ready: auto", exc_info=True)
            return
        self._learned_ready = learn_ready_timeouts(r.body for r in rows)

    def down_dependency(self, spec: ServiceSpec) -> str | None:
        """The first dependency of ``spec`` that was up and now has no ready replica (the circuit
        breaker's test), or None. ``completed_successfully`` dependencies are never down."""
        for dep, cond in spec.depends_on.items():
            svc = self.services.get(dep)
            if svc is None or cond == "completed_successfully" or cond == "started":
                continue
            if svc.healthy.is_set() and svc.desired > 0 and svc.ready_count == 0:
                return dep
        return None

    def ungate(self, reps: Iterable[Replica]) -> None:
        """Let gated replicas (a blue-green set) into the front ports: the ready ones join now."""
        for rep in reps:
            rep.gated = False
            if rep.state == ReplicaState.READY:
                self.route(rep, ReplicaState.STARTING)

    def _place_ports(self, svc: ServiceRuntime, indices: list[int], nodes: list[str]) -> list[Placement]:
        """Ports for new replicas of ``svc``, all or nothing (a fixed port cannot be shared: S004)."""
        now = self.clock.now()
        out: list[Placement] = []
        try:
            for idx, node in zip(indices, nodes, strict=False):
                owner = f"{svc.name}.{idx}"
                got: dict[str, int] = {}
                out.append(Placement(svc.name, idx, svc.spec.resources.to_resources(), got, node))
                for port_name, value in svc.spec.ports.items():
                    if value == "auto":
                        got[port_name] = self.ports.allocate(owner, now)
                    else:
                        self.ports.reserve(int(value), owner)
                        got[port_name] = int(value)
        except BaseException:
            for p in out:
                self.ports.release_owner(p.owner, now)
            raise
        return out

    async def stop_services(self, names: Iterable[str], timeout: float | None = None) -> list[str]:
        """Stop the named services' replicas (they stay stopped until ``restart``)."""
        services = [self._service(n) for n in names]
        out: list[str] = []
        async with asyncio.TaskGroup() as tg:
            for svc in services:
                for rep in svc.replicas.values():
                    tg.create_task(rep.stop(timeout))
                    out.append(rep.id)
        return out

    async def logs(
        self, name: str, lines: int, replica: int | None = None, *, partial: bool = True
    ) -> list[str]:
        """The last ``lines`` lines of each replica's output, prefixed with the replica id; without a
        line still being written when ``partial`` is False (what a caller about to follow wants)."""
        svc = self._service(name)
        reps = [r for i, r in sorted(svc.replicas.items()) if replica is None or i == replica]
        out: list[str] = []
        for rep in reps:
            got = await asyncio.to_thread(rep.last_lines, lines, partial=partial)
            out.extend(f"{rep.id} | {line}" for line in got)
        return out

    async def follow(self, name: str, replica: int | None = None) -> AsyncIterator[str]:
        """New output lines of a service as they are written (bounded buffer per client)."""
        svc = self._service(name)
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=FOLLOW_QUEUE)

        def push(prefix: str) -> Callable[[str], None]:
            def cb(line: str) -> None:
                if queue.full():
                    queue.get_nowait()  # drop the oldest: a slow reader must not grow memory
                queue.put_nowait(f"{prefix} | {line}")

            return cb

        unsubs = [
            rep.subscribe(push(rep.id))
            for i, rep in sorted(svc.replicas.items())
            if replica is None or i == replica
        ]
        try:
            while not self._finished.is_set():
                yield await queue.get()
        finally:
            for u in unsubs:
                u()

    def status(self) -> dict[str, object]:
        """Everything `deploy-code status` shows, as plain data."""
        return {
            "name": self.project.spec.name,
            "file": str(self.project.path),
            "pid": os.getpid(),
            "phase": self.phase,
            "started_at": self.started_wall,
            "uptime_s": round(self.clock.now() - self._t0, 3),
            "services": {name: svc.snapshot() for name, svc in self.services.items()},
            "timeouts": {name: self._timeouts_in_use(svc) for name, svc in self.services.items()},
            "admission": self.admission.snapshot(),
            "replicas_by_state": {str(st): self.registry.count(st) for st in ReplicaState},
            "resources": {
                "capacity": self.ledger.capacity.to_dict(),
                "allocated": self.ledger.allocated.to_dict(),
                "source": self.capacity.source,
                "pools": self.ledger.snapshot().get("pools", {}),
            },
            "ports": {"in_use": self.ports.in_use, "range": self.settings.port_range},
            "log_problems": dict(self._log_problems),
            "limits_method": self.backend.limits_method,
            "fronts": {
                name: {port_name: _front_summary(fp) for port_name, fp in fronts.items()}
                for name, fronts in self.fronts.items()
            },
        }

    @property
    def state_path(self) -> Path:
        """The state directory."""
        return self.state_dir


def _service_of_log(path: str) -> str:
    """``.../logs/api.0.log`` -> ``api``."""
    name = os.path.basename(path).removesuffix(".log")
    return name.rpartition(".")[0] or name


def _front_sample(service: str, port: str, fp: FrontPort) -> FrontSample:
    """A front port's counters for the metrics collector (read on the loop; plain values)."""
    st = fp.counters
    hist = st.upstream_first_byte
    return FrontSample(
        service,
        port,
        fp.available,
        st.connections_active,
        st.connections_total,
        st.bytes_in,
        st.bytes_out,
        st.connect_retries,
        st.refused,
        st.no_backend,
        tuple(hist.bounds),
        tuple(hist.counts),
        hist.total,
    )


def _front_summary(fp: FrontPort) -> dict[str, object]:
    """What status shows of a front port: address, pool and the counters (no histograms)."""
    stats = fp.stats()
    keep = [
        "host",
        "port",
        "balance",
        "available",
        "ready_backends",
        "connections_active",
        "connections_total",
        "queued",
        "bytes_in",
        "bytes_out",
        "connect_retries",
        "refused",
        "no_backend",
    ]
    return {k: stats[k] for k in keep if k in stats}


class _Scraped:
    """The MetricsSource the registry reads: the snapshot taken on the loop for the scrape in progress
    (the collector runs in a thread, so it must not read the orchestrator's live structures)."""

    def __init__(self) -> None:
        self.snap = Snapshot([], [], [], 0, 0.0)

    def metrics_snapshot(self) -> Snapshot:
        return self.snap
