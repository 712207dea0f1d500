"""adopt(): processes that are not our children, as after an orchestrator restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.runtime.runtime_helpers import alive, kill_and_reap, make_spec

from deploy_code.runtime import LocalBackend, ProcessIdentity, proc_start_time
from deploy_code.runtime.local.procinfo import read_proc_stat

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def orphan() -> Iterator[ProcessIdentity]:
    """A ``sleep`` that is not our child: its parent shell exits, so it is re-parented away from us."""
    out = subprocess.run(
        ["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & echo $!"],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,  # its own group, as a replica started by an earlier run would have
    )
    pid = int(out.stdout.strip())
    start = proc_start_time(pid)
    assert start is not None
    try:
        yield ProcessIdentity(pid=pid, pgid=os.getpgid(pid), start_time=start)
    finally:
        if alive(pid) and proc_start_time(pid) == start:
            os.kill(pid, signal.SIGKILL)


async def test_adopted_exit_is_seen_promptly(backend: LocalBackend, orphan: ProcessIdentity) -> None:
    stat = read_proc_stat(orphan.pid)
    assert stat is not None and stat.ppid != os.getpid()  # really not our child
    handle = backend.adopt(orphan)
    assert handle is not None and handle.adopted and handle.identity == orphan
    assert backend.adopt(orphan) is handle  # adopting twice gives the same handle
    loop = asyncio.get_running_loop()
    os.kill(orphan.pid, signal.SIGKILL)  # externally
    t0 = loop.time()
    async with asyncio.timeout(5):
        assert await handle.wait() is None
    assert loop.time() - t0 < 1.0  # event-driven, not a poll
    assert handle.signal_group(signal.SIGTERM) is False
    handle.close()
    assert backend._table_sizes()["handles"] == 0


async def test_adopted_stop_signals_the_group(backend: LocalBackend, orphan: ProcessIdentity) -> None:
    handle = backend.adopt(orphan)
    assert handle is not None
    async with asyncio.timeout(10):
        assert await handle.stop(signal.SIGTERM, timeout=5) is None
    assert not alive(orphan.pid)
    handle.close()


async def test_wrong_start_time_is_not_adopted(backend: LocalBackend, orphan: ProcessIdentity) -> None:
    reused = ProcessIdentity(orphan.pid, orphan.pgid, orphan.start_time + 1)
    assert backend.adopt(reused) is None
    assert alive(orphan.pid)  # and left alone
    assert backend._table_sizes()["handles"] == 0


async def test_gone_pid_is_not_adopted(backend: LocalBackend, tmp_path: Path) -> None:
    handle = await backend.start(make_spec(tmp_path, "true"))
    async with asyncio.timeout(5):
        await handle.wait()
    handle.close()
    assert backend.adopt(handle.identity) is None


async def test_restarted_backend_adopts_its_predecessors_replica(tmp_path: Path) -> None:
    first = LocalBackend()
    spec = make_spec(tmp_path, "sleep", "60")
    handle = await first.start(spec)
    identity = handle.identity
    await first.aclose()  # the orchestrator goes away; the replica must outlive it
    assert alive(identity.pid)
    second = LocalBackend()
    try:
        adopted = second.adopt(identity)
        assert adopted is not None
        async with asyncio.timeout(10):
            assert await adopted.stop(signal.SIGTERM, timeout=5) is None  # not our child: no code
        adopted.close()
    finally:
        await second.aclose()
        # It is still this test process's child (only detached by the first backend): reap the zombie.
        kill_and_reap(identity.pid)
    with pytest.raises(RuntimeError):
        await handle.wait()  # closed before its exit: the exit is no longer watched
