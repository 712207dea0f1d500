"""Reading ``/proc/<pid>/stat``: start time (pid-reuse check), state and process group."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProcStat", "proc_start_time", "read_proc_stat"]


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the runtime uses.

    Attributes:
        state: field 3, one letter (``R``, ``S``, ``Z`` for a zombie, ...).
        ppid: field 4, the parent.
        pgid: field 5, the process group.
        start_time: field 22, clock ticks since boot.
    """

    state: str
    ppid: int
    pgid: int
    start_time: int


def read_proc_stat(pid: int) -> ProcStat | None:
    """Read the state, process group and start time of ``pid``.

    Args:
        pid: a process id.

    Returns:
        The fields, or None when the process does not exist (or cannot be read).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:  # FileNotFoundError when gone; ESRCH when it exits while we read
        return None
    # Field 2 (comm) is in parentheses and may itself contain spaces and ')': split after the last ')'.
    end = data.rfind(b")")
    if end < 0:
        return None
    rest = data[end + 2 :].split()
    # rest[0] is field 3, so field N is rest[N - 3].
    try:
        return ProcStat(
            state=rest[0].decode(), ppid=int(rest[1]), pgid=int(rest[2]), start_time=int(rest[19])
        )
    except (IndexError, ValueError):
        return None


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of ``/proc/<pid>/stat``).

    Args:
        pid: a process id.

    Returns:
        The start time, or None when the process does not exist.
    """
    stat = read_proc_stat(pid)
    return None if stat is None else stat.start_time
