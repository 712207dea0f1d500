"""Tokens become digests at start-up; a presented token is matched by digest; plaintext never kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from deploy_code.api import LOCAL, Principal, TokenSet, load_tokens, token_digest
from deploy_code.config import Project, load_text
from deploy_code.errors import ConfigError, ErrorCode

SECRET = "s3cret-token-value-for-tests"


def _project(tmp_path: Path, tokens: str) -> Project:
    return load_text(
        "services:\n  a: {command: [x]}\napi:\n  tokens:\n" + tokens, base_dir=tmp_path, environ={}
    )


def test_identify_by_digest() -> None:
    tokens = TokenSet([("ci", "operator", token_digest(SECRET)), ("ro", "viewer", token_digest("other"))])
    assert tokens.identify(SECRET) == Principal("ci", "operator")
    assert tokens.identify("other") == Principal("ro", "viewer")
    assert tokens.identify(SECRET + "x") is None
    assert tokens.identify("") is None
    assert tokens.identify("x" * 5000) is None  # longer than any token we accept: not even hashed


def test_repr_and_describe_hold_names_only() -> None:
    tokens = TokenSet([("ci", "admin", token_digest(SECRET))])
    assert "ci" in repr(tokens)
    assert token_digest(SECRET).hex() not in repr(tokens)
    assert tokens.describe() == [{"name": "ci", "role": "admin"}]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("viewer", {"viewer"}),
        ("operator", {"viewer", "operator"}),
        ("admin", {"viewer", "operator", "admin"}),
    ],
)
def test_roles_are_ordered(role: str, allowed: set[str]) -> None:
    who = Principal("x", role)  # type: ignore[arg-type]
    assert {r for r in ("viewer", "operator", "admin") if who.allows(r)} == allowed  # type: ignore[arg-type]


def test_the_unix_socket_caller_is_admin() -> None:
    assert LOCAL.allows("admin")


def test_every_source_gives_the_same_digest(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text(SECRET + "\n")  # a trailing newline (echo > file) is not part of it
    hexed = hashlib.sha256(SECRET.encode()).hexdigest()
    project = _project(
        tmp_path,
        f"    - {{name: a, role: admin, sha256: {hexed}}}\n"
        "    - {name: b, role: operator, env: TOK}\n"
        "    - {name: c, role: viewer, file: tok}\n",
    )
    tokens = load_tokens(project, {"TOK": SECRET})
    assert len(tokens) == 3
    # all three match; the first entry wins
    assert tokens.identify(SECRET) == Principal("a", "admin")


def test_unreadable_sources_are_all_reported_where_they_are(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    project = _project(
        tmp_path,
        "    - {name: a, role: admin, env: MISSING}\n"
        "    - {name: b, role: admin, env: BLANK}\n"
        "    - {name: c, role: viewer, file: nope}\n"
        "    - {name: d, role: viewer, file: empty}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_tokens(project, {"BLANK": ""})
    diags = info.value.diagnostics
    assert [d.code for d in diags] == [ErrorCode.E002] * 4
    assert [d.location.line if d.location else None for d in diags] == [5, 6, 7, 8]
    assert "MISSING is not set" in diags[0].message
    assert "No such file" in diags[2].message
    assert "empty" in diags[3].message


def test_an_unreadable_file_error_never_shows_content(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_bytes(SECRET.encode() + b"\xff\xfe")  # not UTF-8
    project = _project(tmp_path, "    - {name: a, role: admin, file: tok}\n")
    with pytest.raises(ConfigError) as info:
        load_tokens(project, {})
    assert SECRET not in str(info.value)
    assert "not UTF-8" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_permission_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text(SECRET)
    path.chmod(0)
    project = _project(tmp_path, "    - {name: a, role: admin, file: tok}\n")
    with pytest.raises(ConfigError) as info:
        load_tokens(project, {})
    assert "Permission denied" in str(info.value) and SECRET not in str(info.value)
