"""FrontPort against real sockets on 127.0.0.1: bytes both ways, half-close, S004, waiting and refusing."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from tests.integration.network.net_helpers import HOST, backends, wait_until

from deploy_code.errors import ErrorCode, SupervisionError
from deploy_code.network import FrontPort, ProxySettings


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(payload)
    writer.write_eof()  # half-close: the answer must still come back
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_bytes_flow_both_ways_with_half_close() -> None:
    async with backends(1, mode="echo", tail=b"|end") as (b,), FrontPort("svc", HOST, 0) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        payload = os.urandom(3_000_000)
        assert await roundtrip(fp.port, payload) == payload + b"|end"
        stats = fp.stats()
        assert stats["bytes_in"] == len(payload)
        assert stats["bytes_out"] == len(payload) + 4
        assert stats["connections_total"] == 1
        await wait_until(lambda: fp.stats()["connections_active"] == 0)
        assert stats["available"] is True


async def test_round_robin_spreads_new_connections() -> None:
    async with backends(3, mode="echo") as bs, FrontPort("svc", HOST, 0) as fp:
        for i, b in enumerate(bs):
            fp.add_backend(f"svc.{i}", HOST, b.port)
        for _ in range(9):
            assert await roundtrip(fp.port, b"hi") == b"hi"
        assert [b.accepted for b in bs] == [3, 3, 3]


async def test_taken_port_is_s004_naming_the_holder() -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        fp = FrontPort("web", HOST, port)
        with pytest.raises(SupervisionError) as info:
            await fp.start()
        assert info.value.code is ErrorCode.S004
        assert f"pid {os.getpid()}" in info.value.message
        assert "python" in info.value.message or "pytest" in info.value.message
        await fp.close()  # safe after a failed start


async def test_no_ready_backend_waits_then_closes_and_counts() -> None:
    settings = ProxySettings(connect_timeout=0.3)
    async with FrontPort("svc", HOST, 0, settings) as fp:
        assert fp.available is False
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reader, writer = await asyncio.open_connection(HOST, fp.port)
        assert await reader.read() == b""  # closed unserved
        waited = loop.time() - t0
        writer.close()
        assert 0.25 <= waited < 2.0
        await wait_until(lambda: fp.stats()["no_backend"] == 1)
        assert fp.stats()["available"] is False


async def test_a_backend_joining_during_the_wait_serves_the_connection() -> None:
    settings = ProxySettings(connect_timeout=3.0)
    async with backends(1, mode="echo") as (b,), FrontPort("svc", HOST, 0, settings) as fp:
        pending = asyncio.ensure_future(roundtrip(fp.port, b"late"))
        await wait_until(lambda: fp.stats()["queued"] == 1)
        fp.add_backend("svc.0", HOST, b.port)
        assert await asyncio.wait_for(pending, 5) == b"late"
        assert fp.stats()["no_backend"] == 0


async def test_dead_backend_not_yet_removed_is_retried_elsewhere() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind((HOST, 0))
        dead_port = s.getsockname()[1]
    async with backends(1, mode="echo") as (b,), FrontPort("svc", HOST, 0) as fp:
        fp.add_backend("dead", HOST, dead_port)
        fp.add_backend("live", HOST, b.port)
        for _ in range(4):
            assert await roundtrip(fp.port, b"x") == b"x"
        stats = fp.stats()
        assert stats["connect_retries"] == 1  # then the dead one is suspect and passed over
        dead = next(x for x in stats["backends"] if x["id"] == "dead")  # type: ignore[union-attr]
        assert dead["connect_failures"] == 1


async def test_max_connections_queues_then_refuses() -> None:
    settings = ProxySettings(max_connections=2, queue_timeout=0.3, max_queue=1)
    async with backends(1, mode="hold") as (b,), FrontPort("svc", HOST, 0, settings) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        held = [await asyncio.open_connection(HOST, fp.port) for _ in range(2)]
        await wait_until(lambda: b.active == 2)
        # Third waits in the queue; fourth finds the queue full and is refused at once.
        _r3, w3 = await asyncio.open_connection(HOST, fp.port)
        await wait_until(lambda: fp.stats()["queued"] == 1)
        r4, w4 = await asyncio.open_connection(HOST, fp.port)
        assert await asyncio.wait_for(r4.read(), 2) == b""
        # A slot frees within the queue timeout: the waiter gets it.
        held[0][1].close()
        await wait_until(lambda: b.accepted == 3)
        # The next one waits past the timeout and is refused.
        r5, w5 = await asyncio.open_connection(HOST, fp.port)
        assert await asyncio.wait_for(r5.read(), 2) == b""
        stats = fp.stats()
        assert stats["refused"] == 2
        assert b.active == 2
        for w in (held[1][1], w3, w4, w5):
            w.close()


async def test_close_ends_open_connections_and_stops_listening() -> None:
    async with backends(1, mode="hold") as (b,):
        fp = FrontPort("svc", HOST, 0)
        await fp.start()
        fp.add_backend("svc.0", HOST, b.port)
        reader, writer = await asyncio.open_connection(HOST, fp.port)
        await wait_until(lambda: b.active == 1)
        port = fp.port
        await asyncio.wait_for(fp.close(), 5)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, port)
        await wait_until(lambda: b.active == 0)


async def test_a_server_that_speaks_first_is_heard() -> None:
    """Bytes a backend sends at once (even before create_connection returns) reach the client."""
    async with backends(1, mode="banner", body=b"220 ready\r\n") as (b,), FrontPort("svc", HOST, 0) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        for _ in range(30):
            reader, writer = await asyncio.open_connection(HOST, fp.port)
            assert await asyncio.wait_for(reader.readexactly(11), 2) == b"220 ready\r\n"
            writer.write(b"QUIT\r\n")
            assert await asyncio.wait_for(reader.readexactly(6), 2) == b"QUIT\r\n"
            writer.close()


async def test_close_does_not_wait_out_the_connect_timeout() -> None:
    fp = FrontPort("svc", HOST, 0, ProxySettings(connect_timeout=30.0))
    await fp.start()
    reader, writer = await asyncio.open_connection(HOST, fp.port)
    await wait_until(lambda: fp.stats()["queued"] == 1)  # waiting for a backend
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(fp.close(), 5)
    assert loop.time() - t0 < 1.0
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    assert fp.stats()["connections_active"] == 0


async def test_slots_balance_after_queue_timeouts() -> None:
    """A refused waiter leaves the queue and holds no slot: after the long one ends, the next is served."""
    settings = ProxySettings(max_connections=1, queue_timeout=0.2, max_queue=4)
    async with backends(1, mode="echo") as (b,), FrontPort("svc", HOST, 0, settings) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        _r1, w1 = await asyncio.open_connection(HOST, fp.port)
        await wait_until(lambda: b.active == 1)
        waiters = [await asyncio.open_connection(HOST, fp.port) for _ in range(3)]
        for reader, writer in waiters:
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        assert fp.stats()["refused"] == 3 and fp.stats()["queued"] == 0
        w1.close()
        await wait_until(lambda: fp.stats()["connections_active"] == 0)
        assert await asyncio.wait_for(roundtrip(fp.port, b"again"), 2) == b"again"
