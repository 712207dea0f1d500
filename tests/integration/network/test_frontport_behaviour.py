"""The front port's promises, measured on real sockets: random kills, least-conn spread, drain, bandwidth."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from tests.integration.network.net_helpers import HOST, ChildHttp, backends, http_get, wait_until

from deploy_code.network import FrontPort, ProxySettings


@pytest.mark.slow
async def test_random_kills_fail_no_request_while_one_replica_is_ready() -> None:
    """3 child HTTP servers; kill them one at a time at random points while requests keep coming.

    After each kill a few requests go out *before* the backend is removed (the orchestrator's exit event
    has not arrived yet): the connect retry must cover them. Then it is removed, and later replaced by a
    fresh process that joins the pool, so the loop can kill again.
    """
    rng = random.Random(20261130)
    children = [await asyncio.to_thread(ChildHttp) for _ in range(3)]
    settings = ProxySettings(connect_timeout=1.0)
    served: dict[int, int] = {}
    failures: list[str] = []
    requests = 0
    try:
        async with FrontPort("web", HOST, 0, settings) as fp:
            for i, c in enumerate(children):
                fp.add_backend(f"web.{i}", HOST, c.port)
            kills = 0
            deadline = time.monotonic() + 30
            while kills < 6 and time.monotonic() < deadline:
                for _ in range(rng.randint(5, 30)):
                    try:
                        body = await http_get(fp.port)
                        served[int(body)] = served.get(int(body), 0) + 1
                    except Exception as exc:
                        failures.append(repr(exc))
                    requests += 1
                victim = rng.randrange(3)
                children[victim].kill()
                kills += 1
                for _ in range(rng.randint(1, 5)):  # killed, not yet removed
                    try:
                        body = await http_get(fp.port)
                        served[int(body)] = served.get(int(body), 0) + 1
                    except Exception as exc:
                        failures.append(repr(exc))
                    requests += 1
                fp.remove_backend(f"web.{victim}")
                children[victim] = await asyncio.to_thread(ChildHttp)
                fp.add_backend(f"web.{victim}", HOST, children[victim].port)
            stats = fp.stats()
    finally:
        for c in children:
            c.kill()
    assert kills == 6
    assert failures == [], failures[:5]
    assert requests >= 60
    assert stats["connect_retries"] >= 1  # at least one connect hit a dead, not yet removed backend
    assert len(served) >= 6  # replacements served too


async def open_hello(port: int) -> tuple[int, asyncio.StreamWriter]:
    """A long connection through the front port; returns which backend port answered, and the writer."""
    reader, writer = await asyncio.open_connection(HOST, port)
    line = await asyncio.wait_for(reader.readline(), 5)
    return int(line), writer


@pytest.mark.parametrize("policy", ["least_conn", "round_robin"])
async def test_least_conn_spreads_long_connections_evenly(policy: str) -> None:
    settings = ProxySettings(balance=policy)
    async with backends(3, mode="hello_hold") as bs, FrontPort("svc", HOST, 0, settings) as fp:
        for i, b in enumerate(bs):
            fp.add_backend(f"svc.{i}", HOST, b.port)
        conns = [await open_hello(fp.port) for _ in range(9)]
        assert sorted(p for p, _ in conns) == sorted([b.port for b in bs] * 3)
        # The three long connections of one backend end; the next three should all go there.
        emptied = bs[1].port
        for p, w in conns:
            if p == emptied:
                w.close()
        await wait_until(lambda: bs[1].active == 0)
        await wait_until(lambda: fp.stats()["connections_active"] == 6)
        more = [await open_hello(fp.port) for _ in range(3)]
        spread = sorted(p for p, _ in more)
        if policy == "least_conn":
            assert spread == [emptied] * 3
            assert [b.active for b in bs] == [3, 3, 3]
        else:
            assert spread == sorted(b.port for b in bs)  # round robin ignores the load
        for _, w in conns + more:
            w.close()


async def test_least_conn_balances_mixed_short_and_long_connections() -> None:
    settings = ProxySettings(balance="least_conn")
    async with backends(2, mode="hold") as bs, FrontPort("svc", HOST, 0, settings) as fp:
        fp.add_backend("svc.0", HOST, bs[0].port)
        long_on_0 = [await asyncio.open_connection(HOST, fp.port) for _ in range(4)]
        await wait_until(lambda: bs[0].active == 4)
        fp.add_backend("svc.1", HOST, bs[1].port)  # joins late, empty
        fresh = [await asyncio.open_connection(HOST, fp.port) for _ in range(6)]
        await wait_until(lambda: sum(b.active for b in bs) == 10)
        assert [b.active for b in bs] == [5, 5]
        for _, w in long_on_0 + fresh:
            w.close()


async def test_drain_lets_in_flight_requests_finish_and_sends_new_ones_elsewhere() -> None:
    async with (
        backends(1, mode="slow_http", delay=0.5, body=b"slow") as (slow,),
        backends(1, mode="slow_http", delay=0.0, body=b"fast") as (fast,),
        FrontPort("svc", HOST, 0) as fp,
    ):
        fp.add_backend("slow", HOST, slow.port)
        in_flight = [asyncio.ensure_future(http_get(fp.port)) for _ in range(3)]
        await wait_until(lambda: slow.active == 3)
        fp.add_backend("fast", HOST, fast.port)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        drain = asyncio.ensure_future(fp.drain("slow", timeout=5.0))
        await asyncio.sleep(0)
        assert [await http_get(fp.port) for _ in range(3)] == [b"fast"] * 3  # no new ones to slow
        assert await asyncio.gather(*in_flight) == [b"slow"] * 3
        assert await drain == 0  # nothing left to close
        assert loop.time() - t0 < 2.0  # returned when the last one ended, not at the timeout
        assert fp.stats()["closed_at_drain"] == 0


async def test_drain_closes_what_is_still_open_at_the_deadline() -> None:
    async with backends(1, mode="hold") as (b,), FrontPort("svc", HOST, 0) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        reader, writer = await asyncio.open_connection(HOST, fp.port)
        await wait_until(lambda: b.active == 1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await fp.drain("svc.0", timeout=0.3) == 1
        assert 0.25 <= loop.time() - t0 < 2.0
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert fp.stats()["closed_at_drain"] == 1
        assert fp.available is False


async def transfer_rate(settings: ProxySettings, mode: str, size: int) -> tuple[float, int]:
    """Bytes per second seen at the receiving end, from its first byte to its last."""
    async with backends(1, mode=mode, size=size) as (b,), FrontPort("svc", HOST, 0, settings) as fp:
        fp.add_backend("svc.0", HOST, b.port)
        reader, writer = await asyncio.open_connection(HOST, fp.port)
        loop = asyncio.get_running_loop()
        if mode == "source":  # download: backend -> client, timed at the client
            got = 0
            first = last = 0.0
            while chunk := await reader.read(65536):
                if not got:
                    first = loop.time()
                got += len(chunk)
                last = loop.time()
            writer.close()
            return got / (last - first), got
        # upload: client -> backend, timed at the client from the first write to the backend's answer
        block = b"y" * 65536
        t0 = loop.time()
        left = size
        while left > 0:
            writer.write(block[: min(left, len(block))])
            left -= min(left, len(block))
            await writer.drain()
        writer.write_eof()
        answer = await reader.read()
        elapsed = loop.time() - t0
        writer.close()
        return size / elapsed, int(answer)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["source", "sink"])
async def test_bandwidth_limit_is_met_within_ten_percent(mode: str) -> None:
    limit = 2_000_000
    size = 4_000_000
    rate, moved = await transfer_rate(ProxySettings(bandwidth=limit), mode, size)
    assert moved == size
    assert abs(rate - limit) / limit <= 0.10, f"{mode}: {rate:,.0f} B/s against {limit:,} B/s"
