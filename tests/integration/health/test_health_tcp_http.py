"""tcp and http checks against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from deploy_code.clock import SystemClock
from deploy_code.config.model import ProbeSpec
from deploy_code.health import CheckTarget, HttpClientFactory, ProbeResult, ProbeRunner, make_check

RESPONSES = {
    "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/redirect": b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
    "/fail": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000,
}


def target(port: int) -> CheckTarget:
    return CheckTarget(host="127.0.0.1", ports={"main": port}, env={}, cwd="/")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class RawHttpServer:
    """Answers each request on a connection from RESPONSES; ``/hang`` never answers."""

    port: int = 0
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while not self.stop.is_set():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].decode()
                self.requests.append(path)
                if path == "/hang":
                    await self.stop.wait()
                    return
                writer.write(RESPONSES[path])
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()


@pytest.fixture
async def http_server() -> AsyncIterator[RawHttpServer]:
    state = RawHttpServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        state.stop.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def http() -> AsyncIterator[HttpClientFactory]:
    async with HttpClientFactory() as factory:
        yield factory


async def test_tcp_ok_against_a_listening_server(http: HttpClientFactory) -> None:
    accepted = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        check = make_check(ProbeSpec.model_validate({"tcp": {"port": "main"}}), target(port), http=http)
        result = await check()
        assert result.ok, result.message
        assert result.message == f"tcp 127.0.0.1:{port}: connected"
        assert 0 <= result.latency_s < 1
        async with asyncio.timeout(2):
            await accepted.wait()
        server.close()
        await server.wait_closed()


async def test_tcp_fails_on_a_closed_port(http: HttpClientFactory) -> None:
    port = closed_port()
    check = make_check(ProbeSpec.model_validate({"tcp": {"port": port}}), target(port), http=http)
    result = await check()
    assert not result.ok
    assert result.message.startswith(f"tcp 127.0.0.1:{port}: ")
    assert len(result.message) <= 200


def http_spec(path: str, timeout: float = 1.0) -> ProbeSpec:
    return ProbeSpec.model_validate({"http": {"port": "main", "path": path}, "timeout": timeout})


@pytest.mark.parametrize(
    ("path", "ok", "code"), [("/ok", True, 200), ("/redirect", True, 302), ("/fail", False, 500)]
)
async def test_http_status_decides(
    http_server: RawHttpServer, http: HttpClientFactory, path: str, ok: bool, code: int
) -> None:
    check = make_check(http_spec(path), target(http_server.port), http=http)
    result = await check()
    assert result.ok is ok
    assert result.message == f"GET http://127.0.0.1:{http_server.port}{path}: HTTP {code}"
    assert http_server.requests == [path]  # the redirect was not followed


async def test_http_server_that_never_answers_times_out(
    http_server: RawHttpServer, http: HttpClientFactory
) -> None:
    check = make_check(http_spec("/hang", timeout=0.2), target(http_server.port), http=http)
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await check()
    assert loop.time() - start < 2
    assert not result.ok
    assert "timeout" in result.message
    assert result.latency_s >= 0.15


async def test_http_pool_recovers_after_a_timeout(
    http_server: RawHttpServer, http: HttpClientFactory
) -> None:
    hang = make_check(http_spec("/hang", timeout=0.1), target(http_server.port), http=http)
    ok = make_check(http_spec("/ok"), target(http_server.port), http=http)
    for _ in range(3):
        assert not (await hang()).ok
        assert (await ok()).ok


async def test_runner_reports_the_checks_own_timeout_message(
    http_server: RawHttpServer, http: HttpClientFactory
) -> None:
    spec = http_spec("/hang", timeout=0.1)
    runner = ProbeRunner("web/0", spec, make_check(spec, target(http_server.port), http=http), SystemClock())
    results: list[ProbeResult] = []
    done = asyncio.Event()

    def on_result(result: ProbeResult) -> None:
        results.append(result)
        done.set()

    async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
        task = tg.create_task(runner.run(lambda t: None, on_result))
        await done.wait()
        task.cancel()
    assert results[0].message == f"GET http://127.0.0.1:{http_server.port}/hang: timeout after 0.1s"


async def test_http_connection_refused(http: HttpClientFactory) -> None:
    port = closed_port()
    result = await make_check(http_spec("/ok"), target(port), http=http)()
    assert not result.ok
    assert "ConnectError" in result.message


async def test_http_probes_share_one_pooled_connection(
    http_server: RawHttpServer, http: HttpClientFactory
) -> None:
    check = make_check(http_spec("/ok"), target(http_server.port), http=http)
    for _ in range(3):
        assert (await check()).ok
    assert http_server.connections == 1
    other = make_check(http_spec("/fail"), target(http_server.port), http=http)
    assert not (await other()).ok
    assert http_server.connections == 1


async def test_http_large_body_is_not_read_to_the_end(
    http_server: RawHttpServer, http: HttpClientFactory
) -> None:
    result = await make_check(http_spec("/big"), target(http_server.port), http=http)()
    assert result.ok


async def test_http_after_factory_closed_fails_without_raising(http_server: RawHttpServer) -> None:
    factory = HttpClientFactory()
    await factory.aclose()
    result = await make_check(http_spec("/ok"), target(http_server.port), http=factory)()
    assert not result.ok
    assert "closed" in result.message
