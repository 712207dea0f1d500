"""plan_tcp: the TCP listener is checked (address, TLS, tokens) before anything binds."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy_code.api import plan_tcp
from deploy_code.config import Project, load_text
from deploy_code.errors import ConfigError, ErrorCode

SECRET = "tcp-listener-token-for-tests"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 / localhost (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _project(tmp_path: Path, api: str) -> Project:
    text = "services:\n  a: {command: [x]}\n" + (f"api:\n{api}" if api else "")
    return load_text(text, base_dir=tmp_path, environ={})


TOKENS = "  tokens: [{name: ci, role: admin, env: TOK}]\n"


def test_no_listener_asked_for(tmp_path: Path) -> None:
    assert plan_tcp(_project(tmp_path, TOKENS), {"TOK": SECRET}) is None


def test_loopback_needs_no_tls(tmp_path: Path) -> None:
    plan = plan_tcp(_project(tmp_path, "  listen: 127.0.0.1:0\n" + TOKENS), {"TOK": SECRET})
    assert plan is not None
    assert (plan.host, plan.port, plan.ssl, plan.origin) == ("127.0.0.1", 0, None, "api.listen")
    assert plan.tokens.identify(SECRET) is not None
    assert plan.url == "http://127.0.0.1:0"
    assert SECRET not in repr(plan)


def test_listen_flag_replaces_the_file(tmp_path: Path) -> None:
    plan = plan_tcp(_project(tmp_path, "  listen: 127.0.0.1:1\n" + TOKENS), {"TOK": SECRET}, "[::1]:0")
    assert plan is not None and (plan.host, plan.origin, plan.location) == ("::1", "--listen", None)
    assert plan.url == "http://[::1]:0"


def test_off_loopback_without_tls_is_refused_naming_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        plan_tcp(_project(tmp_path, TOKENS), {"TOK": SECRET}, "0.0.0.0:8700")
    assert info.value.code is ErrorCode.E002
    assert "--listen" in str(info.value) and "api.tls" in str(info.value)


def test_without_tokens_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        plan_tcp(_project(tmp_path, ""), {}, "127.0.0.1:0")
    assert "api.tokens" in str(info.value)


def test_every_reason_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        plan_tcp(_project(tmp_path, "  tokens: [{name: ci, role: admin, env: GONE}]\n"), {}, "10.1.2.3:80")
    messages = [d.message for d in info.value.diagnostics]
    assert len(messages) == 2
    assert "not loopback" in messages[0] and "GONE is not set" in messages[1]


def test_a_malformed_flag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--listen: listen must be HOST:PORT"):
        plan_tcp(_project(tmp_path, TOKENS), {"TOK": SECRET}, "8700")


def test_tls_files_are_loaded_now(tmp_path: Path) -> None:
    self_signed(tmp_path)
    api = "  listen: 0.0.0.0:0\n  tls: {cert: cert.pem, key: key.pem}\n" + TOKENS
    plan = plan_tcp(_project(tmp_path, api), {"TOK": SECRET})
    assert plan is not None and plan.ssl is not None and plan.url.startswith("https://")


def test_bad_tls_files_are_refused_at_api_tls(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    api = "  listen: 127.0.0.1:0\n  tls: {cert: cert.pem, key: missing.pem}\n" + TOKENS
    with pytest.raises(ConfigError) as info:
        plan_tcp(_project(tmp_path, api), {"TOK": SECRET})
    (diag,) = info.value.diagnostics
    assert diag.message.startswith("api.tls: cannot load cert.pem and missing.pem")
    assert diag.location is not None and diag.location.line == 5
