"""Cross-field rules: each one with its code and exact line:column; all reported together."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import load_text
from deploy_code.errors import ConfigError


def _diags(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_text(textwrap.dedent(text), base_dir=tmp_path, environ=environ or {})
    out = []
    for d in info.value.diagnostics:
        assert d.location is not None
        out.append((str(d.code), f"{d.location.line}:{d.location.column}", d.message + f" [{d.hint}]"))
    return out


def test_unknown_dependency_with_did_you_mean(tmp_path: Path) -> None:
    text = """\
        services:
          database: {command: [x]}
          api: {command: [x], depends_on: {databse: healthy}}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E002", "3:36")
    assert "unknown service 'databse'" in msg and "did you mean 'database'?" in msg


def test_unknown_dependency_in_list_form(tmp_path: Path) -> None:
    text = """\
        services:
          api: {command: [x], depends_on: [a, nope]}
          a: {command: [x]}
        """
    assert [(c, w) for c, w, _ in _diags(text, tmp_path)] == [("E002", "2:39")]


def test_self_dependency(tmp_path: Path) -> None:
    ((code, where, msg),) = _diags("services:\n  api: {command: [x], depends_on: [api]}\n", tmp_path)
    assert (code, where) == ("E002", "2:36") and "depends on itself" in msg


def test_cycles_are_not_checked_here(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x], depends_on: [b]}
          b: {command: [x], depends_on: [a]}
        """
    project = load_text(textwrap.dedent(text), base_dir=tmp_path, environ={})
    assert str(project.locate("services", "b", "depends_on", "a")) == "deploy-code.yaml:3:34"


def test_duplicate_fixed_ports_name_both_claimants(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x], ports: {http: 8080}}
          b: {command: [x], ports: {main: 8080, other: auto}}
          c: {command: [x], ports: {x: 9000}}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("S004", "3:29")
    assert "services.a.ports.http" in msg and "services.b.ports.main" in msg


def test_fixed_port_with_replicas_conflicts_with_itself(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x], replicas: 3, ports: {http: 8080, admin: auto}}
          b: {command: [x], replicas: 3, ports: {http: auto}}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("S004", "2:42") and "3 replicas" in msg


def test_fixed_port_outside_range_is_fine(tmp_path: Path) -> None:
    text = "settings: {port_range: 30000-30010}\nservices:\n  a: {command: [x], ports: {http: 80}}\n"
    load_text(text, base_dir=tmp_path, environ={})


def test_probe_port_names(tmp_path: Path) -> None:
    text = """\
        services:
          a:
            command: [x]
            ports: {http: auto}
            health:
              startup: {tcp: {port: 5432}}
              readiness: {http: {port: htp}}
              liveness: {tcp: {port: admin}}
        """
    got = _diags(text, tmp_path)
    assert [(c, w) for c, w, _ in got] == [("E002", "7:26"), ("E002", "8:24")]
    assert "did you mean 'http'?" in got[0][2]


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("${ports.nope}", "no port named 'nope'"),
        ("${services.ghost.host}", "unknown service 'ghost'"),
        ("${services.b.host}", "does not depend on it"),
        ("${services.c.ports.nope}", "services.c has no port named 'nope'"),
        ("${UNSET_VAR}", "environment variable UNSET_VAR is not set"),
        ("${bad name}", "invalid reference"),
        ("${open", "unterminated"),
        ("${services.c}", "invalid service reference"),
    ],
)
def test_template_references(tmp_path: Path, template: str, needle: str) -> None:
    text = f"""\
        services:
          a:
            command: [x, "{template}"]
            depends_on: [c]
          b: {{command: [x]}}
          c: {{command: [x], ports: {{main: auto}}}}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E003", "3:18")
    assert needle in msg


def test_template_hint_for_depends_on(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x], env: {URL: "${services.b.host}"}}
          b: {command: [x]}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E003", "2:27")
    assert "add b to services.a.depends_on" in msg


def test_env_var_found_in_environ_env_file_or_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FROM_FILE=1\n")
    text = """\
        services:
          a:
            command: "run ${FROM_ENV} ${FROM_FILE} ${OTHER:-x} $$HOME $HOME"
            shell: true
            env_file: .env
        """
    load_text(textwrap.dedent(text), base_dir=tmp_path, environ={"FROM_ENV": "1"})
    got = _diags(text, tmp_path)
    assert [(c, w) for c, w, _ in got] == [("E003", "3:5")]


def test_probe_templates_are_checked(tmp_path: Path) -> None:
    text = """\
        services:
          a:
            command: [x]
            health:
              readiness: {exec: {command: [check, "${ports.none}"]}}
        """
    assert [(c, w) for c, w, _ in _diags(text, tmp_path)] == [("E003", "5:43")]


def test_working_dir_must_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "escape").symlink_to("/")
    text = """\
        services:
          ok: {command: [x], working_dir: sub}
          up: {command: [x], working_dir: ../elsewhere}
          abs: {command: [x], working_dir: /etc}
          link: {command: [x], working_dir: escape/etc}
        """
    got = _diags(text, tmp_path)
    assert [(c, w) for c, w, _ in got] == [("E002", "3:22"), ("E002", "4:23"), ("E002", "5:24")]


def test_string_command_without_shell_points_at_command(tmp_path: Path) -> None:
    ((code, where, msg),) = _diags("services:\n  a:\n    shell: false\n    command: run it\n", tmp_path)
    assert (code, where) == ("E002", "4:5") and "shell" in msg


def test_everything_is_reported_together(tmp_path: Path) -> None:
    text = """\
        services:
          a: {command: [x, "${ports.p}"], depends_on: [zz], ports: {q: 80}}
          b: {command: [x], depends_on: [b], ports: {q: 80}, working_dir: /}
        """
    codes = sorted(c for c, _, _ in _diags(text, tmp_path))
    assert codes == ["E002", "E002", "E002", "E003", "S004"]


def test_alert_rule_for_an_unknown_service_is_located(tmp_path: Path) -> None:
    text = (
        "alerts:\n  rules:\n    - {name: r, service: apj, down_for: 1s}\nservices:\n  api: {command: [x]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, base_dir=tmp_path, environ={})
    (d,) = info.value.diagnostics
    assert str(d.code) == "E002" and "unknown service 'apj'" in d.message
    assert d.location is not None and d.location.line == 3
    assert d.hint == "did you mean 'api'?"
