"""health, top and scale through the real CLI against a detached deployment."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.helpers import Deployment

YAML = """\
services:
  app:
    command: [sleep, "60"]
    replicas: 2
    health: {min_uptime: 0}
  job:
    command: [sh, -c, "echo done; exit 0"]
    restart: {policy: "no"}
"""


def _json(dep: Deployment, *args: str) -> Any:
    return json.loads(dep.cli(*args, "--format", "json", check=True).stdout)


def test_health_top_and_scale(deployment: Deployment) -> None:
    deployment.write(YAML)
    assert deployment.cli("up", "--detach").returncode == 0

    report = _json(deployment, "health")
    assert report["healthy"] is True
    assert report["services"]["app"] == {
        "healthy": True,
        "state": "ready",
        "ready": 2,
        "desired": 2,
        "restarts": 0,
        "not_ready": [],
    }
    assert report["services"]["job"]["healthy"] is True  # completed counts as healthy
    text = deployment.cli("health")
    assert text.returncode == 0 and "healthy" in text.stdout
    as_yaml = yaml.safe_load(deployment.cli("health", "--format", "yaml", check=True).stdout)
    assert as_yaml["healthy"] is True

    valid = _json(deployment, "validate")
    assert valid["valid"] is True and valid["services"] == 2 and valid["errors"] == []
    out = deployment.cli("logs", "job", "--format", "json", check=True).stdout
    assert [json.loads(line) for line in out.splitlines()] == [{"replica": "job.0", "line": "done"}]

    top = _json(deployment, "top")
    rows = {r["id"]: r for r in top["replicas"]}
    assert set(rows) == {"app.0", "app.1", "job.0"}
    assert rows["app.0"]["memory_bytes"] > 0 and rows["app.0"]["pid"] > 0
    once = deployment.cli("top", "--once", check=True).stdout
    assert "app.0" in once and "app.1" in once

    out = deployment.cli("scale", "app=3", check=True).stdout
    assert "app: 3 replicas +app.2" in out
    status = _json(deployment, "status")
    assert status["services"]["app"]["desired"] == 3
    assert len(status["services"]["app"]["replicas"]) == 3
    out = deployment.cli("scale", "app=1", check=True).stdout
    assert "-app.2" in out and "-app.1" in out

    bad = deployment.cli("scale", "app")
    assert bad.returncode != 0 and "E002" in bad.stderr and "SERVICE=N" in bad.stderr
    unknown = deployment.cli("scale", "nope=2")
    assert unknown.returncode != 0 and "S001" in unknown.stderr

    assert deployment.cli("stop", "app").returncode == 0
    sick = deployment.cli("health")
    assert sick.returncode == 1 and "unhealthy" in sick.stdout
