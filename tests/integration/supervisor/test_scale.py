"""`scale`: new replicas are placed and start; surplus ones stop and give back ports and bookings."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_code.config import load_text
from deploy_code.errors import DeployCodeError
from deploy_code.events import ReplicaState
from deploy_code.runtime import LocalBackend
from deploy_code.state import StateStore
from deploy_code.supervisor import Orchestrator

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


async def _until(cond: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - replica states, polled in a bounded wait
            await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_scale_up_and_down(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    store = StateStore(tmp_path / "state.db")
    backend = LocalBackend()
    orch = Orchestrator(project, backend=backend, store=store, selected=["app"])
    run = asyncio.ensure_future(orch.run())
    try:
        await _until(lambda: orch.plan is not None, 10)
        assert (await orch.wait_outcome()).outcome == "ready"
        svc = orch.services["app"]
        # Once ready, the deployed state is kept for rollback.
        await _until(lambda: store.snapshot() is not None, 5)
        assert "app" in str(store.snapshot())

        result = await orch.scale("app", 3)
        assert result["added"] == ["app.1", "app.2"]
        await _until(lambda: all(r.state == ReplicaState.READY for r in svc.replicas.values()), 10)
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
        await _until(lambda: svc.replicas[1].state == ReplicaState.READY, 10)

        with pytest.raises(DeployCodeError) as info:
            await orch.scale("app", 10_001)
        assert str(info.value.code) == "E002"
        with pytest.raises(DeployCodeError) as info:
            await orch.scale("nope", 1)
        assert str(info.value.code) == "S001"
    finally:
        orch.request_down(2.0)
        await asyncio.wait_for(run, 30)
        await backend.aclose()
        store.close()
    assert orch.ledger.owners == 0 and orch.ports.in_use == 0


async def test_a_fixed_port_cannot_be_scaled_past_one(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    store = StateStore(tmp_path / "state.db")
    backend = LocalBackend()
    orch = Orchestrator(project, backend=backend, store=store, selected=["fixed"])
    run = asyncio.ensure_future(orch.run())
    try:
        await _until(lambda: orch.plan is not None, 10)
        assert (await orch.wait_outcome()).outcome == "ready"
        with pytest.raises(DeployCodeError) as info:
            await orch.scale("fixed", 2)
        assert str(info.value.code) == "S004"
        assert sorted(orch.services["fixed"].replicas) == [0]
        assert orch.ports.in_use == 1
    finally:
        orch.request_down(2.0)
        await asyncio.wait_for(run, 30)
        await backend.aclose()
        store.close()
