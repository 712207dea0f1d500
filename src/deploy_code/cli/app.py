"""The `deploy-code` commands. Every error is printed with its code and location, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from deploy_code.cli.events import events as events_command
from deploy_code.cli.events import history as history_command
from deploy_code.errors import DeployCodeError, ErrorCode, SupervisionError, format_diagnostic

__all__ = ["app", "main"]

app = typer.Typer(
    name="deploy-code",
    help="Deploy and supervise the services described in one YAML file.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

FileOpt = Annotated[
    Path,
    typer.Option("-f", "--file", help="The deployment file; its directory holds the state directory."),
]
# In `logs`, -f means follow (as in `tail -f`); the file is --file there, or -f before the command.
LogsFileOpt = Annotated[
    Path,
    typer.Option("--file", help="The deployment file; its directory holds the state directory."),
]
FormatOpt = Annotated[str, typer.Option("--format", help="text, json or yaml")]
DEFAULT_FILE = Path("deploy-code.yaml")
_global_file: list[Path] = []  # `deploy-code -f FILE COMMAND`: at most one entry


@app.callback()
def _main(
    file: Annotated[
        Path | None,
        typer.Option("-f", "--file", help="The deployment file, for any command (also accepted after it)."),
    ] = None,
) -> None:
    """Deploy and supervise the services described in one YAML file."""
    _global_file.clear()
    if file is not None:
        _global_file.append(file)


def _pick(file: Path) -> Path:
    """The command's own -f wins; else the one given before the command; else ./deploy-code.yaml."""
    if file == DEFAULT_FILE and _global_file:
        return _global_file[0]
    return file


T = TypeVar("T")


def _fail(exc: DeployCodeError) -> typer.Exit:
    for diag in exc.diagnostics:
        sys.stderr.write(format_diagnostic(diag) + "\n")
    return typer.Exit(2 if exc.code in (ErrorCode.E001, ErrorCode.E002, ErrorCode.E003) else 1)


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DeployCodeError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _load(path: Path) -> Any:
    from deploy_code.config import load

    return load(_pick(path))


def _state_dir(path: Path) -> Path:
    from deploy_code.config import resolve_state_dir

    return resolve_state_dir(_pick(path))


