"""A small in-memory key-value store over HTTP (Python stdlib only).

    GET    /kv/<key>        -> 200 value bytes | 404
    PUT    /kv/<key>        -> 201 created | 204 replaced  (body = value, at most --max-value-bytes)
    DELETE /kv/<key>        -> 204 | 404
    POST   /incr/<key>      -> 200 new integer value (atomic; a missing key counts as 0)
    GET    /health          -> 200 {"status": "ok", "keys": N}

Bounded: at most --max-keys keys. When full, the least recently used key is evicted
(``--when-full evict``, the default) or the write is refused with 507 (``--when-full reject``).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import unquote


class Store:
    """An LRU-ordered dict behind one lock."""

    def __init__(self, max_keys: int, evict: bool) -> None:
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._evict = evict

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> bool | None:
        """Store; True if created, False if replaced, None if full and rejecting."""
        with self._lock:
            if key in self._data:
                self._data[key] = value
                self._data.move_to_end(key)
                return False
            if len(self._data) >= self._max_keys:
                if not self._evict:
                    return None
                self._data.popitem(last=False)
            self._data[key] = value
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def incr(self, key: str) -> int | None:
        """Atomically add 1; None if the key holds a non-integer or the store is full and rejecting."""
        with self._lock:
            old = self._data.get(key, b"0")
            try:
                value = int(old) + 1
            except ValueError:
                return None
            if key not in self._data and len(self._data) >= self._max_keys:
                if not self._evict:
                    return None
                self._data.popitem(last=False)
            self._data[key] = str(value).encode()
            self._data.move_to_end(key)
            return value


class Handler(BaseHTTPRequestHandler):
    server_version = "quickstart-kv/1"
    store: Store  # set on the class in main()
    max_value_bytes: int

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: one line per request would drown the demo's output

    def _reply(self, status: int, body: bytes = b"", ctype: str = "application/octet-stream") -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: object) -> None:
        self._reply(status, json.dumps(obj).encode() + b"\n", "application/json")

    def _key(self, prefix: str) -> str | None:
        if not self.path.startswith(prefix):
            return None
        key = unquote(self.path[len(prefix) :])
        return key if key and len(key) <= 256 else None

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok", "keys": len(self.store)})
            return
        key = self._key("/kv/")
        if key is None:
            self._json(404, {"error": "not found"})
            return
        value = self.store.get(key)
        if value is None:
            self._json(404, {"error": "no such key", "key": key})
        else:
            self._reply(200, value)

    def do_PUT(self) -> None:
        key = self._key("/kv/")
        if key is None:
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_value_bytes:
            self.close_connection = True
            self._json(413, {"error": f"value larger than {self.max_value_bytes} bytes"})
            return
        created = self.store.put(key, self.rfile.read(length))
        if created is None:
            self._json(507, {"error": "store is full"})
        else:
            self._reply(201 if created else 204)

    def do_DELETE(self) -> None:
        key = self._key("/kv/")
        if key is None:
            self._json(404, {"error": "not found"})
        elif self.store.delete(key):
            self._reply(204)
        else:
            self._json(404, {"error": "no such key", "key": key})

    def do_POST(self) -> None:
        key = self._key("/incr/")
        if key is None:
            self._json(404, {"error": "not found"})
            return
        value = self.store.incr(key)
        if value is None:
            self._json(507 if self.store.get(key) is None else 409, {"error": "cannot increment"})
        else:
            self._reply(200, str(value).encode(), "text/plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--max-keys", type=int, default=10_000)
    parser.add_argument("--max-value-bytes", type=int, default=1 << 20)
    parser.add_argument("--when-full", choices=["evict", "reject"], default="evict")
    args = parser.parse_args()

    Handler.store = Store(args.max_keys, evict=args.when_full == "evict")
    Handler.max_value_bytes = args.max_value_bytes
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # unwinds serve_forever() in the main thread

    signal.signal(signal.SIGTERM, on_term)
    print(f"kv listening on {args.host}:{args.port} (max {args.max_keys} keys)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("kv stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
