"""Templates: render, escapes, defaults, errors (E003), parsed references."""

from __future__ import annotations

import pytest

from deploy_code.config import InterpolationContext, Reference, ServiceAddress, references, render
from deploy_code.errors import ConfigError, ErrorCode

CTX = InterpolationContext(
    environ={"HOME": "/home/u", "EMPTY": ""},
    ports={"http": 30001, "admin": 30002},
    services={"db": ServiceAddress("10.0.0.5", {"main": 5432}), "my.svc-1": ServiceAddress("h", {"p": 1})},
    replica=2,
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("${HOME}/x", "/home/u/x"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${HOME:-fallback}", "/home/u"),
        ("${MISSING:-}", ""),
        ("${EMPTY}", ""),
        ("${MISSING:-a b:c/d?}", "a b:c/d?"),
        ("--port=${ports.http}", "--port=30001"),
        ("${services.db.host}:${services.db.ports.main}", "10.0.0.5:5432"),
        ("${services.my.svc-1.ports.p}@${services.my.svc-1.host}", "1@h"),
        ("r${replica}", "r2"),
        ("$$", "$"),
        ("$${HOME}", "${HOME}"),
        ("$$$${HOME}", "$${HOME}"),
        ("$$${HOME}", "$/home/u"),
        ("$HOME and $", "$HOME and $"),
        ("cost: 5$", "cost: 5$"),
        ("}{", "}{"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("${MISSING}", "MISSING is not set"),
        ("${ports.nope}", "no port named 'nope'"),
        ("${services.ghost.host}", "no address for service 'ghost'"),
        ("${services.db.ports.nope}", "has no port named 'nope'"),
        ("${unterminated", "unterminated"),
        ("${}", "invalid reference"),
        ("${1abc}", "invalid reference"),
        ("${a b}", "invalid reference"),
        ("${ports.}", "invalid port reference"),
        ("${services.db}", "invalid service reference"),
        ("${services.db.ports}", "invalid service reference"),
        ("${A:-${B}}", "nested reference"),
    ],
)
def test_render_errors_are_e003(template: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(template, CTX)
    assert info.value.code is ErrorCode.E003
    assert needle in info.value.message


def test_missing_variable_hint() -> None:
    with pytest.raises(ConfigError) as info:
        render("${TOKEN}", CTX)
    assert info.value.hint is not None and "${TOKEN:-default}" in info.value.hint


def test_references() -> None:
    refs = references("a ${X:-1} $$ ${ports.http} ${services.db.ports.main} ${services.db.host} ${replica}")
    assert refs == [
        Reference("env", "${X:-1}", name="X", default="1", offset=2),
        Reference("port", "${ports.http}", name="http", offset=13),
        Reference("service_port", "${services.db.ports.main}", name="main", service="db", offset=27),
        Reference("service_host", "${services.db.host}", service="db", offset=53),
        Reference("replica", "${replica}", offset=73),
    ]
    assert references("no refs $$ here $X") == []
