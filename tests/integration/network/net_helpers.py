"""Real backends for the front-port tests: in-process asyncio servers and HTTP child processes, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"

# A tiny HTTP/1.1 server for child processes: answers every request with its own port in the body
# (so the client sees which replica served it), after an optional delay in seconds (argv[1]), honours
# keep-alive and Connection: close, prints its port on stdout when it listens.
CHILD_HTTP = r"""
import asyncio, sys
DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
async def handle(reader, writer):
    port = writer.get_extra_info("sockname")[1]
    body = str(port).encode()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if DELAY:
                await asyncio.sleep(DELAY)
            close = b"connection: close" in head.lower()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                len(body), b"Connection: close\r\n" if close else b"", body))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


class ChildHttp:
    """One ``CHILD_HTTP`` process; :attr:`port` is where it listens; ``delay``: seconds before each answer."""

    def __init__(self, delay: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD_HTTP, str(delay)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError("child HTTP server did not start")
        self.port = int(line)

    def kill(self) -> None:
        """SIGKILL and reap: the port refuses connections from here on."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def http_get(port: int, path: str = "/", *, timeout: float = 5.0) -> bytes:
    """One request on a new connection (``Connection: close``); returns the body, raises on any failure."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"bad status: {head[:40]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@dataclass
class Backend:
    """An in-process asyncio server; ``mode`` picks what each connection does.

    * ``echo``: copies what it reads back, until EOF; then sends ``tail`` and closes.
    * ``hold``: reads and drops until EOF (a long-lived connection).
    * ``hello_hold``: sends its own port and a newline, then holds like ``hold``.
    * ``banner``: sends ``body`` at once (a server that speaks first), then echoes like ``echo``.
    * ``slow_http``: answers one HTTP request after ``delay`` seconds with ``body``.
    * ``sink``: counts bytes read until EOF, then answers with the count.
    * ``source``: sends ``size`` bytes, then closes.
    * ``mute``: reads a request (up to its blank line), then closes without answering: a replica
      that dies mid-request.
    * ``mute_eof``: reads until EOF, then closes without answering.
    * ``mute_reset``: like ``mute``, but resets the connection (RST) instead of closing it.
    """

    mode: str = "echo"
    delay: float = 0.0
    body: bytes = b"ok"
    tail: bytes = b""
    size: int = 0
    port: int = 0
    active: int = 0
    accepted: int = 0
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.active += 1
        self.accepted += 1
        try:
            if self.mode in ("echo", "banner"):
                if self.mode == "banner":
                    writer.write(self.body)
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
                writer.write(self.tail)
            elif self.mode in ("hold", "hello_hold"):
                if self.mode == "hello_hold":
                    writer.write(b"%d\n" % self.port)
                while await reader.read(65536):
                    pass
            elif self.mode == "slow_http":
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.body), self.body))
            elif self.mode == "sink":
                total = 0
                while chunk := await reader.read(262144):
                    total += len(chunk)
                writer.write(str(total).encode())
            elif self.mode in ("mute", "mute_reset"):
                await reader.readuntil(b"\r\n\r\n")
                if self.mode == "mute_reset":
                    writer.transport.abort()
            elif self.mode == "mute_eof":
                while await reader.read(262144):
                    pass
            elif self.mode == "source":
                block = b"x" * 65536
                left = self.size
                while left > 0:
                    writer.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def backends(n: int, **kwargs: object) -> AsyncIterator[list[Backend]]:
    """``n`` started :class:`Backend` servers, closed on exit."""
    started = [await Backend(**kwargs).start() for _ in range(n)]  # type: ignore[arg-type]
    try:
        yield started
    finally:
        for b in started:
            await b.close()


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll a zero-argument callable on the loop until it is true (bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - counters of servers and the port, nothing to await
            await asyncio.sleep(0.005)
