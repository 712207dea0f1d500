"""Resources are booked when a service starts: what fits the machine but not what is free now waits."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.helpers import Deployment


def _status(dep: Deployment) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    return doc


def test_a_service_waits_for_capacity_then_starts_when_a_job_completes(deployment: Deployment) -> None:
    deployment.write(
        """\
        settings: {capacity: {memory_mb: 1000}, headroom: {memory_mb: 0}}
        services:
          first:
            command: [sh, -c, "sleep 1.5"]
            resources: {memory_mb: 700}
            restart: {policy: "no"}
          second:
            command: [sleep, "60"]
            resources: {memory_mb: 700}
            health: {min_uptime: 0}
        """
    )
    proc = deployment.foreground()
    seen_wait = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        res = deployment.cli("status", "--format", "json")
        if res.returncode == 0:
            doc = json.loads(res.stdout)
            rep = doc["services"]["second"]["replicas"][0]
            first = doc["services"]["first"]["replicas"][0]
            if rep["state"] == "pending" and "waiting for resources" in rep["reason"]:
                assert "memory_mb" in rep["reason"] and first["state"] in ("starting", "ready")
                seen_wait = True
            if rep["state"] == "ready":
                break
        time.sleep(0.1)
    else:
        raise AssertionError("second never became ready")
    assert seen_wait, "the wait for capacity was never visible in status"
    doc = _status(deployment)
    assert doc["services"]["first"]["state"] == "completed"
    assert doc["resources"]["allocated"]["memory_mb"] == 700  # only `second` holds memory now
    assert deployment.cli("down", check=True).returncode == 0
    proc.wait(timeout=20)


def test_no_room_within_the_schedule_timeout_is_e004(deployment: Deployment) -> None:
    deployment.write(
        """\
        settings: {capacity: {memory_mb: 1000}, headroom: {memory_mb: 0}}
        services:
          big:
            command: [sleep, "60"]
            resources: {memory_mb: 700}
            health: {min_uptime: 0}
          bigger:
            command: [sleep, "60"]
            resources: {memory_mb: 800}
            depends_on: [big]
            timeouts: {schedule: 500ms}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 1
    assert "bigger" in res.stderr and "E004" in res.stderr and "memory_mb" in res.stderr
    doc = _status(deployment)
    assert doc["services"]["big"]["state"] == "ready"
    assert doc["services"]["bigger"]["replicas"][0]["state"] == "failed"
    assert doc["resources"]["allocated"]["memory_mb"] == 700


def test_a_pool_quota_makes_its_services_take_turns(deployment: Deployment) -> None:
    # The machine has room for both; the pool has room for one at a time.
    deployment.write(
        """\
        pools:
          batch: {memory_mb: 1000}
        services:
          first:
            command: [sh, -c, "sleep 1.5"]
            pool: batch
            resources: {memory_mb: 700}
            restart: {policy: "no"}
          second:
            command: [sleep, "60"]
            pool: batch
            resources: {memory_mb: 700}
            health: {min_uptime: 0}
          outside:
            command: [sleep, "60"]
            resources: {memory_mb: 700}
            health: {min_uptime: 0}
        """
    )
    proc = deployment.foreground()
    reasons: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        res = deployment.cli("status", "--format", "json")
        if res.returncode == 0:
            doc = json.loads(res.stdout)
            rep = doc["services"]["second"]["replicas"][0]
            reasons.add(rep["reason"])
            if rep["state"] == "ready":
                break
        time.sleep(0.1)
    else:
        raise AssertionError("second never became ready")
    assert any("pool 'batch'" in r and "waiting for resources" in r for r in reasons), reasons
    doc = _status(deployment)
    assert doc["services"]["outside"]["state"] == "ready"
    pool = doc["resources"]["pools"]["batch"]
    assert pool["allocated"]["memory_mb"] == 700
    assert deployment.cli("down", check=True).returncode == 0
    proc.wait(timeout=20)


def test_a_pool_larger_than_the_machine_is_e004_at_validate(deployment: Deployment) -> None:
    deployment.write(
        """\
        settings: {capacity: {cpu_cores: 2}, headroom: {memory_mb: 0}}
        pools:
          batch: {cpu_cores: 8}
        services:
          a: {command: [sleep, "1"], pool: batch}
        """
    )
    res = deployment.cli("validate")
    assert res.returncode != 0
    assert "E004" in res.stderr and "pool 'batch'" in res.stderr and "deploy-code.yaml:3:" in res.stderr
