"""``ProcessHandle``: one started or adopted process, its exit, and how to signal and stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from deploy_code.errors import TimeoutExceeded
from deploy_code.runtime.backend import AppliedLimits, OomReport, ProcessIdentity
from deploy_code.runtime.local.limits import ReplicaCgroup

__all__ = ["ProcessHandle"]

# After SIGKILL a process exits as soon as the kernel gets it out of any uninterruptible sleep; past this
# many seconds something is wrong with the machine (hung NFS, D state), and stop() says so.
_KILL_GRACE_S = 30.0


class ProcessHandle:
    """One running (or exited) process, created by :class:`LocalBackend` (``start`` or ``adopt``).

    The owner (the supervisor's replica task) awaits :meth:`wait` or :meth:`stop` and calls :meth:`close`
    once it is done with the process; after that the backend holds nothing for it.

    Attributes:
        identity: pid, process group and start time.
        adopted: True when the process is not our child (re-adopted after an orchestrator restart); its
            return code is then unknowable and reported as None.
        limits: the limits enforced on it, and how.
        cgroup: its own cgroup (cgroup methods with a limit declared), removed by the backend after exit.
        oom: set at exit when the kernel's out-of-memory killer acted in its cgroup.
    """

    def __init__(
        self,
        identity: ProcessIdentity,
        *,
        adopted: bool,
        refresh: Callable[[], None],
        release: Callable[[ProcessHandle], None],
        limits: AppliedLimits | None = None,
        cgroup: ReplicaCgroup | None = None,
    ) -> None:
        self.identity = identity
        self.adopted = adopted
        self.limits = limits or AppliedLimits()
        self.cgroup = cgroup
        self.oom: OomReport | None = None
        self._refresh = refresh  # processes an exit that already happened but is not yet delivered
        self._release = release  # tells the backend to forget this handle
        self._returncode: int | None = None
        self._exit_seen = False
        self._done = asyncio.Event()  # set on exit, or on close(): wakes waiters either way
        self._closed = False

    def __repr__(self) -> str:
        state = f"exited rc={self._returncode}" if self.exited else "running"
        return f"<ProcessHandle pid={self.identity.pid} {'adopted ' if self.adopted else ''}{state}>"

    @property
    def returncode(self) -> int | None:
        """Exit status once exited (negative: killed by that signal); None while running or if adopted."""
        return self._returncode

    @property
    def exited(self) -> bool:
        """True once the exit has been observed."""
        return self._exit_seen

    def _set_exited(self, returncode: int | None) -> None:
        """Called by the exit watcher, on the loop, exactly once."""
        if self.cgroup is not None:
            self.oom = self.cgroup.read_oom()  # before anyone removes the cgroup with its counters
        self._returncode = returncode
        self._exit_seen = True
        self._done.set()

    async def wait(self) -> int | None:
        """Wait for the process to exit. Event-driven (pidfd), no polling.

        Returns:
            The return code (negative: killed by that signal), or None for an adopted process.

        Raises:
            RuntimeError: the handle was closed (now or while waiting) before the exit was seen, so it
                will never be seen.
        """
        await self._done.wait()
        self._check_not_detached()
        return self._returncode

    def _check_not_detached(self) -> None:
        if not self._exit_seen:
            raise RuntimeError(f"{self!r} was closed before it exited; its exit is no longer watched")

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the process's whole group (its children too).

        Args:
            sig: the signal number.

        Returns:
            True when sent; False when the process has already exited.

        Raises:
            PermissionError: the group belongs to another user.
        """
        self._refresh()  # an exit already pending means the pid may be reused: do not signal it
        if self.exited or self._closed:
            return False
        pgid = self.identity.pgid
        try:
            if pgid > 1 and pgid != os.getpgrp():
                os.killpg(pgid, sig)
            else:
                # Never signal our own group (or "every process"): fall back to the process alone.
                os.kill(self.identity.pid, sig)
        except ProcessLookupError:
            return False
        return True

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop the process: ``sig`` to its group, wait up to ``timeout``, then SIGKILL the group.

        Idempotent and safe when the process has already exited (then it only returns the code). When
        this call sees the leader exit, whatever is left of its group is killed, so a stopped replica
        leaves no stray children.

        Args:
            sig: the polite signal (the service's stop signal).
            timeout: seconds to wait for an exit before SIGKILL.

        Returns:
            The return code, or None for an adopted process.

        Raises:
            TimeoutExceeded: E008, the process did not exit even after SIGKILL (within 30 s).
            RuntimeError: the handle was closed while the process was still running.
        """
        if self.exited:
            return self._returncode
        if self._closed:
            self._check_not_detached()  # raises: closed and never seen to exit
        self.signal_group(sig)
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            try:
                async with asyncio.timeout(_KILL_GRACE_S):
                    await self._done.wait()
            except TimeoutError as exc:
                raise TimeoutExceeded(
                    f"process {self.identity.pid} did not exit {_KILL_GRACE_S:g}s after SIGKILL",
                    hint="it may be stuck in uninterruptible I/O (see its state in /proc)",
                ) from exc
        self._check_not_detached()
        self._kill_stragglers()
        return self._returncode

    def _kill_stragglers(self) -> None:
        pgid = self.identity.pgid
        if pgid > 1 and pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        if self.cgroup is not None:
            # Children that left the group (setsid) are still in the replica's cgroup.
            for pid in self.cgroup.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Release the pidfd and the backend's entry for this process. Idempotent.

        Called by the owner after the exit. Closing a running process detaches it: it keeps running,
        its exit is no longer observed, and pending :meth:`wait` calls raise RuntimeError.
        """
        if self._closed:
            return
        self._closed = True
        self._release(self)
        self._done.set()
