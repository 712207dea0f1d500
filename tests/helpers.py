"""Test helpers: a project directory, the CLI as a real subprocess, and a sweep that kills leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

PY = sys.executable


HTTP_REPLICA = """\
import http.server, os, socketserver, sys
if os.environ.get("BROKEN"):
    sys.exit(3)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = os.environ["ANSWER"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
print("serving", os.environ["ANSWER"], flush=True)
S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
"""A replica for front-port tests: answers every GET with $ANSWER on $PORT; exits 3 at once if $BROKEN."""


def processes_marked(state_dir: Path) -> list[int]:
    """Pids whose environment carries DEPLOY_CODE_STATE_DIR=state_dir (our replicas)."""
    marker = f"DEPLOY_CODE_STATE_DIR={state_dir}".encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry))
    return found


def kill_marked(state_dir: Path) -> list[int]:
    """SIGKILL every process of a deployment; returns what was still alive."""
    pids = processes_marked(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


ZERO = {"cpu_cores": 0.0, "memory_mb": 0.0, "storage_gb": 0.0, "gpu_count": 0}


def books_at_close(state_dir: Path) -> dict[str, Any] | None:
    """What the last orchestrator still held when it closed (from the real state.db), or None."""
    db = state_dir / "state.db"
    if not db.exists():
        return None
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'books_at_close'").fetchone()
    return None if row is None else dict(json.loads(row[0]))


class Deployment:
    """A project directory with a deploy-code.yaml, driven through the real CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "deploy-code.yaml"
        self.state_dir = root / ".deploy-code"
        self.daemons: list[subprocess.Popen[bytes]] = []

    def write(self, yaml_text: str) -> Path:
        self.file.write_text(textwrap.dedent(yaml_text))
        return self.file

    def cli(
        self, *args: str, timeout: float = 60.0, check: bool = False, file: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``deploy-code ARGS -f FILE`` (``file=False``: without ``-f``)."""
        proc = subprocess.run(
            [PY, "-m", "deploy_code", *args, *(("--file", str(self.file)) if file else ())],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def foreground(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [PY, "-m", "deploy_code", "up", "-f", str(self.file), *args],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.daemons.append(proc)
        return proc

    def orchestrator_pid(self) -> int | None:
        try:
            text = (self.state_dir / "orchestrator.lock").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def cleanup(self) -> list[int]:
        if self.state_dir.exists() and (self.state_dir / "api.sock").exists():
            with contextlib.suppress(Exception):
                self.cli("down", "--timeout", "2", timeout=30)
        for proc in self.daemons:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
        pid = self.orchestrator_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return kill_marked(self.state_dir)
