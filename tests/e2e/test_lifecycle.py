"""up / status / logs / restart / stop / down through the real CLI, with real processes and sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from tests.helpers import PY, Deployment, processes_marked

SERVER = (
    "import os,socket,signal,sys,time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "time.sleep(float(os.environ.get('DELAY','0')))\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', sys.argv[1], flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)


def _write_server(dep: Deployment) -> str:
    path = dep.root / "server.py"
    path.write_text(SERVER)
    return str(path)


def _status(dep: Deployment) -> dict[str, Any]:
    res = dep.cli("status", "--format", "json", check=True)
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(pred: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_status_logs_restart_down(deployment: Deployment) -> None:
    server = _write_server(deployment)
    deployment.write(
        f"""\
        name: lifecycle
        settings: {{port_range: 32100-32199}}
        services:
          db:
            command: [{PY}, {server}, "${{ports.main}}"]
            ports: {{main: auto}}
            env: {{DELAY: "0.2"}}
            health: {{readiness: {{tcp: {{port: main}}, period: 1s}}}}
          api:
            command: [{PY}, {server}, "${{ports.http}}"]
            ports: {{http: auto}}
            replicas: 2
            env: {{DB: "${{services.db.host}}:${{services.db.ports.main}}"}}
            depends_on: {{db: healthy}}
            restart: {{policy: always, backoff: {{initial: 50ms}}}}
            health: {{readiness: {{tcp: {{port: http}}, period: 1s}}}}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ready" in res.stdout
    state = oct(deployment.state_dir.stat().st_mode & 0o777)
    sock = oct((deployment.state_dir / "api.sock").stat().st_mode & 0o777)
    assert (state, sock) == ("0o700", "0o600")

    doc = _status(deployment)
    api = doc["services"]["api"]
    assert api["state"] == "ready" and api["ready"] == 2 and api["desired"] == 2
    ports = [r["ports"]["http"] for r in api["replicas"]]
    assert len(set(ports)) == 2 and all(_accepts(p) for p in ports)
    assert len(processes_marked(deployment.state_dir)) == 3  # every replica exactly once

    # The dependency's address reached the dependant through interpolation.
    db_port = doc["services"]["db"]["replicas"][0]["ports"]["main"]
    api_pid = api["replicas"][0]["pid"]
    environ = Path(f"/proc/{api_pid}/environ").read_bytes().split(b"\0")
    assert f"DB=127.0.0.1:{db_port}".encode() in environ
    assert f"DEPLOY_CODE_PORT_HTTP={ports[0]}".encode() in environ

    logs = deployment.cli("logs", "api", "-n", "5", check=True).stdout
    assert "api.0 | listening" in logs and "api.1 | listening" in logs

    # Crash a replica: it is restarted on the same port.
    os.kill(api_pid, signal.SIGKILL)
    _wait(
        lambda: _status(deployment)["services"]["api"]["replicas"][0]["pid"] not in (None, api_pid),
        what="restart",
    )
    _wait(lambda: _accepts(ports[0]), what="port back")
    replica0 = _status(deployment)["services"]["api"]["replicas"][0]
    assert replica0["restarts"] == 1 and replica0["ports"]["http"] == ports[0]

    # Manual restart replaces both processes.
    before = {r["pid"] for r in _status(deployment)["services"]["api"]["replicas"]}
    deployment.cli("restart", "api", check=True)
    _wait(
        lambda: all(
            r["state"] == "ready" and r["pid"] not in before
            for r in _status(deployment)["services"]["api"]["replicas"]
        ),
        what="restart of api",
    )

    # stop one service, the other keeps running.
    deployment.cli("stop", "api", check=True)
    doc = _status(deployment)
    assert doc["services"]["api"]["state"] == "stopped"
    assert doc["services"]["db"]["state"] == "ready"

    res = deployment.cli("down", check=True)
    assert not processes_marked(deployment.state_dir)
    assert deployment.cli("status").returncode != 0


def test_detach_reports_the_service_that_cannot_get_ready(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          broken:
            command: [sh, -c, "echo about to fail; echo boom >&2; exit 3"]
            restart: {policy: on-failure, backoff: {initial: 10ms}, max_restarts: 2}
        """
    )
    res = deployment.cli("up", "--detach", timeout=60)
    assert res.returncode == 1
    assert "broken" in res.stderr and "crash loop" in res.stderr
    assert "boom" in res.stderr  # its last log lines
    assert "Traceback" not in res.stderr


def test_second_up_is_refused_with_s003(deployment: Deployment) -> None:
    deployment.write("services: {a: {command: [sleep, '30']}}\n")
    assert deployment.cli("up", "--detach").returncode == 0
    res = deployment.cli("up", "--detach")
    assert res.returncode != 0 and "S003" in res.stderr
    assert len(processes_marked(deployment.state_dir)) == 1


def test_foreground_up_stops_everything_on_sigint(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          a: {command: [sleep, "30"]}
          b: {command: [sleep, "30"], depends_on: {a: started}, replicas: 2}
        """
    )
    proc = deployment.foreground()
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 20
    while b"ready in" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert b"ready in" in seen, seen
    assert len(processes_marked(deployment.state_dir)) == 3
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert not processes_marked(deployment.state_dir)
