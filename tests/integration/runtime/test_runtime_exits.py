"""ExitWatcher: the pidfd path and the SIGCHLD / timer fallbacks, with real children."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from tests.integration.runtime.runtime_helpers import make_spec

from deploy_code.runtime import proc_start_time
from deploy_code.runtime.local.exits import ExitWatcher, pidfd_supported
from deploy_code.runtime.local.spawn import spawn_blocking

pytestmark = pytest.mark.timeout(30)


def test_pidfd_is_available_here() -> None:
    assert pidfd_supported()  # the normal path is what the other tests exercise


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "sigchld"])
async def test_child_exits_are_delivered_once(tmp_path: Path, use_pidfd: bool) -> None:
    loop = asyncio.get_running_loop()
    watcher = ExitWatcher(loop, use_pidfd=use_pidfd)
    results: dict[int, list[int | None]] = {}
    done = asyncio.Event()
    popens = [spawn_blocking(make_spec(tmp_path, "sh", "-c", f"exit {i}", name=f"s.{i}")) for i in range(5)]
    for i, popen in enumerate(popens):

        def record(rc: int | None, i: int = i) -> None:
            results.setdefault(i, []).append(rc)
            if len(results) == len(popens):
                done.set()

        watcher.watch_child(popen, record)
    try:
        async with asyncio.timeout(10):
            await done.wait()
        await asyncio.sleep(0.05)
        assert results == {i: [i] for i in range(5)}
        assert len(watcher) == 0
    finally:
        for popen in popens:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        watcher.close()


async def test_adopted_fallback_timer_sees_exit(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    watcher = ExitWatcher(loop, use_pidfd=False)
    popen = spawn_blocking(make_spec(tmp_path, "sleep", "30"))
    start = proc_start_time(popen.pid)
    assert start is not None
    got: list[int | None] = []
    done = asyncio.Event()

    def record(rc: int | None) -> None:
        got.append(rc)
        done.set()

    try:
        assert watcher.watch_pid(popen.pid, start, record)
        assert not watcher.watch_pid(popen.pid, start + 1, lambda rc: None)
        popen.send_signal(signal.SIGKILL)  # a zombie until we reap it: counts as exited
        async with asyncio.timeout(5):
            await done.wait()
        assert got == [None]
    finally:
        popen.kill()
        popen.wait()
        watcher.close()
