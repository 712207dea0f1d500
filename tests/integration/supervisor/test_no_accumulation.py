"""Nothing accumulates per crash: 10,000 crash/restart cycles leave tables, fds and memory flat."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from deploy_code.config import load_text
from deploy_code.runtime import LocalBackend
from deploy_code.state import StateStore
from deploy_code.supervisor import Orchestrator

CYCLES = 10_000


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    """Poll ``cond`` until it holds; a bounded wait (the counter has no event to await)."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - plain counters, nothing to await
            await asyncio.sleep(0.05)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _baseline(measure: Callable[[], int]) -> int:
    """Fewest over 40 samples: a cycle in flight holds a few fds (pidfd, log) and tasks for a moment."""
    counts = []
    for _ in range(40):
        counts.append(measure())
        await asyncio.sleep(0.005)
    return min(counts)


def _tasks() -> int:
    return len(asyncio.all_tasks())


@pytest.mark.timeout(600)
async def test_ten_thousand_crash_cycles_stay_flat(tmp_path: Path) -> None:
    project = load_text(
        """\
        services:
          crash:
            command: [/bin/false]
            restart: {policy: always, backoff: {initial: 0}, max_restarts: 1000000, window: 1s}
        """.replace("        ", ""),
        base_dir=tmp_path,
    )
    store = StateStore(tmp_path / "state.db")
    backend = LocalBackend()
    orch = Orchestrator(project, backend=backend, store=store)
    run = asyncio.ensure_future(orch.run())
    try:
        await _until(lambda: bool(orch.services.get("crash")), 30)
        first = orch.services["crash"].replicas[0]
        await _until(lambda: first.restarts >= 1_000, 120)
        store.flush()
        fds0, rss0, tasks0 = (
            await _baseline(_fds),
            psutil.Process().memory_info().rss,
            await _baseline(_tasks),
        )
        await _until(lambda: first.restarts >= CYCLES, 480)
        store.flush()
        fds1, rss1, tasks1 = (
            await _baseline(_fds),
            psutil.Process().memory_info().rss,
            await _baseline(_tasks),
        )
    finally:
        orch.request_down(1.0)
        await asyncio.wait_for(run, 30)
        await backend.aclose()
        store.close()
    assert fds1 <= fds0, (fds0, fds1)
    assert tasks1 <= tasks0 + 2, (tasks0, tasks1)
    assert rss1 - rss0 < 8 * 2**20, (rss0, rss1)
    assert len(orch._tasks) == 0
    assert store.load_replicas() == [] if not store._closed else True
    assert orch.ledger.allocated.is_zero() and orch.ports.in_use == 0
