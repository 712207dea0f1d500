"""A unix-socket listener that loads FastAPI + uvicorn on the first connection."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy_code.supervisor import Orchestrator

__all__ = ["SOCKET_NAME", "LazyApiServer"]

SOCKET_NAME = "api.sock"
log = logging.getLogger("deploy_code.api")


class LazyApiServer:
    """Binds ``path`` (mode 0600) now; starts the HTTP stack when the first client connects.

    Args:
        path: the socket path (inside the 0700 state directory).
        orch: the orchestrator the routes control.
    """

    def __init__(self, path: Path, orch: Orchestrator) -> None:
        self.path = path
        self.orch = orch
        self._sock: socket.socket | None = None
        self._server: Any = None
        self._wake = asyncio.Event()

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
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock

    async def serve(self) -> None:
        """Serve until cancelled. Loads the HTTP stack on the first pending connection."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sock.fileno(), self._wake.set)
        try:
            await self._wake.wait()
        finally:
            loop.remove_reader(self._sock.fileno())
        # Imports run in a thread so the loop keeps supervising while ~250 ms of modules load.
        uvicorn = await asyncio.to_thread(importlib.import_module, "uvicorn")
        app_mod = await asyncio.to_thread(importlib.import_module, "deploy_code.api.app")
        config = uvicorn.Config(
            app_mod.create_app(self.orch),
            lifespan="off",
            log_level="warning",
            access_log=False,
            date_header=False,  # no per-tick refresh: we do not run uvicorn's 100 ms main loop
            timeout_graceful_shutdown=5,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # what Server.serve() would set before startup()
        server.server_state.default_headers = list(config.encoded_headers)
        self._server = server
        # startup() creates the asyncio server on our socket; the waiting client is accepted there.
        await server.startup(sockets=[self._sock])
        try:
            await asyncio.Event().wait()
        finally:
            server.should_exit = True
            with _quiet():
                await server.shutdown(sockets=[self._sock])

    def close(self) -> None:
        """Close and unlink the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def _quiet() -> Generator[None, None, None]:
    try:
        yield
    except Exception:  # shutting down: a failure here must not mask why we are stopping
        log.debug("api shutdown error", exc_info=True)
