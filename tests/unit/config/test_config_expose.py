"""expose: and autoscale: — parsed figures and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import load_text
from deploy_code.errors import ConfigError


def _load(text: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_text(textwrap.dedent(text), base_dir=tmp_path, environ={})


def _errors(text: str, tmp_path: Path) -> list[tuple[str, int, str]]:
    with pytest.raises(ConfigError) as info:
        _load(text, tmp_path)
    out = []
    for d in info.value.diagnostics:
        assert d.location is not None
        out.append((str(d.code), d.location.line, d.message))
    return out


def test_expose_and_autoscale_parse(tmp_path: Path) -> None:
    project = _load(
        """\
        services:
          api:
            command: [x]
            ports: {http: auto}
            replicas: 3
            expose:
              http: {port: 8080, balance: least_conn, bandwidth: 10MB/s, connect_timeout: 500ms}
            autoscale: {min: 1, max: 8, metric: connections, target: 70, interval: 5s}
        """,
        tmp_path,
    )
    api = project.spec.services["api"]
    exp = api.expose["http"]
    assert (exp.port, exp.balance, exp.bandwidth, exp.connect_timeout) == (
        8080,
        "least_conn",
        10_000_000,
        0.5,
    )
    assert api.autoscale is not None and (api.autoscale.min, api.autoscale.max) == (1, 8)
    assert api.autoscale.scale_down_cooldown == 60.0


def test_exposing_an_undeclared_port_is_e002_at_its_key(tmp_path: Path) -> None:
    errors = _errors(
        """\
        services:
          api:
            command: [x]
            ports: {http: auto}
            expose: {htp: {}}
        """,
        tmp_path,
    )
    assert errors == [("E002", 5, "services.api.expose.htp: the service declares no port 'htp'")]


def test_a_front_port_clashing_with_a_fixed_port_is_s004(tmp_path: Path) -> None:
    errors = _errors(
        """\
        services:
          db: {command: [x], ports: {main: 8080}}
          api:
            command: [x]
            ports: {http: auto}
            expose: {http: {port: 8080}}
        """,
        tmp_path,
    )
    ((code, line, msg),) = errors
    assert (code, line) == ("S004", 6) and "services.db.ports.main" in msg


def test_autoscale_bounds_and_metric_source(tmp_path: Path) -> None:
    errors = _errors(
        """\
        services:
          api:
            command: [x]
            autoscale: {min: 5, max: 2, target: 50}
        """,
        tmp_path,
    )
    assert errors[0][0] == "E002" and "above autoscale.max" in errors[0][2]
    errors = _errors(
        """\
        services:
          api:
            command: [x]
            autoscale: {max: 2, metric: latency_p95, target: 50}
        """,
        tmp_path,
    )
    assert errors[0][0] == "E002" and "exposes none" in errors[0][2]
