"""proc_start_time / read_proc_stat against the live /proc."""

from __future__ import annotations

import os

import psutil

from deploy_code.runtime import proc_start_time
from deploy_code.runtime.local.procinfo import read_proc_stat


def test_start_time_of_self_is_stable_and_matches_psutil() -> None:
    ticks = proc_start_time(os.getpid())
    assert ticks is not None and ticks > 0
    assert proc_start_time(os.getpid()) == ticks
    boot = psutil.boot_time()
    created = psutil.Process().create_time()
    hz = os.sysconf("SC_CLK_TCK")
    assert abs((created - boot) - ticks / hz) < 1.0


def test_stat_fields_of_self() -> None:
    stat = read_proc_stat(os.getpid())
    assert stat is not None
    assert stat.pgid == os.getpgrp()
    assert stat.ppid == os.getppid()
    assert stat.state in "RS"


def test_missing_pid_gives_none() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    assert proc_start_time(pid_max + 1) is None
    assert read_proc_stat(pid_max + 1) is None
