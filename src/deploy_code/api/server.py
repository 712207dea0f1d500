"""Listeners that load FastAPI + uvicorn on their first connection: the unix socket, and TCP.

Both bind at start-up (so a busy port or an unusable path is reported by ``up``), then wait for the
socket to become readable before importing the HTTP stack. Each listener gets its own uvicorn server
and app: the unix socket's app trusts its caller (mode 0600) as admin; the TCP app checks bearer
tokens and roles, and speaks TLS when ``api.tls`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy_code.errors import NetworkError

if TYPE_CHECKING:
    import ssl

    from deploy_code.api.listener import TcpPlan
    from deploy_code.api.tokens import TokenSet
    from deploy_code.supervisor import Orchestrator

__all__ = ["SOCKET_NAME", "LazyApiServer", "TcpApiServer"]

SOCKET_NAME = "api.sock"
BACKLOG = 128  # pending connections per listener before the kernel refuses more
log = logging.getLogger("deploy_code.api")

Describe = Callable[[], dict[str, object]]


class LazyApiServer:
    """Binds ``path`` (mode 0600) now; starts the HTTP stack when the first client connects.

    Args:
        path: the socket path (inside the 0700 state directory).
        orch: the orchestrator the routes control.
        describe: the listeners and token names, added to ``/v1/status`` as ``api``.
    """

    def __init__(self, path: Path, orch: Orchestrator, describe: Describe | None = None) -> None:
        self.path = path
        self.orch = orch
        self.describe = describe
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        """Create the listening socket. A stale socket file from a dead orchestrator is replaced."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: only the owner may control the deployment
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._sock = sock

    async def serve(self) -> None:
        """Serve until cancelled. Loads the HTTP stack on the first pending connection."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        await _serve_lazily(self._sock, self.orch, None, None, self.describe)

    def close(self) -> None:
        """Close and unlink the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class TcpApiServer:
    """The ``api.listen`` listener: bearer tokens and roles always, TLS when configured.

    Args:
        plan: the checked address, tokens and TLS context (:func:`~deploy_code.api.plan_tcp`).
        orch: the orchestrator the routes control.
        describe: the listeners and token names, added to ``/v1/status`` as ``api``.
    """

    def __init__(self, plan: TcpPlan, orch: Orchestrator, describe: Describe | None = None) -> None:
        self.plan = plan
        self.orch = orch
        self.describe = describe
        self._sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` with the bound port once :meth:`bind` ran."""
        if self.address is None:
            return self.plan.url
        host = f"[{self.address[0]}]" if ":" in self.address[0] else self.address[0]
        return f"{'https' if self.plan.ssl else 'http'}://{host}:{self.address[1]}"

    def bind(self) -> None:
        """Bind and listen now, so a busy or forbidden address fails ``up`` at once.

        Raises:
            NetworkError: E010 when the address cannot be bound, located at ``api.listen``.
        """
        plan = self.plan
        try:
            infos = socket.getaddrinfo(plan.host, plan.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            sock = _tcp_listener(family, addr)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise NetworkError(
                f"{plan.origin}: cannot listen on {plan.host}:{plan.port}: {why}",
                location=plan.location,
                hint="pick a free port (or 0 for any), or stop whatever holds this one",
            ) from None
        sock.setblocking(False)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))

    async def serve(self) -> None:
        """Serve until cancelled. Loads the HTTP stack on the first pending connection."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        await _serve_lazily(self._sock, self.orch, self.plan.tokens, self.plan.ssl, self.describe)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def _serve_lazily(
    sock: socket.socket,
    orch: Orchestrator,
    tokens: TokenSet | None,
    ssl_context: ssl.SSLContext | None,
    describe: Describe | None,
) -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    loop.add_reader(sock.fileno(), wake.set)
    try:
        await wake.wait()
    finally:
        loop.remove_reader(sock.fileno())
    # Imports run in a thread so the loop keeps supervising while ~250 ms of modules load.
    uvicorn = await asyncio.to_thread(importlib.import_module, "uvicorn")
    app_mod = await asyncio.to_thread(importlib.import_module, "deploy_code.api.app")
    config = uvicorn.Config(
        app_mod.create_app(orch, tokens=tokens, describe=describe),
        lifespan="off",
        log_level="warning",
        access_log=False,  # an access log would be one more place a request could leak from
        date_header=False,  # no per-tick refresh: we do not run uvicorn's 100 ms main loop
        timeout_graceful_shutdown=5,
        ssl_context_factory=None if ssl_context is None else _fixed_context(ssl_context),
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # what Server.serve() would set before startup()
    server.server_state.default_headers = list(config.encoded_headers)
    # startup() creates the asyncio server on our socket; the waiting client is accepted there.
    await server.startup(sockets=[sock])
    try:
        await asyncio.Event().wait()
    finally:
        server.should_exit = True
        with _quiet():
            await server.shutdown(sockets=[sock])


def _fixed_context(context: ssl.SSLContext) -> Callable[[Any, Any], ssl.SSLContext]:
    # The context was built (and its files checked) at start-up by plan_tcp; uvicorn just uses it.
    return lambda _config, _default: context


@contextlib.contextmanager
def _quiet() -> Generator[None, None, None]:
    try:
        yield
    except Exception:  # shutting down: a failure here must not mask why we are stopping
        log.debug("api shutdown error", exc_info=True)


def _tcp_listener(family: socket.AddressFamily, addr: tuple[Any, ...]) -> socket.socket:
    """A listening TCP socket created with ``proto=IPPROTO_TCP``.

    ``socket.create_server`` leaves ``proto`` at 0, which accepted sockets inherit, and asyncio only
    sets TCP_NODELAY on sockets whose proto is IPPROTO_TCP: without it, uvicorn's separate header and
    body writes meet Nagle and the client's delayed ACK, and a keep-alive request took ~40 ms.
    """
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock
