"""``deploy_code.Client`` against a real orchestrator: deploy, status, health, logs, restart, scale,
wait_for_healthy, stop, events, down, and the coded errors (S001, S002, E002, E008)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import Deployment
from tests.integration.client.client_support import write_two_services

import deploy_code
from deploy_code.client import (
    Client,
    HealthReport,
    LogLine,
    ReplicaStatus,
    ServiceStatus,
    Status,
)
from deploy_code.errors import ConfigError, ErrorCode, SupervisionError, TimeoutExceeded
from deploy_code.events import ReplicaState


def test_importing_deploy_code_loads_no_client() -> None:
    code = (
        "import sys, deploy_code\n"
        "assert 'httpx' not in sys.modules and 'deploy_code.client' not in sys.modules, sorted(sys.modules)\n"
        "assert deploy_code.Client.__module__ == 'deploy_code.client._sync'\n"
        "assert 'httpx' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with pytest.raises(AttributeError):
        _ = deploy_code.NoSuchName  # type: ignore[attr-defined]


def test_no_orchestrator_is_s002(tmp_path: Path) -> None:
    with Client(tmp_path / "deploy-code.yaml") as client:
        for call in (client.status, client.health, lambda: client.restart("api"), client.down):
            with pytest.raises(SupervisionError) as info:
                call()
            assert info.value.code == ErrorCode.S002
            assert str(tmp_path) in info.value.message


def test_no_tcp_listener_is_s002_and_token_stays_out() -> None:
    url = f"http://127.0.0.1:{_unused_port()}"
    token = "secret-token-that-must-not-leak"
    with Client(base_url=url, token=token, timeout=5) as client:
        assert token not in repr(client)
        with pytest.raises(SupervisionError) as info:
            client.health()
        assert info.value.code == ErrorCode.S002
        assert token not in str(info.value) and token not in repr(info.value)


def test_token_without_base_url_is_e002(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Client(tmp_path / "deploy-code.yaml", token="x")
    assert info.value.code == ErrorCode.E002


def test_deploy_invalid_file_is_config_error_and_starts_nothing(deployment: Deployment) -> None:
    deployment.write("name: broken\nservices:\n  web:\n    command: ['true']\n    replicas: -1\n")
    with Client(deployment.file) as client, pytest.raises(ConfigError) as info:
        client.deploy()
    assert info.value.code == ErrorCode.E002
    assert info.value.location is not None and info.value.location.file.endswith("deploy-code.yaml")
    assert info.value.location.line == 5
    assert not (deployment.state_dir / "api.sock").exists()


def test_sync_client_lifecycle(deployment: Deployment) -> None:
    write_two_services(deployment, "32700-32799")
    client = Client(deployment.file)
    try:
        status = client.deploy()
        assert isinstance(status, Status) and status.name == "clienttest"
        assert list(status.services) == ["db", "api"]  # file order
        api = status.services["api"]
        assert isinstance(api, ServiceStatus)
        assert (api.ready, api.desired, api.state, api.healthy) == (2, 2, ReplicaState.READY, True)
        assert api.depends_on == {"db": "healthy"}
        rep = api.replicas[0]
        assert isinstance(rep, ReplicaStatus)
        assert rep.id == "api.0" and rep.state == ReplicaState.READY and isinstance(rep.pid, int)
        assert isinstance(rep.ports["http"], int)
        assert status.resources is None and status.api is None  # not detailed
        detailed = client.status(detailed=True)
        assert detailed.resources is not None and detailed.ports is not None and detailed.api is not None
        assert detailed.api.unix == str(deployment.state_dir / "api.sock")

        # A second deploy finds the running orchestrator and starts nothing.
        assert client.deploy().pid == status.pid

        report = client.health()
        assert isinstance(report, HealthReport) and (report.ok, report.phase) == (True, "running")
        if report.healthy is not None:  # an orchestrator with /v1/health/report
            assert report.healthy and report.services["api"].ready == 2

        lines = client.logs("api", 5)
        assert {line.replica for line in lines} == {"api.0", "api.1"}
        assert all(isinstance(line, LogLine) and line.text.startswith("listening ") for line in lines)
        assert [line.replica for line in client.logs("api", 5, replica=1)] == ["api.1"]

        old_pids = {r.pid for r in client.status().services["api"].replicas}
        assert sorted(client.restart("api").restarted) == ["api.0", "api.1"]
        healthy = client.wait_for_healthy(30)
        assert healthy.healthy
        assert {r.pid for r in healthy.services["api"].replicas}.isdisjoint(old_pids)

        scaled = client.scale("api", 3)
        assert (scaled.service, scaled.replicas, scaled.added, scaled.removed) == ("api", 3, ("api.2",), ())
        assert len(client.wait_for_healthy(30).services["api"].replicas) == 3
        assert client.scale("api", 2).removed == ("api.2",)

        with contextlib.closing(client.events(service="api", kind="replica.transition")) as stream:
            first = next(stream)
        assert first.service == "api" and first.kind == "replica.transition" and first.id > 0
        assert {"old", "new", "reason"} <= set(first.data)

        with pytest.raises(SupervisionError) as info:
            client.restart(["api", "nope"])
        assert info.value.code == ErrorCode.S001 and "nope" in info.value.message
        with pytest.raises(SupervisionError) as info:
            client.logs("nope")
        assert info.value.code == ErrorCode.S001

        assert sorted(client.stop("api", timeout=2).stopped) == ["api.0", "api.1"]
        stopped = client.status().services["api"]
        assert stopped.state == ReplicaState.STOPPED and not stopped.healthy
        report = client.health()
        if report.healthy is not None:
            assert not report.healthy and not report.services["api"].healthy
            assert {r.id for r in report.services["api"].not_ready} == {"api.0", "api.1"}
        assert client.wait_for_healthy(5, services=["db"]).services["db"].healthy
        with pytest.raises(TimeoutExceeded) as timeout:
            client.wait_for_healthy(0.3)
        assert timeout.value.code == ErrorCode.E008 and "api" in timeout.value.message
        with pytest.raises(SupervisionError) as info:
            client.wait_for_healthy(1, services=["nope"])
        assert info.value.code == ErrorCode.S001
    finally:
        with contextlib.suppress(Exception):
            client.down(timeout=2)
        client.close()
    assert not (deployment.state_dir / "api.sock").exists()
    with Client(deployment.file) as again, pytest.raises(SupervisionError) as info:
        again.status()
    assert info.value.code == ErrorCode.S002


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
