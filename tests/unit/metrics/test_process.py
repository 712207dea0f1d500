"""Unit tests for deploy_code.metrics.process: rate bound, per-pass budget, bounded cache (own pid)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from deploy_code.clock import FakeClock
from deploy_code.metrics.process import ProcessSampler

PID = os.getpid()


def test_reads_own_process() -> None:
    clock = FakeClock()
    sampler = ProcessSampler(clock)
    first = sampler.sample([PID])[PID]
    assert first.cpu_percent is None  # the first read only sets psutil's baseline
    assert first.memory_bytes == pytest.approx(psutil.Process().memory_info().rss, rel=0.5)
    assert first.open_files >= 3
    clock.advance(1.0)
    second = sampler.sample([PID])[PID]
    assert second.cpu_percent is not None and second.cpu_percent >= 0
    assert second.at == 1.0


def test_scrapes_inside_the_interval_reuse_the_sample() -> None:
    clock = FakeClock()
    sampler = ProcessSampler(clock, min_interval_s=1.0)
    first = sampler.sample([PID])[PID]
    for _ in range(50):
        clock.advance(0.019)
        assert sampler.sample([PID])[PID] is first
    assert sampler.reads == 1
    clock.advance(0.05)  # 1.0 s since the read
    assert sampler.sample([PID])[PID] is not first
    assert sampler.reads == 2


def test_per_pass_budget_reads_stalest_first() -> None:
    clock = FakeClock()
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)]
    try:
        pids = [PID, *(p.pid for p in procs)]
        sampler = ProcessSampler(clock, min_interval_s=1.0, max_per_pass=2)
        assert len(sampler.sample(pids)) == 2 and sampler.reads == 2
        assert len(sampler.sample(pids)) == 4 and sampler.reads == 4  # the two never read, at once
        clock.advance(1.0)
        got = sampler.sample(pids)
        assert len(got) == 4 and sampler.reads == 6
        assert sum(1 for s in got.values() if s.at == 1.0) == 2
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_cache_holds_only_the_latest_pids_and_drops_the_dead() -> None:
    clock = FakeClock()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    sampler = ProcessSampler(clock)
    got = sampler.sample([PID, child.pid, child.pid])
    assert set(got) == {PID} and sampler.cached == 1
    sampler.sample([])
    assert sampler.cached == 0


def test_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        ProcessSampler(FakeClock(), max_per_pass=0)
