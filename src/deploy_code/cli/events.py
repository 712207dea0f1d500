"""`deploy-code events` and `deploy-code history`: read the state directory's SQLite file, read-only.

They need no API: they work while an orchestrator runs and after it has gone. ``events -f`` follows the
table by id, polling every ``POLL_S`` (a local file read, so a short poll costs next to nothing).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.text import Text

    from deploy_code.state import DeploymentRow, EventRow, StateReader

__all__ = ["describe", "events", "history"]

POLL_S = 0.25  # `events -f`: seconds between reads of the table
FOLLOW_BATCH = 1_000  # `events -f`: rows read per poll at most (the rest come on the next one)
STATE_DB = "state.db"

FileOpt = Annotated[
    Path,
    typer.Option("--file", help="The deployment file; its directory holds the state directory."),
]
FormatOpt = Annotated[str, typer.Option("--format", help="text, json or yaml")]
DEFAULT_FILE = Path("deploy-code.yaml")


def events(
    service: Annotated[str | None, typer.Argument(help="Only this service's events.")] = None,
    file: FileOpt = DEFAULT_FILE,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events.")] = False,
    limit: Annotated[int, typer.Option("-n", "--limit", min=0, help="Past events to show first.")] = 50,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind, e.g. replica.transition or alert.*")
    ] = None,
    fmt: FormatOpt = "text",
) -> None:
    """Show the recorded events (state transitions, exits, probes, deployments, alerts), oldest first."""
    from deploy_code.cli.app import _guard, _state_dir

    _check_format(fmt)

    def run() -> None:
        db = _state_dir(file) / STATE_DB
        if follow:
            _follow(db, service, kind, limit, fmt)
            return
        from deploy_code.state import StateReader

        with StateReader(db) as reader:
            rows = reader.events(limit=limit, service=service, kind=kind)
        if fmt != "text":
            _emit([r.to_dict() for r in rows], fmt)
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"events ({len(rows)})", title_justify="left")
        for col in ("id", "time", "kind", "service"):
            table.add_column(col, no_wrap=True)
        table.add_column("detail", overflow="fold")
        for r in rows:  # Text: what processes wrote is never read as Rich markup
            table.add_row(str(r.id), _time(r.at), r.kind, Text(r.service or "-"), Text(describe(r)))
        Console().print(table)

    _guard(run)


def history(
    file: Annotated[
        Path,
        typer.Option("-f", "--file", help="The deployment file; its directory holds the state directory."),
    ] = DEFAULT_FILE,
    limit: Annotated[int, typer.Option("-n", "--limit", min=0, help="Deployments to show.")] = 20,
    fmt: FormatOpt = "text",
) -> None:
    """Show past deployments, newest first: when, how long to the outcome, and the outcome."""
    from deploy_code.cli.app import _guard, _state_dir

    _check_format(fmt)

    def run() -> None:
        from deploy_code.state import StateReader

        with StateReader(_state_dir(file) / STATE_DB) as reader:
            rows = reader.deployments(limit)
        if fmt != "text":
            _emit([r.to_dict() for r in rows], fmt)
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"deployments ({len(rows)})", title_justify="left")
        for col in ("id", "name", "started", "duration", "outcome"):
            table.add_column(col, no_wrap=True)
        table.add_column("message", overflow="fold")
        for d in rows:
            table.add_row(
                str(d.id), d.name, _time(d.started_at), _duration(d), _outcome(d.outcome), Text(d.message)
            )
        Console().print(table)

    _guard(run)


def _follow(db: Path, service: str | None, kind: str | None, limit: int, fmt: str) -> None:
    from deploy_code.state import StateReader

    while not db.is_file():  # nothing deployed yet: wait for the first `up`
        time.sleep(POLL_S)
    with StateReader(db) as reader:
        top = reader.last_event_id()
        rows = reader.events(limit=limit, service=service, kind=kind) if limit else []
        last = max(top, rows[-1].id if rows else 0)
        while True:
            for r in rows:
                _print_line(r, fmt)
            sys.stdout.flush()
            time.sleep(POLL_S)
            rows = _new_rows(reader, service, kind, last)
            if rows:
                last = rows[-1].id


def _new_rows(reader: StateReader, service: str | None, kind: str | None, after: int) -> list[EventRow]:
    return reader.events(limit=FOLLOW_BATCH, service=service, kind=kind, after_id=after)


def _print_line(r: EventRow, fmt: str) -> None:
    if fmt == "text":
        sys.stdout.write(f"{r.id:>6} {_time(r.at)} {r.kind:<20} {r.service or '-':<16} {describe(r)}\n")
    elif fmt == "json":  # one object per line, so a pipe can read them as they come
        sys.stdout.write(json.dumps(r.to_dict(), default=str) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump([r.to_dict()], sort_keys=False))


def describe(r: EventRow) -> str:
    """One line saying what the event means."""
    b = r.body
    if r.kind == "replica.transition":
        pid = f" pid {b['pid']}" if b.get("pid") else ""
        return f"{r.service}.{b['replica']}: {b['old']} -> {b['new']} ({b['reason']}){pid}"
    if r.kind == "replica.exited":
        return f"{r.service}.{b['replica']}: pid {b['pid']} exited with {b['returncode']}"
    if r.kind == "probe.failed":
        return f"{r.service}.{b['replica']}: {b['probe']} probe failed: {b['message']}"
    if r.kind == "deployment.started":
        return f"{b['name']} started"
    if r.kind == "deployment.finished":
        tail = f": {b['message']}" if b.get("message") else ""
        return f"{b['name']} {b['outcome']} after {float(b['duration_s']):.3f}s{tail}"
    if r.kind == "alert.fired":
        return f"FIRING {b['rule']}: {b['message']}"
    if r.kind == "alert.resolved":
        return f"resolved {b['rule']} after {float(b['duration_s']):.0f}s: {b['message']}"
    rest = {k: v for k, v in b.items() if k not in ("kind", "service", "at")}
    return " ".join(f"{k}={v}" for k, v in rest.items())


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(d: DeploymentRow) -> str:
    return "-" if d.duration_s is None else f"{d.duration_s:.3f}s"


def _outcome(outcome: str) -> Text:
    from rich.text import Text

    return Text(outcome, style={"ready": "green", "failed": "red", "running": "yellow"}.get(outcome, ""))


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json", "yaml"):
        raise typer.BadParameter(f"unknown format {fmt!r} (text, json, yaml)")


def _emit(data: Any, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
