"""/metrics against a running deployment: live state, event-fed histograms and per-replica samples."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text

SERVER = (
    "import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
    "s.bind(('127.0.0.1',int(__import__('os').environ['DEPLOY_CODE_PORT_MAIN'])));s.listen();time.sleep(60)"
)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_read_the_live_deployment(tmp_path: Path) -> None:
    project = load_text(
        f"""\
settings: {{capacity: {{memory_mb: 1000}}, headroom: {{memory_mb: 0}}}}
services:
  app:
    command: [{sys.executable}, -c, "{SERVER}"]
    replicas: 2
    ports: {{main: auto}}
    resources: {{memory_mb: 100}}
    health:
      readiness: {{tcp: {{port: main}}, period: 0.2s}}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (orch, _store):
        assert (await orch.wait_outcome()).outcome == "ready"
        await asyncio.sleep(0.5)  # a few readiness periods: probe latencies recorded
        first = _samples(await orch.metrics_text())
        await asyncio.sleep(1.1)  # the process sampler reads CPU as a delta: a second scrape has it
        m = _samples(await orch.metrics_text())
        assert first
        assert m[("deploy_code_service_replicas_ready", (("service", "app"),))] == 2
        assert m[("deploy_code_service_replicas_desired", (("service", "app"),))] == 2
        assert m[("deploy_code_deployments_total", (("outcome", "ready"),))] == 1
        assert m[("deploy_code_ready_latency_seconds_count", (("service", "app"),))] == 2
        assert m[("deploy_code_deploy_duration_seconds_count", ())] == 1
        for i in ("0", "1"):
            labels = (("replica", i), ("service", "app"))
            assert m[("deploy_code_replica_memory_bytes", labels)] > 1_000_000
            assert m[("deploy_code_replica_open_files", labels)] >= 3
        allocated = {k: v for k, v in m.items() if k[0] == "deploy_code_resource_allocated"}
        mem = [v for (_, labels), v in allocated.items() if ("resource", "memory_mb") in labels]
        assert mem == [200.0]
        probes = [
            v
            for (name, labels), v in m.items()
            if name == "deploy_code_probe_duration_seconds_count" and ("probe", "readiness") in labels
        ]
        assert probes and sum(probes) >= 2
        assert ("deploy_code_event_loop_lag_seconds", ()) in m


async def test_history_is_fed_only_while_watched(tmp_path: Path) -> None:
    project = load_text(
        'services: {app: {command: [sleep, "60"], health: {min_uptime: 0}}}\n', base_dir=tmp_path
    )
    async with running(project, tmp_path) as (orch, _store):
        assert (await orch.wait_outcome()).outcome == "ready"
        await asyncio.sleep(1.5)
        assert orch.history.series("app.0/memory_bytes", since=0.0) == []
        orch.watch(10)
        await until(lambda: len(orch.history.series("app.0/memory_bytes", since=0.0)) >= 2, 5)
