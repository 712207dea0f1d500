"""Nothing accumulates per crash: 2,000 spawn -> exit -> close cycles leave no table entry and no fd."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from tests.integration.runtime.runtime_helpers import kill_and_reap, make_spec

from deploy_code.runtime import LocalBackend

CYCLES = 2000


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_spawn_exit_close_cycles_leak_nothing(tmp_path: Path) -> None:
    backend = LocalBackend()
    spec = make_spec(tmp_path, "/bin/true")
    try:
        warm = await backend.start(spec)  # threads, inotify reader, executor: created once, not per cycle
        async with asyncio.timeout(5):
            await warm.wait()
        warm.close()
        before = open_fds()
        async with asyncio.timeout(100):
            for _ in range(CYCLES):
                handle = await backend.start(spec)
                assert await handle.wait() == 0
                handle.close()
        assert backend._table_sizes() == dict.fromkeys(backend._table_sizes(), 0)
        assert open_fds() == before
    finally:
        await backend.aclose()


async def test_aclose_closes_pidfds_but_leaves_processes_running(tmp_path: Path) -> None:
    backend = LocalBackend()
    before = open_fds()
    handles = [await backend.start(make_spec(tmp_path, "sleep", "60", name=f"s.{i}")) for i in range(3)]
    assert open_fds() > before
    await backend.aclose()
    await backend.aclose()  # idempotent
    try:
        assert backend._table_sizes() == dict.fromkeys(backend._table_sizes(), 0)
        for h in handles:
            os.kill(h.identity.pid, 0)  # still running
            with pytest.raises(RuntimeError):
                await h.wait()
        assert open_fds() == before - 1  # no pidfds left, and the log rotator closed its inotify fd
    finally:
        for h in handles:
            kill_and_reap(h.identity.pid, h.identity.pgid)  # detached children of this process
    with pytest.raises(RuntimeError):
        await backend.start(make_spec(tmp_path, "true"))
