"""Circuit breaker: while a dependency is down, a crashing dependant waits instead of restarting in a loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text
from deploy_code.events import ReplicaState


async def test_dependant_waits_for_its_dependency_instead_of_crash_looping(tmp_path: Path) -> None:
    project = load_text(
        """\
services:
  db:
    command: [sleep, "60"]
    health: {min_uptime: 0}
  app:
    command: [sh, -c, "sleep 0.2; exit 1"]
    depends_on: {db: healthy}
    restart: {policy: always, backoff: {initial: 0}, max_restarts: 5, window: 60s}
    health: {min_uptime: 0}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (orch, _store):
        await orch.wait_outcome()
        app = orch.services["app"].replicas[0]
        await orch.stop_services(["db"], timeout=1)
        # app crashes once more, then waits: no restart storm, crash-loop budget untouched.
        await until(lambda: "circuit open" in app.reason, 5)
        held = app.restarts
        await asyncio.sleep(1.0)
        assert app.restarts == held and app.state == ReplicaState.BACKOFF
        assert "dependency 'db' is down" in app.reason
        # The dependency comes back: app restarts at once.
        orch.restart(["db"])
        await until(lambda: app.restarts > held, 5)
        assert app.state != ReplicaState.FAILED
