"""Random SIGKILLs of replicas while probes run fast and clients send requests through the front ports:
every service gets back to ready, and each crash's time to ready again is recorded."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.support import (
    SCALE,
    client,
    down,
    pids_of,
    rng,
    summary,
    transitions,
    wait_healthy,
    wait_until,
)
from tests.helpers import HTTP_REPLICA, PY, Deployment, processes_marked

# Restarts are what is measured, so the crash-loop breaker must not end the run (a high budget), and the
# backoff starts over after 1 s of readiness, so that the figure is the restart itself, not the backoff
# a replica killed again and again has grown (with the default reset_after, 60 s, the long run measures
# mostly backoff.max).
RESTART = (
    "{policy: always, backoff: {initial: 50ms, max: 500ms}, reset_after: 1s, max_restarts: 1000, window: 60s}"
)
LOAD_WORKERS = 2  # client threads sending requests through the front ports


@dataclass
class Load:
    """Requests sent through the front ports by a few threads until ``stop`` is set."""

    ports: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            port = self.ports[n % len(self.ports)]
            n += 1
            try:
                _get(port)
            except (OSError, AssertionError) as exc:
                with self.lock:
                    self.failed.append(f"{time.time():.3f} port {port}: {exc!r}")
            else:
                with self.lock:
                    self.ok += 1


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.0 200"), data[:80]
    return data


def _write(dep: Deployment) -> None:
    server = dep.root / "server.py"
    server.write_text(HTTP_REPLICA)
    probes = (
        "{readiness: {http: {port: P, path: /}, period: 100ms}, liveness: {tcp: {port: P}, period: 200ms}}"
    )
    dep.write(
        f"""\
        name: chaos-replicas
        settings: {{port_range: 33400-33449}}
        services:
          kv:
            command: [{PY}, {server}]
            env: {{PORT: "${{ports.main}}", ANSWER: "kv.${{replica}}"}}
            ports: {{main: auto}}
            replicas: 2
            expose: {{main: {{port: auto, connect_timeout: 3s}}}}
            restart: {RESTART}
            health: {probes.replace("P", "main")}
          web:
            command: [{PY}, {server}]
            env: {{PORT: "${{ports.http}}", ANSWER: "web.${{replica}}", KV: "${{services.kv.ports.main}}"}}
            ports: {{http: auto}}
            replicas: 3
            depends_on: {{kv: healthy}}
            expose: {{http: {{port: auto, balance: least_conn, connect_timeout: 3s}}}}
            restart: {RESTART}
            health: {probes.replace("P", "http")}
        """
    )


def test_random_replica_kills_under_load_all_return_to_ready(
    chaos: Deployment, figures: dict[str, Any]
) -> None:
    _write(chaos)
    res = chaos.cli("up", "--detach", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    choose = rng("replica-kills")
    kills: list[tuple[str, int, int, float]] = []  # service, index, pid, wall time of the kill
    with client(chaos) as api:
        load = Load(_front_ports(chaos))
        workers = [threading.Thread(target=load.run, daemon=True) for _ in range(LOAD_WORKERS)]
        for w in workers:
            w.start()
        try:
            while len(kills) < SCALE.replica_kills:
                time.sleep(choose.uniform(*SCALE.kill_gap_s))
                status = api.status()
                # Any ready replica, as long as its service keeps another one ready (the front port
                # then always has a backend; a kill of the last one is a different test: an outage).
                candidates = [
                    r
                    for s in status.services.values()
                    if s.ready >= 2
                    for r in s.replicas
                    if r.state.value == "ready" and r.pid is not None
                ]
                if not candidates:
                    continue
                victim = choose.choice(candidates)
                assert victim.pid is not None
                service = victim.id.split(".")[0]
                kills.append((service, victim.index, victim.pid, time.time()))
                os.kill(victim.pid, signal.SIGKILL)
            # Ready again means: every service ready, and no killed process still counted.
            killed = {pid for _, _, pid, _ in kills}
            wait_until(lambda: killed.isdisjoint(pids_of(api.status()).values()), 10, "kills seen")
            final = wait_healthy(api, 30)
        finally:
            load.stop.set()
            for w in workers:
                w.join(10)
        # No replica runs twice and none is left over: the processes are exactly those status shows.
        assert sorted(processes_marked(chaos.state_dir)) == sorted(pids_of(final).values())
        restarts = sum(s.restarts for s in final.services.values())
    down(chaos)

    events = transitions(chaos.state_dir / "state.db")
    latencies: list[float] = []
    for service, index, pid, at in kills:
        back = next(
            (
                e["at"] - at
                for e in events
                if e["service"] == service
                and e["replica"] == index
                and e["new"] == "ready"
                and e["at"] >= at
                and e.get("pid") not in (None, pid)
            ),
            None,
        )
        assert back is not None, f"{service}.{index} (pid {pid}) was never ready again after its kill"
        latencies.append(back)
    figures["replica_kills"] = {
        "kills": len(kills),
        "restart": RESTART,
        "crash_to_ready": summary(latencies),
        "restarts_seen": restarts,
        "requests_ok": load.ok,
        "requests_failed": len(load.failed),
    }
    assert restarts >= len(kills)
    assert load.ok > 10 * len(kills), load.ok
    # The front port cannot save a request already inside the replica that is killed: at most one per
    # client thread per kill. Any more would be the proxy's fault (no backend, refused, timed out).
    assert len(load.failed) <= LOAD_WORKERS * len(kills), load.failed


def _front_ports(dep: Deployment) -> list[int]:
    doc = json.loads(dep.cli("status", "--format", "json", check=True).stdout)
    fronts = doc.get("fronts", {})
    return [int(p["port"]) for ports in fronts.values() for p in ports.values()]
