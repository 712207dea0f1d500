"""Spawning a replica's process: off the event loop, with a timeout, retried when resources are short.

Each replica gets its own session (``start_new_session=True``), which also makes it the leader of its own
process group. Two reasons: a signal sent to the group (``killpg``) reaches the replica's children too, so
``stop`` leaves no stray workers; and Ctrl-C in the orchestrator's terminal goes to the terminal's
foreground group, not to the replicas, so the orchestrator alone decides how they stop.

Limits: a spawn given a :class:`Confinement` runs its ``preexec_fn`` in the child before exec, so the
child enters its cgroup (or sets its rlimits) before the service's first instruction (see ``limits``).

There is deliberately no ``PR_SET_PDEATHSIG``: replicas must outlive the orchestrator (it may be
SIGKILLed, or restarted), and a later run re-adopts them by :class:`ProcessIdentity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import Executor, Future

from deploy_code.errors import StartError
from deploy_code.runtime.backend import ProcessSpec
from deploy_code.runtime.local.limits import ENV_VAR, Confinement

__all__ = ["spawn", "spawn_blocking"]

# fork/exec fail with these when the machine is momentarily short of processes or memory; worth a retry.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM})
_BACKOFF_FIRST = 0.05  # seconds before the first retry; doubles each time
_BACKOFF_MAX = 1.0  # cap of one retry delay
# O_APPEND: every write of the child lands at the current end, so copy-truncate rotation works without
# the child's help. O_CLOEXEC: only the child's stdout/stderr (dup2'd) keep the file, no other child does.
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_LOG_MODE = 0o600  # logs may hold secrets the service prints
_UNCONFINED = Confinement()


def spawn_blocking(spec: ProcessSpec, confinement: Confinement | None = None) -> subprocess.Popen[bytes]:
    """Start ``spec`` now, blocking the calling thread (run it in an executor).

    Args:
        spec: what to run.
        confinement: the cgroup the child enters, or the rlimits it sets, before it execs.

    Returns:
        The running child.

    Raises:
        StartError: E005, with a message naming the cause (missing executable or cwd, permission, ...).
        OSError: ``EAGAIN`` / ``ENOMEM`` only, so that the caller can retry.
    """
    if not spec.argv:
        raise StartError(f"{spec.name}: empty command", hint="give the service a command to run")
    if not os.path.isdir(spec.cwd):
        raise StartError(
            f"{spec.name}: working directory {spec.cwd!r} does not exist",
            hint="create it or fix the service's working_dir",
        )
    try:
        logfd = os.open(spec.log_path, _LOG_FLAGS, _LOG_MODE)
    except OSError as exc:
        raise StartError(
            f"{spec.name}: cannot open log file {spec.log_path!r}: {exc.strerror}",
            hint="check that the log directory exists and is writable",
        ) from exc
    conf = confinement or _UNCONFINED
    try:
        with contextlib.ExitStack() as stack:
            try:
                preexec = stack.enter_context(conf.child_setup())
            except OSError as exc:
                raise StartError(
                    f"{spec.name}: cannot enter its cgroup ({conf.applied.method}): {exc.strerror}",
                    hint=f"check that the cgroup is writable, or set {ENV_VAR}=rlimit",
                ) from exc
            return subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=logfd,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: see the module docstring
                close_fds=True,
                preexec_fn=preexec,  # None unless a limit applies: then subprocess may use vfork
            )
    except subprocess.SubprocessError as exc:  # the preexec_fn failed in the child: nothing was exec'd
        raise StartError(
            f"{spec.name}: could not apply its resource limits ({conf.applied.method}) before starting",
            hint=f"check that the cgroup is writable, or set {ENV_VAR}=rlimit",
        ) from exc
    except OSError as exc:
        if exc.errno in _TRANSIENT_ERRNOS:
            raise
        raise start_error(spec, exc) from exc
    finally:
        os.close(logfd)  # the child has its own copy; the parent must not keep one per replica


def start_error(spec: ProcessSpec, exc: OSError) -> StartError:
    """Map an ``OSError`` from fork/exec to an E005 error with a message a user can act on.

    Args:
        spec: the spec that failed to start.
        exc: the error from ``subprocess.Popen``.

    Returns:
        The error to raise.
    """
    exe = spec.argv[0]
    if exc.filename == spec.cwd and isinstance(exc, FileNotFoundError | NotADirectoryError):
        return StartError(
            f"{spec.name}: working directory {spec.cwd!r} does not exist",
            hint="create it or fix the service's working_dir",
        )
    if isinstance(exc, FileNotFoundError):
        return StartError(
            f"{spec.name}: executable {exe!r} not found",
            hint="check the command, or PATH in the service's environment",
        )
    if isinstance(exc, PermissionError):
        what = "working directory" if exc.filename == spec.cwd else "executable"
        target = spec.cwd if what == "working directory" else exe
        return StartError(
            f"{spec.name}: permission denied for {what} {target!r}",
            hint="check the file mode (chmod +x) and the directory permissions",
        )
    if exc.errno == errno.ENOEXEC:
        return StartError(
            f"{spec.name}: {exe!r} is not an executable format",
            hint="a script needs a #! line, or run it through its interpreter",
        )
    code = errno.errorcode.get(exc.errno or 0, "unknown")
    return StartError(f"{spec.name}: cannot start {exe!r}: {exc.strerror} ({code})")


def _kill_orphan(fut: Future[subprocess.Popen[bytes]]) -> None:
    """Done-callback for a spawn whose caller gave up (timeout or cancel): kill and reap what it made."""
    if fut.cancelled() or fut.exception() is not None:
        return
    popen = fut.result()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)  # pgid == pid: the child leads its own group
    popen.wait()  # immediate after SIGKILL; runs in the worker thread that finished the spawn


async def spawn(
    spec: ProcessSpec,
    executor: Executor,
    *,
    blocking: Callable[[ProcessSpec], subprocess.Popen[bytes]] = spawn_blocking,
) -> subprocess.Popen[bytes]:
    """Start ``spec`` in ``executor`` within ``spec.start_timeout``, retrying on ``EAGAIN`` / ``ENOMEM``.

    Args:
        spec: what to run.
        executor: the small dedicated spawn pool (fork/exec and the file opens never run on the loop).
        blocking: the function that spawns; tests substitute one that fails first.

    Returns:
        The running child.

    Raises:
        StartError: E005 when the process cannot be started, the retries are spent, or the timeout passed.
    """
    loop = asyncio.get_running_loop()
    delay = _BACKOFF_FIRST
    attempt = 0
    try:
        async with asyncio.timeout(spec.start_timeout):
            while True:
                cfut = executor.submit(blocking, spec)
                try:
                    return await asyncio.wrap_future(cfut, loop=loop)
                except asyncio.CancelledError:
                    # The thread may still finish the spawn after we stop waiting: kill what it made.
                    cfut.add_done_callback(_kill_orphan)
                    raise
                except OSError as exc:
                    if exc.errno not in _TRANSIENT_ERRNOS or attempt >= spec.spawn_retries:
                        raise start_error(spec, exc) from exc
                attempt += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
    except TimeoutError as exc:
        raise StartError(
            f"{spec.name}: spawning did not finish within {spec.start_timeout:g}s",
            hint="the machine may be overloaded; raise the service's start timeout",
        ) from exc
