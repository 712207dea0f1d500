"""The log file system fills up while services write: they keep running, the orchestrator keeps working
(status, probes, down), says so, and rotation resumes once there is room again.

Two ways, each a case: where the test may mount (root, and a kernel that lets it), the state
directory's ``logs`` is a 1 MiB tmpfs that a ballast file fills, so writes fail with ENOSPC as on a
real full disk; everywhere, the orchestrator runs under a file-size limit (``RLIMIT_FSIZE``, inherited
by its replicas), so writes past it fail with EFBIG (Python ignores SIGXFSZ), which the orchestrator
cannot tell from a quiet service.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import SCALE, client, down, pids_of, wait_healthy, wait_until
from tests.helpers import PY, Deployment

# Writes lines of ~200 bytes: one every 200 ms until the file `go` exists, then 10 every 20 ms
# (~100 KB/s; CHUNK=100: ~1 MB/s). A failed write (disk full) is counted and the loop goes on, the way a
# service that logs without checking does; SIGXFSZ is ignored by Python, so EFBIG is an error too.
CHATTY = """\
import os, time
n = failed = 0
chunk = int(os.environ.get("CHUNK", "10"))
while True:
    go = os.path.exists("go")
    for _ in range(chunk if go else 1):
        n += 1
        try:
            os.write(1, f"line {n} failed {failed} {'x' * 160}\\n".encode())
        except OSError:
            failed += 1
    time.sleep(0.02 if go else 0.2)
"""

SERVER = (
    "import os,socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)
TMPFS_BYTES = 2**20
FSIZE_BYTES = 2**20
ROTATE_AT = 64 * 1024  # log_max_size with the tmpfs: rotations are due while the disk is full


def _write(dep: Deployment, log_max_size: str, chunk: int) -> None:
    (dep.root / "chatty.py").write_text(CHATTY)
    (dep.root / "server.py").write_text(SERVER)
    dep.write(
        f"""\
        name: chaos-disk
        settings: {{port_range: 33550-33599, log_max_size: {log_max_size}, log_backups: 2}}
        services:
          chatty:
            command: [{PY}, chatty.py]
            env: {{CHUNK: "{chunk}"}}
            health: {{min_uptime: 0.3}}
          web:
            command: [{PY}, server.py, "${{ports.http}}"]
            ports: {{http: auto}}
            replicas: 2
            health: {{readiness: {{tcp: {{port: http}}, period: 100ms}}, liveness: {{tcp: {{port: http}}, period: 200ms}}}}
        """
    )


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


@pytest.fixture(params=["tmpfs", "rlimit"])
def logs_fs(request: pytest.FixtureRequest, chaos: Deployment) -> Iterator[str]:
    """How the log disk fills: ``tmpfs`` (skipped where mounting is refused) or ``rlimit`` (always)."""
    logs = chaos.state_dir / "logs"
    chaos.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if request.param == "rlimit":
        yield "rlimit"
        return
    if not _mount_tmpfs(logs):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): the rlimit case runs instead")
    try:
        yield "tmpfs"
    finally:
        chaos.cleanup()  # nothing may hold a file there any more
        if subprocess.run(["umount", str(logs)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(logs)], check=False)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fill(directory: Path, leave: int) -> Path:
    """Write a ballast file until ``leave`` bytes are free in ``directory``'s file system."""
    ballast = directory / "ballast"
    st = os.statvfs(directory)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(ballast, "wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * size)
    return ballast


def _up_limited(dep: Deployment) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_BYTES, FSIZE_BYTES))

    res = subprocess.run(
        [PY, "-m", "deploy_code", "up", "--detach", "--file", str(dep.file)],
        cwd=dep.root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,  # the CLI, the orchestrator it starts and every replica inherit the limit
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _reported(api_doc: dict[str, Any], events: str) -> bool:
    """Whether status or the events name the failure (the error text, whatever the field)."""
    text = json.dumps(api_doc) + events
    return any(word in text for word in ("No space left", "ENOSPC", "Errno 28"))


def test_log_disk_full_services_keep_running_and_it_is_reported(
    chaos: Deployment, logs_fs: str, figures: dict[str, Any]
) -> None:
    logs = chaos.state_dir / "logs"
    orch_log = chaos.state_dir / "orchestrator.log"
    if logs_fs == "tmpfs":
        _write(chaos, str(ROTATE_AT), chunk=10)
        res = chaos.cli("up", "--detach", timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
    else:
        _write(chaos, "8MiB", chunk=100)  # the file-size limit comes long before a rotation
        _up_limited(chaos)
    with client(chaos) as api:
        before = wait_healthy(api, 30)
        pids = pids_of(before)
        orch = before.pid
        chatty_log = logs / "chatty.0.log"
        if logs_fs == "tmpfs":
            # Room for the chatty log to pass its rotation size, not for the copy a rotation makes.
            room = ROTATE_AT - chatty_log.stat().st_size + 16 * 1024
            ballast = _fill(logs, leave=room)
        (chaos.root / "go").touch()
        if logs_fs == "tmpfs":
            wait_until(
                lambda: "No space left on device" in orch_log.read_text(), 20, "the orchestrator to see it"
            )
        else:
            wait_until(
                lambda: chatty_log.stat().st_size >= FSIZE_BYTES - 512, 20, "the log at its size limit"
            )
        full_at = time.monotonic()

        cpu0 = _cpu_s(orch)
        time.sleep(SCALE.disk_full_s)
        cpu = (_cpu_s(orch) - cpu0) / (time.monotonic() - full_at)
        during = wait_healthy(api, 10)
        # Nothing crashed: the orchestrator answers, every replica is the same process, none restarted.
        assert during.pid == orch and pids_of(during) == pids, (pids, pids_of(during))
        assert sum(s.restarts for s in during.services.values()) == 0
        detailed = api.status(detailed=True).model_dump(mode="json")
        events = chaos.cli("events", "--format", "json", check=True).stdout
        reported = _reported(detailed, events)

        recovered_in = None
        if logs_fs == "tmpfs":
            assert not list(logs.glob("*.tmp")), "a failed rotation left its partial copy behind"
            ballast.unlink()
            # Rotation resumes by itself (at its next retry) once there is room: a first backup appears.
            recovered_in = wait_until(lambda: (logs / "chatty.0.log.1").exists(), 20, "rotation to resume")
            assert "works again" in orch_log.read_text()
        assert wait_healthy(api, 10).pid == orch
    text = orch_log.read_text()
    down(chaos)
    assert "Traceback" not in text, text[-3000:]
    figures[f"log_disk_full_{logs_fs}"] = {
        "held_full_s": SCALE.disk_full_s,
        "orchestrator_cpu_cores_while_full": round(cpu, 3),
        "rotation_resumed_after_room_s": None if recovered_in is None else round(recovered_in, 3),
        "reported_in_api": reported,
    }
    assert cpu < 0.5, f"the orchestrator used {cpu:.2f} cores while the disk was full"
    if not reported:
        pytest.xfail(
            "neither status nor events say that a log file system is full: the orchestrator writes a failed "
            "rotation to orchestrator.log only"
            + (
                ""
                if logs_fs == "tmpfs"
                else ", and under RLIMIT_FSIZE no rotation is due, so it sees nothing"
            )
        )
