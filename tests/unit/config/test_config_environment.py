"""service_environment / render_argv: the process's view of one replica."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import (
    InterpolationContext,
    Project,
    ServiceAddress,
    env_name,
    load_text,
    render_argv,
    service_environment,
)
from deploy_code.errors import ConfigError, ErrorCode, SupervisionError

TEXT = """\
settings: {host: 0.0.0.0}
services:
  kv-store.v2:
    command: [kv, "${ports.main}"]
    ports: {main: auto}
  api:
    command:
      - api
      - --port
      - "${ports.http}"
      - --kv
      - "${services.kv-store.v2.host}:${services.kv-store.v2.ports.main}"
    env_file: api.env
    env:
      LEVEL: "${LEVEL:-info}"
      SECRET: "${SECRET}"
      PLAIN: 7
      SHADOWED: from-env
    ports: {http: auto, admin-ui: auto}
    depends_on: {kv-store.v2: healthy, other: started}
  other:
    command: "echo ${replica} $$HOME"
    shell: true
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "api.env").write_text("SECRET=s3cret\nSHADOWED=from-file\nFILE_ONLY=1\n")
    return load_text(textwrap.dedent(TEXT).replace("admin-ui", "admin_ui"), base_dir=tmp_path, environ={})


def _ctx(**overrides: object) -> InterpolationContext:
    base: dict[str, object] = {
        "environ": {"PATH": "/bin", "SHADOWED": "from-os", "SECRET": "os-secret"},
        "ports": {"http": 31000, "admin_ui": 31001},
        "services": {"kv-store.v2": ServiceAddress("127.0.0.1", {"main": 30500})},
        "replica": 1,
    }
    base.update(overrides)
    return InterpolationContext(**base)  # type: ignore[arg-type]


def test_environment_layers_and_discovery(project: Project) -> None:
    env = service_environment(project, "api", _ctx())
    assert env == {
        "PATH": "/bin",  # process environment
        "SECRET": "s3cret",  # env_file over the process environment
        "FILE_ONLY": "1",
        "SHADOWED": "from-env",  # env: over env_file
        "LEVEL": "info",
        "PLAIN": "7",
        "DEPLOY_CODE_PORT_HTTP": "31000",
        "DEPLOY_CODE_PORT_ADMIN_UI": "31001",
        "DEPLOY_CODE_SERVICE": "api",
        "DEPLOY_CODE_REPLICA": "1",
        "DEPLOY_CODE_HOST": "0.0.0.0",
        "DEPLOY_CODE_KV_STORE_V2_HOST": "127.0.0.1",
        "DEPLOY_CODE_KV_STORE_V2_PORT_MAIN": "30500",
        # `other` has no address in the context: left out, never guessed
    }


def test_environment_does_not_mutate_context(project: Project) -> None:
    ctx = _ctx()
    service_environment(project, "api", ctx)
    assert dict(ctx.environ) == {"PATH": "/bin", "SHADOWED": "from-os", "SECRET": "os-secret"}


def test_render_argv(project: Project) -> None:
    assert render_argv(project, "api", _ctx()) == ["api", "--port", "31000", "--kv", "127.0.0.1:30500"]
    assert render_argv(project, "other", _ctx(ports={}, replica=3)) == ["/bin/sh", "-c", "echo 3 $HOME"]


def test_render_failure_is_located(project: Project) -> None:
    with pytest.raises(ConfigError) as info:
        render_argv(project, "api", _ctx(services={}))
    assert info.value.code is ErrorCode.E003
    assert str(info.value.location) == "deploy-code.yaml:12:9"  # the failing argv item


def test_unknown_service_is_s001(project: Project) -> None:
    with pytest.raises(SupervisionError) as info:
        service_environment(project, "nope", _ctx())
    assert info.value.code is ErrorCode.S001


def test_env_name() -> None:
    assert env_name("kv-store.v2") == "KV_STORE_V2"
    assert env_name("http") == "HTTP"
