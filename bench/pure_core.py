"""Benchmark the pure core: graph build + waves, and PortAllocator vs a naive linear scan.

Run: ``.venv/bin/python bench/pure_core.py`` (``--pairs`` and ``--sizes`` to shrink it).
Prints a Markdown table and writes ``bench/out/pure_core.json``. Read the ratios, not the
absolute times: they depend on the machine. As ``timeit`` does, the cyclic GC is off inside the
timed regions (for both sides of each comparison) to cut noise. Per-node cost rises from 1k to
100k nodes because big dicts stop fitting in cache; it is flat from 100k upwards (linear build).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from deploy_code.graph import build
from deploy_code.ports import PortAllocator

OUT = Path(__file__).resolve().parent / "out" / "pure_core.json"


def random_dag(n: int, rng: random.Random, max_deps: int = 3) -> dict[str, dict[str, str]]:
    """A DAG where node ``i`` depends on up to ``max_deps`` random earlier nodes, declared shuffled."""
    deps = [
        {f"s{j}": "service_started" for j in rng.sample(range(i), min(i, rng.randint(0, max_deps)))}
        for i in range(n)
    ]
    order = list(range(n))
    rng.shuffle(order)
    return {f"s{i}": deps[i] for i in order}


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeats`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best


def bench_graph(sizes: list[int], seed: int) -> list[dict[str, float]]:
    """Time build()+waves() per size, and networkx topological_generations when available."""
    try:
        import networkx as nx  # dev-only; optional reference
    except ImportError:  # pragma: no cover
        nx = None
    rows: list[dict[str, float]] = []
    for n in sizes:
        spec = random_dag(n, random.Random(seed + n))
        edges = sum(len(d) for d in spec.values())
        repeats = 3 if n <= 10_000 else 2

        def with_ours(spec: dict[str, dict[str, str]] = spec) -> object:
            return build(spec).waves()

        ours = best_of(repeats, with_ours)
        row: dict[str, float] = {"nodes": n, "edges": edges, "ours_s": ours, "us_per_node": ours / n * 1e6}
        if nx is not None:

            def with_nx(spec: dict[str, dict[str, str]] = spec) -> object:
                g = nx.DiGraph()
                g.add_nodes_from(spec)
                g.add_edges_from((d, s) for s, ds in spec.items() for d in ds)
                return list(nx.topological_generations(g))

            row["networkx_s"] = best_of(repeats, with_nx)
        rows.append(row)
    base = rows[0]["us_per_node"]
    for row in rows:
        row["per_node_vs_smallest"] = row["us_per_node"] / base
    return rows


class NaiveAllocator:
    """The defect we replace: scan the whole range from ``low`` for a port not held and not quarantined."""

    def __init__(self, low: int, high: int, quarantine_s: float) -> None:
        self.low, self.high, self.quarantine_s = low, high, quarantine_s
        self.held: dict[int, str] = {}
        self.released: dict[int, float] = {}

    def allocate(self, owner: str, now: float) -> int:
        for port in range(self.low, self.high + 1):
            if port not in self.held and self.released.get(port, -1e18) + self.quarantine_s <= now:
                self.held[port] = owner
                return port
        raise RuntimeError("exhausted")

    def release(self, port: int, now: float) -> None:
        if self.held.pop(port, None) is not None:
            self.released[port] = now


def churn(alloc: PortAllocator | NaiveAllocator, pairs: int, working_set: int, dt: float) -> float:
    """Hold ``working_set`` ports, then ``pairs`` times: advance ``dt``, allocate one, release the oldest."""
    now = 0.0
    ring = [alloc.allocate(f"w{i}", now) for i in range(working_set)]
    head = 0
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for i in range(pairs):
            now += dt
            port = alloc.allocate(f"r{i}", now)
            alloc.release(ring[head], now)
            ring[head] = port
            head = (head + 1) % working_set
        return time.perf_counter() - t0
    finally:
        gc.enable()


def bench_ports(pairs: int) -> dict[str, float]:
    """100k allocate/release pairs over a 2,000-port range: ours vs the naive scan."""
    low, high, q, working, dt = 30000, 31999, 2.0, 1000, 0.005  # ~400 ports in quarantine at a time
    ours = churn(PortAllocator(low, high, quarantine_s=q), pairs, working, dt)
    naive = churn(NaiveAllocator(low, high, q), pairs, working, dt)
    return {
        "range": high - low + 1,
        "working_set": working,
        "quarantine_s": q,
        "pairs": pairs,
        "ours_s": ours,
        "naive_s": naive,
        "ours_us_per_pair": ours / pairs * 1e6,
        "naive_us_per_pair": naive / pairs * 1e6,
        "speedup": naive / ours,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, print Markdown, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    graph_rows = bench_graph(args.sizes, args.seed)
    ports = bench_ports(args.pairs)

    print("### graph.build + waves (random DAG, <=3 deps per node)\n")
    print(
        "| nodes | edges | build+waves ms | µs/node | per-node cost vs smallest "
        "| networkx ms | networkx / ours |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in graph_rows:
        nx_ms = f"{r['networkx_s'] * 1e3:.1f}" if "networkx_s" in r else "n/a"
        nx_ratio = f"{r['networkx_s'] / r['ours_s']:.2f}x" if "networkx_s" in r else "n/a"
        print(
            f"| {int(r['nodes']):,} | {int(r['edges']):,} | {r['ours_s'] * 1e3:.1f} | {r['us_per_node']:.2f} "
            f"| {r['per_node_vs_smallest']:.2f}x | {nx_ms} | {nx_ratio} |"
        )
    print(f"\n### PortAllocator: {ports['pairs']:,} allocate/release pairs, {ports['range']:,}-port range")
    print(f"(working set {ports['working_set']:,} held, quarantine {ports['quarantine_s']:g}s)\n")
    print("| allocator | total s | µs/pair | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| PortAllocator (O(1) free set + quarantine FIFO) | {ports['ours_s']:.3f} | "
        f"{ports['ours_us_per_pair']:.2f} | 1.00x |"
    )
    print(
        f"| naive linear scan | {ports['naive_s']:.3f} | {ports['naive_us_per_pair']:.2f} | "
        f"{ports['speedup']:.1f}x slower |"
    )

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "graph": graph_rows,
                "ports": ports,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
