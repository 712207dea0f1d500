"""The TCP listener through the real CLI: TLS with a self-signed cert, and every way it is refused."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest
from tests.helpers import Deployment
from tests.integration.api.support import (
    ADMIN_ENV,
    ApiDeployment,
    new_tokens,
    self_signed,
    tcp_url,
    up,
    write_config,
)


def _loopback(url: str) -> str:
    """``https://0.0.0.0:PORT`` -> ``https://127.0.0.1:PORT`` (a wildcard bind is reached on loopback)."""
    return url.replace("0.0.0.0", "127.0.0.1")


def _line_of(dep: Deployment, prefix: str) -> int:
    """1-based number of the config's first line starting with ``prefix``."""
    lines = dep.file.read_text().splitlines()
    return 1 + next(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_tls_off_loopback_with_a_self_signed_cert(deployment: Deployment) -> None:
    cert, _ = self_signed(deployment.root)
    tokens = new_tokens()
    write_config(deployment.root, tokens, api_extra="  tls: {cert: cert.pem, key: key.pem}\n", listen=None)
    res = up(deployment, tokens, "--listen", "0.0.0.0:0")
    assert res.returncode == 0, res.stderr
    url = tcp_url(deployment)
    assert url.startswith("https://0.0.0.0:")
    api = ApiDeployment(
        deployment, _loopback(url), tokens, verify=ssl.create_default_context(cafile=str(cert))
    )
    assert api.request("GET", "/v1/health", "viewer").json()["ok"] is True
    assert api.request("GET", "/v1/health", None).status_code == 401  # TLS does not replace the token
    assert api.request("GET", "/v1/status", "viewer").json()["api"]["tls"] is True
    with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port gets no answer
        httpx.get(_loopback(url).replace("https://", "http://") + "/v1/health", timeout=5)
    with pytest.raises(httpx.ConnectError):  # and a client that does not trust the cert refuses it
        httpx.get(_loopback(url) + "/v1/health", timeout=5)
    api.assert_no_token_in(*api.seen, res.stdout, res.stderr)


def test_off_loopback_without_tls_starts_nothing(deployment: Deployment) -> None:
    tokens = new_tokens()
    write_config(deployment.root, tokens, listen=None)
    res = up(deployment, tokens, "--listen", "0.0.0.0:0")
    assert res.returncode == 2  # the CLI's status for an invalid configuration
    assert "E002 --listen: listening on 0.0.0.0 (not loopback) needs api.tls" in res.stderr
    assert not (deployment.state_dir / "api.sock").exists()
    assert deployment.orchestrator_pid() is None
    assert tokens["admin"] not in res.stdout + res.stderr


def test_off_loopback_in_the_file_is_located_by_validate(deployment: Deployment) -> None:
    tokens = new_tokens()
    write_config(deployment.root, tokens, listen="10.0.0.1:8700")
    res = deployment.cli("validate")
    assert res.returncode == 2  # the CLI's status for an invalid configuration
    line = _line_of(deployment, "  listen:")
    assert f"deploy-code.yaml:{line}:3: E002 api.listen: listening on 10.0.0.1 (not loopback)" in res.stderr


def test_a_listener_without_tokens_is_refused(deployment: Deployment) -> None:
    deployment.write("services:\n  a: {command: [sleep, '60']}\n")
    res = deployment.cli("up", "--detach", "--listen", "127.0.0.1:0")
    assert res.returncode == 2  # the CLI's status for an invalid configuration
    assert "a TCP listener needs at least one entry in api.tokens" in res.stderr
    assert deployment.orchestrator_pid() is None


def test_an_unset_token_variable_is_reported_where_it_is(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_ENV, raising=False)
    write_config(deployment.root, new_tokens())
    res = deployment.cli("up", "--detach")
    assert res.returncode == 2  # the CLI's status for an invalid configuration
    line = _line_of(deployment, "    - {name: ops")
    column = 1 + deployment.file.read_text().splitlines()[line - 1].index("env:")
    assert (
        f"deploy-code.yaml:{line}:{column}: E002 api.tokens[0] (ops): environment variable {ADMIN_ENV} is not set"
        in res.stderr
    )


def test_a_busy_port_is_e010_and_nothing_keeps_running(deployment: Deployment) -> None:
    tokens = new_tokens()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write_config(deployment.root, tokens, listen=f"127.0.0.1:{port}")
        res = up(deployment, tokens)
    assert res.returncode == 1
    assert f"E010 api.listen: cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr
    assert tokens["admin"] not in res.stdout + res.stderr


def test_the_unix_socket_needs_no_token(deployment: Deployment) -> None:
    tokens = new_tokens()
    write_config(deployment.root, tokens)
    assert up(deployment, tokens).returncode == 0
    res = deployment.cli("restart", "extra")
    assert res.returncode == 0, res.stderr
