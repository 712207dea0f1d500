"""``deploy_code.AsyncClient`` against a real orchestrator: the same operations as the sync client,
``events()`` following new events as they happen, and the TCP listener with bearer tokens."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import pytest
from tests.helpers import Deployment
from tests.integration.client.client_support import write_two_services

from deploy_code import AsyncClient as LazyAsyncClient
from deploy_code.client import AsyncClient, Event, LogLine, Status
from deploy_code.errors import ErrorCode, HealthError, SupervisionError, TimeoutExceeded
from deploy_code.events import ReplicaState

ADMIN_ENV = "DEPLOY_CODE_TEST_CLIENT_ADMIN"
VIEWER_ENV = "DEPLOY_CODE_TEST_CLIENT_VIEWER"
API_SECTION = (
    "api:\n"
    "  listen: 127.0.0.1:0\n"
    "  tokens:\n"
    f"    - {{name: ops, role: admin, env: {ADMIN_ENV}}}\n"
    f"    - {{name: dashboard, role: viewer, env: {VIEWER_ENV}}}\n"
)


async def test_no_orchestrator_is_s002(tmp_path: Path) -> None:
    assert LazyAsyncClient is AsyncClient
    async with AsyncClient(tmp_path / "deploy-code.yaml") as client:
        for call in (client.status, client.health, client.wait_for_healthy):
            with pytest.raises(SupervisionError) as info:
                await call()
            assert info.value.code == ErrorCode.S002
        with pytest.raises(SupervisionError) as info:
            async for _ in client.events():
                pass
        assert info.value.code == ErrorCode.S002


async def test_async_client_lifecycle(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    admin, viewer = f"admin-{secrets.token_urlsafe(16)}", f"viewer-{secrets.token_urlsafe(16)}"
    monkeypatch.setenv(ADMIN_ENV, admin)
    monkeypatch.setenv(VIEWER_ENV, viewer)
    write_two_services(deployment, "32800-32899", API_SECTION)
    client = AsyncClient(deployment.file)
    try:
        status = await client.deploy(timeout=60)
        assert isinstance(status, Status) and status.healthy
        assert [s.ready for s in status.services.values()] == [1, 2]
        assert (await client.health()).phase == "running"
        assert (await client.outcome()).ready

        lines = await client.logs("db", 10)
        assert len(lines) == 1 and isinstance(lines[0], LogLine) and lines[0].replica == "db.0"

        # events(): the stored transitions first, then the restart's as they happen.
        seen: list[Event] = []
        both_ready, restarting = asyncio.Event(), asyncio.Event()

        async def follow() -> None:
            async with contextlib.aclosing(client.events(service="api", kind="replica.transition")) as it:
                async for event in it:
                    seen.append(event)
                    if sum(e.data.get("new") == "ready" for e in seen) == 2:  # both replicas, stored
                        both_ready.set()
                    if event.data.get("old") == "ready":  # a replica left ready: the restart
                        restarting.set()
                        return

        async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
            tg.create_task(follow())
            await both_ready.wait()
            restarted = await client.restart(["api"])
            await restarting.wait()
        assert sorted(restarted.restarted) == ["api.0", "api.1"]
        assert all(e.service == "api" and e.kind == "replica.transition" for e in seen)
        assert [e.id for e in seen] == sorted(e.id for e in seen)
        await client.wait_for_healthy(30)

        scaled = await client.scale("api", 1)
        assert scaled.removed == ("api.1",) and scaled.added == ()
        assert len((await client.wait_for_healthy(30)).services["api"].replicas) == 1

        # The TCP listener: a bearer token, never echoed; roles enforced with S007.
        detailed = await client.status(detailed=True)
        assert detailed.api is not None and detailed.api.tcp is not None
        assert {t["name"] for t in detailed.api.tokens} == {"ops", "dashboard"}
        url = detailed.api.tcp
        async with AsyncClient(base_url=url, token=admin) as tcp:
            assert admin not in repr(tcp)
            assert (await tcp.status()).pid == status.pid
        async with AsyncClient(base_url=url, token=viewer) as tcp:
            assert (await tcp.health()).ok
            with pytest.raises(SupervisionError) as info:
                await tcp.restart("api")
            assert info.value.code == ErrorCode.S007 and viewer not in str(info.value)
        async with AsyncClient(base_url=url, token="wrong-" + admin) as tcp:
            with pytest.raises(SupervisionError) as info:
                await tcp.status()
            assert info.value.code == ErrorCode.S007 and admin not in str(info.value)

        with pytest.raises(SupervisionError) as info:
            await client.scale("nope", 2)
        assert info.value.code == ErrorCode.S001

        assert (await client.stop(timeout=2)).stopped  # every service
        after = await client.status()
        assert all(s.state == ReplicaState.STOPPED for s in after.services.values())
        with pytest.raises(TimeoutExceeded) as timeout:
            await client.wait_for_healthy(0.3)
        assert timeout.value.code == ErrorCode.E008
    finally:
        with contextlib.suppress(Exception):
            await client.down(timeout=2)
        await client.aclose()
    assert not (deployment.state_dir / "api.sock").exists()


async def test_failed_deployment_is_e006_and_keeps_running(deployment: Deployment) -> None:
    deployment.write(
        """\
        name: failing
        services:
          bad:
            command: [sh, -c, "echo boom; exit 3"]
            restart: {policy: "no"}
        """
    )
    client = AsyncClient(deployment.file)
    try:
        with pytest.raises(HealthError) as info:
            await client.deploy(timeout=60)
        assert info.value.code == ErrorCode.E006 and "bad" in info.value.message
        assert (await client.health()).ok  # the orchestrator keeps running, as the hint says
        with pytest.raises(HealthError):
            await client.wait_for_healthy(5)
    finally:
        with contextlib.suppress(Exception):
            await client.down(timeout=2)
        await client.aclose()
