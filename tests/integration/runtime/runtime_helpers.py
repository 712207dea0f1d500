"""Helpers shared by the runtime integration tests (a uniquely named module, importable from the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from deploy_code.runtime import ProcessSpec
from deploy_code.runtime.local.procinfo import read_proc_stat

PY = sys.executable


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    stat = read_proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def make_spec(
    tmp_path: Path, *argv: str, name: str = "svc.0", start_timeout: float = 10.0, spawn_retries: int = 3
) -> ProcessSpec:
    """A spec with a minimal environment, running in ``tmp_path`` and logging to ``tmp_path/<name>.log``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return ProcessSpec(
        name=name,
        argv=tuple(argv),
        env=env,
        cwd=str(tmp_path),
        log_path=str(tmp_path / f"{name}.log"),
        start_timeout=start_timeout,
        spawn_retries=spawn_retries,
    )


def read_text(path: str | Path) -> str:
    """The file's text, or "" when it does not exist yet (small files; fine to read inline in a test)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def kill_and_reap(pid: int, pgid: int | None = None) -> None:
    """SIGKILL ``pid`` (or its group) and reap it; for children a backend detached on purpose."""
    with contextlib.suppress(ProcessLookupError):
        if pgid is None:
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGKILL)
    os.waitpid(pid, 0)


async def poll_until(pred: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait, at most ``limit`` seconds, until ``pred()`` holds.

    Only for conditions nothing can notify us of (a child writing its own log file, a process that is
    not ours going away): a short bounded poll is the honest tool in a test.
    """
    async with asyncio.timeout(limit):
        while not pred():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.02)


def file_sizes(*paths: str) -> list[int | None]:
    """Size of each path, None where it does not exist."""
    return [os.path.getsize(p) if os.path.exists(p) else None for p in paths]