def _emit(data: Any, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        raise typer.BadParameter(f"unknown format {fmt!r} (text, json, yaml)")


@app.command()
def validate(file: FileOpt = DEFAULT_FILE, fmt: FormatOpt = "text") -> None:
    """Check the file: syntax, keys, types, dependencies, ports, probes, resources. Reports every error."""

    def run() -> None:
        from deploy_code.runtime import discover_capacity
        from deploy_code.scheduling import check, effective_capacity

        project = _load(file)
        capacity = discover_capacity(str(project.base_dir))
        diags = check(project, effective_capacity(project, capacity.total))
        if diags:
            raise DeployCodeError.from_diagnostics(diags)
        spec = project.spec
        replicas = sum(s.replicas for s in spec.services.values())
        if fmt != "text":
            doc = {"file": str(project.path), "valid": True, "services": len(spec.services)}
            _emit({**doc, "replicas": replicas, "errors": []}, fmt)
            return
        sys.stdout.write(f"{project.path}: valid ({len(spec.services)} services, {replicas} replicas)\n")

    if fmt == "text":
        _guard(run)
        return
    try:
        run()
    except DeployCodeError as exc:  # machine-readable: every diagnostic on stdout, the exit status as text
        _emit({"file": str(file), "valid": False, "errors": [d.to_dict() for d in exc.diagnostics]}, fmt)
        raise _fail(exc) from None


@app.command()
def schema() -> None:
    """Print the JSON Schema of the file format."""
    from deploy_code.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def plan(
    services: Annotated[list[str] | None, typer.Argument(help="Services to deploy (default: all).")] = None,
    file: FileOpt = DEFAULT_FILE,
    fmt: FormatOpt = "text",
) -> None:
    """Dry run: dependency waves, each replica's resources and ports, start order. Starts nothing."""

    def run() -> None:
        from deploy_code.ports import PortAllocator
        from deploy_code.runtime import discover_capacity, port_is_free
        from deploy_code.scheduling import effective_capacity
        from deploy_code.scheduling import plan as make_plan

        project = _load(file)
        settings = project.spec.settings
        capacity = discover_capacity(str(project.base_dir))
        available = effective_capacity(project, capacity.total)
        low, high = settings.port_bounds
        ports = PortAllocator(low, high, is_free=lambda p: port_is_free(settings.host, p))
        result = make_plan(project, available, ports, now=time.monotonic(), selected=services)
        doc = {
            "name": project.spec.name,
            "capacity": capacity.total.to_dict(),
            "available": available.to_dict(),
            "waves": [list(w) for w in result.waves],
            "start_order": [n for w in result.waves for n in w],
            "stop_order": [n for n in result.graph.stop_order() if n in result.placements],
            "replicas": [
                {
                    "id": p.owner,
                    "service": p.service,
                    "node": p.node,
                    "resources": p.resources.to_dict(),
                    "ports": dict(p.ports),
                    "depends_on": dict(project.spec.services[p.service].depends_on),
                }
                for p in result.all_placements()
            ],
        }
        changes = _running_changes(file, project)
        if changes is not None:
            doc["changes"] = changes
        if fmt != "text":
            _emit(doc, fmt)
            return
        out = sys.stdout
        if changes is not None:
            out.write("a deployment runs: `apply` would change\n")
            for line in changes or ["nothing"]:
                out.write(f"  {line}\n")
        out.write(f"plan for {project.spec.name} (nothing is started)\n")
        for i, wave in enumerate(result.waves):
            out.write(f"wave {i}: {', '.join(wave)}\n")
            for name in wave:
                for p in result.placements[name]:
                    res = p.resources
                    ports_txt = " ".join(f"{k}={v}" for k, v in p.ports.items()) or "-"
                    deps = project.spec.services[name].depends_on
                    after = " after " + ", ".join(f"{d} {c}" for d, c in deps.items()) if deps else ""
                    out.write(
                        f"  {p.owner:<24} node={p.node} cpu={res.cpu_cores:g} mem={res.memory_mb:g}MiB "
                        f"disk={res.storage_gb:g}GiB gpu={res.gpu_count} ports: {ports_txt}{after}\n"
                    )
        out.write("start order: " + " -> ".join(doc["start_order"]) + "\n")

    _guard(run)


@app.command()
def up(
    services: Annotated[list[str] | None, typer.Argument(help="Services to deploy (default: all).")] = None,
    file: FileOpt = DEFAULT_FILE,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Return once every service is ready.")
    ] = False,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Also serve the API on TCP (bearer tokens from api.tokens; TLS required off loopback).",
        ),
    ] = None,
    handshake_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Deploy the services (and their dependencies) and supervise them until Ctrl-C or `down`."""
    selected = list(services or [])
    if detach:
        _guard(lambda: _up_detached(file, selected, listen))
        return
    from deploy_code.cli.up import PipeReporter, run_orchestrator

    pipe = PipeReporter(handshake_fd) if handshake_fd is not None else None

    def run() -> None:
        project = _load(file)
        reporter: Any
        if pipe is not None:
            reporter = pipe
        elif sys.stdout.isatty():
            from deploy_code.cli.display import LiveReporter

            reporter = LiveReporter()
        else:
            from deploy_code.cli.display import PlainReporter

            reporter = PlainReporter()
        result = asyncio.run(run_orchestrator(project, selected, reporter, listen))
        if result.outcome == "failed":
            raise typer.Exit(1)

    _guard(run)


def _up_detached(file: Path, selected: list[str], listen: str | None = None) -> None:
    from deploy_code.cli.up import detach

    project = _load(file)  # validate here, so errors print in this terminal
    from deploy_code.api import plan_tcp

    plan_tcp(project, os.environ, listen)  # a refused TCP listener is reported here, not in the log
    proc, read_fd = detach(project.path, project.state_dir, selected, listen)
    failed = False
    got_outcome = False
    with os.fdopen(read_fd, "rb") as pipe:
        for raw in pipe:
            msg = json.loads(raw)
            if msg["type"] == "progress":
                sys.stdout.write(f"{msg['service']}.{msg['replica']}: {msg['state']} ({msg['reason']})\n")
                sys.stdout.flush()
            elif msg["type"] == "outcome":
                got_outcome = True
                if msg["outcome"] == "ready":
                    sys.stdout.write(
                        f"deployment {project.spec.name} ready in {msg['duration_s']:.3f}s "
                        f"(orchestrator pid {msg['pid']})\n"
                    )
                else:
                    failed = True
                    for f in msg["failures"]:
                        sys.stderr.write(f"E006 service {f['service']} could not get ready: {f['reason']}\n")
                        for line in f["last_lines"]:
                            sys.stderr.write(f"    {line}\n")
                    sys.stderr.write("the orchestrator keeps running: see `deploy-code status`, or `down`\n")
            elif msg["type"] == "error":
                err = msg["error"]
                for e in err.get("errors", []):
                    loc = e.get("location")
                    where = f"{loc['file']}:{loc['line']}:{loc['column']}: " if loc else ""
                    sys.stderr.write(f"{where}{e['code']} {e['message']}\n")
                    if e.get("hint"):
                        sys.stderr.write(f"    hint: {e['hint']}\n")
                raise typer.Exit(1)
    if not got_outcome:
        rc = proc.wait()
        log_tail = _tail(project.state_dir / "orchestrator.log", 20)
        sys.stderr.write(f"E005 the orchestrator exited (status {rc}) before the deployment was ready\n")
        for line in log_tail:
            sys.stderr.write(f"    {line}\n")
        raise typer.Exit(1)
    if failed:
        raise typer.Exit(1)


def _log_line(line: str, fmt: str) -> str:
    """``api.0 | text`` as text, or ``{"replica": "api.0", "line": "text"}`` as json."""
    if fmt == "text":
        return line
    if fmt != "json":
        raise typer.BadParameter(f"unknown format {fmt!r} for logs (text, json)")
    replica, sep, rest = line.partition(" | ")
    return json.dumps({"replica": replica, "line": rest} if sep else {"replica": None, "line": line})


def _running_changes(file: Path, project: Any) -> list[str] | None:
    """What `apply` would change in the running deployment (None when none runs)."""
    if not (project.state_dir / "api.sock").exists():
        return None
    try:
        with _client(file) as c:
            doc = c.request("POST", "/v1/apply", json={"dry_run": True})
    except DeployCodeError:
        return None
    return [str(line) for line in doc.get("changes", [])]


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _client(file: Path, timeout: float | None = 30.0) -> Any:
    from deploy_code.cli.client import ApiClient

    return ApiClient(_state_dir(file), timeout)


@app.command()
def status(
    file: FileOpt = DEFAULT_FILE,
    fmt: FormatOpt = "text",
    resources: Annotated[
        bool, typer.Option("--resources", help="Also show capacity, bookings and utilization.")
    ] = False,
) -> None:
    """Show every service and replica of the running deployment."""

    def run() -> None:
        with _client(file) as c:
            doc = c.request("GET", "/v1/status")
        if fmt == "text":
            from rich.console import Console

            from deploy_code.cli.display import resources_table, status_table

            console = Console()
            console.print(status_table(doc))
            if resources:
                console.print(resources_table(doc))
        else:
            _emit(doc, fmt)

    _guard(run)


@app.command()
def health(file: FileOpt = DEFAULT_FILE, fmt: FormatOpt = "text") -> None:
    """Is every service healthy? Exit status 0 when it is, 1 when not (for scripts and CI)."""

    def run() -> bool:
        with _client(file) as c:
            doc = c.request("GET", "/v1/health/report")
        if fmt == "text":
            from rich.console import Console

            from deploy_code.cli.display import health_table

            Console().print(health_table(doc))
        else:
            _emit(doc, fmt)
        return bool(doc.get("healthy"))

    if not _guard(run):
        raise typer.Exit(1)


@app.command()
def top(
    file: FileOpt = DEFAULT_FILE,
    fmt: FormatOpt = "text",
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.5, help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Print one table and exit.")] = False,
) -> None:
    """Live CPU, memory, open files and restarts of every replica (Ctrl-C to quit)."""

    def run() -> None:
        from rich.console import Console
        from rich.live import Live

        from deploy_code.cli.display import top_table

        with _client(file) as c:
            doc = c.request("GET", "/v1/top")
            if fmt != "text":
                _emit(doc, fmt)
                return
            if once:
                Console().print(top_table(doc))
                return
            with Live(top_table(doc), refresh_per_second=4, screen=False) as live:
                try:
                    while True:
                        time.sleep(interval)
                        live.update(top_table(c.request("GET", "/v1/top")))
                except KeyboardInterrupt:
                    return

    _guard(run)


@app.command()
def logs(
    service: str,
    file: LogsFileOpt = DEFAULT_FILE,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines of history per replica.")] = 100,
    replica: Annotated[int | None, typer.Option("--replica", help="Only this replica index.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, or json: one object per line")] = "text",
) -> None:
    """Print a service's output (all replicas, prefixed with the replica id)."""

    def run() -> None:
        params: dict[str, Any] = {"lines": lines}
        if replica is not None:
            params["replica"] = replica
        with _client(file, timeout=None if follow else 30.0) as c:
            if follow:
                for line in c.stream(f"/v1/logs/{service}", follow="true", **params):
                    sys.stdout.write(_log_line(line, fmt) + "\n")
                    sys.stdout.flush()
            else:
                text: str = c.request("GET", f"/v1/logs/{service}", params=params)
                if fmt == "text":
                    sys.stdout.write(text)
                else:
                    sys.stdout.writelines(_log_line(line, fmt) + "\n" for line in text.splitlines())

    _guard(run)


