"""What every chaos scenario shares: its size (short by default, long with ``DEPLOY_CODE_CHAOS_LONG=1``),
waits on the real API, and the checks run after each scenario (nothing left running, books at zero,
``state.db`` intact)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_code.client import Client, Status
from tests.helpers import ZERO, Deployment, books_at_close, processes_marked

LONG = os.environ.get("DEPLOY_CODE_CHAOS_LONG") == "1"
# One seed per session, printed with the figures: a failing run can be replayed with the same choices.
SEED = int(os.environ.get("DEPLOY_CODE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos.json"


@dataclass(frozen=True, slots=True)
class Scale:
    """How hard each scenario pushes; the short one keeps the whole suite under 90 s on two cores."""

    replica_kills: int  # SIGKILLs of replicas under load
    kill_gap_s: tuple[float, float]  # pause between two kills, drawn uniformly
    orchestrator_kills: int  # SIGKILLs of the orchestrator during one deploy, before it may finish
    rollout_kills: int  # rollouts interrupted by a SIGKILL of the orchestrator
    disk_full_s: float  # how long the services run with the log file system full
    services: int  # services in the big file
    timeout_s: int  # per-test pytest timeout


SHORT = Scale(
    replica_kills=12,
    kill_gap_s=(0.3, 0.7),
    orchestrator_kills=1,
    rollout_kills=1,
    disk_full_s=2.0,
    services=1000,
    timeout_s=120,
)
LONG_SCALE = Scale(
    replica_kills=80,
    kill_gap_s=(0.2, 1.0),
    orchestrator_kills=4,
    rollout_kills=3,
    disk_full_s=20.0,
    services=1000,
    timeout_s=900,
)
SCALE = LONG_SCALE if LONG else SHORT


def rng(scenario: str) -> random.Random:
    """A generator for one scenario, from the session seed and the scenario's name."""
    return random.Random(f"{SEED}:{scenario}")


def client(dep: Deployment) -> Client:
    """A client of the deployment's unix socket."""
    return Client(dep.file, state_dir=dep.state_dir, timeout=20.0)


def wait_until(pred: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``pred`` until true; returns the seconds it took. Raises AssertionError on timeout."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def wait_healthy(api: Client, timeout: float) -> Status:
    """Wait until every service has all its replicas ready; returns that status."""
    last: list[Status] = []

    def healthy() -> bool:
        last[:] = [api.status()]
        return last[0].healthy

    try:
        wait_until(healthy, timeout, "every service ready", every=0.1)
    except AssertionError as exc:
        states = {
            r.id: f"{r.state.value} {r.reason}".strip() for s in last[0].services.values() for r in s.replicas
        }
        raise AssertionError(f"{exc}: {states}") from None
    return last[0]


def pids_of(status: Status) -> dict[str, int]:
    """Replica id -> pid of every replica with a process."""
    return {r.id: r.pid for s in status.services.values() for r in s.replicas if r.pid is not None}


def orchestrators(dep: Deployment) -> list[int]:
    """Pids of ``deploy_code`` processes working on this deployment's file (orchestrators, CLIs)."""
    needle = str(dep.file).encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"deploy_code" in argv and needle in argv:
            found.append(int(entry))
    return found


def integrity(db: Path) -> list[str]:
    """``PRAGMA integrity_check`` of the state file (``["ok"]`` when intact)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def check_after(dep: Deployment) -> None:
    """After a scenario's ``down``: no process left, the books at zero, the state file intact."""
    wait_until(lambda: not orchestrators(dep), 10, "the orchestrator to exit")
    wait_until(lambda: not processes_marked(dep.state_dir), 5, "no replica process left")
    books = books_at_close(dep.state_dir)
    assert books == {"owners": 0, "allocated": ZERO, "ports_in_use": 0}, books
    assert integrity(dep.state_dir / "state.db") == ["ok"]


def down(dep: Deployment) -> None:
    """``deploy-code down`` through the CLI, then :func:`check_after`."""
    res = dep.cli("down", timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    check_after(dep)


def transitions(db: Path) -> list[dict[str, Any]]:
    """Every stored ``replica.transition`` event's body, oldest first (read after the store closed)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT body FROM events WHERE kind = 'replica.transition' ORDER BY id"
        ).fetchall()
    return [dict(json.loads(body)) for (body,) in rows]


def summary(values: list[float]) -> dict[str, float | int | None]:
    """Count, median and max, in seconds rounded to the millisecond."""
    if not values:
        return {"n": 0, "median_s": None, "max_s": None}
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "max_s": round(max(values), 3),
    }


def environ_of(pid: int) -> dict[str, str]:
    """The environment a process was started with (empty once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}
