"""The five checks (tcp, http, exec, log_line, notify) and ``make_check``, which binds a spec to a replica.

Every check follows the ``Check`` contract: one attempt per call, its own timeout, never raises (errors
become ``ok=False`` with a short message), and releases what it opened even when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from typing import TYPE_CHECKING

from deploy_code.errors import ConfigError
from deploy_code.health.result import Check, CheckTarget, ProbeResult, short

if TYPE_CHECKING:
    from collections.abc import Sequence

    from deploy_code.config.model import ProbeSpec
    from deploy_code.health.httpclient import HttpClientFactory
    from deploy_code.health.listen import ListenWatcher
    from deploy_code.health.loglines import LogLineMatcher
    from deploy_code.health.notify import NotifyEndpoint

__all__ = ["ExecProbe", "HttpProbe", "LogLineProbe", "NotifyProbe", "TcpProbe", "make_check"]

# At most this much of an http probe's body is read; reading it to the end lets the connection be reused.
MAX_HTTP_BODY_BYTES = 64 * 1024


def make_check(
    spec: ProbeSpec,
    target: CheckTarget,
    *,
    http: HttpClientFactory,
    log: LogLineMatcher | None = None,
    notify: NotifyEndpoint | None = None,
    listen: ListenWatcher | None = None,
) -> Check:
    """Bind ``spec`` to one replica.

    A tcp/http check uses the host it names explicitly, else ``target.host``; its port is a name looked
    up in ``target.ports`` or a literal number.

    Args:
        spec: the probe, with exactly one check kind set.
        target: where the replica runs.
        http: the orchestrator's pooled client, used by http checks.
        log: the replica's log matcher; required for a ``log_line`` check.
        notify: the replica's notify endpoint; required for a ``notify`` check.
        listen: wakes tcp and http checks when their port opens (optional, see ``ListenWatcher``).

    Returns:
        A check that enforces ``spec.timeout`` itself.

    Raises:
        ConfigError: a port name is not among ``target.ports`` (E002).
        ValueError: a ``log_line`` check without ``log`` or a ``notify`` check without ``notify``.
    """
    timeout = spec.timeout
    if spec.tcp is not None:
        host = spec.tcp.host if "host" in spec.tcp.model_fields_set else target.host
        return TcpProbe(host, _port(spec.tcp.port, target), timeout, listen)
    if spec.http is not None:
        check = spec.http
        host = check.host if "host" in check.model_fields_set else target.host
        port = _port(check.port, target)
        url = _url(check.scheme, host, port, check.path)
        return HttpProbe(url, http, timeout, port=port, listen=listen)
    if spec.exec is not None:
        return ExecProbe(spec.exec.command, target, timeout)
    if spec.log_line is not None:
        if log is None:
            raise ValueError("a log_line check needs the replica's LogLineMatcher")
        return LogLineProbe(log)
    if spec.notify is not None:
        if notify is None:
            raise ValueError("a notify check needs the replica's NotifyEndpoint")
        return NotifyProbe(notify)
    raise ValueError("the probe has no check kind")  # ProbeSpec validation makes this unreachable


class _ListenHint:
    """``hint()``: returns when the probed port starts listening (see ``ListenWatcher``).

    The runner races it against its fast-phase timer, so a replica is probed again the moment its
    port opens rather than at the next tick. Without a watcher the hint never fires.
    """

    port: int
    listen: ListenWatcher | None

    async def hint(self) -> None:
        """Wait until the port listens (forever without a watcher: the caller's timer decides)."""
        if self.listen is None:
            await asyncio.Event().wait()
        else:
            await self.listen.wait(self.port)


def _literal_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    """The socket family and address for ``host``; names fall back to IPv4 resolution by the loop."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    return socket.AF_INET, (host, port)


class TcpProbe(_ListenHint):
    """Passes when a TCP connection to ``host:port`` is accepted; the connection is closed at once."""

    def __init__(self, host: str, port: int, timeout: float, listen: ListenWatcher | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.listen = listen
        # A literal address connects without a name look-up; a name is resolved by sock_connect (in the
        # loop's executor, off the loop) on every attempt, as open_connection did.
        self._family, self._address = _literal_address(host, port)

    async def __call__(self) -> ProbeResult:
        """Connect, close, report."""
        start = time.perf_counter()
        try:
            # A bare non-blocking socket and loop.sock_connect: no transport or stream objects, about
            # half the CPU of asyncio.open_connection per attempt (probes run for every replica forever).
            sock = socket.socket(self._family, socket.SOCK_STREAM)
        except OSError as exc:
            return _failed(f"tcp {self.host}:{self.port}: {_os_error(exc)}", start)
        try:
            sock.setblocking(False)
            async with asyncio.timeout(self.timeout):
                await asyncio.get_running_loop().sock_connect(sock, self._address)
        except TimeoutError:
            return _failed(f"tcp {self.host}:{self.port}: timeout after {self.timeout:g}s", start)
        except OSError as exc:
            return _failed(f"tcp {self.host}:{self.port}: {_os_error(exc)}", start)
        except Exception as exc:  # the contract: a check never raises
            return _failed(f"tcp {self.host}:{self.port}: {type(exc).__name__}: {exc}", start)
        finally:
            sock.close()  # connected is the pass; closing a socket never blocks
        return ProbeResult(True, f"tcp {self.host}:{self.port}: connected", time.perf_counter() - start)


class HttpProbe(_ListenHint):
    """Passes when ``GET url`` answers 2xx or 3xx (redirects are not followed)."""

    def __init__(
        self,
        url: str,
        http: HttpClientFactory,
        timeout: float,
        *,
        port: int = 0,
        listen: ListenWatcher | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._http = http
        self.port = port
        self.listen = listen if port else None

    async def __call__(self) -> ProbeResult:
        """One GET through the pooled client."""
        import httpx  # lazy on purpose: importing httpx is slow, see httpclient.py

        start = time.perf_counter()
        try:
            client = self._http.client()
            # httpx's timeout bounds each phase; asyncio.timeout bounds the whole attempt.
            async with (
                asyncio.timeout(self.timeout),
                client.stream("GET", self.url, timeout=self.timeout) as response,
            ):
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > MAX_HTTP_BODY_BYTES:
                        break
                code = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return _failed(f"GET {self.url}: timeout after {self.timeout:g}s", start)
        except httpx.HTTPError as exc:
            return _failed(f"GET {self.url}: {type(exc).__name__}: {exc}", start)
        except Exception as exc:  # the contract: a check never raises
            return _failed(f"GET {self.url}: {type(exc).__name__}: {exc}", start)
        ok = 200 <= code < 400
        return ProbeResult(ok, short(f"GET {self.url}: HTTP {code}"), time.perf_counter() - start)


class ExecProbe:
    """Passes when the command exits 0. Runs argv verbatim (never a shell), in its own process group.

    The command gets the replica's environment and working directory and no stdin/stdout/stderr. On
    timeout or cancellation its whole process group is killed and reaped.
    """

    def __init__(self, argv: Sequence[str], target: CheckTarget, timeout: float) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self._env = dict(target.env)
        self._cwd = target.cwd

    async def __call__(self) -> ProbeResult:
        """Run the command once."""
        start = time.perf_counter()
        name = self.argv[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as exc:
            return _failed(f"exec {name}: cannot run: {_os_error(exc)}", start)
        except Exception as exc:  # the contract: a check never raises
            return _failed(f"exec {name}: cannot run: {type(exc).__name__}: {exc}", start)
        try:
            async with asyncio.timeout(self.timeout):
                code = await proc.wait()
        except TimeoutError:
            return _failed(f"exec {name}: timeout after {self.timeout:g}s (killed)", start)
        finally:
            if proc.returncode is None:
                # Timed out or cancelled: kill the group (the command's children too), then reap.
                _kill_group(proc.pid)
                await proc.wait()
        if code == 0:
            return ProbeResult(True, short(f"exec {name}: exit 0"), time.perf_counter() - start)
        return _failed(f"exec {name}: {_describe_exit(code)}", start)


class LogLineProbe:
    """Passes once the replica printed a line that matches the pattern."""

    def __init__(self, matcher: LogLineMatcher) -> None:
        self.matcher = matcher

    async def __call__(self) -> ProbeResult:
        """Report the matcher's state; no I/O."""
        if self.matcher.matched:
            return ProbeResult(True, short(f"log line matched {self.matcher.pattern!r}"), 0.0)
        return ProbeResult(False, short(f"no log line matched {self.matcher.pattern!r} yet"), 0.0)


class NotifyProbe:
    """Passes once the replica sent ``READY=1`` to its ``$NOTIFY_SOCKET``."""

    def __init__(self, endpoint: NotifyEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self) -> ProbeResult:
        """Report the endpoint's state; no I/O."""
        status = self.endpoint.status
        detail = f" ({status})" if status else ""
        if self.endpoint.ready:
            return ProbeResult(True, short(f"notify: READY=1{detail}"), 0.0)
        return ProbeResult(False, short(f"notify: waiting for READY=1{detail}"), 0.0)


def _port(ref: str | int, target: CheckTarget) -> int:
    if isinstance(ref, int):
        return ref
    try:
        return target.ports[ref]
    except KeyError:
        known = ", ".join(sorted(target.ports)) or "none"
        raise ConfigError(
            f"probe names port {ref!r}, which the replica does not have",
            hint=f"use one of the service's ports ({known}) or a port number",
        ) from None


def _url(scheme: str, host: str, port: int, path: str) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}:{port}{path}"


def _failed(message: str, start: float) -> ProbeResult:
    return ProbeResult(False, short(message), time.perf_counter() - start)


def _os_error(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"
