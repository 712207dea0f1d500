"""apply / plan / rollback through the real CLI, and an orchestrator killed after a rollout: the next
`up` re-adopts the rolled replicas (whatever their indices), starting nothing twice."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from tests.helpers import PY, Deployment, processes_marked

SERVER = (
    "import os,socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', os.environ['VERSION'], flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)


def _write(dep: Deployment, version: str) -> None:
    server = dep.root / "server.py"
    server.write_text(SERVER)
    dep.write(
        f"""\
        settings: {{port_range: 32300-32399}}
        services:
          web:
            command: [{PY}, {server}, "${{ports.http}}"]
            env: {{VERSION: "{version}"}}
            ports: {{http: auto}}
            replicas: 2
            health: {{readiness: {{tcp: {{port: http}}, period: 100ms}}}}
        """
    )


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    return doc


def test_apply_plan_rollback_and_adoption_after_a_rollout(deployment: Deployment) -> None:
    _write(deployment, "v1")
    assert deployment.cli("up", "--detach").returncode == 0
    _write(deployment, "v2")
    plan = deployment.cli("plan", check=True).stdout
    assert "apply` would change" in plan and "web: changed (env)" in plan
    out = deployment.cli("apply", check=True).stdout
    assert "web: changed (env)" in out and "applied in" in out
    doc = _status(deployment)
    reps = doc["services"]["web"]["replicas"]
    # Rolled: each new replica started beside the old ones, so one index is past the replica count.
    assert max(r["index"] for r in reps) >= 2
    assert deployment.cli("apply", check=True).stdout.strip() == "nothing to change"

    # Kill the orchestrator after the rollout; the next `up` adopts them, index 2 included.
    pids = sorted(r["pid"] for r in reps)
    orch = deployment.orchestrator_pid()
    assert orch is not None
    os.kill(orch, signal.SIGKILL)
    time.sleep(0.2)
    assert deployment.cli("up", "--detach").returncode == 0
    after = _status(deployment)["services"]["web"]["replicas"]
    assert sorted(r["pid"] for r in after) == pids and all(r["adopted"] for r in after)
    assert sorted(processes_marked(deployment.state_dir)) == pids  # nothing started twice

    out = deployment.cli("rollback", check=True).stdout
    assert "applied in" in out
    logs = deployment.cli("logs", "web", "-n", "5", check=True).stdout
    assert "listening v1" in logs
    history = json.loads(deployment.cli("history", "--format", "json", check=True).stdout)
    assert history


def test_a_file_changed_while_no_orchestrator_ran_replaces_the_old_version(deployment: Deployment) -> None:
    _write(deployment, "v1")
    assert deployment.cli("up", "--detach").returncode == 0
    old = sorted(r["pid"] for r in _status(deployment)["services"]["web"]["replicas"])
    orch = deployment.orchestrator_pid()
    assert orch is not None
    os.kill(orch, signal.SIGKILL)  # as if it died mid-rollout, with the new file already written
    time.sleep(0.2)
    _write(deployment, "v2")
    assert deployment.cli("up", "--detach").returncode == 0
    reps = _status(deployment)["services"]["web"]["replicas"]
    assert not any(r["adopted"] for r in reps)
    assert set(sorted(r["pid"] for r in reps)).isdisjoint(old)
    assert sorted(processes_marked(deployment.state_dir)) == sorted(r["pid"] for r in reps)  # no orphan
    assert "listening v2" in deployment.cli("logs", "web", "-n", "5", check=True).stdout
