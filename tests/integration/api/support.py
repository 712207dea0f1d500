"""A real deployment with a TCP API listener and one token per role, driven through the real CLI.

Each role's token comes from a different source so all three are exercised: admin from an
environment variable, operator from a file, viewer as a sha256 digest in the file. Tokens are random
per deployment, so a grep for them cannot match anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import ssl
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.helpers import PY, ZERO, Deployment, books_at_close, processes_marked

ROLES = ("viewer", "operator", "admin")
RANK = {"viewer": 0, "operator": 1, "admin": 2}
ADMIN_ENV = "DEPLOY_CODE_TEST_ADMIN_TOKEN"
# Prints a line every 50 ms, so logs (and logs?follow=true) always have something to show.
TICKER = "import itertools,sys,time\nfor i in itertools.count():\n    print('tick', i, flush=True); time.sleep(0.05)\n"


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


@dataclass
class ApiDeployment:
    """A running deployment and how to reach its TCP listener."""

    dep: Deployment
    url: str
    tokens: dict[str, str]
    verify: ssl.SSLContext | bool = True
    seen: list[str] = field(default_factory=list)  # every reply's headers and body, for the leak check

    def headers(self, role: str | None) -> dict[str, str]:
        """The Authorization header for ``role`` (None: no header)."""
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def request(self, method: str, path: str, role: str | None, **kwargs: Any) -> httpx.Response:
        """One request over TCP; the reply is remembered for :meth:`assert_no_token_in`."""
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        with httpx.Client(base_url=self.url, verify=self.verify, timeout=30) as client:
            resp = client.request(method, path, headers=headers, **kwargs)
        self.seen.append(f"{resp.headers}\n{resp.text}")
        return resp

    def assert_no_token_in(self, *texts: str) -> None:
        """No token (nor its hex digest) appears in ``texts``."""
        for text in texts:
            for role, tok in self.tokens.items():
                assert tok not in text, f"the {role} token leaked"
                assert hashlib.sha256(tok.encode()).hexdigest() not in text or role == "viewer"


def write_config(
    root: Path, tokens: dict[str, str], api_extra: str = "", listen: str | None = "127.0.0.1:0"
) -> None:
    """deploy-code.yaml with a ticker and a sleeper, and the three tokens."""
    (root / "operator.token").write_text(tokens["operator"] + "\n")
    ticker = root / "ticker.py"
    ticker.write_text(TICKER)
    viewer_digest = hashlib.sha256(tokens["viewer"].encode()).hexdigest()
    listen_line = f"  listen: {listen}\n" if listen else ""
    (root / "deploy-code.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: apitest
            services:
              web:
                command: [{PY}, -u, {ticker}]
              extra:
                command: [sleep, "3600"]
                stop_signal: SIGKILL
            """
        )
        + "api:\n"
        + listen_line
        + api_extra
        + "  tokens:\n"
        + f"    - {{name: ops, role: admin, env: {ADMIN_ENV}}}\n"
        + "    - {name: deployer, role: operator, file: operator.token}\n"
        + f"    - {{name: dashboard, role: viewer, sha256: {viewer_digest}}}\n"
    )


def new_tokens() -> dict[str, str]:
    """Random tokens, one per role, and one (``unknown``) that is not configured."""
    return {role: f"{role}-{secrets.token_urlsafe(24)}" for role in (*ROLES, "unknown")}


def up(dep: Deployment, tokens: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``deploy-code up --detach`` with the admin token in the environment (as an operator would)."""
    env = {**os.environ, ADMIN_ENV: tokens["admin"]}
    return subprocess.run(
        [PY, "-m", "deploy_code", "up", "--detach", "-f", str(dep.file), *args],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=dep.root,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def tcp_url(dep: Deployment) -> str:
    """The TCP listener's URL, read from status over the unix socket (the port was 0: any free one)."""
    doc = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    url = doc["api"]["tcp"]
    assert isinstance(url, str)
    return url


def start(root: Path, *, api_extra: str = "", args: tuple[str, ...] = ()) -> ApiDeployment:
    """Write the config, ``up --detach``, and return the running deployment."""
    dep = Deployment(root)
    tokens = new_tokens()
    write_config(root, tokens, api_extra)
    res = up(dep, tokens, *args)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    api = ApiDeployment(dep, tcp_url(dep), tokens)
    api.seen.append(res.stdout + res.stderr)
    return api


def finish(dep: Deployment) -> None:
    """Cleanup as tests/conftest.py's ``deployment`` fixture does: nothing survives, books balance."""
    leftovers = dep.cleanup()
    time.sleep(0.05)
    assert not processes_marked(dep.state_dir), f"processes survived cleanup: {leftovers}"
    books = books_at_close(dep.state_dir)
    if books is not None:
        assert books == {"owners": 0, "allocated": ZERO, "ports_in_use": 0}, books
