"""Progress for `up` in the foreground: a Rich live table on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from deploy_code.events import Event, ReplicaState
from deploy_code.supervisor import DeployOutcome, Orchestrator

__all__ = ["LiveReporter", "PlainReporter", "status_table"]

REFRESH_S = 0.25  # live table refresh; only while a person watches a terminal


class PlainReporter:
    """One line per replica that becomes ready or fails, and the outcome. For pipes and CI logs."""

    def __init__(self) -> None:
        self._out = sys.stdout

    def publish(self, event: Event) -> None:
        """Print READY / FAILED / BACKOFF transitions."""
        if event.kind != "replica.transition":
            return
        new = event.new  # type: ignore[union-attr]
        if new in (ReplicaState.READY, ReplicaState.FAILED, ReplicaState.BACKOFF):
            self._out.write(f"{event.service}.{event.replica}: {new} ({event.reason})\n")  # type: ignore[union-attr]
            self._out.flush()

    def outcome(self, orch: Orchestrator, result: DeployOutcome) -> None:
        """Print the outcome."""
        if result.outcome == "ready":
            self._out.write(f"deployment {orch.project.spec.name} ready in {result.duration_s:.3f}s\n")
        else:
            for name, why in result.failures:
                self._out.write(f"service {name} failed: {why}\n")
        self._out.flush()

    async def live(self, orch: Orchestrator) -> None:
        """No live view."""


class LiveReporter(PlainReporter):
    """A Rich table of services, refreshed while the orchestrator runs."""

    def publish(self, event: Event) -> None:
        """The table shows everything; no per-event lines."""

    def outcome(self, orch: Orchestrator, result: DeployOutcome) -> None:
        """Shown in the table title."""

    async def live(self, orch: Orchestrator) -> None:
        """Refresh the table until cancelled."""
        from rich.live import Live

        with Live(status_table(orch.status()), refresh_per_second=4, transient=False) as live:
            while True:
                await asyncio.sleep(REFRESH_S)
                live.update(status_table(orch.status()))


_STYLE = {
    "ready": "green",
    "completed": "green",
    "starting": "yellow",
    "pending": "dim",
    "backoff": "magenta",
    "degraded": "yellow",
    "stopping": "cyan",
    "stopped": "dim",
    "failed": "bold red",
}


def status_table(status: dict[str, Any]) -> Any:
    """A Rich table of a status document (from the API or the orchestrator)."""
    from rich.table import Table

    services: dict[str, Any] = status.get("services", {})
    ready = sum(1 for s in services.values() if s["state"] in ("ready", "completed"))
    title = (
        f"{status.get('name')}  [{status.get('phase')}]  {ready}/{len(services)} services ready  "
        f"uptime {status.get('uptime_s', 0):.1f}s"
    )
    table = Table(title=title, title_justify="left", expand=False)
    for col in ("SERVICE", "STATE", "READY", "RESTARTS", "PORTS", "PIDS", "REASON"):
        table.add_column(col)
    for name, svc in services.items():
        reps = svc["replicas"]
        ports = ", ".join(sorted({f"{k}={v}" for r in reps for k, v in r["ports"].items()}, key=lambda s: s))
        pids = " ".join(str(r["pid"]) for r in reps if r["pid"])
        reasons = {r["reason"] for r in reps if r["state"] not in ("ready", "completed")}
        style = _STYLE.get(svc["state"], "")
        table.add_row(
            name,
            f"[{style}]{svc['state']}[/]" if style else svc["state"],
            f"{svc['ready']}/{svc['desired']}",
            str(svc["restarts"]),
            ports,
            pids,
            "; ".join(sorted(reasons))[:80],
        )
    return table


def resources_table(status: dict[str, Any]) -> Any:
    """A Rich table of the ``resources`` section of a status document: what each level offers and holds."""
    from rich.table import Table

    res: dict[str, Any] = status.get("resources", {})
    cap: dict[str, float] = res.get("capacity", {})
    alloc: dict[str, float] = res.get("allocated", {})
    title = f"resources (source: {res.get('source', '?')}; limits: {status.get('limits_method', '?')})"
    table = Table(title=title, title_justify="left")
    for col in ("LEVEL", "RESOURCE", "AVAILABLE", "BOOKED", "FREE", "USED"):
        table.add_column(col)
    levels = [("node", cap, alloc)] + [
        (f"pool {name}", p.get("quota", {}), p.get("allocated", {}))
        for name, p in res.get("pools", {}).items()
    ]
    for level, offer, held in levels:
        for dim, total in offer.items():
            used = held.get(dim, 0.0)
            share = f"{100 * used / total:.0f}%" if total else "-"
            table.add_row(level, dim, f"{total:g}", f"{used:g}", f"{total - used:g}", share)
    ports = status.get("ports", {})
    table.caption = f"ports in use: {ports.get('in_use', 0)} of range {ports.get('range', '?')}"
    return table


def health_table(report: dict[str, Any]) -> Any:
    """A Rich table of a health report: one row per service, then the replicas that are not ready."""
    from rich.table import Table

    ok = report.get("healthy")
    verdict = "[green]healthy[/]" if ok else "[bold red]unhealthy[/]"
    table = Table(title=f"{verdict}  [{report.get('phase')}]", title_justify="left")
    for col in ("SERVICE", "HEALTH", "STATE", "READY", "RESTARTS", "NOT READY"):
        table.add_column(col)
    for name, svc in report.get("services", {}).items():
        bad = "; ".join(f"{r['id']} {r['state']}: {r['reason']}" for r in svc.get("not_ready", []))
        table.add_row(
            name,
            "[green]ok[/]" if svc["healthy"] else "[red]no[/]",
            svc["state"],
            f"{svc['ready']}/{svc['desired']}",
            str(svc["restarts"]),
            bad[:100],
        )
    return table


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"  # pragma: no cover


def top_table(doc: dict[str, Any]) -> Any:
    """A Rich table of ``/v1/top``: per replica CPU, memory, open files, restarts, uptime."""
    from rich.table import Table

    rows = doc.get("replicas", [])
    table = Table(title=f"{len(rows)} replicas", title_justify="left")
    for col in ("REPLICA", "STATE", "PID", "CPU %", "MEMORY", "FDS", "RESTARTS", "UPTIME"):
        table.add_column(col, justify="right" if col not in ("REPLICA", "STATE") else "left")
    for r in sorted(rows, key=lambda r: -(r.get("cpu_percent") or 0.0)):
        style = _STYLE.get(r["state"], "")
        cpu = r.get("cpu_percent")
        uptime = r.get("uptime_s")
        table.add_row(
            r["id"],
            f"[{style}]{r['state']}[/]" if style else r["state"],
            str(r["pid"] or "-"),
            "-" if cpu is None else f"{cpu:.1f}",
            _bytes(r.get("memory_bytes")),
            str(r.get("open_files") if r.get("open_files") is not None else "-"),
            str(r["restarts"]),
            "-" if uptime is None else f"{uptime:.0f}s",
        )
    return table
