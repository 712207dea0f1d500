"""ListenWatcher on real sockets: wakes a waiter when its port starts listening, holds nothing after."""

from __future__ import annotations

import asyncio
import socket

import pytest

from deploy_code.clock import FakeClock
from deploy_code.config.model import ProbeSpec
from deploy_code.health import CheckTarget, HttpClientFactory, ListenWatcher, ProbeRunner, make_check
from deploy_code.health.listen import listening_ports


def _bound() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def test_listening_ports_sees_listen_not_bind() -> None:
    s, port = _bound()
    with s:
        assert port not in listening_ports()
        s.listen()
        assert port in listening_ports()
    assert port not in listening_ports()


def test_listening_ports_sees_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with s:
        s.listen()
        assert s.getsockname()[1] in listening_ports()


async def test_wait_fires_when_the_port_starts_listening() -> None:
    watcher = ListenWatcher(interval=0.002)
    s, port = _bound()
    with s:
        waiter = asyncio.ensure_future(watcher.wait(port))
        await asyncio.sleep(0.05)
        assert not waiter.done() and len(watcher) == 1
        s.listen()
        await asyncio.wait_for(waiter, 5)  # the latency itself is measured in bench/, not here
    assert len(watcher) == 0
    await asyncio.sleep(0.01)
    assert watcher._task is None or watcher._task.done()  # nothing waits: the query task ended
    watcher.close()


async def test_cancelled_waiters_are_forgotten() -> None:
    watcher = ListenWatcher(interval=0.002)
    s, port = _bound()
    with s:
        waiters = [asyncio.ensure_future(watcher.wait(port)) for _ in range(100)]
        await asyncio.sleep(0.01)
        assert len(watcher) == 100
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert len(watcher) == 0 and not watcher._waiters
    watcher.close()


async def test_runner_is_woken_by_the_listen_not_by_its_timer() -> None:
    # On a FakeClock that never advances, the runner's fast-phase timer never fires: if the replica is
    # seen healthy after its port starts listening, the listen hint woke the runner.
    s, port = _bound()
    watcher = ListenWatcher(interval=0.002)
    spec = ProbeSpec.model_validate({"tcp": {"port": "main"}, "period": "5s", "timeout": "1s"})
    target = CheckTarget(host="127.0.0.1", ports={"main": port}, env={}, cwd="/")
    check = make_check(spec, target, http=HttpClientFactory(), listen=watcher)
    runner = ProbeRunner("t", spec, check, FakeClock())
    healthy = asyncio.Event()
    task = asyncio.ensure_future(runner.run(lambda t: healthy.set() if t.healthy else None))
    try:
        with s:
            await asyncio.sleep(0.1)
            # No attempt yet: the first one waits for the port to listen (or the fast timer).
            assert not healthy.is_set() and runner.last_result is None
            s.listen()
            await asyncio.wait_for(healthy.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        watcher.close()
