"""Who holds a TCP port: the S004 message when a front port cannot be bound.

psutil reads ``/proc/net/tcp*`` and every process's fds, which can take tens of milliseconds, so
the caller runs :func:`describe_holder` off the event loop. Another user's process shows no pid
unless we run as root; the message then says the holder is not visible instead of guessing.
"""

from __future__ import annotations

import psutil

__all__ = ["describe_holder"]

_ANY = ("0.0.0.0", "::", "")


def describe_holder(host: str, port: int) -> str:
    """A phrase naming the process listening on ``host:port``, e.g. ``pid 123 (python -m http.server)``.

    Never raises: when psutil cannot tell, the phrase says so and why.
    """
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError) as exc:
        return f"a process that cannot be identified here (psutil: {type(exc).__name__})"
    pids: set[int | None] = set()
    for conn in conns:
        laddr = conn.laddr
        if not laddr or laddr.port != port or conn.status != psutil.CONN_LISTEN:
            continue
        if laddr.ip in (host, *_ANY) or host in _ANY:
            pids.add(conn.pid)
    if not pids:
        return "a socket that is not listening (a connection in TIME_WAIT or a bound socket, pid not shown)"
    known = sorted(pid for pid in pids if pid is not None)
    if not known:
        return "another user's process (pid not visible without privileges)"
    return ", ".join(_describe_pid(pid) for pid in known[:3])


def _describe_pid(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()) or proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return f"pid {pid} (command not visible)"
    if len(cmd) > 120:
        cmd = cmd[:117] + "..."
    return f"pid {pid} ({cmd})"
