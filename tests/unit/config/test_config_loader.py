"""load / load_text: every error kind with its code and exact line:column; resolve_state_dir."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import Project, load, load_text, resolve_state_dir
from deploy_code.config import loader as loader_module
from deploy_code.errors import ConfigError, ErrorCode

QUICKSTART = """\
version: 1
name: quickstart
services:
  kv:
    command: [kv-server, --port, "${ports.main}"]
    ports: {main: auto}
    health:
      readiness: {tcp: {port: main}, period: 1s}
  api:
    command: [api, --port, "${ports.http}", --kv, "${services.kv.host}:${services.kv.ports.main}"]
    replicas: 2
    ports: {http: auto}
    depends_on: {kv: healthy}
    env: {LOG_LEVEL: "${LOG_LEVEL:-info}", WORKERS: 4}
    health:
      readiness: {http: {port: http, path: /healthz}, period: 2s, timeout: 500ms}
  worker:
    command: "worker --api ${services.api.host}:${services.api.ports.http}"
    shell: true
    depends_on: [api]
  web:
    command: [web]
    ports: {http: 8080}
    depends_on: {api: healthy}
"""


def _load(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> Project:
    return load_text(textwrap.dedent(text), base_dir=tmp_path, environ=environ or {})


def _diags(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(code, line:col, message) of every diagnostic."""
    with pytest.raises(ConfigError) as info:
        _load(text, tmp_path, environ)
    out = []
    for d in info.value.diagnostics:
        loc = d.location
        where = "" if loc is None else f"{loc.line}:{loc.column}"
        out.append((str(d.code), where, d.message))
    return out


def test_quickstart_loads(tmp_path: Path) -> None:
    project = _load(QUICKSTART, tmp_path)
    assert list(project.spec.services) == ["kv", "api", "worker", "web"]
    assert project.path == tmp_path / "deploy-code.yaml"
    assert project.base_dir == tmp_path
    assert project.state_dir == tmp_path / ".deploy-code"
    assert project.env_files["api"] == {}
    assert project.spec.services["worker"].depends_on == {"api": "started"}
    assert project.spec.services["api"].env["WORKERS"] == "4"
    assert str(project.locate("services", "api", "depends_on", "kv")) == "deploy-code.yaml:13:18"
    assert str(project.locate("services", "worker", "depends_on", "api")) == "deploy-code.yaml:20:18"
    assert project.name == "quickstart"


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    path.write_text(QUICKSTART)
    project = load(path, environ={})
    assert project.path == path and project.base_dir == tmp_path
    assert str(project.locate("services", "web", "ports", "http")).endswith("deploy-code.yaml:23:13")


def test_missing_file_is_e001(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.yaml")
    assert info.value.code is ErrorCode.E001
    assert "nope.yaml" in info.value.message
    assert info.value.hint == "create deploy-code.yaml or pass -f FILE"


def test_directory_is_e001(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert info.value.code is ErrorCode.E001 and "directory" in info.value.message


def test_non_utf8_is_e002_with_position(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    path.write_bytes(b"services:\n  a: {command: [\xff\xfe]}\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.code is ErrorCode.E002
    assert info.value.location is not None
    assert (info.value.location.line, info.value.location.column) == (2, 17)


def test_too_large_is_e002(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_module, "MAX_FILE_BYTES", 100)
    path = tmp_path / "deploy-code.yaml"
    path.write_text("#" * 101)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.code is ErrorCode.E002 and "too large" in info.value.message
    with pytest.raises(ConfigError, match="too large"):
        load_text("#" * 101)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), ("- a\n- b\n", "top level must be a mapping"), ("42\n", "top level")],
)
def test_empty_or_not_a_mapping(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        _load(text, tmp_path)
    assert info.value.code is ErrorCode.E002


def test_yaml_syntax_error_location(tmp_path: Path) -> None:
    diags = _diags("services:\n  a: {command: [x]\n", tmp_path)
    assert diags[0][0] == "E002" and diags[0][1].startswith("3:")


def test_every_model_error_at_once_with_locations(tmp_path: Path) -> None:
    text = """\
        servces: {}
        services:
          api:
            comand: [x]
            command: 5
            ports: {http: x, 9bad: 3}
            timeouts: {start: 5 parsecs}
            health:
              readiness: {tcp: {port: http}, http: {port: 1}}
              liveness: {tcp: {port: http}, period: 0}
          web:
            command: echo hi
          w2: {}
        settings: {port_range: 9-1}
        """
    got = {(where, msg.split(":")[0]) for _, where, msg in _diags(text, tmp_path)}
    assert got == {
        ("1:1", "<top level>"),
        ("4:5", "services.api"),
        ("5:5", "services.api.command"),
        ("6:13", "services.api.ports.http"),
        ("6:22", "services.api.ports.9bad"),
        ("7:16", "services.api.timeouts.start"),
        ("9:7", "services.api.health.readiness"),
        ("10:37", "services.api.health.liveness"),  # at the period key
        ("12:5", "services.web"),  # at the command key
        ("13:3", "services.w2"),
        ("14:12", "settings.port_range"),
    }


def test_extra_key_has_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load("services:\n  a:\n    command: [x]\n    depnds_on: [b]\n", tmp_path)
    (diag,) = info.value.diagnostics
    assert (diag.code, str(diag.location)) == (ErrorCode.E002, "deploy-code.yaml:4:5")
    assert diag.hint == "did you mean 'depends_on'?"


def test_nested_extra_key_has_did_you_mean(tmp_path: Path) -> None:
    text = "services:\n  a:\n    command: [x]\n    restart: {backof: {initial: 1s}}\n"
    with pytest.raises(ConfigError) as info:
        _load(text, tmp_path)
    assert info.value.hint == "did you mean 'backoff'?"
    assert str(info.value.location) == "deploy-code.yaml:4:15"


def test_bad_duration_shows_accepted_forms(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load("services:\n  a:\n    command: [x]\n    timeouts: {stop: soon}\n", tmp_path)
    assert str(info.value.location) == "deploy-code.yaml:4:16"
    assert info.value.hint is not None and "100ms, 5s, 2m, 1h" in info.value.hint


def test_mixed_codes_make_an_e002_with_all_diagnostics(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x, "${NOPE}"], ports: {p: 80}}
          b: {command: [x], ports: {p: 80}, depends_on: [zz]}
        """
    with pytest.raises(ConfigError) as info:
        _load(text, tmp_path)
    assert info.value.code is ErrorCode.E002
    assert sorted(str(d.code) for d in info.value.diagnostics) == ["E002", "E003", "S004"]


def test_single_code_is_kept(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load('services:\n  a: {command: [x, "${NOPE}"]}\n', tmp_path)
    assert info.value.code is ErrorCode.E003


def test_diagnostics_are_capped(tmp_path: Path) -> None:
    text = "services:\n  a:\n    command: [x]\n" + "".join(f"    bad{i}: 1\n" for i in range(300))
    with pytest.raises(ConfigError) as info:
        _load(text, tmp_path)
    assert len(info.value.diagnostics) == 100
    assert "201 more" in info.value.diagnostics[-1].message


def test_unexpected_exception_becomes_e002(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(loader_module, "validate", boom)
    with pytest.raises(ConfigError) as info:
        _load("services: {a: {command: [x]}}\n", tmp_path)
    assert info.value.code is ErrorCode.E002 and "kaboom" in info.value.message


def test_env_file_is_read_and_merged(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("A=1\nB=from-a\n")
    (tmp_path / "b.env").write_text("B=from-b\n")
    text = """\
        services:
          x: {command: [x, "${A}", "${B}"], env_file: [a.env, b.env]}
          y: {command: [y], env_file: a.env}
        """
    project = _load(text, tmp_path)
    assert project.env_files["x"] == {"A": "1", "B": "from-b"}
    assert project.env_files["y"] == {"A": "1", "B": "from-a"}


def test_env_file_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("OK=1\nnope\n")
    (tmp_path / "bin.env").write_bytes(b"A=\xff\n")
    text = """\
        services:
          a: {command: [x], env_file: missing.env}
          b: {command: [x], env_file: ../outside.env}
          c: {command: [x], env_file: [bad.env, bin.env]}
        """
    got = sorted((code, where, msg.split(":")[0]) for code, where, msg in _diags(text, tmp_path))
    assert got == [
        ("E002", "1:3", "services.c.env_file[1]"),  # inside bin.env
        ("E002", "2:1", "bad.env"),  # inside bad.env
        ("E002", "2:21", "services.a.env_file"),
        ("E002", "3:21", "services.b.env_file"),
    ]


def test_resolve_state_dir(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    assert resolve_state_dir(path) == tmp_path / ".deploy-code"  # missing file: default
    path.write_text("settings: {state_dir: run/state}\nservices: {broken\n")
    assert resolve_state_dir(path) == tmp_path / ".deploy-code"  # unparsable: default
    path.write_text("settings: {state_dir: run/state}\nservices: 3\n")
    assert resolve_state_dir(path) == tmp_path / "run" / "state"  # parsable, invalid: still read
    path.write_text("settings: {state_dir: 7}\n")
    assert resolve_state_dir(path) == tmp_path / ".deploy-code"
    path.write_text("settings: {state_dir: /abs/dir}\nservices: {a: {command: [x]}}\n")
    assert resolve_state_dir(path) == Path("/abs/dir")
    assert load(path, environ={}).state_dir == Path("/abs/dir")


def test_resolve_state_dir_matches_project(tmp_path: Path) -> None:
    path = tmp_path / "deploy-code.yaml"
    path.write_text("settings: {state_dir: ./x/../st}\nservices: {a: {command: [x]}}\n")
    assert resolve_state_dir(path) == load(path, environ={}).state_dir == tmp_path / "st"


def test_restart_policy_no_unquoted(tmp_path: Path) -> None:
    project = _load("services: {a: {command: [x], restart: {policy: no}}}\n", tmp_path)
    assert project.spec.services["a"].restart.policy == "no"
