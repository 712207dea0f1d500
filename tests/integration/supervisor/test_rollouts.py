"""apply: rolling and blue-green rollouts serve every request; a failing rollout is rolled back;
rollback returns to the previous file; only what changed is redeployed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from tests.helpers import HTTP_REPLICA
from tests.integration.supervisor.support import http_get, running

from deploy_code.config import load


def _yaml(version: str, strategy: str, *, broken: bool = False, worker_cmd: str = "60") -> str:
    env = f'{{PORT: "${{ports.http}}", ANSWER: "{version}"' + (', BROKEN: "1"' if broken else "") + "}"
    return f"""\
services:
  web:
    command: [{sys.executable}, server.py]
    env: {env}
    ports: {{http: auto}}
    replicas: 2
    expose: {{http: {{port: auto, connect_timeout: 2s}}}}
    restart: {{policy: always, backoff: {{initial: 0.2s}}}}
    deploy: {{strategy: {strategy}, max_surge: 1, max_unavailable: 0, timeout: 5s}}
    health:
      readiness: {{tcp: {{port: http}}, period: 0.1s}}
  worker:
    command: [sleep, "{worker_cmd}"]
    health: {{min_uptime: 0}}
"""


class Load:
    """Clients sending requests through the front port for the whole rollout."""

    def __init__(self, port: int, clients: int = 2) -> None:
        self.port, self.ok, self.failed = port, 0, 0
        self.seen: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run()) for _ in range(clients)]

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.append(await http_get(self.port))
                self.ok += 1
            except (TimeoutError, OSError, AssertionError):
                self.failed += 1
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
async def test_rollout_serves_every_request_and_rollback_returns(tmp_path: Path, strategy: str) -> None:
    (tmp_path / "server.py").write_text(HTTP_REPLICA)
    file = tmp_path / "deploy-code.yaml"
    file.write_text(_yaml("v1", strategy))
    async with running(load(file), tmp_path) as (orch, store):
        assert (await orch.wait_outcome()).outcome == "ready"
        front = orch.fronts["web"]["http"].port
        worker_pid = orch.services["worker"].replicas[0].handle.identity.pid  # type: ignore[union-attr]
        load_ = Load(front)

        file.write_text(_yaml("v2", strategy))
        plan = await orch.apply(dry_run=True)
        assert plan["outcome"] == "planned" and plan["changes"] == ["web: changed (env)"]
        result = await orch.apply()
        assert result["outcome"] == "ready", result
        assert {await http_get(front) for _ in range(6)} == {"v2"}
        web = orch.services["web"]
        assert len(web.replicas) == 2 and web.desired == 2

        # A release that never gets ready is rolled back; v2 keeps serving.
        file.write_text(_yaml("v3", strategy, broken=True))
        result = await orch.apply()
        assert result["outcome"] == "rolled_back" and "web" in str(result["message"])
        assert {await http_get(front) for _ in range(6)} == {"v2"}

        # rollback (CLI `deploy-code rollback`): back to the snapshot before v2.
        result = await orch.rollback()
        assert result["outcome"] == "ready", result
        assert {await http_get(front) for _ in range(6)} == {"v1"}
        await load_.stop()
        assert load_.failed == 0 and load_.ok > 20, (load_.ok, load_.failed)
        assert {"v1", "v2"} <= set(load_.seen) and "v3" not in load_.seen
        # The unchanged worker was never touched.
        assert orch.services["worker"].replicas[0].handle.identity.pid == worker_pid  # type: ignore[union-attr]
        outcomes = [d.outcome for d in store.deployments(10)]
        assert outcomes[:3] == ["ready", "rolled_back", "ready"]
    assert orch.ports.in_use == 0 and orch.ledger.owners == 0


async def test_apply_adds_removes_and_scales(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(HTTP_REPLICA)
    file = tmp_path / "deploy-code.yaml"
    file.write_text(_yaml("v1", "rolling"))
    async with running(load(file), tmp_path) as (orch, _store):
        assert (await orch.wait_outcome()).outcome == "ready"
        text = (
            _yaml("v1", "rolling")
            .replace("replicas: 2", "replicas: 3")
            .replace('  worker:\n    command: [sleep, "60"]', '  batch:\n    command: [sleep, "60"]')
        )
        file.write_text(text)
        result = await orch.apply()
        assert result["outcome"] == "ready", result
        assert sorted(result["changes"]) == ["batch: added", "web: scale 2 -> 3", "worker: removed"]
        assert set(orch.services) == {"web", "batch"}
        assert len(orch.services["web"].replicas) == 3
        assert (await orch.apply())["outcome"] == "unchanged"
    assert orch.ports.in_use == 0 and orch.ledger.owners == 0
