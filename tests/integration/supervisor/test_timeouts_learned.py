"""The second `up` learns timeouts.ready from the first one's starts and shows it in status."""

from __future__ import annotations

from pathlib import Path

from tests.integration.supervisor.support import running

from deploy_code.config import load_text

YAML = 'services: {app: {command: [sleep, "60"], replicas: 5, health: {min_uptime: 0.05s}}}\n'


async def _once(tmp_path: Path) -> dict[str, object]:
    project = load_text(YAML, base_dir=tmp_path)
    async with running(project, tmp_path) as (orch, _store):
        assert (await orch.wait_outcome()).outcome == "ready"
        timeouts = orch.status()["timeouts"]
        assert isinstance(timeouts, dict)
        doc: dict[str, object] = timeouts["app"]
        return doc


async def test_ready_timeout_is_learned_from_earlier_starts(tmp_path: Path) -> None:
    first = await _once(tmp_path)
    assert first["source"] == "default (fewer than 5 earlier starts)" and first["ready_s"] == 60.0
    second = await _once(tmp_path)
    assert second["source"] == "learned" and second["samples"] == 5
    assert second["ready_s"] == 5.0  # 3 x p99 (about 0.05 s) clamped to the 5 s floor
