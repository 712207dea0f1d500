"""The health package: public surface, layer rule, lazy httpx, and make_check's binding of specs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import deploy_code.health as health
from deploy_code.config.model import ProbeSpec
from deploy_code.errors import ConfigError, ErrorCode
from deploy_code.health import CheckTarget, HttpClientFactory, make_check
from deploy_code.health.probes import ExecProbe, HttpProbe, NotifyProbe, TcpProbe

HEALTH_DIR = Path(health.__file__).parent
FORBIDDEN = ("deploy_code.runtime", "deploy_code.supervisor", "deploy_code.scheduling")
TARGET = CheckTarget(host="10.1.2.3", ports={"http": 31000, "admin": 31001}, env={"A": "1"}, cwd="/srv")


def test_public_surface() -> None:
    assert set(health.__all__) == {
        "Check",
        "CheckTarget",
        "HttpClientFactory",
        "ListenWatcher",
        "LogLineMatcher",
        "NotifyEndpoint",
        "ProbeResult",
        "ProbeRunner",
        "ProbeTransition",
        "make_check",
        "next_delay",
    }
    assert all(hasattr(health, name) for name in health.__all__)


def test_imports_point_down_only() -> None:
    for path in HEALTH_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_importing_health_does_not_import_httpx() -> None:
    code = (
        "import sys, deploy_code.health; "
        "bad = sorted(m for m in ('httpx', 'httpcore') if m in sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tcp_uses_target_host_and_port_name() -> None:
    spec = ProbeSpec.model_validate({"tcp": {"port": "admin"}})
    check = make_check(spec, TARGET, http=HttpClientFactory())
    assert isinstance(check, TcpProbe)
    assert (check.host, check.port, check.timeout) == ("10.1.2.3", 31001, 1.0)


def test_explicit_host_and_literal_port_win() -> None:
    spec = ProbeSpec.model_validate({"tcp": {"port": 5432, "host": "127.0.0.2"}, "timeout": "250ms"})
    check = make_check(spec, TARGET, http=HttpClientFactory())
    assert isinstance(check, TcpProbe)
    assert (check.host, check.port, check.timeout) == ("127.0.0.2", 5432, 0.25)


@pytest.mark.parametrize(
    ("check_fields", "url"),
    [
        ({"port": "http"}, "http://10.1.2.3:31000/"),
        ({"port": "http", "path": "healthz"}, "http://10.1.2.3:31000/healthz"),
        ({"port": 8443, "scheme": "https", "path": "/h?x=1"}, "https://10.1.2.3:8443/h?x=1"),
        ({"port": 80, "host": "::1"}, "http://[::1]:80/"),
    ],
)
def test_http_url(check_fields: dict[str, object], url: str) -> None:
    check = make_check(ProbeSpec.model_validate({"http": check_fields}), TARGET, http=HttpClientFactory())
    assert isinstance(check, HttpProbe)
    assert check.url == url


def test_unknown_port_name_is_a_config_error() -> None:
    spec = ProbeSpec.model_validate({"http": {"port": "metrics"}})
    with pytest.raises(ConfigError) as info:
        make_check(spec, TARGET, http=HttpClientFactory())
    assert info.value.code is ErrorCode.E002
    assert "metrics" in info.value.message
    assert info.value.hint is not None
    assert "admin, http" in info.value.hint


def test_exec_binds_argv_env_and_cwd() -> None:
    spec = ProbeSpec.model_validate({"exec": {"command": ["pg_isready", "-q"]}})
    check = make_check(spec, TARGET, http=HttpClientFactory())
    assert isinstance(check, ExecProbe)
    assert check.argv == ("pg_isready", "-q")


def test_notify_check_needs_an_endpoint() -> None:
    spec = ProbeSpec.model_validate({"notify": True})
    with pytest.raises(ValueError, match="NotifyEndpoint"):
        make_check(spec, TARGET, http=HttpClientFactory())


async def test_notify_check_binds_the_endpoint() -> None:
    spec = ProbeSpec.model_validate({"notify": True})
    with health.NotifyEndpoint.open("unit") as endpoint:
        check = make_check(spec, TARGET, http=HttpClientFactory(), notify=endpoint)
        assert isinstance(check, NotifyProbe)
        assert not (await check()).ok


async def test_http_factory_is_lazy_and_closes_once() -> None:
    factory = HttpClientFactory()
    assert not factory.started
    await factory.aclose()  # nothing created: nothing to close
    with pytest.raises(RuntimeError, match="closed"):
        factory.client()

    async with HttpClientFactory() as factory:
        client = factory.client()
        assert factory.client() is client
        assert factory.started
    assert not factory.started
