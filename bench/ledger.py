"""Benchmark the Ledger under threads: optimistic compare-and-set vs the same ledger behind one lock.

Run: ``.venv/bin/python bench/ledger.py`` (``--quick`` for fewer operations). Each of 1, 2, 4 and 8
threads runs a fixed mix of allocate / batch / release operations against one shared ledger;
the figure is total operations per second, median of 3 runs. "global lock" wraps every call
of the same Ledger in one ``threading.Lock``. Prints a Markdown table with the core count and
writes JSON (default ``bench/out/ledger.json``). Under CPython's GIL neither side runs Python in
parallel; the table shows the cost of the scheme, not a parallel speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploy_code.errors import PlacementError
from deploy_code.resources import Ledger
from deploy_code.units import Resources

OUT = Path(__file__).resolve().parent / "out" / "ledger.json"
CAP = Resources(cpu_cores=64, memory_mb=262144, storage_gb=2000, gpu_count=8)


class LockedLedger:
    """The same Ledger with every call under one global lock."""

    def __init__(self, led: Ledger) -> None:
        self._led = led
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._led, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def make(kind: str) -> Any:
    """A fresh ledger with two pools, plain (``cas``) or behind a global lock (``lock``)."""
    led = Ledger(CAP)
    led.add_pool("batch", {"cpu_cores": 32})
    led.add_pool("etl", {"memory_mb": 65536}, parent="batch")
    return led if kind == "cas" else LockedLedger(led)


def worker(led: Any, tid: int, ops: int, barrier: threading.Barrier) -> None:
    """``ops`` random operations on owners private to this thread."""
    rng = random.Random(tid)
    owners = [f"t{tid}.{k}" for k in range(16)]
    held: set[str] = set()
    pools = [None, "batch", "etl"]
    barrier.wait()
    for _ in range(ops):
        free = [o for o in owners if o not in held]
        roll = rng.random()
        try:
            if roll < 0.45 and held:
                o = held.pop()
                led.release(o)
            elif roll < 0.85 and free:
                o = rng.choice(free)
                led.allocate(o, Resources(cpu_cores=0.5, memory_mb=512), pool=rng.choice(pools))
                held.add(o)
            elif len(free) >= 2:
                batch = rng.sample(free, 2)
                led.allocate_batch([(o, Resources(cpu_cores=0.25, memory_mb=256)) for o in batch])
                held.update(batch)
            else:
                led.pool_snapshot()
        except PlacementError:
            pass


def run(kind: str, threads: int, ops_total: int) -> float:
    """Operations per second for one run."""
    led = make(kind)
    per = ops_total // threads
    barrier = threading.Barrier(threads + 1)
    ts = [threading.Thread(target=worker, args=(led, t, per, barrier)) for t in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return per * threads / (time.perf_counter() - t0)


def median_of(n: int, fn: Callable[[], float]) -> float:
    """Median of ``n`` calls."""
    return statistics.median(fn() for _ in range(n))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer operations per run")
    ap.add_argument("--ops", type=int, default=None, help="total operations per run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    ops = args.ops or (20_000 if args.quick else 200_000)
    rows = []
    for threads in (1, 2, 4, 8):
        cas = median_of(3, lambda n=threads: run("cas", n, ops))
        lock = median_of(3, lambda n=threads: run("lock", n, ops))
        rows.append({"threads": threads, "cas_ops_s": cas, "lock_ops_s": lock, "ratio": cas / lock})
    cores = os.cpu_count()
    py = platform.python_version()
    print(f"Ledger ops/s, {ops} ops per run, median of 3; {cores} cores, Python {py}\n")
    print("| threads | CAS (ops/s) | global lock (ops/s) | CAS / lock |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threads']} | {r['cas_ops_s']:,.0f} | {r['lock_ops_s']:,.0f} | {r['ratio']:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"cores": cores, "python": sys.version, "ops_per_run": ops, "rows": rows}
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
