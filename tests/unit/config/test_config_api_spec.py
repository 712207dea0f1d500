"""The ``api:`` section: listen syntax, TLS off loopback, tokens required, one source per token."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_code.config import load_text
from deploy_code.config.api_spec import is_loopback, parse_listen
from deploy_code.errors import ConfigError, ErrorCode

DIGEST = "a" * 64


def _load(api: str, tmp_path: Path) -> ConfigError | None:
    text = "services:\n  a: {command: [x]}\napi:\n" + api
    try:
        load_text(text, base_dir=tmp_path, environ={})
    except ConfigError as exc:
        return exc
    return None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8700", ("127.0.0.1", 8700)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9", ("::1", 9)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen_accepts(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8700", ":8700", "host:", "host:x", "::1:80", "[nope]:80", "h:65536"])
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("::", False),
    ],
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_no_api_section_means_no_listener(tmp_path: Path) -> None:
    project = load_text("services:\n  a: {command: [x]}\n", base_dir=tmp_path, environ={})
    assert project.spec.api.listen is None
    assert project.spec.api.tokens == []


def test_a_full_section_loads(tmp_path: Path) -> None:
    text = (
        "services:\n  a: {command: [x]}\napi:\n  listen: 0.0.0.0:8700\n"
        "  tls: {cert: c.pem, key: k.pem}\n  tokens:\n"
        f"    - {{name: ci, role: operator, sha256: {DIGEST}}}\n"
        "    - {name: ops, role: admin, env: OPS_TOKEN}\n"
        "    - {name: dash, role: viewer, file: secrets/dash}\n"
    )
    api = load_text(text, base_dir=tmp_path, environ={}).spec.api
    assert [(t.name, t.role) for t in api.tokens] == [
        ("ci", "operator"),
        ("ops", "admin"),
        ("dash", "viewer"),
    ]
    assert api.tls is not None and api.tls.cert == "c.pem"


def test_off_loopback_without_tls_is_refused_at_listen(tmp_path: Path) -> None:
    exc = _load(f"  listen: 0.0.0.0:8700\n  tokens: [{{name: a, role: admin, sha256: {DIGEST}}}]\n", tmp_path)
    assert exc is not None and exc.code is ErrorCode.E002
    (diag,) = exc.diagnostics
    assert diag.location is not None and (diag.location.line, diag.location.column) == (4, 3)
    assert "api.listen" in diag.message and "api.tls" in diag.message


def test_loopback_without_tls_is_allowed(tmp_path: Path) -> None:
    assert (
        _load(f"  listen: 127.0.0.1:0\n  tokens: [{{name: a, role: admin, sha256: {DIGEST}}}]\n", tmp_path)
        is None
    )


def test_a_listener_without_tokens_is_refused(tmp_path: Path) -> None:
    exc = _load("  listen: 127.0.0.1:8700\n", tmp_path)
    assert exc is not None
    assert "api.listen" in exc.diagnostics[0].message and "token" in exc.diagnostics[0].message


def test_every_token_problem_is_reported_where_it_is(tmp_path: Path) -> None:
    exc = _load(
        "  tokens:\n"
        "    - {name: a, role: admin, env: TOK, file: f}\n"
        "    - {name: b, role: boss, sha256: short}\n"
        "    - {name: c, role: viewer}\n",
        tmp_path,
    )
    assert exc is not None
    where = [((d.location.line if d.location else None), d.message) for d in exc.diagnostics]
    assert any(line == 5 and "found env and file" in m for line, m in where)
    assert any(line == 6 and "tokens[1].role" in m for line, m in where)
    assert any(line == 6 and "tokens[1].sha256" in m for line, m in where)
    assert any(line == 7 and "found none" in m for line, m in where)


def test_duplicate_token_names_are_refused(tmp_path: Path) -> None:
    exc = _load(
        f"  tokens:\n    - {{name: a, role: admin, sha256: {DIGEST}}}\n    - {{name: a, role: viewer, env: X}}\n",
        tmp_path,
    )
    assert exc is not None and "used twice" in str(exc)


def test_a_digest_in_the_wrong_field_is_not_echoed(tmp_path: Path) -> None:
    secret = "plain-text-token-value-0123456789"
    exc = _load(f"  tokens:\n    - {{name: a, role: admin, sha256: {secret}}}\n", tmp_path)
    assert exc is not None and secret not in str(exc) and secret not in repr(exc.to_dict())
