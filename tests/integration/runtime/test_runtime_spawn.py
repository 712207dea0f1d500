"""spawn(): off the loop, retried on EAGAIN/ENOMEM with backoff, bounded by start_timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.integration.runtime.runtime_helpers import make_spec

from deploy_code.errors import ErrorCode, StartError
from deploy_code.runtime import ProcessSpec
from deploy_code.runtime.local.spawn import spawn, spawn_blocking

pytestmark = pytest.mark.timeout(30)


class FlakySpawn:
    """Fails with ``err`` the first ``failures`` times, then really spawns; records the threads used."""

    def __init__(self, failures: int, err: int = errno.EAGAIN) -> None:
        self.failures = failures
        self.err = err
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.calls <= self.failures:
            raise OSError(self.err, "Resource temporarily unavailable")
        return spawn_blocking(spec)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


async def test_spawn_runs_off_the_loop_and_retries_eagain(
    executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    flaky = FlakySpawn(failures=2)
    popen = await spawn(make_spec(tmp_path, "true"), executor, blocking=flaky)
    try:
        assert flaky.calls == 3
        assert threading.get_ident() not in flaky.threads
    finally:
        assert popen.wait(timeout=5) == 0


async def test_enomem_retries_are_bounded(executor: ThreadPoolExecutor, tmp_path: Path) -> None:
    flaky = FlakySpawn(failures=10, err=errno.ENOMEM)
    with pytest.raises(StartError) as info:
        await spawn(make_spec(tmp_path, "true", spawn_retries=2), executor, blocking=flaky)
    assert flaky.calls == 3
    assert info.value.code is ErrorCode.E005
    assert "ENOMEM" in info.value.message


async def test_other_errors_are_not_retried(executor: ThreadPoolExecutor, tmp_path: Path) -> None:
    flaky = FlakySpawn(failures=10, err=errno.EIO)
    with pytest.raises(StartError):
        await spawn(make_spec(tmp_path, "true"), executor, blocking=flaky)
    assert flaky.calls == 1


async def test_timeout_gives_e005_and_kills_the_late_child(
    executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    made: list[subprocess.Popen[bytes]] = []
    spawned = threading.Event()

    def slow(spec: ProcessSpec) -> subprocess.Popen[bytes]:
        time.sleep(0.5)  # a spawn stuck in the kernel, say
        popen = spawn_blocking(spec)
        made.append(popen)
        spawned.set()
        return popen

    spec = dataclasses.replace(make_spec(tmp_path, "sleep", "60"), start_timeout=0.1)
    with pytest.raises(StartError) as info:
        await spawn(spec, executor, blocking=slow)
    assert info.value.code is ErrorCode.E005
    assert "did not finish within 0.1s" in info.value.message
    assert await asyncio.to_thread(spawned.wait, 5)
    # The orphan callback kills and reaps it; wait() here just joins that (Popen locks its waitpid).
    assert await asyncio.to_thread(made[0].wait, 5) == -9
