"""`events` and `history` through the real CLI: transitions of a running deployment, then its outcome."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

from tests.helpers import PY, Deployment

APP = f"""\
name: evhist
settings: {{port_range: 32400-32499}}
services:
  db:
    command: [{PY}, -c, "import time; print('db up', flush=True); time.sleep(600)"]
    health: {{readiness: {{log_line: {{pattern: "db up"}}, period: 100ms}}}}
  api:
    command: [{PY}, -c, "import time; print('api up', flush=True); time.sleep(600)"]
    depends_on: {{db: healthy}}
    health: {{readiness: {{log_line: {{pattern: "api up"}}, period: 100ms}}}}
alerts:
  - {{name: api-down, service: api, down_for: 1h}}
retention: {{events_max_count: 500, events_max_age: 48h}}
"""


def _json(dep: Deployment, *args: str) -> Any:
    res = dep.cli(*args, "--format", "json", check=True)
    return json.loads(res.stdout)


def test_events_show_transitions_and_history_the_outcome(deployment: Deployment) -> None:
    deployment.write(APP)
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr

    events = _json(deployment, "events")
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "deployment.started" and "deployment.finished" in kinds
    ready = [(e["service"], e["old"], e["new"]) for e in events if e["kind"] == "replica.transition"]
    assert ("db", "starting", "ready") in ready and ("api", "starting", "ready") in ready
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)

    only_api = _json(deployment, "events", "api")
    assert only_api and {e["service"] for e in only_api} == {"api"}
    assert len(_json(deployment, "events", "-n", "2")) == 2
    assert {e["kind"] for e in _json(deployment, "events", "--kind", "deployment.*")} == {
        "deployment.started",
        "deployment.finished",
    }

    text = deployment.cli("events", "db", check=True).stdout
    assert "replica.transition" in text and "ready" in text

    # -f prints what happens next: follow the api while it is restarted.
    follower = subprocess.Popen(
        [
            PY,
            "-m",
            "deploy_code",
            "events",
            "api",
            "-f",
            "-n",
            "0",
            "--format",
            "json",
            "--file",
            str(deployment.file),
        ],
        cwd=deployment.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        time.sleep(0.5)  # the follower has read the newest id before the restart
        deployment.cli("restart", "api", check=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.get("new") == "ready" for e in lines):
            time.sleep(0.05)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reader.join(timeout=5)
        assert follower.stdout is not None and follower.stderr is not None
        follower.stdout.close()
        follower.stderr.close()
    news = [(e["old"], e["new"]) for e in lines if e["kind"] == "replica.transition"]
    assert ("ready", "stopping") in news or ("ready", "backoff") in news, lines
    assert news[-1][1] == "ready", lines
    assert {e["service"] for e in lines} == {"api"}

    deployment.cli("down", check=True)

    [dep] = _json(deployment, "history")
    assert (dep["name"], dep["outcome"]) == ("evhist", "ready")
    assert dep["duration_s"] > 0 and dep["finished_at"] >= dep["started_at"]
    text = deployment.cli("history", check=True).stdout
    assert "evhist" in text and "ready" in text
    # The store outlives the orchestrator: events still read after down, with the stops at the end.
    last = _json(deployment, "events", "-n", "3")
    assert last[-1]["kind"] == "replica.transition" and last[-1]["new"] == "stopped"


def test_events_without_any_deployment_is_s006(deployment: Deployment) -> None:
    deployment.write(APP)
    res = deployment.cli("events")
    assert res.returncode == 1 and "S006" in res.stderr and "Traceback" not in res.stderr
    res = deployment.cli("history", "--format", "yaml")
    assert res.returncode == 1 and "S006" in res.stderr
