"""The composition root: builds the real objects and runs the orchestrator (foreground or daemon).

``up`` in the foreground runs everything in this process with a live view; ``up --detach`` starts this
same code in a new session (``--handshake-fd``) and waits on a pipe for progress and the outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from deploy_code.api import SOCKET_NAME, LazyApiServer, TcpApiServer, TcpPlan, plan_tcp
from deploy_code.config import Project
from deploy_code.errors import DeployCodeError, ErrorCode, StartError
from deploy_code.events import Event, ReplicaState, ReplicaTransitioned
from deploy_code.runtime import LocalBackend
from deploy_code.state import StateDirLock, StateStore, prepare_state_dir
from deploy_code.supervisor import DeployOutcome, Orchestrator

__all__ = ["Reporter", "detach", "run_orchestrator"]

FAILURE_LOG_LINES = 15


class Reporter(Protocol):
    """Shows progress: receives every event, the outcome, and may run a live view."""

    def publish(self, event: Event) -> None:
        """One event (must not block)."""
        ...

    def outcome(self, orch: Orchestrator, result: DeployOutcome) -> None:
        """The deployment outcome, once."""
        ...

    async def live(self, orch: Orchestrator) -> None:
        """Run until cancelled (a live view), or return at once."""
        ...


def failure_details(orch: Orchestrator, result: DeployOutcome) -> list[dict[str, object]]:
    """For each failed service: why, and the last lines of its replicas' output."""
    out: list[dict[str, object]] = []
    for name, why in result.failures:
        svc = orch.services[name]
        lines: list[str] = []
        for rep in svc.replicas.values():
            lines.extend(f"{rep.id} | {line}" for line in rep.last_lines(FAILURE_LOG_LINES))
        out.append({"service": name, "reason": why, "last_lines": lines[-FAILURE_LOG_LINES * 2 :]})
    return out


def api_description(socket_path: Path, tcp: TcpApiServer | None, plan: TcpPlan | None) -> dict[str, object]:
    """The ``api`` entry of ``/v1/status``: where the API listens and which token *names* it accepts."""
    return {
        "unix": str(socket_path),
        "tcp": None if tcp is None else tcp.url,
        "tls": plan is not None and plan.ssl is not None,
        "tokens": [] if plan is None else plan.tokens.describe(),
    }


async def run_orchestrator(
    project: Project, selected: Sequence[str], reporter: Reporter, listen: str | None = None
) -> DeployOutcome:
    """Deploy and supervise until SIGINT/SIGTERM or ``down``; returns the deployment outcome.

    Args:
        project: the loaded file.
        selected: services to deploy (plus their dependencies); empty for all.
        reporter: progress, outcome and live view.
        listen: ``HOST:PORT`` for a TCP API listener (``--listen``); replaces ``api.listen``.

    Raises:
        DeployCodeError: S003 when another orchestrator runs for this file; E004/S004/S001 from planning;
            E002 when the TCP listener is refused (no TLS off loopback, no tokens, unreadable token
            source or TLS files); E010 when its address cannot be bound.
    """
    # Checked before anything is locked or started: a refused listener starts nothing.
    plan = plan_tcp(project, os.environ, listen)
    # The digests are taken; drop the plaintext so no service inherits a token through its environment.
    for token in project.spec.api.tokens:
        if token.env is not None:
            os.environ.pop(token.env, None)
    state_dir = prepare_state_dir(project.state_dir)
    lock = StateDirLock(state_dir)
    lock.acquire()
    store = StateStore(state_dir / "state.db", retention=project.spec.retention)
    backend = LocalBackend(
        log_max_bytes=project.spec.settings.log_max_size, log_backups=project.spec.settings.log_backups
    )
    api: LazyApiServer | None = None
    tcp: TcpApiServer | None = None
    loop = asyncio.get_running_loop()
    try:
        orch = Orchestrator(project, backend=backend, store=store, selected=selected, sinks=[reporter])
        socket_path = state_dir / SOCKET_NAME

        def describe() -> dict[str, object]:
            return api_description(socket_path, tcp, plan)

        api = LazyApiServer(socket_path, orch, describe)
        api.bind()
        if plan is not None:
            tcp = TcpApiServer(plan, orch, describe)
            tcp.bind()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            # First signal: orderly stop with each service's timeout. Second: stop now (SIGKILL).
            orch.request_down(None if signals == 1 else 0.0)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        async with asyncio.TaskGroup() as tg:
            servers = [tg.create_task(api.serve())]
            if tcp is not None:
                servers.append(tg.create_task(tcp.serve()))
            live_task = tg.create_task(reporter.live(orch))
            try:
                result = await orch.run(lambda r: reporter.outcome(orch, r))
            finally:
                for task in servers:
                    task.cancel()
                live_task.cancel()
        return result
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if api is not None:
            api.close()
        if tcp is not None:
            tcp.close()
        await backend.aclose()
        store.close()
        lock.release()


class PipeReporter:
    """Daemon side of ``up --detach``: progress and the outcome as JSON lines on a pipe."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def _send(self, obj: dict[str, object]) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (json.dumps(obj) + "\n").encode())
        except OSError:  # the waiting CLI went away (Ctrl-C): keep running, stop reporting
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def publish(self, event: Event) -> None:
        """Forward replica transitions into READY / FAILED / BACKOFF."""
        if isinstance(event, ReplicaTransitioned) and event.new in (
            ReplicaState.READY,
            ReplicaState.FAILED,
            ReplicaState.BACKOFF,
        ):
            self._send(
                {
                    "type": "progress",
                    "service": event.service,
                    "replica": event.replica,
                    "state": str(event.new),
                    "reason": event.reason,
                }
            )

    def outcome(self, orch: Orchestrator, result: DeployOutcome) -> None:
        """Send the outcome, then close the pipe: the CLI returns."""
        self._send(
            {
                "type": "outcome",
                "outcome": result.outcome,
                "duration_s": result.duration_s,
                "failures": failure_details(orch, result),
                "pid": os.getpid(),
            }
        )
        self._close()

    def error(self, exc: DeployCodeError) -> None:
        """Planning failed before anything started."""
        self._send({"type": "error", "error": exc.to_dict()})
        self._close()

    async def live(self, orch: Orchestrator) -> None:
        """No live view in the daemon."""


def detach(
    config_path: Path, state_dir: Path, selected: Sequence[str], listen: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the orchestrator in a new session; returns the process and the read end of its pipe.

    ``listen`` is passed on as ``--listen``; check it first with :func:`~deploy_code.api.plan_tcp` so
    a refused listener is reported in this terminal.
    """
    prepare_state_dir(state_dir)
    read_fd, write_fd = os.pipe()
    log_path = state_dir / "orchestrator.log"
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deploy_code",
                    "up",
                    "-f",
                    str(config_path),
                    "--handshake-fd",
                    str(write_fd),
                    *(("--listen", listen) if listen is not None else ()),
                    *selected,
                ],
                pass_fds=(write_fd,),
                start_new_session=True,  # the orchestrator outlives this terminal and its Ctrl-C
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                close_fds=True,
            )
        except OSError as exc:
            os.close(read_fd)
            raise StartError(f"could not start the orchestrator: {exc}", code=ErrorCode.E005) from None
        finally:
            os.close(write_fd)
    return proc, read_fd
