"""Benchmark the capacity engine under threads: optimistic per-node CAS vs the same engine behind one lock.

Run: ``.venv/bin/python bench/ledger.py`` (``--quick`` for a few-second run). A
:class:`~deploy_code.resources.Cluster` of ``--nodes`` nodes (default 4), each with nested pools,
gets a fixed mix of operations from 1, 2, 4 and 8 threads: single allocations in a random pool of a
random node, batches of two spread over nodes (all or nothing), releases, and a consistent
per-node read. Each thread uses its own owner ids. "one global lock" runs the very same engine
with every call wrapped in one ``threading.Lock``, which is what the optimistic design replaces.
For each thread count both sides run back to back, three times each, and the median counts.

Prints a Markdown table (with the core count and Python version) and writes JSON (``--json``,
default ``bench/results/ledger.json``).

Reading it: CPython 3.11 has a GIL, so threads never run Python in parallel on either side; more
threads cannot raise total throughput here. What the table shows is what each scheme *costs* as
threads are added: a global lock held across the whole computation makes threads queue on it
(and hands the GIL around more), while the CAS engine holds its per-node lock only for a pointer
compare and swap. On a free-threaded build the CAS side could scale with cores across nodes;
this script does not claim that, since it was not measured.
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
from pathlib import Path
from typing import Any

from _docs import machine_line, write_section
from deploy_code.errors import PlacementError
from deploy_code.resources import BatchItem, Cluster
from deploy_code.units import Resources

OUT = Path(__file__).resolve().parent / "results" / "ledger.json"
NODE_CAP = Resources(cpu_cores=16, memory_mb=65536, storage_gb=500, gpu_count=4)
POOLS: tuple[str | None, ...] = (None, "batch", "etl", "web")
SMALL = Resources(cpu_cores=0.5, memory_mb=512)
TINY = Resources(cpu_cores=0.25, memory_mb=256)


class LockedCluster:
    """The same Cluster with every call under one global lock (the design the engine avoids).

    Plain methods (no ``__getattr__`` indirection), so the lock side pays only for the lock.
    """

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self.conflicts = 0

    def allocate(self, owner: str, request: Resources, *, node: str, pool: str | None) -> Any:
        with self._lock:
            return self._cluster.allocate(owner, request, node=node, pool=pool)

    def allocate_batch(self, items: list[BatchItem]) -> Any:
        with self._lock:
            return self._cluster.allocate_batch(items)

    def release(self, owner: str) -> Any:
        with self._lock:
            return self._cluster.release(owner)

    def state(self, node: str) -> Any:
        with self._lock:
            return self._cluster.state(node)


def make(kind: str, nodes: int) -> Any:
    """A fresh cluster with nested pools on every node, plain (``cas``) or behind one lock (``lock``)."""
    cluster = Cluster()
    for n in range(nodes):
        node = f"n{n}"
        cluster.add_node(node, NODE_CAP, pools={"batch": {"cpu_cores": 8}, "web": {"memory_mb": 32768}})
        cluster.add_pool(node, "etl", {"memory_mb": 16384}, parent="batch")
    return cluster if kind == "cas" else LockedCluster(cluster)


def worker(cluster: Any, node_ids: list[str], tid: int, ops: int, barrier: threading.Barrier) -> None:
    """``ops`` random operations on 16 owner ids private to this thread."""
    rng = random.Random(tid)
    free = [f"t{tid}.{k}" for k in range(16)]
    held: list[str] = []
    barrier.wait()
    for _ in range(ops):
        roll = rng.random()
        try:
            if roll < 0.45 and held:
                owner = held.pop(rng.randrange(len(held)))
                cluster.release(owner)
                free.append(owner)
            elif roll < 0.80 and free:
                owner = free.pop()
                try:
                    cluster.allocate(owner, SMALL, node=rng.choice(node_ids), pool=rng.choice(POOLS))
                except PlacementError:
                    free.append(owner)
                    continue
                held.append(owner)
            elif roll < 0.95 and len(free) >= 2:
                pair = [free.pop(), free.pop()]
                items = [BatchItem(o, TINY, rng.choice(node_ids), rng.choice(POOLS)) for o in pair]
                try:
                    cluster.allocate_batch(items)
                except PlacementError:
                    free.extend(pair)
                    continue
                held.extend(pair)
            else:
                cluster.state(rng.choice(node_ids))
        except PlacementError:
            pass


def run(kind: str, threads: int, ops_total: int, nodes: int) -> tuple[float, int]:
    """Operations per second for one run, and the compare-and-set retries it took."""
    cluster = make(kind, nodes)
    node_ids = [f"n{n}" for n in range(nodes)]
    per = ops_total // threads
    barrier = threading.Barrier(threads + 1)
    ts = [threading.Thread(target=worker, args=(cluster, node_ids, t, per, barrier)) for t in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    conflicts = cluster.conflicts if kind == "cas" else 0
    return per * threads / elapsed, conflicts


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few-second run (fewer operations)")
    ap.add_argument("--ops", type=int, default=None, help="total operations per run")
    ap.add_argument("--nodes", type=int, default=4, help="nodes in the cluster")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median counts")
    ap.add_argument("--json", type=Path, default=OUT, help="where to write the JSON results")
    args = ap.parse_args(argv)
    ops = args.ops or (10_000 if args.quick else 200_000)
    rows: list[dict[str, float]] = []
    for threads in (1, 2, 4, 8):
        cas_runs: list[float] = []
        lock_runs: list[float] = []
        retries = 0
        for _ in range(args.repeat):  # interleaved, so drift in the machine hits both sides alike
            rate, conflicts = run("cas", threads, ops, args.nodes)
            cas_runs.append(rate)
            retries += conflicts
            lock_runs.append(run("lock", threads, ops, args.nodes)[0])
        cas, lock = statistics.median(cas_runs), statistics.median(lock_runs)
        rows.append(
            {
                "threads": threads,
                "cas_ops_s": cas,
                "lock_ops_s": lock,
                "cas_over_lock": cas / lock,
                "cas_retries_per_run": retries / args.repeat,
            }
        )
    base_cas, base_lock = rows[0]["cas_ops_s"], rows[0]["lock_ops_s"]
    for r in rows:
        r["cas_vs_1_thread"] = r["cas_ops_s"] / base_cas
        r["lock_vs_1_thread"] = r["lock_ops_s"] / base_lock
    cores = os.cpu_count()
    py = platform.python_version()
    impl = platform.python_implementation()
    out: list[str] = [
        f"Capacity engine, {args.nodes} nodes with nested pools; {ops:,} ops per run, median of "
        f"{args.repeat}; {cores} cores, {impl} {py}. {machine_line()}\n",
        "| threads | per-node CAS (ops/s) | one global lock (ops/s) | CAS / lock | CAS vs 1 thread "
        "| lock vs 1 thread | CAS retries/run |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            f"{r['threads']:.0f}",
            f"{r['cas_ops_s']:,.0f}",
            f"{r['lock_ops_s']:,.0f}",
            f"{r['cas_over_lock']:.2f}",
            f"{r['cas_vs_1_thread']:.2f}",
            f"{r['lock_vs_1_thread']:.2f}",
            f"{r['cas_retries_per_run']:,.0f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    out.append(
        "\nThe GIL runs one thread's Python at a time, so no column can exceed ~1.0x its 1-thread "
        "figure from parallelism; the ratios show what each scheme costs as threads contend: a global "
        "lock held across the whole computation makes threads queue on it, while the CAS engine holds "
        "its per-node lock only for the version compare and pointer swap. Retries are failed "
        "compare-and-sets, each recomputed from the newer state. The stress test "
        "(`tests/stress/test_ledger_stress.py`: 8 threads x 100,000 random operations on 4 nodes with "
        "nested pools) checks no over-commit at any level after every operation, no lost update, and "
        "exactly zero after all releases."
    )
    table = "\n".join(out)
    print(table)
    if not args.quick:
        write_section("## Ledger throughput (`bench/ledger.py`)", table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "ledger",
        "cores": cores,
        "python": sys.version,
        "implementation": impl,
        "nodes": args.nodes,
        "ops_per_run": ops,
        "repeat": args.repeat,
        "rows": rows,
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
