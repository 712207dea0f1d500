"""``LocalBackend``: runs replicas as processes on this machine.

It ties together the spawn pool (``spawn``), exit detection (``exits``), log rotation (``logs`` +
``follow``), capacity discovery (``capacity``) and limit enforcement (``limits``). It holds one entry per
live handle, removed when the owner closes the handle, so nothing accumulates as replicas crash and
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from deploy_code.errors import StartError
from deploy_code.runtime.backend import AppliedLimits, Capacity, ProcessIdentity, ProcessSpec, ResourceLimits
from deploy_code.runtime.local.capacity import discover_capacity
from deploy_code.runtime.local.exits import ExitWatcher
from deploy_code.runtime.local.follow import LogFollower
from deploy_code.runtime.local.handle import ProcessHandle
from deploy_code.runtime.local.limits import ENV_VAR, Confinement, LimitEnforcer, ReplicaCgroup, detect
from deploy_code.runtime.local.logs import LogFile
from deploy_code.runtime.local.procinfo import proc_start_time
from deploy_code.runtime.local.spawn import spawn, spawn_blocking

__all__ = ["LocalBackend"]

# fork/exec is quick but blocking; a few threads keep a burst of starts from queueing behind one slow
# exec without letting a big rollout fork hundreds of processes at once.
_DEFAULT_SPAWN_WORKERS = min(4, os.cpu_count() or 1)
# A cgroup still holding processes when its handle closes (stragglers being killed) is removed again
# this often, this many times; then it is left (the next spawn of that replica reuses the name once empty).
_CGROUP_RETRY_S = 0.1
_CGROUP_RETRIES = 20


class LocalBackend:
    """The default runtime backend: local processes, each in its own session and process group.

    All methods run on the orchestrator's event loop (the first ``start`` or ``adopt`` binds it).

    Args:
        log_max_bytes: a replica's log file is rotated when it reaches this size.
        log_backups: rotated copies kept per log file.
        spawn_workers: threads that fork/exec; default ``min(4, cpu_count)``.
        limits: ``"rlimit"`` or ``"none"`` to skip cgroups; None reads ``DEPLOY_CODE_LIMITS`` (detects
            when unset). The method is detected on first use (see ``limits``).
    """

    def __init__(
        self,
        *,
        log_max_bytes: int = 10 * 2**20,
        log_backups: int = 3,
        spawn_workers: int | None = None,
        limits: str | None = None,
    ) -> None:
        self._log_max_bytes = log_max_bytes
        self._log_backups = log_backups
        self._executor = ThreadPoolExecutor(
            max_workers=spawn_workers or _DEFAULT_SPAWN_WORKERS, thread_name_prefix="deploy-code-spawn"
        )
        # Live handles by pid, from start/adopt until the owner's close(): bounded by live replicas.
        self._handles: dict[int, ProcessHandle] = {}
        # Log paths rotated for the live handles, with how many handles use each (a restarted replica's
        # new process may start before the old handle is closed). Bounded like _handles.
        self._log_refs: dict[str, int] = {}
        self._handle_logs: dict[ProcessHandle, str] = {}
        self._exits: ExitWatcher | None = None
        self._rotator = LogFollower()
        self._closed = False
        self._limits_mode = limits
        self._enforcer: LimitEnforcer | None = None
        # Cgroups of exited processes still waiting to be removed: bounded by recently exited replicas,
        # each entry dropped once removed or after _CGROUP_RETRIES tries.
        self._cgroup_retries: dict[ReplicaCgroup, asyncio.TimerHandle] = {}

    @property
    def limits(self) -> LimitEnforcer:
        """How limits are enforced here; detected on first use (a few quick reads of /proc and cgroupfs)."""
        if self._enforcer is None:
            self._enforcer = detect(self._limits_mode)
        return self._enforcer

    @property
    def limits_method(self) -> str:
        """``cgroup-v2``, ``cgroup-v1``, ``rlimit`` or ``none``."""
        return self.limits.method

    def planned_limits(self, limits: ResourceLimits) -> AppliedLimits:
        """What a process declaring ``limits`` gets here (for status while no process runs)."""
        return self.limits.plan(limits)

    def _watcher(self) -> ExitWatcher:
        if self._closed:
            raise RuntimeError("LocalBackend is closed")
        if self._exits is None:
            self._exits = ExitWatcher(asyncio.get_running_loop())
        return self._exits

    async def start(self, spec: ProcessSpec) -> ProcessHandle:
        """Spawn ``spec`` (off the loop, with its timeout and retries) and watch for its exit.

        Args:
            spec: what to run.

        Returns:
            The handle of the running process.

        Raises:
            StartError: E005, with a message naming the cause (executable not found, permission denied,
                working directory missing, log file unusable, spawn timeout, resources exhausted).
        """
        exits = self._watcher()
        conf = await self._confine(spec)
        try:
            popen = await spawn(
                spec, self._executor, blocking=functools.partial(spawn_blocking, confinement=conf)
            )
        except BaseException:
            self._remove_cgroup(conf.cgroup)
            raise
        if self._closed:  # aclose() ran while we spawned: nobody would own this process
            popen.kill()
            popen.wait()
            self._remove_cgroup(conf.cgroup)
            raise RuntimeError("LocalBackend was closed while starting " + spec.name)
        pid = popen.pid
        # start_new_session=True makes the child the leader of a new group: pgid == pid. The child is not
        # reaped yet (a zombie at worst), so /proc/<pid>/stat is readable.
        identity = ProcessIdentity(pid=pid, pgid=pid, start_time=proc_start_time(pid) or 0)
        handle = ProcessHandle(
            identity,
            adopted=False,
            refresh=lambda: exits.check(pid),
            release=self._release,
            limits=conf.applied,
            cgroup=conf.cgroup,
        )
        self._handles[pid] = handle
        self._track_log(handle, spec.log_path)
        exits.watch_child(popen, handle._set_exited)
        return handle

    def adopt(self, identity: ProcessIdentity) -> ProcessHandle | None:
        """Take over a process started by an earlier orchestrator run (not our child).

        Args:
            identity: as recorded when the process was started.

        Returns:
            Its handle (``adopted=True``; exits report None), or None when the pid is gone or its start
            time differs (the pid was reused by another process).
        """
        exits = self._watcher()
        existing = self._handles.get(identity.pid)
        if existing is not None and existing.identity == identity:
            return existing
        if proc_start_time(identity.pid) != identity.start_time:
            return None
        pid = identity.pid
        cgroup = self.limits.find(pid)
        handle = ProcessHandle(
            identity,
            adopted=True,
            refresh=lambda: exits.check(pid),
            release=self._release,
            limits=self.limits.adopted_limits(pid, cgroup),
            cgroup=cgroup,
        )
        # watch_pid opens the pidfd and re-checks the start time: that closes the pid-reuse race.
        if not exits.watch_pid(pid, identity.start_time, handle._set_exited):
            return None
        self._handles[pid] = handle
        return handle

    async def _confine(self, spec: ProcessSpec) -> Confinement:
        """Make the cgroup (or pick the rlimits) for ``spec``, in the spawn pool."""
        cfut = self._executor.submit(self.limits.prepare, spec)
        try:
            return await asyncio.wrap_future(cfut)
        except asyncio.CancelledError:
            cfut.add_done_callback(_discard_confinement)  # the thread may still make the cgroup
            raise
        except OSError as exc:
            raise StartError(
                f"{spec.name}: cannot set up its {self.limits.method} limits: {exc.strerror or exc}",
                hint=f"check that the cgroup hierarchy is writable, or set {ENV_VAR}=rlimit",
            ) from exc

    def _remove_cgroup(self, cgroup: ReplicaCgroup | None, tries: int = _CGROUP_RETRIES) -> None:
        """Remove an exited process's cgroup; retry (boundedly) while processes remain in it."""
        if cgroup is None:
            return
        self._cgroup_retries.pop(cgroup, None)
        try:
            gone = cgroup.remove()
        except OSError:
            gone = True  # not ours to remove any more (e.g. the hierarchy went away): nothing to retry
        if not gone and tries > 0 and not self._closed:
            loop = asyncio.get_running_loop()
            self._cgroup_retries[cgroup] = loop.call_later(
                _CGROUP_RETRY_S, self._remove_cgroup, cgroup, tries - 1
            )

    def capacity(self, storage_path: str) -> Capacity:
        """Discover this machine's capacity (see :func:`discover_capacity`)."""
        return discover_capacity(storage_path)

    async def aclose(self) -> None:
        """Shut the spawn pool and close every handle's pidfd. Processes are left running. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        for handle in list(self._handles.values()):
            handle.close()
        for cgroup, timer in list(self._cgroup_retries.items()):
            timer.cancel()
            with contextlib.suppress(OSError):
                cgroup.remove()  # a last try; a cgroup still in use stays
        self._cgroup_retries.clear()
        if self._exits is not None:
            self._exits.close()
        await self._rotator.aclose()

    def log_problems(self) -> dict[str, str]:
        """Replica log files that cannot be rotated now (a full disk, say), with the error."""
        return self._rotator.failing()

    def _track_log(self, handle: ProcessHandle, path: str) -> None:
        path = os.path.abspath(path)
        self._handle_logs[handle] = path
        refs = self._log_refs.get(path, 0)
        self._log_refs[path] = refs + 1
        if refs == 0:
            log_file = LogFile(path, self._log_max_bytes, self._log_backups)
            self._rotator.watch(path, None, rotate=log_file.maybe_rotate)

    def _release(self, handle: ProcessHandle) -> None:
        pid = handle.identity.pid
        if self._handles.get(pid) is handle:
            del self._handles[pid]
            if self._exits is not None:
                self._exits.unwatch(pid)
        if handle.exited:  # a running process closed (detached) keeps its cgroup: it is still in it
            self._remove_cgroup(handle.cgroup)
        path = self._handle_logs.pop(handle, None)
        if path is not None:
            refs = self._log_refs.pop(path) - 1
            if refs > 0:
                self._log_refs[path] = refs
            else:
                self._rotator.unwatch(path)

    def _table_sizes(self) -> dict[str, int]:
        """Sizes of the internal tables (for leak tests)."""
        return {
            "handles": len(self._handles),
            "handle_logs": len(self._handle_logs),
            "log_refs": len(self._log_refs),
            "exit_watches": 0 if self._exits is None else len(self._exits),
            "log_watches": len(self._rotator),
            "cgroup_retries": len(self._cgroup_retries),
        }


def _discard_confinement(fut: Future[Confinement]) -> None:
    """Done-callback for a cgroup made for a start that was cancelled meanwhile: remove it."""
    if fut.cancelled() or fut.exception() is not None:
        return
    cgroup = fut.result().cgroup
    if cgroup is not None:
        with contextlib.suppress(OSError):
            cgroup.remove()


if TYPE_CHECKING:
    from deploy_code.runtime.backend import Backend

    _: Backend = LocalBackend()
