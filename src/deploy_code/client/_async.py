"""``AsyncClient``: the orchestrator's API for asyncio programs (one pooled httpx client per instance)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from deploy_code.client import _core
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

__all__ = ["AsyncClient"]

T = TypeVar("T")

DOWN_WAIT_S = 10.0  # after /v1/down answers, how long to wait for the process to let go of its socket
DOWN_POLLS = int(DOWN_WAIT_S / POLL_MIN)
EVENTS_BACKLOG = 100  # stored events sent before new ones by events() (the API allows up to 10,000)


class AsyncClient:
    """Control the deployment of one ``deploy-code.yaml`` from asyncio code.

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

    Use it as an async context manager, or call :meth:`aclose`.
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
            httpx.AsyncHTTPTransport(uds=str(socket))
            if socket is not None
            else httpx.AsyncHTTPTransport(verify=verify)
        )
        self._http = httpx.AsyncClient(transport=transport, **self._target.client_options(timeout))

    def __repr__(self) -> str:
        return f"AsyncClient({self._target.where!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        self._target.check_socket()
        with map_transport_errors(self._target):
            resp = await self._http.request(
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

    async def _answers(self) -> bool:
        try:
            await self.health()
        except SupervisionError as exc:
            if exc.code == ErrorCode.S002:
                return False
            raise
        return True

    async def deploy(self, services: Sequence[str] | None = None, *, timeout: float | None = None) -> Status:
        """Deploy the file and return the status once the outcome is known.

        When no orchestrator answers, one is started in the background (``deploy-code up --detach``)
        and this returns once every service is ready. When one already runs, its status is returned
        as it is: re-deploying a changed file is a later feature (``down()`` then ``deploy()`` for now).

        Args:
            services: services to deploy, with their dependencies (default: all).
            timeout: seconds to wait for the outcome (None: as long as the services' own timeouts).

        Raises:
            ConfigError: E001/E002/E003 for the file (nothing is started).
            HealthError: E006 when a service did not get ready; the orchestrator keeps running.
            TimeoutExceeded: E008 past ``timeout``; the orchestrator keeps running.
            SupervisionError: S002 with ``base_url`` when nothing answers (it starts only locally).
            DeployCodeError: other codes from planning (E004, S004, ...).
        """
        if not await self._answers():
            if self._target.socket is None or self._target.file is None:
                raise self._target.not_running()
            await self._start(list(services or ()), timeout)
        return await self.status()

    async def _start(self, services: list[str], timeout: float | None) -> None:
        assert self._target.file is not None
        proc = await asyncio.create_subprocess_exec(
            *up_command(self._target.file, services),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            raise TimeoutExceeded(
                f"the deployment had no outcome within {timeout:g}s",
                hint="the orchestrator keeps running: see status(), or call down()",
            ) from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: only the waiting helper goes
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise deploy_failed(
                proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
            )

    async def status(self, detailed: bool = False) -> Status:
        """Every service and replica; ``detailed`` adds resources, ports, admission and the API listeners.

        Raises:
            SupervisionError: S002 when no orchestrator runs.
        """
        return await self._send(_core.status_call(detailed=detailed))

    async def health(self) -> HealthReport:
        """The orchestrator answers, its phase, and each service's health (``deploy-code health``).

        Raises:
            SupervisionError: S002 when no orchestrator runs.
        """
        try:
            return await self._send(_core.health_report_call())
        except _core.MissingRoute:  # an orchestrator without /v1/health/report: liveness and phase only
            return await self._send(_core.health_call())

    async def outcome(self) -> Outcome:
        """The deployment outcome (waits until it is known)."""
        return await self._send(_core.outcome_call())

    async def restart(self, services: str | Sequence[str]) -> RestartResult:
        """Restart every replica of the named services.

        Returns once the orchestrator has acted on it (each old process is stopping or gone, or the
        client's ``timeout`` has passed), so a :meth:`wait_for_healthy` right after waits for the new
        processes. The replicas are not ready yet when this returns.

        Raises:
            SupervisionError: S001 for a service that is not deployed (nothing is restarted).
        """
        names = _core.as_names(services)
        before = await self.status()
        result = await self._send(_core.restart_call(names))
        old = live_processes(before, result.restarted)
        for _ in range(self._polls()):
            if not old:
                break
            await asyncio.sleep(POLL_MIN)
            old = still_live(await self.status(), old)
        return result

    async def stop(
        self, services: str | Sequence[str] | None = None, *, timeout: float | None = None
    ) -> StopResult:
        """Stop services (default: every deployed one); they stay stopped until :meth:`restart`.

        The orchestrator keeps running; :meth:`down` ends it.

        Args:
            services: the services to stop (default: all).
            timeout: seconds before SIGKILL (default: each service's own stop timeout).

        Raises:
            SupervisionError: S001 for a service that is not deployed (nothing is stopped).
        """
        names = _core.as_names(services) if services is not None else list((await self.status()).services)
        if not names:
            return StopResult(stopped=())
        return await self._send(_core.stop_call(names, timeout))

    async def scale(self, service: str, replicas: int) -> ScaleResult:
        """Run ``replicas`` replicas of ``service`` (new ones start at once; surplus ones stop).

        Raises:
            SupervisionError: S001 unknown service, S004 a fixed port cannot serve two replicas.
            PlacementError: E004 when the new replicas do not fit.
        """
        return await self._send(_core.scale_call(service, replicas))

    async def logs(self, service: str, lines: int = 100, *, replica: int | None = None) -> list[LogLine]:
        """The last ``lines`` lines of each replica's output (or of replica index ``replica``).

        Raises:
            SupervisionError: S001 for a service that is not deployed.
        """
        return await self._send(_core.logs_call(service, lines, replica))

    async def wait_for_healthy(self, timeout: float = 60.0, services: Sequence[str] | None = None) -> Status:
        """Poll the status until every service (or each of ``services``) is healthy; returns that status.

        Healthy: each of a service's desired replicas is ready, or completed for a one-shot job.

        Raises:
            TimeoutExceeded: E008 when not healthy within ``timeout`` seconds (names who is not).
            HealthError: E006 as soon as a replica has failed (it would not recover by waiting).
            SupervisionError: S002 when no orchestrator runs; S001 for an unknown service.
        """
        deadline = time.monotonic() + timeout
        pause = POLL_MIN
        while True:
            status = await self.status()
            waiting = healthy_or_raise(status, services)
            if not waiting:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise not_healthy_in_time(timeout, waiting)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    async def down(self, timeout: float | None = None) -> None:
        """Stop everything in reverse dependency order and end the orchestrator.

        Returns once everything is stopped and (locally) the orchestrator has let go of its socket.

        Args:
            timeout: seconds before SIGKILL (default: each service's own stop timeout).

        Raises:
            SupervisionError: S002 when no orchestrator runs.
        """
        await self._send(_core.down_call(timeout))
        # The reply comes once everything is stopped; the process then unlinks its socket and ends.
        socket = self._target.socket
        for _ in range(DOWN_POLLS):
            if socket is None or not socket.exists():
                break
            await asyncio.sleep(POLL_MIN)

    async def events(
        self,
        *,
        service: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        backlog: int = EVENTS_BACKLOG,
    ) -> AsyncIterator[Event]:
        """Stored events (up to ``backlog``, oldest first), then new ones as they happen.

        Ends when the orchestrator finishes. To stop early, break out of the loop inside
        ``contextlib.aclosing(client.events())`` so the stream is closed at once.

        Args:
            service: only this service's events.
            kind: only events of this kind (e.g. ``replica.transition``).
            after_id: only events after this row id (resume from the last one seen).
            backlog: how many stored events come first (1 to 10,000).

        Raises:
            SupervisionError: S002 when no orchestrator runs.
        """
        self._target.check_socket()
        params = _core.events_params(service, kind, after_id, backlog)
        with map_transport_errors(self._target):
            async with self._http.stream(
                "GET", "/v1/events", params=params, timeout=httpx.Timeout(self._timeout, read=None)
            ) as resp:
                if resp.status_code >= 400:
                    raise _core.error_for(resp.status_code, (await resp.aread()).decode(errors="replace"))
                async for line in resp.aiter_lines():
                    event = _core.event_from_line(line)
                    if event is not None:
                        yield event
