"""The bundled example, end to end: up, real HTTP through web -> api -> kv, logs, restart, crash, down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import Deployment, processes_marked

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    return doc


def _http(method: str, port: int, path: str, body: bytes | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    req.add_header("Authorization", "Bearer dev")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def _until(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_quickstart_end_to_end(deployment: Deployment, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".deploy-code"))
    text = deployment.file.read_text().replace("30000-32000", "32400-32499")  # away from a running demo
    deployment.file.write_text(text)

    res = deployment.cli("up", "--detach", timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = _status(deployment)
    assert {n: s["state"] for n, s in doc["services"].items()} == dict.fromkeys(
        ["kv", "api", "worker", "web"], "ready"
    )
    port = {n: s["replicas"][0]["ports"] for n, s in doc["services"].items()}
    web, api, kv = port["web"]["http"], port["api"]["http"], port["kv"]["main"]

    # Real requests through the whole stack: web forwards to an api replica, which stores in kv.
    status, note = _http("POST", api, "/notes", json.dumps({"text": "hello"}).encode())
    assert status == 201 and note["text"] == "hello"
    status, back = _http("GET", web, f"/api/notes/{note['id']}")
    assert status == 200 and back["text"] == "hello"
    # The worker's log_line readiness passed and it is writing to kv.
    _until(lambda: _http("GET", api, "/stats")[1]["worker_ticks"] >= 1, "worker ticks")
    logs = deployment.cli("logs", "worker", "-n", "50", check=True).stdout
    assert "worker.0 | worker ready" in logs

    # A crashed api replica comes back on the same port; the service stays usable meanwhile.
    victim = doc["services"]["api"]["replicas"][1]["pid"]
    os.kill(victim, signal.SIGKILL)
    _until(
        lambda: (
            (r := _status(deployment)["services"]["api"]["replicas"][1])["state"] == "ready"
            and r["pid"] != victim
        ),
        "api.1 restarted",
    )
    assert _http("GET", kv, "/health")[0] == 200

    # restart replaces both api processes; web keeps working through the new ones.
    before = {r["pid"] for r in _status(deployment)["services"]["api"]["replicas"]}
    deployment.cli("restart", "api", check=True)
    _until(
        lambda: (
            (reps := _status(deployment)["services"]["api"]["replicas"])
            and all(r["state"] == "ready" for r in reps)
            and not {r["pid"] for r in reps} & before
        ),
        "api restarted",
    )
    assert _http("GET", web, f"/api/notes/{note['id']}")[1]["text"] == "hello"  # kv kept the note

    assert deployment.cli("down", check=True).returncode == 0
    assert not processes_marked(deployment.state_dir)
