"""SIGKILL of the orchestrator in the middle of a deploy and in the middle of a rollout, then `up` again:
the deployment converges to the file, replicas that were running are adopted (never started twice),
nothing is left over, and the books and the state file are sound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any

from deploy_code.client import Client, Status
from deploy_code.errors import DeployCodeError
from tests.chaos.support import SCALE, client, down, environ_of, pids_of, rng, wait_healthy, wait_until
from tests.helpers import PY, Deployment, processes_marked

SERVER = (
    "import os,socket,sys,time\n"
    "time.sleep(float(os.environ.get('DELAY','0')))\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', os.environ.get('VERSION', '-'), flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)


# Kills come while at least this many replicas are not ready yet (the deploy is still well under way).
MARGIN = 3


def _server(dep: Deployment) -> str:
    path = dep.root / "server.py"
    path.write_text(SERVER)
    return str(path)


def _status_or_none(dep: Deployment, api: Client) -> Status | None:
    # Connect once ourselves first: httpcore does not close its socket when connecting to a unix socket
    # fails (a stale api.sock of a killed orchestrator), and the suite turns that ResourceWarning into
    # an error.
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(dep.state_dir / "api.sock"))
        except OSError:
            return None
    try:
        return api.status()
    except DeployCodeError:  # not answering yet (starting) or any more (killed)
        return None


def _up_in_background(dep: Deployment) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "deploy_code", "up", "--detach", "--file", str(dep.file)],
        cwd=dep.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_orchestrator(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: _zombie(pid), 5, "the orchestrator's exit")


def _zombie(pid: int) -> bool:
    """Gone, or dead and not reaped yet."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except OSError:
        return True


def _restart(dep: Deployment, api: Client, survivors: dict[str, int]) -> tuple[float, float]:
    """`up --detach` after a kill. Returns the seconds from its start until the API shows every survivor
    (replica id -> pid) adopted, and until the CLI returned (every replica ready)."""
    start = time.monotonic()
    up = _up_in_background(dep)

    def adopted() -> bool:
        status = _status_or_none(dep, api)
        if status is None:
            return False
        seen = {r.id: r.pid for s in status.services.values() for r in s.replicas if r.adopted}
        return all(seen.get(rid) == pid for rid, pid in survivors.items())

    wait_until(adopted, 60, "the survivors adopted", every=0.02)
    to_adopted = time.monotonic() - start
    out, _ = up.communicate(timeout=90)
    assert up.returncode == 0, out
    return to_adopted, time.monotonic() - start


def _ready_pids(status: Status) -> dict[str, int]:
    return {
        r.id: r.pid
        for s in status.services.values()
        for r in s.replicas
        if r.state.value == "ready" and r.pid is not None
    }


def test_sigkill_mid_deploy_then_up_converges_without_double_start(
    chaos: Deployment, figures: dict[str, Any]
) -> None:
    server = _server(chaos)
    chaos.write(
        f"""\
        name: chaos-deploy
        settings: {{port_range: 33450-33499}}
        services:
          db:
            command: [{PY}, {server}, "${{ports.main}}"]
            env: {{DELAY: "0.3"}}
            ports: {{main: auto}}
            health: {{readiness: {{tcp: {{port: main}}, period: 100ms}}}}
          api:
            command: [{PY}, {server}, "${{ports.http}}"]
            env: {{DELAY: "0.4", DB: "${{services.db.ports.main}}"}}
            ports: {{http: auto}}
            replicas: 3
            depends_on: {{db: healthy}}
            health: {{readiness: {{tcp: {{port: http}}, period: 100ms}}}}
          web:
            command: [{PY}, {server}, "${{ports.http}}"]
            env: {{DELAY: "0.2"}}
            ports: {{http: auto}}
            replicas: 2
            depends_on: {{api: healthy}}
            health: {{readiness: {{tcp: {{port: http}}, period: 100ms}}}}
          jobs:
            command: [sleep, "600"]
            replicas: 4
            health: {{min_uptime: 0.5}}
        """
    )
    total = 10
    choose = rng("orchestrator-mid-deploy")
    survivors: dict[str, int] = {}  # replica id -> pid, ready when some orchestrator was killed
    interrupted = 0
    with client(chaos) as api:
        previous: int | None = None
        for round_ in range(SCALE.orchestrator_kills):
            up = _up_in_background(chaos)
            status: Status | None = None
            if round_ == 0:
                # The first kill comes once some replicas are ready, MARGIN replicas from the end at the
                # latest: the deploy is well under way.
                target = choose.randint(1, total - MARGIN)
                seen: list[Status] = []

                def far_enough(target: int = target, seen: list[Status] = seen) -> bool:
                    status = _status_or_none(chaos, api)
                    if status is None:
                        return False
                    seen[:] = [status]
                    return len(_ready_pids(status)) >= target

                wait_until(far_enough, 60, f"{target} replicas ready", every=0.02)
                status = seen[0]
                assert len(_ready_pids(status)) < total
                orch = status.pid
            else:
                # Later ones (long run) hit the restarted orchestrator at a random moment: while it
                # starts, while it adopts, or while it starts what is missing.
                time.sleep(choose.uniform(0.0, 1.5))
                wait_until(
                    lambda p=previous: chaos.orchestrator_pid() not in (None, p), 30, "the new orchestrator"
                )
                orch = chaos.orchestrator_pid() or 0
                status = _status_or_none(chaos, api)
            ready = {} if status is None else _ready_pids(status)
            _kill_orchestrator(orch)
            previous = orch
            up.communicate(timeout=30)
            # The CLI saw its orchestrator die before the outcome (unless the deploy ended between the
            # status read and the kill: then this kill came just after it).
            interrupted += up.returncode != 0
            survivors.update(ready)
            # The replicas did not notice: every one that was ready still runs.
            assert set(ready.values()) <= set(processes_marked(chaos.state_dir))

        to_adopted, to_ready = _restart(chaos, api, survivors)
        final = wait_healthy(api, 30)
        pids = pids_of(final)
        assert len(pids) == total
        # No orphan, no double start: the processes are exactly those status shows, one per replica.
        assert sorted(processes_marked(chaos.state_dir)) == sorted(pids.values())
        for rid, pid in survivors.items():
            assert pids.get(rid) == pid, f"{rid} was started again ({pid} -> {pids.get(rid)})"
        adopted = {r.id for s in final.services.values() for r in s.replicas if r.adopted}
        assert set(survivors) <= adopted
    down(chaos)
    figures["orchestrator_mid_deploy"] = {
        "orchestrator_kills": SCALE.orchestrator_kills,
        "kills_before_the_outcome": interrupted,
        "replicas_adopted": len(survivors),
        "restart_to_all_adopted_s": round(to_adopted, 3),
        "restart_to_all_ready_s": round(to_ready, 3),
    }


