"""Starting an orchestrator (``deploy``) and judging health (``wait_for_healthy``), for both clients.

``deploy`` runs ``python -m deploy_code up --detach -f FILE [SERVICES]`` with this interpreter: the
same command a person types, so the orchestrator is a daemon in its own session that outlives this
program, and ``up --detach`` returns once the outcome is known. Its exit status and the coded lines
it prints on stderr (``file:line:col: E002 message`` / ``    hint: ...``) become a coded error here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from deploy_code.client._core import make_error
from deploy_code.client.models import Status
from deploy_code.errors import (
    DeployCodeError,
    Diagnostic,
    ErrorCode,
    HealthError,
    Location,
    StartError,
    TimeoutExceeded,
)
from deploy_code.events import ReplicaState

__all__ = [
    "POLL_MAX",
    "POLL_MIN",
    "deploy_failed",
    "healthy_or_raise",
    "live_processes",
    "not_healthy_in_time",
    "still_live",
    "up_command",
]

POLL_MIN = 0.05  # seconds between status polls at first (a deployment that is nearly ready)
POLL_MAX = 0.5  # and at most, once waiting has gone on a while
MAX_DIAGNOSTICS = 50  # coded lines read back from `up --detach`; a flood of them is cut here
MAX_TAIL = 20  # lines of output quoted when no coded line was printed

_CODED = re.compile(r"^(?:(?P<where>.*?): )?(?P<code>[ES]\d{3}) (?P<message>.*)$")
_WHERE = re.compile(r"^(?P<file>.*?)(?::(?P<line>\d+)(?::(?P<column>\d+))?)?$")


def up_command(file: Path, services: Sequence[str]) -> list[str]:
    """The argv that starts a detached orchestrator for ``file``."""
    return [sys.executable, "-m", "deploy_code", "up", "--detach", "-f", str(file), *services]


def deploy_failed(returncode: int, stdout: str, stderr: str) -> DeployCodeError:
    """The coded error for a failed ``up --detach`` (E005 when it printed no code)."""
    diags = _diagnostics(stderr)
    if not diags:
        tail = (stdout + stderr).strip().splitlines()[-MAX_TAIL:]
        return StartError(
            f"`deploy-code up --detach` failed with status {returncode}: " + " / ".join(tail),
            code=ErrorCode.E005,
        )
    first = diags[0]
    hint = first.hint
    if first.code == ErrorCode.E006:
        hint = "the orchestrator keeps running: see status() and logs(), or call down()"
    quoted = _quoted(stderr)  # the last output of a failed service, or the orchestrator's log tail
    message = first.message + "".join(f"\n    {line}" for line in quoted)
    return make_error(first.code, message, hint=hint, diagnostics=diags)


def _quoted(stderr: str) -> list[str]:
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line[:1].isspace() and not line.startswith("    hint: ") and line.strip()
    ]
    return lines[-MAX_TAIL:]


def _diagnostics(stderr: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for line in stderr.splitlines():
        if line.startswith("    hint: ") and out:
            last = out[-1]
            out[-1] = Diagnostic(last.code, last.message, last.location, line.removeprefix("    hint: "))
            continue
        # Indented lines are hints (above) or quoted service output, which must not pass for a code.
        match = None if line[:1].isspace() else _CODED.match(line)
        if match is None or len(out) >= MAX_DIAGNOSTICS:
            continue
        try:
            code = ErrorCode(match["code"])
        except ValueError:
            continue
        out.append(Diagnostic(code, match["message"], _location(match["where"])))
    return out


def _location(where: str | None) -> Location | None:
    if not where:
        return None
    match = _WHERE.match(where)
    assert match is not None  # the pattern matches any text
    line, column = match["line"], match["column"]
    return Location(match["file"], int(line) if line else None, int(column) if column else None)


def _selected(status: Status, services: Sequence[str] | None) -> list[str]:
    if services is None:
        return list(status.services)
    unknown = [name for name in services if name not in status.services]
    if unknown:
        known = ", ".join(status.services) or "none"
        raise make_error(
            ErrorCode.S001, f"service {unknown[0]!r} is not deployed", hint=f"deployed services: {known}"
        )
    return list(services)


def healthy_or_raise(status: Status, services: Sequence[str] | None) -> list[str]:
    """The services (of ``services``, default all) not healthy yet; raises E006 when one has failed."""
    waiting: list[str] = []
    for name in _selected(status, services):
        svc = status.services[name]
        if svc.failed:
            raise HealthError(
                f"service {name} failed: {svc.failure or svc.state}",
                code=ErrorCode.E006,
                hint="a failed replica is not restarted on its own: see logs(), then restart()",
            )
        if not svc.healthy:
            waiting.append(name)
    return waiting


_LIVE = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DEGRADED)


def live_processes(status: Status, replica_ids: Sequence[str]) -> dict[str, int]:
    """``{replica id: pid}`` of those replicas still running the process they ran in ``status``.

    ``restart`` returns once this is empty, i.e. once the orchestrator has acted on the request (the
    old process is stopping or gone): a ``wait_for_healthy`` right after it cannot see the replicas
    ready *before* the restart and return at once.
    """
    wanted = set(replica_ids)
    out: dict[str, int] = {}
    for svc in status.services.values():
        for rep in svc.replicas:
            if rep.id in wanted and rep.pid is not None and rep.state in _LIVE:
                out[rep.id] = rep.pid
    return out


def still_live(status: Status, before: dict[str, int]) -> dict[str, int]:
    """The entries of ``before`` whose replica still runs that same process in ``status``."""
    now = live_processes(status, list(before))
    return {rid: pid for rid, pid in before.items() if now.get(rid) == pid}


def not_healthy_in_time(timeout: float, waiting: Sequence[str]) -> TimeoutExceeded:
    """E008 naming the services still not healthy."""
    return TimeoutExceeded(
        f"not healthy within {timeout:g}s (still waiting for: {', '.join(waiting)})",
        code=ErrorCode.E008,
        hint="see status() and logs(); a larger timeout may be needed",
    )
