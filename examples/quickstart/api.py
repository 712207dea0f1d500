"""A small JSON API for notes, stored in the kv service (Python stdlib only).

Environment: PORT (listen port), KV_ADDR (host:port of kv), TOKEN (bearer token for writes),
DEPLOY_CODE_REPLICA (replica index, set by deploy-code).

    GET  /              -> {"service": "api", "replica": ..., "pid": ..., "port": ...}
    GET  /health        -> 200 if kv answers its /health within the timeout, else 503
    POST /notes         -> 201 {"id": N, "text": ...}
                           body {"text": "..."}, header Authorization: Bearer $TOKEN
    GET  /notes/<id>    -> 200 {"id": N, "text": ...} | 404
    GET  /stats         -> {"worker_ticks": N, "notes": N}  (counters kept in kv)
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

KV_TIMEOUT_S = 0.5
MAX_BODY_BYTES = 64 * 1024
MAX_NOTE_CHARS = 4096


class KvError(Exception):
    """The kv service could not be reached or answered unexpectedly."""


class Kv:
    """A tiny client for kv.py: one short-lived connection per call, with a timeout."""

    def __init__(self, addr: str, timeout: float) -> None:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"api: KV_ADDR must be host:port, got {addr!r}")
        self.host, self.port, self.timeout = host, int(port), timeout

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as exc:
            raise KvError(f"kv at {self.host}:{self.port}: {exc}") from exc
        finally:
            conn.close()

    def get(self, key: str) -> bytes | None:
        status, body = self.request("GET", f"/kv/{key}")
        if status == 404:
            return None
        if status != 200:
            raise KvError(f"kv GET {key}: HTTP {status}")
        return body

    def put(self, key: str, value: bytes) -> None:
        status, _ = self.request("PUT", f"/kv/{key}", value)
        if status not in (201, 204):
            raise KvError(f"kv PUT {key}: HTTP {status}")

    def incr(self, key: str) -> int:
        status, body = self.request("POST", f"/incr/{key}")
        if status != 200:
            raise KvError(f"kv INCR {key}: HTTP {status}")
        return int(body)


class Handler(BaseHTTPRequestHandler):
    server_version = "quickstart-api/1"
    kv: Kv
    token: str
    info: dict[str, object]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, status: int, obj: object) -> None:
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        try:
            if self.path == "/":
                self._json(200, self.info)
            elif self.path == "/health":
                status, _ = self.kv.request("GET", "/health")
                self._json(200 if status == 200 else 503, {"status": "ok" if status == 200 else "kv down"})
            elif self.path == "/stats":
                ticks = self.kv.get("worker:ticks") or b"0"
                notes = self.kv.get("notes:next") or b"0"
                self._json(200, {"worker_ticks": int(ticks), "notes": int(notes)})
            elif self.path.startswith("/notes/") and self.path[len("/notes/") :].isdigit():
                note_id = int(self.path[len("/notes/") :])
                raw = self.kv.get(f"note:{note_id}")
                if raw is None:
                    self._json(404, {"error": "no such note", "id": note_id})
                else:
                    self._json(200, json.loads(raw))
            else:
                self._json(404, {"error": "not found"})
        except KvError as exc:
            self._json(503, {"error": str(exc)})

    def do_POST(self) -> None:
        if self.path != "/notes":
            self._json(404, {"error": "not found"})
            return
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._json(401, {"error": "missing or wrong bearer token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413, {"error": "body too large"})
            return
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
        except json.JSONDecodeError:
            self._json(400, {"error": "body is not JSON"})
            return
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text or len(text) > MAX_NOTE_CHARS:
            self._json(400, {"error": f'expected {{"text": "..."}} with 1..{MAX_NOTE_CHARS} characters'})
            return
        try:
            note_id = self.kv.incr("notes:next")
            note = {"id": note_id, "text": text, "replica": self.info["replica"]}
            self.kv.put(f"note:{note_id}", json.dumps(note).encode())
        except KvError as exc:
            self._json(503, {"error": str(exc)})
            return
        self._json(201, note)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    Handler.kv = Kv(os.environ.get("KV_ADDR", "127.0.0.1:6380"), KV_TIMEOUT_S)
    Handler.token = os.environ.get("TOKEN", "")
    Handler.info = {
        "service": "api",
        "replica": os.environ.get("DEPLOY_CODE_REPLICA", "0"),
        "pid": os.getpid(),
        "port": port,
        "kv": f"{Handler.kv.host}:{Handler.kv.port}",
    }
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"api replica {Handler.info['replica']} listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"api replica {Handler.info['replica']} stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
