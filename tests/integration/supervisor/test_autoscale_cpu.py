"""Autoscaling on CPU with a real load generator: up under load, back down after it stops."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from tests.integration.supervisor.support import running, until

from deploy_code.config import load_text

BURNER = """\
import os, time
flag = os.path.join(os.environ["DIR"], "load")
while True:
    if os.path.exists(flag):
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
    else:
        time.sleep(0.05)
"""


@pytest.mark.slow
async def test_cpu_autoscaling_up_under_load_and_down_after(tmp_path: Path) -> None:
    (tmp_path / "burn.py").write_text(BURNER)
    project = load_text(
        f"""\
services:
  cruncher:
    command: [{sys.executable}, burn.py]
    env: {{DIR: "{tmp_path}"}}
    health: {{min_uptime: 0}}
    autoscale: {{min: 1, max: 3, metric: cpu, target: 30, interval: 0.5s,
                 scale_up_cooldown: 1s, scale_down_cooldown: 2s}}
""",
        base_dir=tmp_path,
    )
    async with running(project, tmp_path) as (orch, store):
        assert (await orch.wait_outcome()).outcome == "ready"
        svc = orch.services["cruncher"]
        await asyncio.sleep(2.0)
        assert svc.desired == 1  # idle: stays at min
        (tmp_path / "load").write_text("")
        await until(lambda: svc.desired >= 2, 15)
        await until(lambda: svc.desired == 3, 15)
        (tmp_path / "load").unlink()
        await until(lambda: svc.desired == 1, 20)
        decisions = [e for e in store.recent_events(limit=500) if e["kind"] == "scale.decision"]
        ups = [d for d in decisions if d["new"] > d["old"]]
        downs = [d for d in decisions if d["new"] < d["old"]]
        assert ups and downs
        assert all(d["metric"] == "cpu" and d["target"] == 30 for d in decisions)
        assert ups[0]["value"] > 30 * 1.1 and downs[-1]["value"] < 30 * 0.9
    assert orch.ledger.owners == 0 and orch.ports.in_use == 0