def _rollout_file(dep: Deployment, server: str, version: str) -> None:
    dep.write(
        f"""\
        name: chaos-rollout
        settings: {{port_range: 33500-33549}}
        services:
          kv:
            command: [{PY}, {server}, "${{ports.main}}"]
            ports: {{main: auto}}
            health: {{readiness: {{tcp: {{port: main}}, period: 100ms}}}}
          web:
            command: [{PY}, {server}, "${{ports.http}}"]
            env: {{VERSION: "{version}", DELAY: "0.4", KV: "${{services.kv.ports.main}}"}}
            ports: {{http: auto}}
            replicas: 3
            depends_on: {{kv: healthy}}
            expose: {{http: {{port: auto}}}}
            deploy: {{strategy: rolling, max_surge: 1, max_unavailable: 0, timeout: 30s}}
            health: {{readiness: {{tcp: {{port: http}}, period: 100ms}}}}
        """
    )


def _versions(dep: Deployment) -> dict[int, str]:
    return {pid: environ_of(pid).get("VERSION", "-") for pid in processes_marked(dep.state_dir)}


def test_sigkill_mid_rollout_then_up_completes_the_rollout(
    chaos: Deployment, figures: dict[str, Any]
) -> None:
    server = _server(chaos)
    _rollout_file(chaos, server, "v1")
    res = chaos.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    choose = rng("orchestrator-mid-rollout")
    recoveries: list[tuple[float, float]] = []
    with client(chaos) as api:
        kv_pid = pids_of(api.status())["kv.0"]
        for round_ in range(SCALE.rollout_kills):
            version = f"v{round_ + 2}"
            _rollout_file(chaos, server, version)
            apply = subprocess.Popen(
                [PY, "-m", "deploy_code", "apply", "--file", str(chaos.file)],
                cwd=chaos.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            # Kill once this many new-version processes exist (1 or 2 of 3): mid-rollout.
            target = choose.randint(1, 2)
            wait_until(
                lambda v=version, t=target: sum(x == v for x in _versions(chaos).values()) >= t,
                60,
                f"{target} replicas of {version}",
                every=0.02,
            )
            status = api.status()
            ready_new = {
                rid: pid
                for rid, pid in _ready_pids(status).items()
                if environ_of(pid).get("VERSION") == version
            }
            _kill_orchestrator(status.pid)
            out, _ = apply.communicate(timeout=30)
            assert apply.returncode != 0, out  # the rollout did not finish under this orchestrator

            recoveries.append(_restart(chaos, api, {"kv.0": kv_pid, **ready_new}))
            final = wait_healthy(api, 30)
            pids = pids_of(final)
            # The rollout was completed, not rolled back: every web replica runs the file's version.
            assert sorted(rid for rid in pids if rid.startswith("web.")).__len__() == 3
            assert all(
                _versions(chaos)[pid] == version for rid, pid in pids.items() if rid.startswith("web.")
            )
            # No orphan (old version left running), no double start.
            assert sorted(processes_marked(chaos.state_dir)) == sorted(pids.values())
            for rid, pid in ready_new.items():
                assert pid in pids.values(), f"{rid} ({version}, pid {pid}) was replaced after the restart"
            assert pids["kv.0"] == kv_pid  # untouched by the rollout, adopted each time
            assert chaos.cli("apply", check=True).stdout.strip() == "nothing to change"
    down(chaos)
    figures["orchestrator_mid_rollout"] = {
        "orchestrator_kills": len(recoveries),
        "restart_to_all_adopted_s": [round(a, 3) for a, _ in recoveries],
        "restart_to_all_ready_s": [round(r, 3) for _, r in recoveries],
    }
