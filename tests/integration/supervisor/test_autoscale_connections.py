"""Autoscaling on front-port connections: held connections scale the service up, closing them down."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text

HOLDER = """\
import os, socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"]))); s.listen()
def hold(c):
    while c.recv(1024):
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=hold, args=(c,), daemon=True).start()
"""


async def test_connections_per_replica_drive_the_count(tmp_path: Path) -> None:
    (tmp_path / "hold.py").write_text(HOLDER)
    project = load_text(
        f"""\
services:
  pool:
    command: [{sys.executable}, hold.py]
    env: {{PORT: "${{ports.tcp}}"}}
    ports: {{tcp: auto}}
    expose: {{tcp: {{port: auto, balance: least_conn}}}}
    health: {{readiness: {{tcp: {{port: tcp}}, period: 0.1s}}}}
    autoscale: {{min: 1, max: 3, metric: connections, target: 2, interval: 0.3s,
                 scale_up_cooldown: 0.5s, scale_down_cooldown: 1s}}
""",
        base_dir=tmp_path,
    )
    conns: list[asyncio.StreamWriter] = []
    async with running(project, tmp_path) as (orch, store):
        try:
            assert (await orch.wait_outcome()).outcome == "ready"
            svc = orch.services["pool"]
            front = orch.fronts["pool"]["tcp"].port
            for _ in range(6):
                _, writer = await asyncio.open_connection("127.0.0.1", front)
                writer.write(b"x")
                conns.append(writer)
            await until(lambda: svc.desired == 3, 15)
            for w in conns:
                w.close()
            conns.clear()
            await until(lambda: svc.desired == 1, 15)
            decisions = [e for e in store.recent_events(limit=200) if e["kind"] == "scale.decision"]
            assert decisions and all(d["metric"] == "connections" for d in decisions)
            assert max(d["value"] for d in decisions) >= 2 * 1.1
        finally:
            for w in conns:
                w.close()
    assert orch.ports.in_use == 0 and orch.ledger.owners == 0
