"""One task per replica: it owns the process, its probes and its restarts.

The task loops: admission -> spawn -> supervise (exit, probes, commands) -> restart policy. Every state
change goes through :meth:`Replica._set`, which checks the transition table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from deploy_code.config import InterpolationContext, render_argv, render_probe, service_environment
from deploy_code.errors import DeployCodeError
from deploy_code.events import ProbeFailed, ReplicaExited, ReplicaState, ReplicaTransitioned
from deploy_code.health import (
    CheckTarget,
    LogLineMatcher,
    NotifyEndpoint,
    ProbeResult,
    ProbeRunner,
    ProbeTransition,
    make_check,
)
from deploy_code.runtime import LogFile, OomReport, ProcessHandle, ProcessSpec, ResourceLimits
from deploy_code.scheduling import Placement
from deploy_code.state import ReplicaRecord
from deploy_code.supervisor.admission import start_weight
from deploy_code.supervisor.backoff import CrashLoopDetector, next_delay, replay_rng
from deploy_code.supervisor.states import check_transition

if TYPE_CHECKING:
    from deploy_code.config.model import ProbeSpec, ServiceSpec
    from deploy_code.supervisor.orchestrator import Orchestrator
    from deploy_code.supervisor.service import ServiceRuntime

__all__ = ["Replica"]

S = ReplicaState
MARKER_VAR = "DEPLOY_CODE_STATE_DIR"  # in every replica's environment: finds unrecorded replicas
INBOX_BOUND = 16  # commands and probe verdicts; duplicates beyond this are dropped (they repeat)
CIRCUIT_POLL_S = 0.25  # how often a replica waiting on a down dependency looks again
LAST_LINES = 20  # log lines quoted in a failure report


class Replica:
    """One replica of a service.

    Args:
        orch: the orchestrator that owns this replica's task.
        service: the service runtime it belongs to.
        placement: its booked resources and ports.
    """

    def __init__(self, orch: Orchestrator, service: ServiceRuntime, placement: Placement) -> None:
        self.orch = orch
        self.service = service
        self.spec: ServiceSpec = service.spec
        self.index = placement.index
        self.id = placement.owner
        self.ports = dict(placement.ports)
        self.resources = placement.resources
        self.booked = False  # holds its resources in the orchestrator's ledger
        self.state = S.PENDING
        self.reason = "waiting for dependencies"
        self.handle: ProcessHandle | None = None
        self.restarts = 0
        self.attempt = 0
        self.last_exit: int | None = None
        self.started_at: float | None = None
        self.ready_since: float | None = None
        self.ever_started = False
        self.stop_requested = False
        self.gated = False  # kept out of the front ports until a blue-green switch
        self.inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=INBOX_BOUND)
        self.crash = CrashLoopDetector(self.spec.restart)
        self.log_path = str(orch.logs_dir / f"{self.id}.log")
        self.log = LogFile(self.log_path, orch.settings.log_max_size, orch.settings.log_backups)
        self.task: asyncio.Task[None] | None = None
        # Created up front so that a line printed right after the spawn, before the probes run, counts.
        self._matchers: dict[str, LogLineMatcher] = _log_matchers(self.spec)  # by pattern
        self._env: dict[str, str] = {}
        self._tracking = False
        self._notify: NotifyEndpoint | None = None
        self._line_subscribers: set[Callable[[str], None]] = set()  # bounded: one per `logs -f` client

    @property
    def pid(self) -> int | None:
        """The process id while the replica has a process."""
        return self.handle.identity.pid if self.handle is not None else None

    # --- state ---------------------------------------------------------------------------------
    def _set(self, new: ReplicaState, reason: str) -> None:
        old = self.state
        if old == new:
            self.reason = reason
            return
        check_transition(old, new, who=self.id)
        self.state = new
        self.orch.registry.set_state(self.id, new)
        self.reason = reason
        now = self.orch.clock.now()
        first_start = False
        if new == S.STARTING:
            first_start = not self.ever_started
            self.ever_started = True
            self.ready_since = None
        elif new == S.READY:
            self.ready_since = now
        self.orch.publish(
            ReplicaTransitioned(
                self.service.name,
                self.index,
                old,
                new,
                reason,
                self.orch.clock.wall_time(),
                self.pid,
            )
        )
        self.service.on_replica_changed(self, old, first_start)

    def post(self, kind: str, detail: str = "") -> None:
        """Queue a command or verdict for the replica's task (``restart``, ``liveness``, ...)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait((kind, detail))

    # --- main loop -----------------------------------------------------------------------------
    async def run(self, adopted: ProcessHandle | None = None) -> None:
        """Drive the replica until it is stopped, completes, or fails for good."""
        self.handle = adopted
        try:
            while not self.stop_requested:
                if self.handle is None:
                    try:
                        self.handle = await self._start()
                    except DeployCodeError as exc:
                        if not await self._after_failure(f"start failed: {exc.message}", None):
                            return
                        continue
                else:
                    self._set(S.STARTING, "re-adopted running process")
                    await self._resume_adopted()
                kind, detail = await self._supervise(self.handle)
                if self.stop_requested:
                    break
                if kind != "exit":
                    await self._terminate(self.handle)
                rc = self.handle.returncode
                self.last_exit = rc
                self._release_handle()
                if kind == "restart":
                    self.attempt = 0
                    self.crash.reset()
                    self.restarts += 1
                    self._set(S.BACKOFF, "restart requested")
                    continue
                why = detail or _describe_exit(rc)  # an exit's detail already names an OOM kill
                if kind == "exit" and rc == 0 and self.spec.restart.policy != "always":
                    self._set(S.COMPLETED, "exited 0")
                    return
                if not await self._after_failure(why, rc):
                    return
        finally:
            self._untrack_logs()

    async def _after_failure(self, why: str, rc: int | None) -> bool:
        """Apply the restart policy after a failure. Returns True to restart, False when done."""
        now = self.orch.clock.now()
        if self.ready_since is not None and now - self.ready_since >= self.spec.restart.reset_after:
            self.attempt = 0
        if self.spec.restart.policy == "no":
            self._fail(why)
            return False
        if self.orch.down_dependency(self.spec) is not None:
            return await self._wait_for_dependencies(why)
        if self.crash.record(now):
            self._fail(
                f"crash loop: {len(self.crash)} restarts within {self.spec.restart.window:g}s; last: {why}"
            )
            return False
        delay = next_delay(self.attempt, self.spec.restart.backoff, replay_rng(self.id, self.attempt))
        self.attempt += 1
        self.restarts += 1
        self._set(S.BACKOFF, f"{why}; restarting in {delay:.3g}s")
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    # A restart or stop command cuts the wait short.
                    while True:
                        kind, _ = await self.inbox.get()
                        if kind in ("restart", "stop"):
                            break
        return not self.stop_requested

    async def _wait_for_dependencies(self, why: str) -> bool:
        """Circuit breaker: a replica that failed while a dependency is down does not restart in a
        loop (nor use up its crash-loop budget): it waits, in BACKOFF with the reason, until every
        dependency is ready again, then restarts once. A stop command ends the wait."""
        dep = self.orch.down_dependency(self.spec)
        self.restarts += 1
        self._set(S.BACKOFF, f"{why}; dependency {dep!r} is down: waiting for it (circuit open)")
        while self.orch.down_dependency(self.spec) is not None and not self.stop_requested:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CIRCUIT_POLL_S):
                    kind, _ = await self.inbox.get()
                    if kind == "stop":
                        return False
        self.attempt = 0
        return not self.stop_requested

    def _fail(self, why: str) -> None:
        self._set(S.FAILED, why)

    # --- spawning ------------------------------------------------------------------------------
    def _context(self) -> InterpolationContext:
        return self.orch.interpolation_context(self.service.name, self.index, self.ports)

    async def _start(self) -> ProcessHandle:
        ctx = self._context()
        argv = render_argv(self.orch.project, self.service.name, ctx)
        env = service_environment(self.orch.project, self.service.name, ctx)
        env[MARKER_VAR] = str(self.orch.state_dir)  # marks our processes for orphan sweeps
        env["DEPLOY_CODE_REPLICA_ID"] = self.id
        self._env = env
        if self._needs_notify():
            if self._notify is None:
                self._notify = NotifyEndpoint.open(self.id)
            env["NOTIFY_SOCKET"] = self._notify.address
        cwd = self.orch.working_dir(self.service.name)
        res = self.spec.resources
        spec = ProcessSpec(
            name=self.id,
            argv=tuple(argv),
            env=env,
            cwd=cwd,
            log_path=self.log_path,
            start_timeout=self.spec.timeouts.start,
            limits=ResourceLimits(memory_mb=res.memory_mb, cpu_cores=res.cpu_cores),
            project=self.orch.project.spec.name,
        )
        weight = start_weight(res.cpu_cores, res.memory_mb, res.gpu_count)
        async with self.orch.admission.slot(self.spec.priority, weight):
            self._set(S.STARTING, "spawning")
            for m in self._matchers.values():
                m.reset()  # before the spawn: the new process's first line may be the one
            self._track_logs()
            spawn = asyncio.ensure_future(self.orch.backend.start(spec))
            try:
                handle = await asyncio.shield(spawn)
            except asyncio.CancelledError:
                # The spawn runs in a thread and may still produce a process: never leak it.
                with contextlib.suppress(BaseException):
                    late = await spawn
                    await late.stop(signal.SIGKILL, 1.0)
                    late.close()
                raise
        self.started_at = self.orch.clock.now()
        ident = handle.identity
        self.orch.store.put_replica(
            ReplicaRecord(
                self.service.name,
                self.index,
                ident.pid,
                ident.pgid,
                ident.start_time,
                dict(self.ports),
                self.log_path,
                self.orch.clock.wall_time(),
                spec_hash(self.spec),
            )
        )
        return handle

    def _needs_notify(self) -> bool:
        h = self.spec.health
        return any(p is not None and p.notify is not None for p in (h.startup, h.readiness, h.liveness))

    # --- supervising ---------------------------------------------------------------------------
    async def _supervise(self, handle: ProcessHandle) -> tuple[str, str]:
        while not self.inbox.empty():  # verdicts about an earlier process do not apply to this one
            self.inbox.get_nowait()
        tasks: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            tasks.append(tg.create_task(self._watch_exit(handle)))
            tasks.append(tg.create_task(self._probe_all()))
            tasks.append(tg.create_task(self._ready_deadline()))
            try:
                kind, detail = await self.inbox.get()
            finally:
                for t in tasks:
                    t.cancel()
        return kind, detail

    async def _watch_exit(self, handle: ProcessHandle) -> None:
        rc = await handle.wait()
        self.orch.publish(
            ReplicaExited(self.service.name, self.index, handle.identity.pid, rc, self.orch.clock.wall_time())
        )
        self.post("exit", _describe_exit(rc, handle.oom))

    async def _ready_deadline(self) -> None:
        limit = self.spec.timeouts.ready
        seconds = self.orch.ready_timeout(self.service.name) if limit == "auto" else float(limit)
        await self.orch.clock.sleep_until(self.orch.clock.now() + seconds)
        if self.state == S.STARTING:
            self.post("ready-timeout", f"not ready within {seconds:g}s (E008)")

    def _runner(self, name: str, spec: ProbeSpec) -> ProbeRunner | None:
        """The runner for ``health.<name>``, its templates rendered; None (and a verdict) if it cannot run."""
        target = CheckTarget(
            host=self.orch.settings.host,
            ports=self.ports,
            env=self._env,
            cwd=self.orch.working_dir(self.service.name),
        )
        try:
            spec = render_probe(self.orch.project, self.service.name, name, spec, self._context())
            matcher = self._matchers.get(spec.log_line.pattern) if spec.log_line else None
            check = make_check(
                spec, target, http=self.orch.http, log=matcher, notify=self._notify, listen=self.orch.listen
            )
        except (DeployCodeError, ValueError) as exc:
            self.post(name, f"{name} probe cannot run: {exc}")
            return None
        return ProbeRunner(f"{self.id}:{name}", spec, check, self.orch.clock)

    async def _probe_all(self) -> None:
        """Startup gates everything; liveness begins once the replica has first been ready.

        Kubernetes starts liveness right after startup; we wait for the first readiness pass as well,
        so a slow starter without a startup probe is not killed for being slow (the ready timeout,
        E008, bounds that wait instead).
        """
        health = self.spec.health
        if health.startup is not None:
            passed = asyncio.Event()

            def on_startup(t: ProbeTransition) -> None:
                if t.healthy:
                    passed.set()
                else:
                    self.post("startup", f"startup probe failed {t.consecutive}x: {t.result.message}")

            runner = self._runner("startup", health.startup)
            if runner is None:
                return
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(runner.run(on_startup, self._on_result("startup")))
                await passed.wait()
                task.cancel()
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            if health.readiness is None:
                if health.min_uptime > 0:
                    await self.orch.clock.sleep_until(self.orch.clock.now() + health.min_uptime)
                self._set(S.READY, f"up {health.min_uptime:g}s (no readiness probe)")
                ready.set()
            else:
                runner = self._runner("readiness", health.readiness)
                if runner is None:
                    return

                def on_readiness(t: ProbeTransition) -> None:
                    self._on_readiness(t)
                    if t.healthy:
                        ready.set()

                tg.create_task(runner.run(on_readiness, self._on_result("readiness")))
            if health.liveness is not None:
                await ready.wait()
                live = self._runner("liveness", health.liveness)
                if live is not None:
                    tg.create_task(live.run(self._on_liveness, self._on_result("liveness")))

    def _on_result(self, probe: str) -> Callable[[ProbeResult], None]:
        """Every probe attempt feeds the metrics: its latency, and a failure count. Failures go to the
        recorder only: the event store keeps the transitions they cause, not every failed attempt."""
        recorder = self.orch.recorder
        service = self.service.name

        def on_result(result: ProbeResult) -> None:
            recorder.observe_probe(service, probe, result.latency_s, result.ok)
            if not result.ok:
                recorder.publish(
                    ProbeFailed(service, self.index, probe, result.message, self.orch.clock.wall_time())
                )

        return on_result

    def _on_readiness(self, t: ProbeTransition) -> None:
        if t.healthy and self.state in (S.STARTING, S.DEGRADED):
            self._set(S.READY, "readiness passed")
        elif not t.healthy and self.state == S.READY:
            self._set(S.DEGRADED, f"readiness failing: {t.result.message}")

    def _on_liveness(self, t: ProbeTransition) -> None:
        if not t.healthy:
            self.post("liveness", f"liveness failed {t.consecutive}x: {t.result.message}")

    async def _terminate(self, handle: ProcessHandle) -> None:
        await handle.stop(self.spec.signal_number, self.spec.timeouts.stop)

    def _release_handle(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        self.orch.store.delete_replica(self.service.name, self.index)

    # --- stopping ------------------------------------------------------------------------------
    async def stop(self, timeout: float | None = None) -> None:
        """Stop the replica: stop signal, wait ``timeout`` (default: the service's), SIGKILL the group."""
        self.stop_requested = True
        handle = self.handle
        if handle is not None and not handle.exited:
            if self.state in (S.STARTING, S.READY, S.DEGRADED):
                self._set(S.STOPPING, "stop requested")
            # Out of the front ports already (it left READY); open connections finish first.
            await self.orch.drain(self, self.spec.timeouts.stop if timeout is None else timeout)
            await handle.stop(
                self.spec.signal_number, self.spec.timeouts.stop if timeout is None else timeout
            )
        self.post("stop")
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.handle is not None:
            self.last_exit = self.handle.returncode
            self._release_handle()
        if not self.state.is_terminal:
            self._set(S.STOPPED, "stopped")
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    # --- logs ----------------------------------------------------------------------------------
    def _track_logs(self) -> None:
        """Follow the replica's output while someone reads it: a log_line probe or a `logs -f` client."""
        if not (self._matchers or self._line_subscribers):
            return
        if not self._tracking:  # watching again would restart from the end and drop a partial line
            self.orch.log_follower.watch(self.log_path, self._on_line)
            self._tracking = True

    def _untrack_logs(self) -> None:
        if self._tracking:
            self.orch.log_follower.unwatch(self.log_path)
            self._tracking = False

    async def _resume_adopted(self) -> None:
        """Follow an adopted process's log; its earlier output may already hold the ready line."""
        if self._matchers:
            earlier = await asyncio.to_thread(self.log.tail, LAST_LINES * 5)
            for m in self._matchers.values():
                m.reset()
                for line in earlier:
                    m.feed(line)
        self._track_logs()

    def _on_line(self, line: str) -> None:
        for m in self._matchers.values():
            m.feed(line)
        for sub in tuple(self._line_subscribers):
            sub(line)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Receive each new output line; returns the unsubscribe function."""
        self._line_subscribers.add(callback)
        self._track_logs()

        def unsubscribe() -> None:
            self._line_subscribers.discard(callback)
            if not self._line_subscribers and not self._matchers:
                self._untrack_logs()

        return unsubscribe

    def last_lines(self, n: int = LAST_LINES, *, partial: bool = True) -> list[str]:
        """The last ``n`` lines of output (blocking file read: call from a thread); ``partial``: with
        a final line still being written."""
        return self.log.tail(n, partial=partial)

    def snapshot(self) -> dict[str, object]:
        """Plain-data view for status."""
        now = self.orch.clock.now()
        return {
            "index": self.index,
            "id": self.id,
            "state": str(self.state),
            "reason": self.reason,
            "pid": self.pid,
            "ports": dict(self.ports),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "uptime_s": round(now - self.started_at, 3) if self.started_at and self.handle else None,
            "adopted": bool(self.handle and self.handle.adopted),
            "log": self.log_path,
            "limits": self._limits(),
        }

    def _limits(self) -> dict[str, object]:
        """Enforced on the running process; while none runs, what the next one gets."""
        if self.handle is not None:
            return self.handle.limits.to_dict()
        res = self.spec.resources
        return self.orch.backend.planned_limits(ResourceLimits(res.memory_mb, res.cpu_cores)).to_dict()


def spec_hash(spec: ServiceSpec) -> str:
    """A short stable hash of what a running process was started from: the service spec without the
    fields the orchestrator alone reads (replica count, autoscale, deploy strategy, priority)."""
    doc = spec.model_dump_json(exclude={"replicas", "autoscale", "deploy", "priority"})
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _log_matchers(spec: ServiceSpec) -> dict[str, LogLineMatcher]:
    h = spec.health
    return {
        p.log_line.pattern: LogLineMatcher(p.log_line.pattern)
        for p in (h.startup, h.readiness, h.liveness)
        if p is not None and p.log_line is not None
    }


def _describe_exit(rc: int | None, oom: OomReport | None = None) -> str:
    if oom is not None and (rc is None or rc == -signal.SIGKILL):
        return f"out of memory: {oom.describe()}"
    if rc is None:
        why = "exited (adopted process; exit status unknown)"
    elif rc < 0:
        try:
            why = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            why = f"killed by signal {-rc}"
    else:
        why = f"exited with status {rc}"
    return why if oom is None else f"{why}; out of memory in its cgroup: a process {oom.describe()}"
