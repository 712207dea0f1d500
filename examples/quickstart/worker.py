"""A background worker: once a second it increments ``worker:ticks`` in kv and logs a line.

Environment: KV_ADDR (host:port of kv), TICK_SECONDS (default 1).
Prints ``worker ready`` once kv has answered (deploy-code's log_line readiness probe waits for it).
Exits 0 promptly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import http.client
import os
import signal
import sys
import threading
from types import FrameType

KV_TIMEOUT_S = 0.5


def incr(host: str, port: int, key: str) -> int:
    """POST /incr/<key> on kv; raises OSError or ValueError on failure."""
    conn = http.client.HTTPConnection(host, port, timeout=KV_TIMEOUT_S)
    try:
        conn.request("POST", f"/incr/{key}")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}")
        return int(body)
    finally:
        conn.close()


def main() -> None:
    addr = os.environ.get("KV_ADDR", "127.0.0.1:6380")
    host, _, port_s = addr.rpartition(":")
    if not host or not port_s.isdigit():
        raise SystemExit(f"worker: KV_ADDR must be host:port, got {addr!r}")
    port = int(port_s)
    tick = float(os.environ.get("TICK_SECONDS", "1"))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ready = False
    failures = 0
    while not stop.is_set():
        try:
            value = incr(host, port, "worker:ticks")
        except (OSError, ValueError) as exc:
            failures += 1
            print(f"worker: kv at {addr} unavailable ({exc}); retry {failures}", flush=True)
        else:
            failures = 0
            if not ready:
                print(f"worker ready (kv at {addr})", flush=True)
                ready = True
            print(f"worker tick {value}", flush=True)
        stop.wait(tick)
    print("worker stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
