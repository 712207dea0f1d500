"""A file of 1,000 services: deploy, status, an orchestrator SIGKILL and re-adoption of all of them, down."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from tests.chaos.support import LONG, SCALE, down, wait_until
from tests.helpers import Deployment, processes_marked

ROOTS = 10  # services without dependencies; every other one depends on one of them (started)


def _write(dep: Deployment, n: int) -> None:
    # Long: the default min_uptime (1 s), so 1,000 replicas wait for readiness at once.
    health = "" if LONG else ", health: {min_uptime: 0}"
    lines = ["name: chaos-thousand", "settings: {port_range: 36000-37999}", "services:"]
    for i in range(n):
        dep_on = "" if i < ROOTS else f", depends_on: {{s{i % ROOTS}: started}}"
        lines.append(f"  s{i}: {{command: [sleep, '600'], ports: {{p: auto}}{health}{dep_on}}}")
    dep.file.write_text("\n".join(lines) + "\n")


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", timeout=60, check=True).stdout)
    return doc


def _pids(doc: dict[str, Any]) -> dict[str, int]:
    return {r["id"]: r["pid"] for s in doc["services"].values() for r in s["replicas"] if r["pid"]}


def test_a_thousand_services_up_status_readopt_down(chaos: Deployment, figures: dict[str, Any]) -> None:
    n = SCALE.services
    _write(chaos, n)
    t0 = time.monotonic()
    res = chaos.cli("up", "--detach", timeout=120)
    up_s = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]

    t0 = time.monotonic()
    doc = _status(chaos)
    status_s = time.monotonic() - t0
    assert len(doc["services"]) == n
    assert all(s["state"] == "ready" and s["ready"] == 1 for s in doc["services"].values())
    pids = _pids(doc)
    assert len(pids) == n and sorted(processes_marked(chaos.state_dir)) == sorted(pids.values())
    assert doc["ports"]["in_use"] == n  # one port each, booked once

    # The orchestrator dies; the next `up` adopts all 1,000 processes, starting none again.
    os.kill(doc["pid"], signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{doc['pid']}/cmdline") or _dead(doc["pid"]), 10, "exit")
    t0 = time.monotonic()
    res = chaos.cli("up", "--detach", timeout=120)
    readopt_s = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    again = _status(chaos)
    assert _pids(again) == pids
    assert all(r["adopted"] for s in again["services"].values() for r in s["replicas"])
    assert sorted(processes_marked(chaos.state_dir)) == sorted(pids.values())
    assert again["ports"]["in_use"] == n  # rebuilt from the adopted replicas, nothing held twice

    t0 = time.monotonic()
    down(chaos)
    down_s = time.monotonic() - t0
    figures["thousand_services"] = {
        "services": n,
        "up_s": round(up_s, 3),
        "status_s": round(status_s, 3),
        "restart_to_all_adopted_s": round(readopt_s, 3),
        "down_s": round(down_s, 3),
    }


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
