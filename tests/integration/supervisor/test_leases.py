"""Bookings are leases: live replicas keep theirs renewed; one nobody renews is reaped, with an event."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text
from deploy_code.units import Resources

YAML = """\
settings: {lease_ttl: 0.3s, capacity: {memory_mb: 1000}, headroom: {memory_mb: 0}}
services:
  app:
    command: [sleep, "60"]
    replicas: 2
    resources: {memory_mb: 100}
    health: {min_uptime: 0}
"""


async def test_live_leases_are_renewed_and_an_orphan_lease_is_reaped(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    async with running(project, tmp_path) as (orch, store):
        await until(lambda: orch.ledger.owners == 2, 10)
        now = orch.clock.now()
        # A booking whose owner has no task: what a replica task that died without releasing leaves.
        orch.ledger.allocate("ghost.0", Resources(memory_mb=300), ttl=0.3, now=now)
        assert orch.ledger.allocated.memory_mb == 500
        await until(lambda: orch.ledger.owners == 2, 5)  # the reaper freed the ghost...
        await asyncio.sleep(1.0)  # ...and, three TTLs later, the live replicas still hold theirs
        assert orch.ledger.owners == 2
        assert orch.ledger.allocated.memory_mb == 200
        for rep in orch.services["app"].replicas.values():
            assert rep.booked
            expires = orch.ledger.expires(rep.id)
            assert expires is not None and expires > orch.clock.now()
        store.flush()
        events = store.recent_events(limit=50)
        expired = [e for e in events if e["kind"] == "lease.expired"]
        assert len(expired) == 1, expired
        body = expired[0]
        assert "ghost.0" in str(body)
    assert orch.ledger.owners == 0
    assert orch.ledger.allocated.memory_mb == 0


async def test_a_lease_held_by_a_finished_task_is_reaped_and_its_room_reused(tmp_path: Path) -> None:
    project = load_text(YAML, base_dir=tmp_path)
    async with running(project, tmp_path) as (orch, _store):
        await until(lambda: orch.ledger.owners == 2, 10)
        rep = orch.services["app"].replicas[1]
        # The keeper renews only bookings whose task lives: a pass with that task counted as gone
        # (as after a task cancelled with its process running) lets the lease lapse.
        task, rep.task = rep.task, None
        try:
            await until(lambda: orch.ledger.owners == 1, 5)
            assert not rep.booked
        finally:
            rep.task = task
        reaped = orch.renew_and_reap()
        assert reaped == []  # nothing else lapsed
    assert orch.ledger.owners == 0
