"""Event-driven exit detection: one pidfd per process, registered with the loop. No thread per child.

Normal path (Linux >= 5.3): ``os.pidfd_open(pid)`` gives an fd that becomes readable when the process
exits; ``loop.add_reader`` calls us then. It works for processes that are not our children too, which is
what makes re-adoption after an orchestrator restart event-driven. For our own children we reap with
``Popen.poll()`` when the pidfd is readable: that yields the return code and keeps ``subprocess``'s
bookkeeping right. For adopted processes the exit status belongs to their parent, so it is None.

Fallback, only where ``pidfd_open`` is unavailable (``ENOSYS``: old kernels, some sandboxes): a single
``SIGCHLD`` handler (``loop.add_signal_handler``) polls the tracked children when any child changes state.
Adopted processes cannot raise SIGCHLD for us, so in that fallback only they are checked by a 1 s timer.

Reaping relies on nobody else calling ``waitpid(-1)`` in this process (asyncio's default child watcher
waits for its own pids only).
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from deploy_code.runtime.local.procinfo import read_proc_stat

__all__ = ["ExitCallback", "ExitWatcher", "pidfd_supported"]

ExitCallback = Callable[[int | None], None]
_ADOPTED_POLL_S = 1.0  # fallback only (no pidfd): how often adopted processes are checked


def pidfd_supported() -> bool:
    """True when ``os.pidfd_open`` exists and the kernel implements it."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):  # EPERM: seccomp sandboxes that forbid it
            return False
        raise
    os.close(fd)
    return True


@dataclass(slots=True)
class _Watch:
    pid: int
    on_exit: ExitCallback
    popen: subprocess.Popen[bytes] | None  # set for our own children
    start_time: int  # for adopted processes checked by the fallback timer
    pidfd: int | None = None


class ExitWatcher:
    """Calls ``on_exit(returncode)`` once, on the loop, when a watched process exits.

    Args:
        loop: the orchestrator's loop; every method must be called on it.
        use_pidfd: force the normal path (True) or the SIGCHLD fallback (False); None detects.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, use_pidfd: bool | None = None) -> None:
        self._loop = loop
        self.uses_pidfd = pidfd_supported() if use_pidfd is None else use_pidfd
        # One entry per watched, not yet exited process; removed on exit or unwatch. Bounded by the number
        # of live replicas (the supervisor's concern), so nothing accumulates per crash.
        self._watches: dict[int, _Watch] = {}
        self._sigchld_installed = False
        self._poll_timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._watches)

    def watch_child(self, popen: subprocess.Popen[bytes], on_exit: ExitCallback) -> None:
        """Watch our own child; ``on_exit`` gets its return code (negative: killed by that signal)."""
        w = _Watch(popen.pid, on_exit, popen, start_time=0)
        self._watches[w.pid] = w
        if not self.uses_pidfd:
            self._install_sigchld()
            self._loop.call_soon(self._on_sigchld)  # it may have exited before the handler existed
            return
        try:
            w.pidfd = os.pidfd_open(popen.pid)
        except ProcessLookupError:  # cannot happen while unreaped, unless someone else reaped it
            self._fire(w)
            return
        self._loop.add_reader(w.pidfd, self._on_readable, w.pid)

    def watch_pid(self, pid: int, start_time: int, on_exit: ExitCallback) -> bool:
        """Watch a process that is not our child (``on_exit`` gets None).

        The start time is checked again after the pidfd is open: the pidfd pins the process, so a match
        then proves the pid was not reused between the caller's check and ours.

        Returns:
            False, watching nothing, when the pid is gone or now belongs to another process.
        """
        w = _Watch(pid, on_exit, None, start_time=start_time)
        if self.uses_pidfd:
            try:
                w.pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return False
        stat = read_proc_stat(pid)
        if stat is None or stat.start_time != start_time:
            if w.pidfd is not None:
                os.close(w.pidfd)
            return False
        self._watches[pid] = w
        if w.pidfd is not None:
            self._loop.add_reader(w.pidfd, self._on_readable, pid)
        elif self._poll_timer is None:
            self._poll_timer = self._loop.call_later(_ADOPTED_POLL_S, self._poll_adopted)
        return True

    def check(self, pid: int) -> None:
        """Process an exit of ``pid`` now if it already happened (before signalling it, say)."""
        w = self._watches.get(pid)
        if w is None:
            return
        if w.pidfd is not None:
            poller = select.poll()
            poller.register(w.pidfd, select.POLLIN)
            if poller.poll(0):
                self._on_readable(pid)
        elif w.popen is not None:
            if w.popen.poll() is not None:
                self._fire(w)
        elif not _alive(w):
            self._fire(w)

    def unwatch(self, pid: int) -> None:
        """Stop watching ``pid`` and release its pidfd; ``on_exit`` will not be called.

        A still-running child of ours is detached: it keeps running (replicas outlive the orchestrator)
        and is no longer reaped by us; once this process exits, init reaps it.
        """
        w = self._watches.pop(pid, None)
        if w is None:
            return
        self._release(w)
        if w.popen is not None and w.popen.poll() is None:
            _detach(w.popen)

    def close(self) -> None:
        """Stop watching everything (processes keep running) and remove the handlers. Idempotent."""
        for pid in list(self._watches):
            self.unwatch(pid)
        if self._sigchld_installed:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._sigchld_installed = False
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None

    def _release(self, w: _Watch) -> None:
        if w.pidfd is not None:
            self._loop.remove_reader(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = None

    def _fire(self, w: _Watch) -> None:
        self._watches.pop(w.pid, None)
        self._release(w)
        rc: int | None = None
        if w.popen is not None:
            rc = w.popen.poll()
            if rc is None:
                # Not expected: the kernel marks the task a zombie before it wakes pidfd pollers, so this
                # wait returns at once. Kept so that a surprise cannot leave an unreaped child behind.
                rc = w.popen.wait()
        w.on_exit(rc)

    def _on_readable(self, pid: int) -> None:
        w = self._watches.get(pid)
        if w is not None:
            self._fire(w)

    def _install_sigchld(self) -> None:
        if not self._sigchld_installed:
            self._loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
            self._sigchld_installed = True

    def _on_sigchld(self) -> None:
        # SIGCHLDs coalesce, so one signal may stand for several exits: poll every tracked child.
        for w in [w for w in self._watches.values() if w.popen is not None]:
            if w.popen is not None and w.popen.poll() is not None:
                self._fire(w)

    def _poll_adopted(self) -> None:
        self._poll_timer = None
        adopted = [w for w in self._watches.values() if w.popen is None and w.pidfd is None]
        for w in adopted:
            if not _alive(w):
                self._fire(w)
        if any(w.popen is None and w.pidfd is None for w in self._watches.values()):
            self._poll_timer = self._loop.call_later(_ADOPTED_POLL_S, self._poll_adopted)


def _alive(w: _Watch) -> bool:
    stat = read_proc_stat(w.pid)
    return stat is not None and stat.start_time == w.start_time and stat.state not in ("Z", "X")


def _detach(popen: subprocess.Popen[bytes]) -> None:
    """Let go of a running child on purpose.

    Without this, ``Popen.__del__`` warns "subprocess N is still running" (ResourceWarning) and keeps the
    object in ``subprocess._active`` to reap later. Detaching is deliberate here, so we clear the
    CPython-internal ``_child_created`` flag that gates both (checked with hasattr to stay harmless if
    it ever disappears).
    """
    if hasattr(popen, "_child_created"):
        popen._child_created = False
