"""``LocalBackend``: runs replicas as processes on this machine.

It ties together the spawn pool (``spawn``), exit detection (``exits``), log rotation (``logs`` +
``follow``) and capacity discovery (``capacity``). It holds one entry per live handle, removed when the
owner closes the handle, so nothing accumulates as replicas crash and restart.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from deploy_code.runtime.backend import Capacity, ProcessIdentity, ProcessSpec
from deploy_code.runtime.local.capacity import discover_capacity
from deploy_code.runtime.local.exits import ExitWatcher
from deploy_code.runtime.local.follow import LogFollower
from deploy_code.runtime.local.handle import ProcessHandle
from deploy_code.runtime.local.logs import LogFile
from deploy_code.runtime.local.procinfo import proc_start_time
from deploy_code.runtime.local.spawn import spawn

__all__ = ["LocalBackend"]

# fork/exec is quick but blocking; a few threads keep a burst of starts from queueing behind one slow
# exec without letting a big rollout fork hundreds of processes at once.
_DEFAULT_SPAWN_WORKERS = min(4, os.cpu_count() or 1)


class LocalBackend:
    """The default runtime backend: local processes, each in its own session and process group.

    All methods run on the orchestrator's event loop (the first ``start`` or ``adopt`` binds it).

    Args:
        log_max_bytes: a replica's log file is rotated when it reaches this size.
        log_backups: rotated copies kept per log file.
        spawn_workers: threads that fork/exec; default ``min(4, cpu_count)``.
    """

    def __init__(
        self, *, log_max_bytes: int = 10 * 2**20, log_backups: int = 3, spawn_workers: int | None = None
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
        popen = await spawn(spec, self._executor)
        if self._closed:  # aclose() ran while we spawned: nobody would own this process
            popen.kill()
            popen.wait()
            raise RuntimeError("LocalBackend was closed while starting " + spec.name)
        pid = popen.pid
        # start_new_session=True makes the child the leader of a new group: pgid == pid. The child is not
        # reaped yet (a zombie at worst), so /proc/<pid>/stat is readable.
        identity = ProcessIdentity(pid=pid, pgid=pid, start_time=proc_start_time(pid) or 0)
        handle = ProcessHandle(
            identity, adopted=False, refresh=lambda: exits.check(pid), release=self._release
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
        handle = ProcessHandle(
            identity, adopted=True, refresh=lambda: exits.check(pid), release=self._release
        )
        # watch_pid opens the pidfd and re-checks the start time: that closes the pid-reuse race.
        if not exits.watch_pid(pid, identity.start_time, handle._set_exited):
            return None
        self._handles[pid] = handle
        return handle

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
        if self._exits is not None:
            self._exits.close()
        await self._rotator.aclose()

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
        }


if TYPE_CHECKING:
    from deploy_code.runtime.backend import Backend

    _: Backend = LocalBackend()
