"""The orchestrator evaluates the file's alert rules: a down service fires, is recorded and POSTed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    got: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_crashed_service_fires_down_alert(
    tmp_path: Path, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    url, got = receiver
    project = load_text(
        f"""\
alerts:
  webhook: {{url: "{url}", timeout: 2s}}
  rules:
    - {{name: crash-down, service: crash, down_for: 0.5s}}
services:
  ok:
    command: [sleep, "60"]
    health: {{min_uptime: 0}}
  crash:
    command: [sh, -c, "exit 3"]
    restart: {{policy: "no"}}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (_orch, store):
        await until(lambda: any(g.get("kind") == "alert.fired" for g in got), 15)
        fired = next(g for g in got if g.get("kind") == "alert.fired")
        assert fired["rule"] == "crash-down" and fired["service"] == "crash"
        kinds = [e["kind"] for e in store.recent_events(limit=200)]
        assert "alert.fired" in kinds
        assert not any(g.get("service") == "ok" for g in got)
        assert store.snapshots() == []  # the deployment failed: nothing to roll back to


async def test_memory_rule_reads_the_replicas_memory(
    tmp_path: Path, receiver: tuple[str, list[dict[str, object]]]
) -> None:
    url, got = receiver
    # A threshold every process crosses (0.001 % of the machine), so the rule must fire from real samples.
    project = load_text(
        f"""\
alerts:
  webhook: {{url: "{url}", timeout: 2s}}
  rules:
    - {{name: mem, service: ok, memory_above_percent: 0.001}}
services:
  ok:
    command: [sleep, "60"]
    health: {{min_uptime: 0}}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (_orch, _store):
        await until(lambda: any(g.get("rule") == "mem" for g in got), 15)
        fired = next(g for g in got if g.get("rule") == "mem")
        assert fired["kind"] == "alert.fired" and fired["service"] == "ok"
