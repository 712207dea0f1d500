"""Front ports through the orchestrator: replicas join when ready, leave when they die; dependants
resolve the front port; clients see no error while one replica is ready."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.helpers import HTTP_REPLICA
from tests.integration.supervisor.support import http_get, running, until

from deploy_code.config import load_text
from deploy_code.events import ReplicaState


async def test_front_port_balances_and_survives_kills(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(HTTP_REPLICA)
    project = load_text(
        f"""\
services:
  web:
    command: [{sys.executable}, server.py]
    env: {{PORT: "${{ports.http}}", ANSWER: "${{replica}}"}}
    ports: {{http: auto}}
    replicas: 3
    expose: {{http: {{port: auto, balance: round_robin, connect_timeout: 2s}}}}
    restart: {{policy: always, backoff: {{initial: 0.2s}}}}
    health:
      readiness: {{tcp: {{port: http}}, period: 0.1s}}
  client:
    command: [sh, -c, "echo web at $WEB; sleep 60"]
    env: {{WEB: "${{services.web.ports.http}}"}}
    depends_on: {{web: healthy}}
    health: {{min_uptime: 0}}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (orch, _store):
        assert (await orch.wait_outcome()).outcome == "ready"
        front = orch.fronts["web"]["http"].port
        replica_ports = {r.ports["http"] for r in orch.services["web"].replicas.values()}
        assert front not in replica_ports

        # The dependant was given the front port, not a replica's.
        async def client_said() -> str:
            return "".join(await orch.logs("client", 5))

        async with asyncio.timeout(5):  # the client's first line reaches its log file a moment after ready
            while f"web at {front}" not in await client_said():  # noqa: ASYNC110 - a file, polled
                await asyncio.sleep(0.05)
        seen = {await http_get(front) for _ in range(9)}
        assert seen == {"0", "1", "2"}  # round robin over the three ready replicas
        status = orch.status()["fronts"]["web"]["http"]  # type: ignore[index]
        assert status["ready_backends"] == 3 and status["available"] is True

        # Kill replicas one at a time while a client keeps sending: no request fails.
        failures = 0
        done = 0
        stop = asyncio.Event()

        async def load() -> None:
            nonlocal failures, done
            while not stop.is_set():
                try:
                    await http_get(front)
                    done += 1
                except (TimeoutError, OSError, AssertionError):
                    failures += 1

        task = asyncio.create_task(load())
        web = orch.services["web"]
        for idx in (0, 1):
            rep = web.replicas[idx]
            assert rep.handle is not None
            os.kill(rep.handle.identity.pid, signal.SIGKILL)
            await until(lambda rep=rep: rep.state != ReplicaState.READY, 5)
            await until(lambda rep=rep: rep.state == ReplicaState.READY, 10)
        stop.set()
        await task
        assert done > 20 and failures == 0, (done, failures)

        from prometheus_client.parser import text_string_to_metric_families

        m = {
            (smp.name, tuple(sorted(smp.labels.items()))): smp.value
            for fam in text_string_to_metric_families((await orch.metrics_text()).decode())
            for smp in fam.samples
        }
        labels = (("port", "http"), ("service", "web"))
        assert m[("deploy_code_front_available", labels)] == 1
        assert m[("deploy_code_front_connections_total", labels)] >= done
        assert m[("deploy_code_front_bytes_out_total", labels)] > 0
        assert m[("deploy_code_front_upstream_latency_seconds_count", labels)] >= done
    assert orch.ports.in_use == 0 and orch.fronts == {}
