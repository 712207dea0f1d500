"""Declared limits are enforced on real processes: a memory hog is killed and reported, a CPU hog is capped.

The cgroup tests need a writable cgroup hierarchy (root on these machines: the v1 ``memory`` and ``cpu``
controllers, or v2); they are skipped, with the method found, elsewhere. The rlimit test runs anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import time
from pathlib import Path

import pytest
from tests.helpers import Deployment
from tests.integration.runtime.runtime_helpers import PY, kill_and_reap, make_spec, poll_until, read_text

from deploy_code.config import load_text
from deploy_code.events import ReplicaState
from deploy_code.runtime import LocalBackend, ProcessSpec, ResourceLimits
from deploy_code.runtime.local.limits import CGROUP_V1, CGROUP_V2, detect
from deploy_code.state import StateStore
from deploy_code.supervisor import Orchestrator

METHOD = detect().method
needs_cgroups = pytest.mark.skipif(
    METHOD not in (CGROUP_V1, CGROUP_V2),
    reason=f"no writable cgroup hierarchy here (limits method: {METHOD}); CPU and OOM kills need cgroups",
)

# Allocates (and touches: b"x" * n writes every page) 20 MiB at a time, up to 1 GiB.
HOG = (
    "import time\n"
    "chunks = []\n"
    "for i in range(50):\n"
    "    chunks.append(b'\\x01' * (20 << 20)); print((i + 1) * 20, 'MiB', flush=True); time.sleep(0.01)\n"
    "print('survived', flush=True); time.sleep(30)\n"
)
SPIN = "while True: pass"


def _with(spec: ProcessSpec, **limits: float) -> ProcessSpec:
    return ProcessSpec(
        name=spec.name,
        argv=spec.argv,
        env=spec.env,
        cwd=spec.cwd,
        log_path=spec.log_path,
        limits=ResourceLimits(**limits),
        project="limits-test",
    )


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@needs_cgroups
async def test_memory_hog_is_killed_and_reported_out_of_memory(tmp_path: Path) -> None:
    yaml = f"""\
name: limits-oom
services:
  hog:
    command: [{json.dumps(PY)}, "-c", {json.dumps(HOG)}]
    resources: {{memory_mb: 64}}
    restart: {{policy: "no"}}
    health: {{min_uptime: 0}}
