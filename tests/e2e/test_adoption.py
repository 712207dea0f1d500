"""The orchestrator dies (SIGKILL); services keep serving; the next `up` re-adopts them exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import Any

from tests.e2e.test_lifecycle import _write_server
from tests.helpers import PY, Deployment, processes_marked


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    return doc


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigkill_orchestrator_then_up_readopts(deployment: Deployment) -> None:
    server = _write_server(deployment)
    deployment.write(
        f"""\
        settings: {{port_range: 32200-32299}}
        services:
          kv:
            command: [{PY}, {server}, "${{ports.main}}"]
            ports: {{main: auto}}
            health: {{readiness: {{tcp: {{port: main}}}}}}
          web:
            command: [{PY}, {server}, "${{ports.http}}"]
            ports: {{http: auto}}
            replicas: 2
            depends_on: {{kv: healthy}}
            health: {{readiness: {{tcp: {{port: http}}}}}}
        """
    )
    assert deployment.cli("up", "--detach").returncode == 0
    before = _status(deployment)
    pids = {r["id"]: r["pid"] for s in before["services"].values() for r in s["replicas"]}
    ports = [r["ports"] for s in before["services"].values() for r in s["replicas"]]
    orch = deployment.orchestrator_pid()
    assert orch is not None
    os.kill(orch, signal.SIGKILL)
    time.sleep(0.2)
    # The services did not notice.
    assert all(_accepts(p) for d in ports for p in d.values())
    assert sorted(processes_marked(deployment.state_dir)) == sorted(pids.values())

    res = deployment.cli("up", "--detach")
    assert res.returncode == 0, res.stdout + res.stderr
    after = _status(deployment)
    again = {r["id"]: r["pid"] for s in after["services"].values() for r in s["replicas"]}
    assert again == pids  # same processes, none started twice
    assert all(r["adopted"] for s in after["services"].values() for r in s["replicas"])
    assert sorted(processes_marked(deployment.state_dir)) == sorted(pids.values())

    # Exit detection works for adopted processes (pidfd, not our children).
    victim = pids["web.1"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rep = _status(deployment)["services"]["web"]["replicas"][1]
        if rep["pid"] not in (None, victim) and rep["state"] == "ready":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("adopted replica was not restarted")
    assert len(processes_marked(deployment.state_dir)) == 3

    assert deployment.cli("down").returncode == 0
    assert not processes_marked(deployment.state_dir)


def test_up_stops_adopted_replicas_the_file_no_longer_wants(deployment: Deployment) -> None:
    deployment.write("services: {a: {command: [sleep, '60'], replicas: 3}}\n")
    assert deployment.cli("up", "--detach").returncode == 0
    orch = deployment.orchestrator_pid()
    assert orch is not None
    os.kill(orch, signal.SIGKILL)
    time.sleep(0.2)
    assert len(processes_marked(deployment.state_dir)) == 3
    deployment.write("services: {a: {command: [sleep, '60'], replicas: 1}}\n")
    assert deployment.cli("up", "--detach").returncode == 0
    time.sleep(0.2)
    assert len(processes_marked(deployment.state_dir)) == 1


def test_up_stops_a_marked_replica_that_no_record_accounts_for(deployment: Deployment) -> None:
    # What an orchestrator killed between a spawn and its store write leaves behind: a process group
    # carrying the deployment's marker, with no row in the store. The next `up` must not leave it.
    deployment.write("services: {a: {command: [sleep, '60']}}\n")
    deployment.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "DEPLOY_CODE_STATE_DIR": str(deployment.state_dir)}
    stray = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        assert processes_marked(deployment.state_dir) == [stray.pid]
        assert deployment.cli("up", "--detach").returncode == 0
        assert stray.wait(timeout=10) == -signal.SIGTERM
        marked = processes_marked(deployment.state_dir)
        assert len(marked) == 1 and stray.pid not in marked
        assert deployment.cli("down").returncode == 0
        assert not processes_marked(deployment.state_dir)
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
