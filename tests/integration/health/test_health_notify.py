"""NotifyEndpoint: the systemd notify protocol over an abstract AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable

import pytest

from deploy_code.config.model import ProbeSpec
from deploy_code.health import CheckTarget, HttpClientFactory, NotifyEndpoint, make_check
from deploy_code.health.notify import MAX_DATAGRAM_BYTES

CHILD = """
import os, socket
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\\0" + addr[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.connect(addr)
    s.sendall(b"STATUS=warming up")
    s.sendall(b"READY=1\\nSTATUS=serving")
"""


def send(endpoint: NotifyEndpoint, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, "\0" + endpoint.address[1:])


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (at most 5 s) for the loop to deliver datagrams; the endpoint has no event to await."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached within 5 s")


async def test_child_process_makes_the_endpoint_ready() -> None:
    spec = ProbeSpec.model_validate({"notify": True})
    target = CheckTarget(host="127.0.0.1", ports={}, env={}, cwd="/")
    with NotifyEndpoint.open("web/0") as endpoint:
        check = make_check(spec, target, http=HttpClientFactory(), notify=endpoint)
        assert endpoint.address.startswith(f"@deploy-code/{os.getpid()}/web/0/")
        before = await check()
        assert not before.ok
        assert before.message == "notify: waiting for READY=1"

        env = {**os.environ, "NOTIFY_SOCKET": endpoint.address}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, env=env)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
        await until(lambda: endpoint.ready)
        await until(lambda: endpoint.status == "serving")
        assert endpoint.sender_pid == proc.pid
        result = await check()
        assert result.ok
        assert result.message == "notify: READY=1 (serving)"


async def test_parses_status_stopping_and_ignores_junk() -> None:
    with NotifyEndpoint.open("db") as endpoint:
        send(endpoint, b"garbage\nREADY=0\nWATCHDOG=1\nSTATUS=starting")
        await until(lambda: endpoint.status == "starting")
        assert not endpoint.ready
        send(endpoint, b"STOPPING=1")
        await until(lambda: endpoint.stopping)
        assert endpoint.sender_pid == os.getpid()
        endpoint.reset()
        assert (endpoint.ready, endpoint.stopping, endpoint.status) == (False, False, None)


async def test_oversized_datagrams_are_dropped() -> None:
    with NotifyEndpoint.open("big") as endpoint:
        send(endpoint, b"READY=1\n" + b"x" * MAX_DATAGRAM_BYTES)
        await until(lambda: endpoint.dropped == 1)
        assert not endpoint.ready
        send(endpoint, b"READY=1")
        await until(lambda: endpoint.ready)


async def test_names_are_unique_bounded_and_sanitised() -> None:
    with NotifyEndpoint.open("a") as one, NotifyEndpoint.open("a") as two:
        assert one.address != two.address
    with NotifyEndpoint.open("x" * 500 + "\n\0é") as long:
        assert len(long.address.encode()) <= 108
        assert long.address.isascii()
        assert "\n" not in long.address


async def test_close_is_idempotent_and_frees_the_name() -> None:
    endpoint = NotifyEndpoint.open("c")
    endpoint.close()
    endpoint.close()
    assert endpoint.closed
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        pytest.raises(ConnectionRefusedError),
    ):
        sock.sendto(b"READY=1", "\0" + endpoint.address[1:])


def test_open_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        NotifyEndpoint.open("no-loop")
