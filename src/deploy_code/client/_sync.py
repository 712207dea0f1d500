"""``Client``: the orchestrator's API for scripts and notebooks (a pooled sync httpx client, no event loop).

Same operations, arguments, results and errors as :class:`~deploy_code.client.AsyncClient`; both send
the :class:`~deploy_code.client._core.Call` values built in ``_core``.
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from deploy_code.client import _core
from deploy_code.client._async import DOWN_POLLS, EVENTS_BACKLOG
from deploy_code.client._core import Call, Target, map_transport_errors, resolve_target
from deploy_code.client._deploy import (
    POLL_MAX,
    POLL_MIN,
    deploy_failed,
    healthy_or_raise,
    live_processes,
    not_healthy_in_time,
    still_live,
    up_command,
)
from deploy_code.client.models import (
    Event,
    HealthReport,
    LogLine,
    Outcome,
    RestartResult,
    ScaleResult,
    Status,
    StopResult,
)
from deploy_code.errors import ErrorCode, SupervisionError, TimeoutExceeded

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """Control the deployment of one ``deploy-code.yaml`` from ordinary (blocking) code.

    Args:
        file: the deployment file; its ``settings.state_dir`` (default ``.deploy-code`` beside it) holds
            the orchestrator's unix socket. Read once, here.
        state_dir: the state directory, when it is not the file's.
        base_url: talk to the orchestrator's TCP listener (``api.listen``) instead of the unix socket.
        token: the bearer token for ``base_url``; kept out of every repr and error message.
        timeout: seconds for each request (stop, scale and down wait as long as the work takes).
        verify: TLS verification for an ``https`` ``base_url`` (a CA file path or an SSL context).

    Raises:
        ConfigError: E002 for a token without ``base_url``.

    Use it as a context manager, or call :meth:`close`. Every method is documented on
    :class:`~deploy_code.client.AsyncClient`, which has the same ones.
    """

    def __init__(
        self,
        file: str | Path = "deploy-code.yaml",
        *,
        state_dir: str | Path | None = None,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self._target: Target = resolve_target(
            file, state_dir=state_dir, base_url=base_url, token=token, verify=verify
        )
        self._timeout = timeout
        socket = self._target.socket
        transport = (
            httpx.HTTPTransport(uds=str(socket)) if socket is not None else httpx.HTTPTransport(verify=verify)
        )
        self._http = httpx.Client(transport=transport, **self._target.client_options(timeout))

    def __repr__(self) -> str:
        return f"Client({self._target.where!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        self._target.check_socket()
        with map_transport_errors(self._target):
            resp = self._http.request(
                call.method,
                call.path,
                json=call.json,
                params=call.params,
                timeout=call.timeout(self._timeout),
            )
        return call.finish(resp)

    def _polls(self) -> int:
        """Status polls, POLL_MIN apart, that fit in one request timeout."""
        return max(1, int(self._timeout / POLL_MIN))

    def _answers(self) -> bool:
        try:
            self.health()
        except SupervisionError as exc:
            if exc.code == ErrorCode.S002:
                return False
            raise
        return True

    def deploy(self, services: Sequence[str] | None = None, *, timeout: float | None = None) -> Status:
        """Deploy the file, starting a background orchestrator if none answers (see AsyncClient.deploy)."""
        if not self._answers():
            if self._target.socket is None or self._target.file is None:
                raise self._target.not_running()
            self._start(list(services or ()), timeout)
        return self.status()

    def _start(self, services: list[str], timeout: float | None) -> None:
        assert self._target.file is not None
        try:
            proc = subprocess.run(
                up_command(self._target.file, services),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:  # run() killed only the waiting helper, not the daemon
            raise TimeoutExceeded(
                f"the deployment had no outcome within {timeout:g}s",
                hint="the orchestrator keeps running: see status(), or call down()",
            ) from None
        if proc.returncode != 0:
            out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
            raise deploy_failed(proc.returncode, out, err)

    def status(self, detailed: bool = False) -> Status:
        """Every service and replica; ``detailed`` adds resources, ports, admission and the API listeners."""
        return self._send(_core.status_call(detailed=detailed))

    def health(self) -> HealthReport:
        """The orchestrator answers, its phase, and each service's health (S002 when none runs)."""
        try:
            return self._send(_core.health_report_call())
        except _core.MissingRoute:  # an orchestrator without /v1/health/report: liveness and phase only
            return self._send(_core.health_call())

    def outcome(self) -> Outcome:
        """The deployment outcome (waits until it is known)."""
        return self._send(_core.outcome_call())

    def restart(self, services: str | Sequence[str]) -> RestartResult:
        """Restart every replica of the named services (S001 for an unknown one); returns once the old
        processes are stopping or gone, so :meth:`wait_for_healthy` after it waits for the new ones."""
        names = _core.as_names(services)
        before = self.status()
        result = self._send(_core.restart_call(names))
        old = live_processes(before, result.restarted)
        for _ in range(self._polls()):
            if not old:
                break
            time.sleep(POLL_MIN)
            old = still_live(self.status(), old)
        return result

    def stop(
        self, services: str | Sequence[str] | None = None, *, timeout: float | None = None
    ) -> StopResult:
        """Stop services (default: all); the orchestrator keeps running (see :meth:`down`)."""
        names = _core.as_names(services) if services is not None else list(self.status().services)
        if not names:
            return StopResult(stopped=())
        return self._send(_core.stop_call(names, timeout))

    def scale(self, service: str, replicas: int) -> ScaleResult:
        """Run ``replicas`` replicas of ``service``."""
        return self._send(_core.scale_call(service, replicas))

    def logs(self, service: str, lines: int = 100, *, replica: int | None = None) -> list[LogLine]:
        """The last ``lines`` lines of each replica's output (or of replica index ``replica``)."""
        return self._send(_core.logs_call(service, lines, replica))

    def wait_for_healthy(self, timeout: float = 60.0, services: Sequence[str] | None = None) -> Status:
        """Poll until every service (or each of ``services``) is healthy; E008 past ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = POLL_MIN
        while True:
            status = self.status()
            waiting = healthy_or_raise(status, services)
            if not waiting:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise not_healthy_in_time(timeout, waiting)
            time.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    def down(self, timeout: float | None = None) -> None:
        """Stop everything in reverse dependency order and end the orchestrator."""
        self._send(_core.down_call(timeout))
        socket = self._target.socket
        for _ in range(DOWN_POLLS):
            if socket is None or not socket.exists():
                break
            time.sleep(POLL_MIN)

    def events(
        self,
        *,
        service: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        backlog: int = EVENTS_BACKLOG,
    ) -> Iterator[Event]:
        """Stored events, then new ones until the orchestrator finishes (a generator: ``close()`` it
        or leave the ``for`` loop inside ``contextlib.closing(...)`` to stop early)."""
        self._target.check_socket()
        params = _core.events_params(service, kind, after_id, backlog)
        with (
            map_transport_errors(self._target),
            self._http.stream(
                "GET", "/v1/events", params=params, timeout=httpx.Timeout(self._timeout, read=None)
            ) as resp,
        ):
            if resp.status_code >= 400:
                raise _core.error_for(resp.status_code, resp.read().decode(errors="replace"))
            for line in resp.iter_lines():
                event = _core.event_from_line(line)
                if event is not None:
                    yield event
