"""Dependency conditions and restart backoff, observed through real processes and the CLI."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.helpers import PY, Deployment


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    return doc


def test_completed_successfully_and_healthy_and_started(deployment: Deployment) -> None:
    # `migrate` must finish before `app` starts; `db` must accept connections before `app` starts;
    # `sidecar` only needs `app` started. `app` verifies both at its own start and exits 1 otherwise.
    deployment.write(
        f"""\
        settings: {{port_range: 32300-32399}}
        services:
          migrate:
            command: [sh, -c, "sleep 0.3; echo done > migrated"]
            restart: {{policy: "no"}}
          db:
            command: [{PY}, -c, "import socket,time; time.sleep(0.4); s=socket.socket(); s.bind(('127.0.0.1', ${{ports.main}})); s.listen(); time.sleep(60)"]
            ports: {{main: auto}}
            health: {{readiness: {{tcp: {{port: main}}}}}}
          app:
            command: [{PY}, -c, "import socket,os,sys,time; assert os.path.exists('migrated'); socket.create_connection(('127.0.0.1', int(os.environ['DB_PORT']))).close(); print('app ok', flush=True); time.sleep(60)"]
            env: {{DB_PORT: "${{services.db.ports.main}}"}}
            depends_on: {{migrate: completed_successfully, db: healthy}}
            restart: {{policy: "no"}}
          sidecar:
            command: [sleep, "60"]
            depends_on: [app]
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = _status(deployment)
    assert doc["services"]["migrate"]["state"] == "completed"
    assert doc["services"]["app"]["state"] == "ready"
    assert doc["services"]["app"]["restarts"] == 0
    assert "app ok" in deployment.cli("logs", "app", check=True).stdout


def test_failed_dependency_blocks_dependants_with_e007(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          db:
            command: [sh, -c, "exit 4"]
            restart: {policy: "no"}
          api:
            command: [sleep, "60"]
            depends_on: {db: healthy}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 1
    assert "db" in res.stderr and "exited with status 4" in res.stderr
    doc = _status(deployment)
    api = doc["services"]["api"]["replicas"][0]
    assert api["state"] == "failed" and "E007" in api["reason"] and api["pid"] is None


def test_crash_restarts_with_backoff_then_crash_loop(deployment: Deployment) -> None:
    deployment.write(
        f"""\
        services:
          flaky:
            command: [{PY}, -c, "import time; print('start', time.monotonic(), flush=True); raise SystemExit(1)"]
            restart: {{policy: always, backoff: {{initial: 100ms, factor: 2, jitter: 0, max: 1s}}, max_restarts: 3, window: 60s}}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 1 and "crash loop" in res.stderr
    lines = deployment.cli("logs", "flaky", "-n", "50", check=True).stdout.splitlines()
    starts = [float(line.split()[-1]) for line in lines if " start " in line]
    assert len(starts) == 4  # the first run and three restarts, then failed
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Exponential: 100 ms, 200 ms, 400 ms before each restart (plus start-up time).
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4
    assert gaps[2] > gaps[0]
    svc = _status(deployment)["services"]["flaky"]
    assert svc["state"] == "failed" and svc["restarts"] == 3
