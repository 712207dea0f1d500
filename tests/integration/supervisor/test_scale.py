"""`scale`: new replicas are placed and start; surplus ones stop and give back ports and bookings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text
from deploy_code.errors import DeployCodeError
from deploy_code.events import ReplicaState

YAML = """\
settings: {capacity: {memory_mb: 1000}, headroom: {memory_mb: 0}}
services:
  app:
    command: [sleep, "60"]
    ports: {http: auto}
    resources: {memory_mb: 100}
    health: {min_uptime: 0}
  fixed:
    command: [sleep, "60"]
    ports: {main: 31999}
    health: {min_uptime: 0}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_scale_up_and_down(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    async with running(project, tmp_path, selected=["app"]) as (orch, store):
        await until(lambda: orch.plan is not None, 10)
        assert (await orch.wait_outcome()).outcome == "ready"
        svc = orch.services["app"]
        # Once ready, the deployed state is kept for rollback.
        await until(lambda: store.snapshot() is not None, 5)
        assert "app" in str(store.snapshot())

        result = await orch.scale("app", 3)
        assert result["added"] == ["app.1", "app.2"]
        await until(lambda: all(r.state == ReplicaState.READY for r in svc.replicas.values()), 10)
        ports = {r.ports["http"] for r in svc.replicas.values()}
        assert len(ports) == 3
        assert orch.ledger.allocated.memory_mb == 300
        assert orch.status()["services"]["app"]["desired"] == 3  # type: ignore[index]
        assert orch.registry.count(ReplicaState.READY) == 3

        pids = {r.index: r.handle.identity.pid for r in svc.replicas.values() if r.handle}
        result = await orch.scale("app", 1)
        assert result["removed"] == ["app.2", "app.1"]
        assert sorted(svc.replicas) == [0]
        assert not _alive(pids[1]) and not _alive(pids[2])
        assert _alive(pids[0])
        assert orch.ledger.allocated.memory_mb == 100 and orch.ledger.owners == 1
        assert orch.ports.in_use == 1
        assert orch.registry.count(ReplicaState.READY) == 1

        # Back up: the freed index is reused, on a fresh port.
        result = await orch.scale("app", 2)
        assert result["added"] == ["app.1"]
        await until(lambda: svc.replicas[1].state == ReplicaState.READY, 10)

        with pytest.raises(DeployCodeError) as info:
            await orch.scale("app", 10_001)
        assert str(info.value.code) == "E002"
        with pytest.raises(DeployCodeError) as info:
            await orch.scale("nope", 1)
        assert str(info.value.code) == "S001"
    assert orch.ledger.owners == 0 and orch.ports.in_use == 0


async def test_a_fixed_port_cannot_be_scaled_past_one(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    async with running(project, tmp_path, selected=["fixed"]) as (orch, _store):
        await until(lambda: orch.plan is not None, 10)
        assert (await orch.wait_outcome()).outcome == "ready"
        with pytest.raises(DeployCodeError) as info:
            await orch.scale("fixed", 2)
        assert str(info.value.code) == "S004"
        assert sorted(orch.services["fixed"].replicas) == [0]
        assert orch.ports.in_use == 1