"""
    project = load_text(yaml, base_dir=tmp_path)
    store = StateStore(tmp_path / "state.db")
    backend = LocalBackend()
    orch = Orchestrator(project, backend=backend, store=store)
    run = asyncio.ensure_future(orch.run())
    try:
        await poll_until(lambda: orch.plan is not None, 10)
        replica = orch.services["hog"].replicas[0]
        await poll_until(lambda: replica.state == ReplicaState.FAILED, 30)
        # e.g. "out of memory: killed at 64 MiB limit (peak 64.0 MiB)"
        assert replica.reason.startswith("out of memory: killed at 64 MiB limit (peak "), replica.reason
        peak = float(replica.reason.rsplit("peak ", 1)[1].split()[0])
        assert 32 <= peak <= 64.5, replica.reason
        print(f"\n{METHOD}: {replica.reason}")
        assert replica.last_exit == -signal.SIGKILL
        assert "survived" not in read_text(replica.log_path)

        status = orch.status()
        assert status["limits_method"] == METHOD
        snap = status["services"]["hog"]["replicas"][0]  # type: ignore[index]
        assert snap["limits"] == {"method": METHOD, "memory_mb": 64.0, "cpu_cores": 0.0}
        assert "out of memory" in snap["reason"]

        def reported() -> bool:  # the transition event carries the reason too
            rows = store.events(kind="replica.transition", service="hog", limit=50)
            return any("out of memory: killed at 64 MiB" in json.dumps(r.body) for r in rows)

        await poll_until(reported, 10)
    finally:
        orch.request_down(2.0)
        await asyncio.wait_for(run, 30)
        await backend.aclose()
        store.close()
    for parent in backend.limits.parents:  # the replica's cgroup is gone with it
        assert not _exists(os.path.join(parent, "limits-oom"))


@needs_cgroups
async def test_cpu_hog_is_held_to_its_share(tmp_path: Path, backend: LocalBackend) -> None:
    spec = _with(make_spec(tmp_path, PY, "-c", SPIN, name="spin.0"), cpu_cores=0.2)
    handle = await backend.start(spec)
    assert handle.limits.method == METHOD and handle.limits.cpu_cores == 0.2
    pid = handle.identity.pid
    await asyncio.sleep(0.3)  # past the interpreter's start
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(2.0)
    share = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(f"\n{METHOD}: busy loop under cpu_cores 0.2 used {share:.1%} of a core")
    assert 0.0 < share <= 0.30
    await handle.stop(signal.SIGTERM, 5.0)
    handle.close()
    assert handle.oom is None
    await poll_until(lambda: not any(_exists(d) for d in handle.cgroup.dirs), 5)  # type: ignore[union-attr]


@needs_cgroups
async def test_adopted_process_keeps_its_cgroup_and_it_is_removed_at_exit(tmp_path: Path) -> None:
    first = LocalBackend()
    spec = _with(make_spec(tmp_path, "sleep", "30", name="adopt.0"), memory_mb=48, cpu_cores=0.5)
    handle = await first.start(spec)
    cgroup = handle.cgroup
    assert cgroup is not None
    handle.close()  # detached: it keeps running, and keeps its cgroup
    await first.aclose()
    assert all(_exists(d) for d in cgroup.dirs)

    second = LocalBackend()
    try:
        adopted = second.adopt(handle.identity)
        assert adopted is not None and adopted.cgroup == cgroup
        assert adopted.limits.to_dict() == {"method": METHOD, "memory_mb": 48.0, "cpu_cores": 0.5}
        await adopted.stop(signal.SIGKILL, 5.0)
        adopted.close()
        await poll_until(lambda: not any(_exists(d) for d in cgroup.dirs), 5)
    finally:
        await second.aclose()
        kill_and_reap(handle.identity.pid)  # the first backend's child, detached on purpose


async def test_rlimit_method_caps_data_and_reports_it(tmp_path: Path) -> None:
    backend = LocalBackend(limits="rlimit")
    try:
        assert backend.limits_method == "rlimit"
        hog = await backend.start(_with(make_spec(tmp_path, PY, "-c", HOG, name="hog.0"), memory_mb=64))
        assert hog.limits.to_dict() == {"method": "rlimit", "memory_mb": 64.0, "cpu_cores": 0.0}
        assert hog.cgroup is None
        rc = await asyncio.wait_for(hog.wait(), 30)
        hog.close()
        # Under RLIMIT_DATA the allocation fails (MemoryError); nothing is killed, no OOM is reported.
        assert rc == 1 and hog.oom is None
        text = read_text(tmp_path / "hog.0.log")
        assert "MemoryError" in text and "survived" not in text

        # CPU alone cannot be held by an rlimit: nothing is applied, and it says so.
        spec = _with(make_spec(tmp_path, "sleep", "30", name="sleep.0"), memory_mb=100, cpu_cores=0.5)
        sleeper = await backend.start(spec)
        soft, hard = resource.prlimit(sleeper.identity.pid, resource.RLIMIT_DATA)
        assert soft == hard == 100 << 20
        assert sleeper.limits.to_dict() == {"method": "rlimit", "memory_mb": 100.0, "cpu_cores": 0.0}
        assert backend.planned_limits(ResourceLimits(cpu_cores=1.0)).method == "none"
        await sleeper.stop(signal.SIGKILL, 5.0)
        sleeper.close()
    finally:
        await backend.aclose()


async def test_no_limit_declared_spawns_without_a_cgroup(tmp_path: Path, backend: LocalBackend) -> None:
    handle = await backend.start(make_spec(tmp_path, "true"))
    assert handle.cgroup is None and handle.limits.method == "none"
    assert await handle.wait() == 0
    handle.close()


@needs_cgroups
def test_cli_status_shows_the_method_and_the_oom_kill(deployment: Deployment) -> None:
    deployment.write(
        f"""\
        name: limits-cli
        services:
          hog:
            command: [{json.dumps(PY)}, "-c", {json.dumps(HOG)}]
            resources: {{memory_mb: 48}}
            restart: {{policy: "no"}}
            health: {{min_uptime: 0}}
          idle:
            command: [sleep, "60"]
            resources: {{cpu_cores: 0.25}}
            health: {{min_uptime: 0}}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    deadline = time.monotonic() + 30
    while True:
        doc = json.loads(deployment.cli("status", "--format", "json", check=True).stdout)
        hog = doc["services"]["hog"]["replicas"][0]
        if hog["state"] == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert doc["limits_method"] == METHOD
    assert hog["state"] == "failed" and hog["reason"].startswith("out of memory: killed at 48 MiB limit"), hog
    idle = doc["services"]["idle"]["replicas"][0]
    assert idle["limits"] == {"method": METHOD, "memory_mb": 0.0, "cpu_cores": 0.25}
    assert f"limits: {METHOD}" in deployment.cli("status", "--resources", check=True).stdout
    deployment.cli("down", "--timeout", "5", check=True)
    for parent in detect().parents:
        assert not os.path.exists(os.path.join(parent, "limits-cli"))