@app.command()
def restart(services: list[str], file: FileOpt = DEFAULT_FILE) -> None:
    """Restart every replica of the named services."""

    def run() -> None:
        with _client(file) as c:
            doc = c.request("POST", "/v1/restart", json={"services": services})
        sys.stdout.write("restarting " + " ".join(doc["restarted"]) + "\n")

    _guard(run)


@app.command()
def scale(targets: list[str], file: FileOpt = DEFAULT_FILE) -> None:
    """Run N replicas of a service: `deploy-code scale api=3 worker=1`."""

    def run() -> None:
        wanted: list[tuple[str, int]] = []
        for target in targets:
            name, sep, count = target.partition("=")
            if not sep or not name or not count.isdigit():
                raise DeployCodeError(
                    f"cannot read {target!r}: expected SERVICE=N, e.g. api=3", code=ErrorCode.E002
                )
            wanted.append((name, int(count)))
        with _client(file, timeout=None) as c:
            for name, n in wanted:
                doc = c.request("POST", "/v1/scale", json={"service": name, "replicas": n})
                changes = [f"+{r}" for r in doc.get("added", [])] + [f"-{r}" for r in doc.get("removed", [])]
                sys.stdout.write(f"{name}: {n} replicas {' '.join(changes)}".rstrip() + "\n")

    _guard(run)


