"""The front end: serves web/ as static files and forwards /api/... to the api service.

Environment: PORT (listen port), API_ADDR (host:port of api; deploy-code gives the service's
stable front port, which balances over the ready replicas).

    GET  /            -> web/index.html
    GET  /health      -> 200 ok
    GET|POST /api/... -> forwarded to http://$API_ADDR/... (2 s timeout; 502 if api is unreachable)
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

API_TIMEOUT_S = 2.0
MAX_BODY_BYTES = 64 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "web"


class Handler(SimpleHTTPRequestHandler):
    server_version = "quickstart-web/1"
    api_host: str
    api_port: int

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
        body = self.rfile.read(length) if length else None
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if auth := self.headers.get("Authorization"):
            headers["Authorization"] = auth
        conn = http.client.HTTPConnection(self.api_host, self.api_port, timeout=API_TIMEOUT_S)
        try:
            conn.request(method, self.path[len("/api") :] or "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self._send(resp.status, data, resp.getheader("Content-Type") or "application/json")
        except OSError as exc:
            error = json.dumps({"error": f"api unreachable: {exc}"}) + "\n"
            self._send(502, error.encode(), "application/json")
        finally:
            conn.close()

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b'{"status": "ok"}\n', "application/json")
        elif self.path == "/api" or self.path.startswith("/api/"):
            self._forward("GET")
        else:
            super().do_GET()

    def do_POST(self) -> None:
        if self.path.startswith("/api/"):
            self._forward("POST")
        else:
            self._send(404, b'{"error": "not found"}\n', "application/json")


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    api = os.environ.get("API_ADDR", "127.0.0.1:8080")
    host, _, api_port = api.rpartition(":")
    if not host or not api_port.isdigit():
        raise SystemExit(f"web: API_ADDR must be host:port, got {api!r}")
    Handler.api_host, Handler.api_port = host, int(api_port)
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=str(STATIC_DIR)))
    server.daemon_threads = True

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"web listening on http://127.0.0.1:{port}/ (api at {api})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("web stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
