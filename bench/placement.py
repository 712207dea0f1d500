"""Benchmark the placement pipeline: placements/s and packing quality against first-fit-decreasing.

Run: ``.venv/bin/python bench/placement.py`` (100,000 replicas onto 5,000 nodes) or ``--quick``
(10,000 onto 500). Prints a Markdown table and writes ``bench/out/placement.json``.

Workload: heterogeneous nodes from ``SimCluster.generate``; replicas of many services asking for CPU
and memory only (demand is about 120% of capacity, so placement must eventually fail); 20% of the
services require a ``zone`` label. Requests arrive in random order. *Packing at first rejection* is
the resource share placed (mean of CPU and memory fractions of the cluster total) before the first
request that cannot be placed; the baseline is first-fit-decreasing (FFD) over the same requests,
sorted by that share, on nodes in id order, with the same label constraint. Rate counts the requests
handled up to and including the first rejection, divided by wall time (GC off in the timed region).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

from deploy_code.errors import PlacementError
from deploy_code.scheduling.cluster import ZONES, SimCluster, Vector, to_units
from deploy_code.scheduling.placement import PlacementRequest, Scheduler, default_filters, default_scorers
from deploy_code.units import Resources

OUT = Path(__file__).resolve().parent / "out" / "placement.json"
TARGET_RATE = 10_000.0
TARGET_QUALITY = 0.95


def workload(n_replicas: int, seed: int) -> list[PlacementRequest]:
    """Replicas of ``n_replicas / 100`` services, shuffled."""
    rng = random.Random(seed)
    out: list[PlacementRequest] = []
    n_services = max(1, n_replicas // 100)
    for s in range(n_services):
        res = Resources(
            cpu_cores=rng.choice([0.25, 0.5, 1, 1, 1.5]), memory_mb=rng.choice([512, 1024, 2048, 4096, 8192])
        )
        labels = (("zone", rng.choice(ZONES)),) if rng.random() < 0.2 else ()
        out.extend(PlacementRequest("bench", f"s{s}", res, node_labels=labels) for _ in range(100))
    out = out[:n_replicas]
    rng.shuffle(out)
    return out


def share(vec: Vector, total: Vector) -> float:
    """Mean of the CPU and memory fractions of the cluster total."""
    return (vec[0] / total[0] + vec[1] / total[1]) / 2


def run_scheduler(n_nodes: int, reqs: list[PlacementRequest], k: int, seed: int) -> dict[str, float]:
    """Place in order until the first rejection; return rate and placed share."""
    cluster = SimCluster.generate(n_nodes, seed)
    total = cluster.total_capacity()
    sched = Scheduler(default_filters(), default_scorers(), k, cluster=cluster)
    placed = 0
    placed_share = 0.0
    gc.disable()
    t0 = time.perf_counter()
    for r in reqs:
        try:
            sched.place(r)
        except PlacementError:
            break
        placed += 1
    elapsed = time.perf_counter() - t0
    gc.enable()
    for r in reqs[:placed]:
        placed_share += share(to_units(r.resources, round_up=True), total)
    handled = min(placed + 1, len(reqs))
    return {"placed": placed, "seconds": elapsed, "rate": handled / elapsed, "share": placed_share}


class _Tree:
    """Segment tree of max free CPU and memory over nodes, for leftmost-fit queries."""

    def __init__(self, free: list[list[int]], index: list[int]) -> None:
        self.index = index
        size = 1
        while size < max(1, len(index)):
            size *= 2
        self.size = size
        self.mc = [-1] * (2 * size)
        self.mm = [-1] * (2 * size)
        self.free = free
        for leaf, gi in enumerate(index):
            self.mc[size + leaf] = free[gi][0]
            self.mm[size + leaf] = free[gi][1]
        for p in range(size - 1, 0, -1):
            self.mc[p] = max(self.mc[2 * p], self.mc[2 * p + 1])
            self.mm[p] = max(self.mm[2 * p], self.mm[2 * p + 1])

    def find(self, c: int, m: int) -> int:
        """Leftmost leaf whose free CPU and memory both fit, or -1."""
        mc, mm, size = self.mc, self.mm, self.size
        stack = [1]
        while stack:
            p = stack.pop()
            if mc[p] < c or mm[p] < m:
                continue
            if p >= size:
                return p - size
            stack.append(2 * p + 1)
            stack.append(2 * p)
        return -1

    def update(self, leaf: int) -> None:
        gi = self.index[leaf]
        p = self.size + leaf
        self.mc[p], self.mm[p] = self.free[gi][0], self.free[gi][1]
        p //= 2
        while p:
            self.mc[p] = max(self.mc[2 * p], self.mc[2 * p + 1])
            self.mm[p] = max(self.mm[2 * p], self.mm[2 * p + 1])
            p //= 2


def run_ffd(n_nodes: int, reqs: list[PlacementRequest], seed: int) -> float:
    """First-fit-decreasing until its first rejection; return the placed share."""
    cluster = SimCluster.generate(n_nodes, seed)
    total = cluster.total_capacity()
    free = [list(n.cap) for n in cluster]
    trees = {z: _Tree(free, [i for i, n in enumerate(cluster) if n.labels["zone"] == z]) for z in ZONES}
    items = [(to_units(r.resources, round_up=True), dict(r.node_labels).get("zone")) for r in reqs]
    items.sort(key=lambda it: share(it[0], total), reverse=True)
    placed_share = 0.0
    for vec, zone in items:
        c, m = vec[0], vec[1]
        best_tree: _Tree | None = None
        best_leaf, best_gi = -1, len(free)
        for z in (zone,) if zone is not None else ZONES:
            tree = trees[z]
            leaf = tree.find(c, m)
            if leaf >= 0 and tree.index[leaf] < best_gi:
                best_tree, best_leaf, best_gi = tree, leaf, tree.index[leaf]
        if best_tree is None:
            break
        free[best_gi][0] -= c
        free[best_gi][1] -= m
        best_tree.update(best_leaf)
        placed_share += share(vec, total)
    return placed_share


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10,000 replicas onto 500 nodes")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    n_nodes, n_reqs = (500, 10_000) if args.quick else (5_000, 100_000)
    reqs = workload(n_reqs, args.seed)
    ffd = run_ffd(n_nodes, reqs, args.seed)
    rows = []
    for k in (16, 4, 64):
        r = run_scheduler(n_nodes, reqs, k, args.seed)
        quality = r["share"] / ffd if ffd else 0.0
        rows.append({"k": k, **r, "ffd_share": ffd, "quality": quality})
    cores = os.cpu_count()
    py = platform.python_version()
    print(f"placement: {n_reqs:,} replicas onto {n_nodes:,} nodes; {cores} cores; Python {py}")
    print()
    print("| k | placed before 1st rejection | placements/s | >= 10,000 | packing vs FFD | >= 95% |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        rate_ok = "met" if row["rate"] >= TARGET_RATE else "MISSED"
        q_ok = "met" if row["quality"] >= TARGET_QUALITY else "MISSED"
        print(
            f"| {row['k']} | {int(row['placed']):,} | {row['rate']:,.0f} | {rate_ok} "
            f"| {row['quality'] * 100:.1f}% (share {row['share']:.3f} vs {ffd:.3f}) | {q_ok} |"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = {"nodes": n_nodes, "replicas": n_reqs, "cores": cores, "python": sys.version, "rows": rows}
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
