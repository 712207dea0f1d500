"""API request latency: `GET /v1/status` under a bounded load from a second process on loopback.

Run: ``.venv/bin/python bench/api.py`` (``--quick`` for a short smoke run that leaves the docs alone).

A deployment of ``--services`` sleeping services (default 50, 100 replicas) is started with
``deploy-code up --detach`` and the TCP listener on 127.0.0.1 with a viewer token. A load generator
runs in a *second process* (``python bench/api.py --load ...``): one keep-alive connection per worker,
requests sent on a fixed schedule (open loop: a late response does not delay the next send, so
latency includes queueing) at each rate for ``--seconds``. Latency is measured from the scheduled send
time to the last byte. Side by side in the same run: ``/v1/health`` (a constant body: the cost of the
HTTP stack, auth included) and ``/v1/status`` (the whole deployment's state, ~40 KB at 100 replicas).

Prints Markdown, writes ``bench/results/api.json`` and rewrites the "## API latency" section of
docs/benchmarks.md (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _docs import machine_line, write_section

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "api.json"
DEPLOY = [sys.executable, "-m", "deploy_code"]
TOKEN = "bench-token-" + os.urandom(8).hex()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[k]


# --- the load generator (second process) -------------------------------------------------------
def load(port: int, path: str, rate: float, seconds: float, workers: int) -> dict[str, Any]:
    """Open-loop fixed-rate GETs over ``workers`` keep-alive connections; latencies in ms."""
    import asyncio

    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {_token()}\r\n\r\n").encode()
    lat: list[float] = []
    errors = 0

    async def worker(i: int, t0: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = workers / rate
        n = int(seconds * rate / workers)
        for k in range(n):
            due = t0 + (k + i / workers) * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            lat.append((time.perf_counter() - due) * 1e3)
        writer.close()

    async def main() -> None:
        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(worker(i, t0) for i in range(workers)))

    asyncio.run(main())
    return {"latencies_ms": lat, "errors": errors}


def _token() -> str:
    """The token travels to the load process in its environment, never on a command line."""
    return os.environ["BENCH_TOKEN"]


# --- the driver ----------------------------------------------------------------------------------
def _deploy(root: Path, services: int, port: int) -> Path:
    body = "".join(
        f"  s{i}:\n    command: [sleep, '3600']\n    replicas: 2\n    health: {{min_uptime: 0}}\n"
        for i in range(services)
    )
    file = root / "deploy-code.yaml"
    file.write_text(
        textwrap.dedent(
            f"""\
            name: bench-api
            api:
              listen: 127.0.0.1:{port}
              tokens: [{{name: bench, role: viewer, env: BENCH_TOKEN}}]
            services:
            """
        )
        + body
    )
    env = {**os.environ, "BENCH_TOKEN": TOKEN}
    subprocess.run([*DEPLOY, "up", "--detach", "-f", str(file)], check=True, env=env, timeout=120)
    return file


def _run_load(port: int, path: str, rate: float, seconds: float, workers: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_TOKEN": TOKEN}
    args = [sys.executable, __file__, "--load", str(port), path, str(rate), str(seconds), str(workers)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env, timeout=seconds + 60)
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--load", nargs=5, metavar=("PORT", "PATH", "RATE", "SECONDS", "WORKERS"))
    args = ap.parse_args(argv)
    if args.load:
        port, path, rate, seconds, workers = args.load
        print(json.dumps(load(int(port), path, float(rate), float(seconds), int(workers))))
        return 0
    if args.quick:
        args.seconds, args.rates, args.services = 2.0, [50.0], 10
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        port = _free_port()
        file = _deploy(root, args.services, port)
        try:
            _run_load(port, "/v1/status", 20, 1.0, 1)  # warm-up: loads the HTTP stack
            for rate in args.rates:
                for path in ("/v1/health", "/v1/status"):
                    doc = _run_load(port, path, rate, args.seconds, args.workers)
                    lat = doc["latencies_ms"]
                    rows.append(
                        {
                            "path": path,
                            "rate": rate,
                            "requests": len(lat),
                            "errors": doc["errors"],
                            "p50_ms": _percentile(lat, 0.50),
                            "p99_ms": _percentile(lat, 0.99),
                            "max_ms": max(lat) if lat else float("nan"),
                            "mean_ms": statistics.fmean(lat) if lat else float("nan"),
                        }
                    )
        finally:
            subprocess.run([*DEPLOY, "down", "-f", str(file)], timeout=120, check=False)
    lines = [
        f"`GET` over the TCP listener (bearer token, keep-alive, {args.workers} connections) from a second "
        f"process, open loop at a fixed rate for {args.seconds:g} s; {args.services} services, "
        f"{2 * args.services} replicas. {machine_line()}\n",
        "| endpoint | rate (req/s) | requests | errors | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['path']}` | {r['rate']:g} | {r['requests']} | {r['errors']} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['max_ms']:.2f} |"
        )
    lines.append(
        "\n`/v1/health` is the HTTP stack's own cost (uvicorn, FastAPI, the token check); `/v1/status` adds "
        "building and serialising the whole deployment's state on the orchestrator's loop."
    )
    table = "\n".join(lines)
    print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        OUT.write_text(json.dumps({"cores": os.cpu_count(), "rows": rows}, indent=2) + "\n")
        write_section("## API latency (`bench/api.py`)", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