def _change(file: Path, path: str, body: dict[str, Any], fmt: str) -> None:
    """POST an apply or rollback, print what changed; exit 1 when the rollout was rolled back."""

    def run() -> str:
        with _client(file, timeout=None) as c:
            doc: dict[str, Any] = c.request("POST", path, json=body)
        if fmt != "text":
            _emit(doc, fmt)
            return str(doc.get("outcome"))
        for line in doc.get("changes", []):
            sys.stdout.write(f"  {line}\n")
        outcome = doc.get("outcome")
        if outcome == "rolled_back":
            sys.stdout.write(f"rolled back: {doc.get('message')}\n")
        elif outcome == "unchanged":
            sys.stdout.write("nothing to change\n")
        elif outcome == "planned":
            sys.stdout.write("(dry run: nothing changed)\n")
        else:
            sys.stdout.write(f"applied in {doc.get('duration_s', 0):.2f}s\n")
        return str(outcome)

    if _guard(run) == "rolled_back":
        raise typer.Exit(1)


@app.command()
def apply(
    file: FileOpt = DEFAULT_FILE,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the difference only.")] = False,
    fmt: FormatOpt = "text",
) -> None:
    """Redeploy what changed in the file (per service: rolling, blue-green or recreate); a rollout
    whose new replicas do not get ready is rolled back (exit status 1)."""
    _guard(lambda: _load(file))  # every problem of the file, located, before the orchestrator is asked
    _change(file, "/v1/apply", {"dry_run": dry_run}, fmt)


@app.command()
def rollback(
    file: FileOpt = DEFAULT_FILE,
    to: Annotated[int | None, typer.Option("--to", help="The deployment id (see `history`).")] = None,
    fmt: FormatOpt = "text",
) -> None:
    """Go back to the previous version of the file (or deployment --to N's), as `apply` would."""
    _change(file, "/v1/rollback", {"deployment": to}, fmt)


@app.command()
def stop(
    services: list[str],
    file: FileOpt = DEFAULT_FILE,
    timeout: Annotated[float | None, typer.Option(help="Seconds before SIGKILL.")] = None,
) -> None:
    """Stop the named services (they stay stopped until `restart`)."""

    def run() -> None:
        with _client(file, timeout=None) as c:
            doc = c.request("POST", "/v1/stop", json={"services": services, "timeout": timeout})
        sys.stdout.write("stopped " + " ".join(doc["stopped"]) + "\n")

    _guard(run)


@app.command()
def down(
    file: FileOpt = DEFAULT_FILE,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before SIGKILL (default: per service).")
    ] = None,
) -> None:
    """Stop everything in reverse dependency order and end the orchestrator."""

    def run() -> None:
        from deploy_code.state import StateDirLock

        state_dir = _state_dir(file)
        with _client(file, timeout=None) as c:
            c.request("POST", "/v1/down", json={"timeout": timeout})
        # The API answers once everything is stopped; wait for the process to let go of the lock.
        lock = StateDirLock(state_dir)
        deadline = time.monotonic() + 10.0
        while lock.held_by() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        sys.stdout.write("down\n")

    _guard(run)


# Read the state file directly (no API): they work whether or not an orchestrator runs.
app.command("events")(events_command)
app.command("history")(history_command)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except SupervisionError as exc:  # pragma: no cover - commands already map their errors
        raise SystemExit(_fail(exc).exit_code) from None
