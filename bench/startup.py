"""Start-up benchmark for deploy-code: how fast an orchestrated deployment accepts connections.

Every figure is taken by this script from outside: it execs ``deploy-code up -f FILE`` (foreground; the
interpreter start and the imports count) and probes every service port with non-blocking connects in a
tight loop until each accepts. The services are ``trivial_server`` (bench/trivial_server.c, compiled here
with ``cc -O2``), whose own start-up cost is negligible, so the figures are the orchestrator's.

Scenarios:
  i    50 and 200 independent services, fixed ports, tcp readiness: exec -> every port accepts;
       beside it the same start by this script (Popen in a loop), so the overhead is also a ratio.
  ii   a 20-deep chain s0 <- s1 <- ... <- s19 (``depends_on: healthy``), each listening after
       ``--delay-ms 100``: total against the 2.0 s lower bound; every link must start after its dependency.
  iii  crash -> ready: SIGKILL the only replica of a ``restart: always`` service with zero backoff,
       time until its port accepts again (10 times; median and max).
  iv   the orchestrator's own RSS and CPU seconds over 30 s idle with the 200 services of (i) running.

Output: a Markdown table on stdout and bench/out/startup.json. Run ``make bench`` or
``.venv/bin/python bench/startup.py [--quick]``. Loopback only; everything it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import yaml

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
SERVER_SRC = BENCH_DIR / "trivial_server.c"
SERVER_BIN = OUT_DIR / "trivial_server"
LOOPBACK = "127.0.0.1"

CHAIN_LEN = 20
CHAIN_DELAY_MS = 100
CRASH_ROUNDS = 10

# Targets printed beside the figures.
TARGET_200_S = 0.5
TARGET_CHAIN_SLACK = 0.10
TARGET_CRASH_MEDIAN_S = 0.010
TARGET_IDLE_RSS_MIB = 40.0
TARGET_IDLE_CPU_PER_30S = 0.05

_IN_PROGRESS = {errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY}


# --------------------------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    """Progress goes to stderr so stdout stays the Markdown table."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def compile_server() -> Path:
    """Build bench/out/trivial_server unless it is newer than its source."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if SERVER_BIN.exists() and SERVER_BIN.stat().st_mtime >= SERVER_SRC.stat().st_mtime:
        return SERVER_BIN
    cc = os.environ.get("CC", "cc")
    tmp = SERVER_BIN.with_suffix(".tmp")
    subprocess.run([cc, "-O2", "-o", str(tmp), str(SERVER_SRC)], check=True, timeout=120)
    tmp.replace(SERVER_BIN)
    return SERVER_BIN


def ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, base: int, exclude: set[int]) -> list[int]:
    """``count`` ports from ``base`` up that can be bound on loopback now (skipping busy ones)."""
    ports: list[int] = []
    port = base
    while len(ports) < count:
        if port > 65535:
            raise RuntimeError(f"not enough free ports above {base}")
        if port not in exclude:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((LOOPBACK, port))
                    ports.append(port)
                except OSError:
                    pass
        port += 1
    return ports


def wait_ports(
    ports: Sequence[int],
    t0: float,
    deadline: float,
    interval: float = 0.0005,
    check: Callable[[], None] | None = None,
) -> dict[int, float]:
    """Probe every port with non-blocking connects until each accepts once.

    Returns the first-accept time of each port in seconds after ``t0`` (perf_counter). Each round
    opens one socket per pending port; a connect still in progress is given up to 2 ms. Raises
    TimeoutError (listing what is missing) at ``deadline``; ``check`` runs every 50 ms and may raise
    to give up early (e.g. the orchestrator died).
    """
    pending = set(ports)
    first: dict[int, float] = {}
    next_check = time.perf_counter() + 0.05
    while pending:
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"{len(pending)} port(s) never accepted, e.g. {sorted(pending)[:5]}")
        if check is not None and now >= next_check:
            check()
            next_check = now + 0.05
        in_progress: dict[int, tuple[socket.socket, int]] = {}
        for port in list(pending):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((LOOPBACK, port))
            if err == 0:
                first[port] = time.perf_counter() - t0
                pending.discard(port)
                s.close()
            elif err in _IN_PROGRESS:
                in_progress[s.fileno()] = (s, port)
            else:
                s.close()
        if in_progress:
            poller = select.poll()
            for fd in in_progress:
                poller.register(fd, select.POLLOUT)
            for fd, _ in poller.poll(2):
                s, port = in_progress[fd]
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    first[port] = time.perf_counter() - t0
                    pending.discard(port)
            for s, _ in in_progress.values():
                s.close()
        if pending and interval > 0:
            time.sleep(interval)
    return first


def accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def wait_closed(ports: Sequence[int], deadline: float) -> list[int]:
    """Wait until no port accepts; returns those still open at the deadline."""
    still = list(ports)
    while still and time.monotonic() < deadline:
        still = [p for p in still if accepts(p)]
        if still:
            time.sleep(0.05)
    return still


def pids_of_binary(binary: Path) -> list[int]:
    """Live processes whose executable is ``binary`` (this benchmark's own servers only)."""
    found: list[int] = []
    target = str(binary)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "exe") == target:
                found.append(int(entry.name))
    return found


def kill_leftovers(binary: Path) -> int:
    """SIGKILL any trivial_server still running (by process group when it leads its own)."""
    pids = pids_of_binary(binary)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    return len(pids)


def listener_pid(port: int) -> int | None:
    """The pid holding a LISTEN socket on 127.0.0.1:port, from /proc/net/tcp and /proc/*/fd."""
    want_local = f"0100007F:{port:04X}"
    inode = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[1] in (want_local, f"00000000:{port:04X}"):
                inode = cols[9]
                break
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == link:
                        return int(entry.name)
    return None


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """True once ``pid`` (not our child) has exited; uses a pidfd when the kernel has them."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:
        pidfd = -1
    try:
        if pidfd >= 0:
            return bool(select.select([pidfd], [], [], timeout)[0])
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            if status in ("Z", "X"):
                return True
            time.sleep(0.0002)
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def warm_up(server: Path) -> None:
    """One unmeasured start of the server, so the first measured exec does not pay a cold page cache."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        port = free_ports(1, 23900, set())[0]
        p = subprocess.Popen([str(server), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with contextlib.suppress(TimeoutError):
            wait_ports([port], time.perf_counter(), time.perf_counter() + 5)
        p.terminate()
        p.wait(timeout=5)


# ------------------------------------------------------------------------------------- the orchestrator


@dataclass
class Orchestrator:
    """How to run deploy-code, and whether it runs at all."""

    exe: list[str]
    available: bool = False
    why_not: str = ""

    def check(self) -> None:
        try:
            r = subprocess.run([*self.exe, "--help"], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            self.why_not = f"{' '.join(self.exe)}: {exc}"
            return
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            self.why_not = f"`{' '.join(self.exe)} --help` exited {r.returncode}: {tail[0]}"
            return
        self.available = True

    def status(self, file: Path) -> dict[str, Any] | None:
        """``deploy-code status -f FILE --format json``, or None if that fails."""
        try:
            r = subprocess.run(
                [*self.exe, "status", "-f", str(file), "--format", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if r.returncode != 0:
                return None
            data = json.loads(r.stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def down(self, file: Path) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [*self.exe, "down", "-f", str(file)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )


def replicas_of(status: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """``{"services": {name: {"replicas": [...]}}}`` -> ``{name: replicas}`` (tolerant of gaps)."""
    out: dict[str, list[dict[str, Any]]] = {}
    services = status.get("services") if status else None
    if isinstance(services, dict):
        for name, svc in services.items():
            reps = svc.get("replicas") if isinstance(svc, dict) else None
            if isinstance(reps, list):
                out[str(name)] = [r for r in reps if isinstance(r, dict)]
    return out


@dataclass
class Deployment:
    """One generated deploy-code.yaml and the foreground ``deploy-code up`` running it."""

    orch: Orchestrator
    name: str
    spec: dict[str, Any]
    ports: list[int]
    file: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    t0: float = 0.0
    stop_s: float | None = None
    status_works: bool = True

    def __post_init__(self) -> None:
        self.file = OUT_DIR / f"{self.name}.yaml"

    def write(self) -> None:
        state = OUT_DIR / "state" / self.name
        shutil.rmtree(state, ignore_errors=True)
        self.spec.setdefault("settings", {})["state_dir"] = str(state)
        self.file.write_text(yaml.safe_dump(self.spec, sort_keys=False))

    def start(self) -> float:
        """Exec ``deploy-code up -f FILE`` (foreground); returns the perf_counter just before exec."""
        self.write()
        logf = (OUT_DIR / f"{self.name}.log").open("wb")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [*self.orch.exe, "up", "-f", str(self.file)],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so clean-up can take the group
            cwd=OUT_DIR,
        )
        logf.close()
        return self.t0

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            text = (OUT_DIR / f"{self.name}.log").read_text(errors="replace")
            lines = [ln.strip(" |+-") for ln in text.splitlines()]
            tail = [ln for ln in lines if ln and not set(ln) <= {"^", "~"}][-3:]
            raise RuntimeError(
                f"deploy-code up exited {self.proc.returncode} early; log tail: " + " | ".join(tail)
            )

    def wait_ports(self, timeout: float, interval: float = 0.0005) -> dict[int, float]:
        deadline = time.perf_counter() + timeout
        return wait_ports(self.ports, self.t0, deadline, interval, check=self.check_alive)

    def wait_all_ready(self, timeout: float) -> bool:
        """Poll ``status`` until every replica says ready; False if it never does (or no status)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.check_alive()
            reps = replicas_of(self.orch.status(self.file))
            if reps and all(r.get("state") == "ready" for rs in reps.values() for r in rs):
                return True
            if not reps:
                return False
            time.sleep(0.2)
        return False

    def find_pid(self, service: str, port: int) -> tuple[int | None, str]:
        """The replica's pid from ``status --format json``; from /proc once status has failed."""
        if self.status_works:
            reps = replicas_of(self.orch.status(self.file)).get(service, [])
            got = reps[0].get("pid") if reps else None
            if isinstance(got, int) and got > 0:
                return got, "status"
            if not reps:
                self.status_works = False  # no status command (or no such service): stop asking
        return listener_pid(port), "/proc"

    def stop(self) -> None:
        """SIGINT the foreground ``up``; then ``down`` if needed; then kill leftovers by group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        t = time.perf_counter()
        clean = False
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
                clean = proc.returncode == 0
                self.stop_s = time.perf_counter() - t
            except subprocess.TimeoutExpired:
                log(f"{self.name}: deploy-code up ignored SIGINT for 30 s")
        leftovers = pids_of_binary(SERVER_BIN)
        if not clean or leftovers:
            self.orch.down(self.file)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        n = kill_leftovers(SERVER_BIN)
        if n:
            log(f"{self.name}: killed {n} leftover trivial_server process(es)")
        still = wait_closed(self.ports, time.monotonic() + 10)
        if still:
            log(f"{self.name}: ports still open after clean-up: {still[:5]}")


class Runner(Protocol):
    """What the crash measurement needs from deploy-code or supervisord."""

    name: str

    def wait_ports(self, timeout: float, interval: float = 0.0005) -> dict[int, float]: ...
    def check_alive(self) -> None: ...
    def find_pid(self, service: str, port: int) -> tuple[int | None, str]: ...


@dataclass
class Supervisord:
    """The same services under supervisord (``supervisord -n -c CONF``), for comparison only."""

    exe: str
    name: str
    commands: dict[str, list[str]]
    ports: list[int]
    proc: subprocess.Popen[bytes] | None = None
    t0: float = 0.0

    def write(self) -> Path:
        conf = OUT_DIR / f"{self.name}.conf"
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={OUT_DIR / (self.name + '.log')}",
            f"pidfile={OUT_DIR / (self.name + '.pid')}",
            "loglevel=warn",
            "minfds=4096",
        ]
        for svc, argv in self.commands.items():
            lines += [
                f"[program:{svc}]",
                "command=" + " ".join(argv),
                "autostart=true",
                "autorestart=true",
                "startsecs=0",
                "startretries=1000",
                "stdout_logfile=NONE",
                "stderr_logfile=NONE",
                "stopwaitsecs=5",
            ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> float:
        conf = self.write()
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [self.exe, "-n", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=OUT_DIR,
        )
        return self.t0

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"supervisord exited {self.proc.returncode} early")

    def wait_ports(self, timeout: float, interval: float = 0.0005) -> dict[int, float]:
        deadline = time.perf_counter() + timeout
        return wait_ports(self.ports, self.t0, deadline, interval, check=self.check_alive)

    def find_pid(self, service: str, port: int) -> tuple[int | None, str]:
        return listener_pid(port), "/proc"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: supervisord ignored SIGTERM for 30 s")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        kill_leftovers(SERVER_BIN)
        wait_closed(self.ports, time.monotonic() + 10)


def supervisord_version(exe: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
        if r.returncode == 0:
            return r.stdout.strip()
    return ""


def measure_crashes(run: Runner, service: str, port: int, rounds: int, settle: float) -> dict[str, Any]:
    """SIGKILL the replica ``rounds`` times; time kill -> its port accepts again."""
    durations: list[float] = []
    sources: list[str] = []
    unchanged = 0
    for _ in range(rounds):
        run.wait_ports(timeout=30)  # (re)listening before the next kill
        time.sleep(settle)
        pid, src = run.find_pid(service, port)
        listening = listener_pid(port)
        if pid is None:
            raise RuntimeError(f"cannot find the pid listening on port {port}")
        sources.append(src)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        if not wait_pid_exit(pid, timeout=5):
            raise RuntimeError(f"pid {pid} did not exit after SIGKILL")
        first = wait_ports([port], t0, time.perf_counter() + 30, interval=0.0001, check=run.check_alive)
        durations.append(first[port])
        if listener_pid(port) == listening:
            unchanged += 1  # the port answered from a process we did not kill: status gave a wrapper?
    return {
        "durations_s": durations,
        "median_s": statistics.median(durations),
        "max_s": max(durations),
        "pid_source": sources,
        "listener_unchanged": unchanged,
    }


@contextlib.contextmanager
def deployed(dep: Deployment) -> Iterator[Deployment]:
    try:
        yield dep
    finally:
        dep.stop()


def tcp_service(command: list[str], port: int, period: str, **extra: Any) -> dict[str, Any]:
    return {
        "command": command,
        "ports": {"main": port},
        "health": {"readiness": {"tcp": {"port": "main"}, "period": period, "timeout": "1s"}},
        "timeouts": {"start": "10s", "ready": "120s", "stop": "5s"},
        **extra,
    }


def project(name: str, services: dict[str, Any], ports: Sequence[int]) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "settings": {"port_range": f"{min(ports)}-{max(ports)}", "max_parallel": "auto"},
        "services": services,
    }


# --------------------------------------------------------------------------------------------- scenarios


@dataclass
class Row:
    scenario: str
    result: str
    target: str = ""
    ok: bool | None = None
    notes: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    orch: Orchestrator
    server: Path
    rows: list[Row] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    used_ports: set[int] = field(default_factory=set)
    sv_exe: str = ""
    sv_label: str = "supervisord"

    def ports(self, n: int) -> list[int]:
        ps = free_ports(n, self.args.port_base, self.used_ports)
        self.used_ports.update(ps)
        return ps

    def skip(self, key: str, scenario: str, why: str) -> None:
        log(f"{scenario}: skipped ({why})")
        self.results[key] = {"skipped": why}
        self.rows.append(Row(scenario, "skipped", notes=why))

    def failed(self, key: str, scenario: str, exc: BaseException) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        log(f"{scenario}: FAILED {msg}")
        self.results[key] = {"error": msg}
        self.rows.append(Row(scenario, "error", ok=False, notes=msg[:200]))

    # -- (i) + baseline ------------------------------------------------------------------------------

    def baseline(self, ports: list[int]) -> float:
        """This script starting the same servers: Popen in a loop, then wait for every port."""
        procs: list[subprocess.Popen[bytes]] = []
        try:
            t0 = time.perf_counter()
            for port in ports:
                procs.append(
                    subprocess.Popen(
                        [str(self.server), str(port)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            first = wait_ports(ports, t0, time.perf_counter() + 60)
            return max(first.values())
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
            wait_closed(ports, time.monotonic() + 10)

    def scenario_parallel(self, n: int, idle: bool) -> None:
        key, label = f"start_{n}", f"(i) start {n} services"
        ports = self.ports(n)
        base = [self.baseline(ports) for _ in range(self.args.repeat)]
        base_s = statistics.median(base)
        res: dict[str, Any] = {"services": n, "baseline_popen_s": base, "baseline_median_s": base_s}
        self.results[key] = res
        try:
            if self.orch.available:
                self.start_orchestrator(n, ports, idle, res)
            else:
                res["skipped"] = self.orch.why_not
                self.rows.append(Row(label, "skipped", notes=f"baseline (Popen loop) {base_s * 1e3:.0f} ms"))
        finally:
            if self.sv_exe:
                try:
                    self.start_supervisord(n, ports)
                except Exception as exc:
                    self.failed(f"start_{n}_supervisord", f"(i) start {n} services: supervisord", exc)

    def start_orchestrator(self, n: int, ports: list[int], idle: bool, res: dict[str, Any]) -> None:
        label, base_s = f"(i) start {n} services", res["baseline_median_s"]
        spec = project(
            f"bench-start-{n}",
            {
                f"s{i}": tcp_service([str(self.server), str(p)], p, self.args.idle_period)
                for i, p in enumerate(ports)
            },
            ports,
        )
        runs: list[float] = []
        idle_rows: list[Row] = []
        for rep in range(self.args.repeat):
            last = rep == self.args.repeat - 1
            with deployed(Deployment(self.orch, f"start-{n}", spec, ports)) as dep:
                dep.start()
                first = dep.wait_ports(timeout=120)
                runs.append(max(first.values()))
                res.setdefault("p50_port_s", []).append(statistics.median(first.values()))
                if idle and last:
                    idle_rows = self.idle(dep)
            res.setdefault("stop_s", []).append(dep.stop_s)
        total = statistics.median(runs)
        res.update(orchestrator_s=runs, orchestrator_median_s=total, ratio=total / base_s)
        note = f"baseline (Popen loop) {base_s * 1e3:.0f} ms, ratio {total / base_s:.1f}x"
        if len(runs) > 1:
            note += f"; runs {', '.join(f'{r * 1e3:.0f}' for r in runs)} ms"
        if n == 200:
            ok: bool | None = total <= TARGET_200_S
            target = f"<= {TARGET_200_S * 1e3:.0f} ms"
        else:
            ok, target = None, ""
        self.rows.append(Row(label, f"{total * 1e3:.0f} ms", target, ok, note))
        self.rows.extend(idle_rows)

    def start_supervisord(self, n: int, ports: list[int]) -> None:
        """The same start under supervisord, for comparison (a row with no target)."""
        sv = Supervisord(
            self.sv_exe,
            f"sv-start-{n}",
            {f"s{i}": [str(self.server), str(p)] for i, p in enumerate(ports)},
            ports,
        )
        try:
            sv.start()
            total = max(sv.wait_ports(timeout=120).values())
        finally:
            sv.stop()
        self.results[f"start_{n}_supervisord"] = {"total_s": total}
        self.rows.append(
            Row(f"(i) start {n} services: {self.sv_label}", f"{total * 1e3:.0f} ms", notes="comparison")
        )

    # -- (iv) ----------------------------------------------------------------------------------------

    def idle(self, dep: Deployment) -> list[Row]:
        """RSS and CPU seconds of the orchestrator (``up`` and its non-service descendants) while idle."""
        assert dep.proc is not None
        # Every port already accepts. The window is measured before any `status` call: the first API
        # request loads FastAPI + uvicorn into the orchestrator (lazily, by design), which is reported
        # as its own row below rather than mixed into the idle figure.
        time.sleep(1.0)
        window = 5.0 if self.args.quick else 30.0
        root = psutil.Process(dep.proc.pid)

        def orchestrator_procs() -> list[psutil.Process]:
            procs = [root]
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if child.exe() != str(self.server):
                            procs.append(child)
            return procs

        def cpu(procs: list[psutil.Process]) -> float:
            total = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total

        def rss(procs: list[psutil.Process]) -> int:
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            return total

        procs = orchestrator_procs()
        cpu0, peak = cpu(procs), rss(procs)
        end = time.monotonic() + window
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            dep.check_alive()
            peak = max(peak, rss(procs))
        cpu_s = cpu(procs) - cpu0
        rss_mib = rss(procs) / 2**20
        per30 = cpu_s * 30.0 / window
        ready = dep.wait_all_ready(timeout=10 if self.args.quick else 45)
        time.sleep(0.5)
        api_rss_mib = rss(procs) / 2**20
        self.results["idle_200"] = {
            "window_s": window,
            "all_ready_before_window": ready,
            "processes": [p.pid for p in procs],
            "rss_mib": rss_mib,
            "peak_rss_mib": peak / 2**20,
            "cpu_s": cpu_s,
            "cpu_s_per_30s": per30,
            "rss_after_status_mib": api_rss_mib,
            "readiness_period": self.args.idle_period,
        }
        notes = f"{len(procs)} process(es); tcp readiness every {self.args.idle_period} for 200 services" + (
            "" if ready else "; status never said all ready (or no status)"
        )
        return [
            Row(
                "(iv) idle RSS, 200 services",
                f"{rss_mib:.1f} MiB (peak {peak / 2**20:.1f})",
                f"<= {TARGET_IDLE_RSS_MIB:.0f} MiB",
                peak / 2**20 <= TARGET_IDLE_RSS_MIB,
                notes,
            ),
            Row(
                "(iv) RSS after the first `status` (API stack loaded)",
                f"{api_rss_mib:.1f} MiB",
                "",
                None,
                "FastAPI + uvicorn load on the first API request, not before",
            ),
            Row(
                f"(iv) idle CPU, 200 services ({window:.0f} s window)",
                f"{per30:.3f} CPU-s / 30 s",
                f"<= {TARGET_IDLE_CPU_PER_30S} CPU-s / 30 s",
                per30 <= TARGET_IDLE_CPU_PER_30S,
                f"measured {cpu_s:.3f} CPU-s in {window:.0f} s",
            ),
        ]

    # -- (ii) ----------------------------------------------------------------------------------------

    def scenario_chain(self) -> None:
        key, label = "chain_20", f"(ii) {CHAIN_LEN}-deep chain, {CHAIN_DELAY_MS} ms each"
        if not self.orch.available:
            self.skip(key, label, self.orch.why_not)
            return
        ports = self.ports(CHAIN_LEN)
        services: dict[str, Any] = {}
        for i, p in enumerate(ports):
            cmd = [str(self.server), str(p), "--delay-ms", str(CHAIN_DELAY_MS)]
            extra = {"depends_on": {f"s{i - 1}": "healthy"}} if i else {}
            services[f"s{i}"] = tcp_service(cmd, p, self.args.period, **extra)
        with deployed(Deployment(self.orch, "chain", project("bench-chain", services, ports), ports)) as dep:
            dep.start()
            first = dep.wait_ports(timeout=120)
        times = [first[p] for p in ports]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # s_i cannot listen before s_{i-1} listened, was probed healthy, and s_i slept its delay.
        min_gap = CHAIN_DELAY_MS / 1000 - 0.003  # allowance for this script's probe resolution
        violations = [f"s{i + 1}" for i, g in enumerate(gaps) if g < min_gap]
        lower = CHAIN_LEN * CHAIN_DELAY_MS / 1000
        total = times[-1]
        self.results[key] = {
            "total_s": total,
            "lower_bound_s": lower,
            "over_lower_bound": total / lower - 1,
            "listen_s": times,
            "gaps_s": gaps,
            "order_violations": violations,
            "readiness_period": self.args.period,
        }
        self.rows.append(
            Row(
                label,
                f"{total:.3f} s ({(total / lower - 1) * 100:+.0f}% vs {lower:.1f} s)",
                f"<= {lower * (1 + TARGET_CHAIN_SLACK):.1f} s",
                total <= lower * (1 + TARGET_CHAIN_SLACK),
                f"link gap min {min(gaps) * 1e3:.0f} / median {statistics.median(gaps) * 1e3:.0f} / "
                f"max {max(gaps) * 1e3:.0f} ms",
            )
        )
        self.rows.append(
            Row(
                "(ii) dependency order honoured",
                "yes" if not violations else f"NO: {', '.join(violations)}",
                "every link",
                not violations,
                f"each s_i listened >= {min_gap * 1e3:.0f} ms after s_(i-1)",
            )
        )

    # -- (iii) ---------------------------------------------------------------------------------------

    def scenario_crash(self) -> None:
        key, label = "crash_ready", f"(iii) crash -> ready ({CRASH_ROUNDS} kills)"
        if not self.orch.available:
            self.skip(key, label, self.orch.why_not)
            return
        port = self.ports(1)[0]
        svc = tcp_service(
            [str(self.server), str(port)],
            port,
            self.args.period,
            restart={
                "policy": "always",
                "backoff": {"initial": 0},
                "max_restarts": 1000,
                "window": "60s",
            },
        )
        dep = Deployment(self.orch, "crash", project("bench-crash", {"svc": svc}, [port]), [port])
        with deployed(dep):
            dep.start()
            dep.wait_ports(timeout=60)
            res = measure_crashes(dep, "svc", port, CRASH_ROUNDS, self.args.crash_settle)
        self.results[key] = res
        med, worst, unchanged = res["median_s"], res["max_s"], res["listener_unchanged"]
        notes = f"max {worst * 1e3:.1f} ms; pid from {', '.join(sorted(set(res['pid_source'])))}"
        if unchanged:
            notes += f"; WARNING: {unchanged} kill(s) did not replace the listener"
        self.rows.append(
            Row(
                label,
                f"median {med * 1e3:.1f} ms",
                f"<= {TARGET_CRASH_MEDIAN_S * 1e3:.0f} ms median",
                med <= TARGET_CRASH_MEDIAN_S and not unchanged,
                notes,
            )
        )

    def crash_supervisord(self) -> None:
        key, label = "crash_ready_supervisord", f"(iii) crash -> ready: {self.sv_label}"
        port = self.ports(1)[0]
        sv = Supervisord(self.sv_exe, "sv-crash", {"svc": [str(self.server), str(port)]}, [port])
        try:
            sv.start()
            sv.wait_ports(timeout=60)
            res = measure_crashes(sv, "svc", port, CRASH_ROUNDS, self.args.crash_settle)
        finally:
            sv.stop()
        self.results[key] = res
        self.rows.append(
            Row(
                label,
                f"median {res['median_s'] * 1e3:.1f} ms",
                notes=f"comparison; max {res['max_s'] * 1e3:.1f} ms, autorestart=true, startsecs=0",
            )
        )

    def scenario_floor(self) -> None:
        """What any Python orchestrator pays before its first spawn: the interpreter and its libraries.

        Measured side by side with the scenarios (best of 5 wall times, max RSS), so the start-up
        figures above can be read as floor + orchestrator work.
        """
        python = Path(self.orch.exe[0]).parent / "python"
        if not python.exists():
            python = Path(sys.executable)
        cases = [
            ("python -c pass", "pass"),
            ("python + asyncio, yaml, psutil, sqlite3", "import asyncio, yaml, psutil, sqlite3"),
            (
                "python + asyncio, yaml, psutil, sqlite3, pydantic, typer",
                "import asyncio, yaml, psutil, sqlite3, pydantic, pydantic.main, typer",
            ),
        ]
        probe = (
            "import resource, sys\nsys.stdout.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
        )
        for label, code in cases:
            best, rss_kib = float("inf"), 0
            for _ in range(5):
                t0 = time.perf_counter()
                out = subprocess.run(
                    [str(python), "-c", f"{code}\n{probe}"], capture_output=True, text=True, check=True
                ).stdout
                best = min(best, time.perf_counter() - t0)
                rss_kib = int(out or 0)
            key = "floor_" + str(len(self.results))
            self.results[key] = {"label": label, "wall_s": best, "max_rss_mib": rss_kib / 1024}
            self.rows.append(
                Row(f"(0) floor: {label}", f"{best * 1e3:.0f} ms, {rss_kib / 1024:.1f} MiB", notes="same run")
            )

    def run(self) -> None:
        steps: list[tuple[str, str, Any]] = [
            ("floor", "(0) interpreter floor", self.scenario_floor),
            ("start_50", "(i) start 50 services", lambda: self.scenario_parallel(50, idle=False)),
            ("start_200", "(i) start 200 services", lambda: self.scenario_parallel(200, idle=True)),
            ("chain_20", "(ii) chain", self.scenario_chain),
            ("crash_ready", "(iii) crash -> ready", self.scenario_crash),
        ]
        if self.sv_exe:
            steps.append(("crash_ready", "(iii) crash -> ready: supervisord", self.crash_supervisord))
        only = set(self.args.only or [])
        for key, label, fn in steps:
            if only and key not in only:
                continue
            log(f"{label} ...")
            try:
                fn()
            except Exception as exc:  # one scenario failing must not lose the others
                self.failed(key, label, exc)
            finally:
                kill_leftovers(self.server)


# ---------------------------------------------------------------------------------------------- output


def markdown(machine: dict[str, Any], rows: list[Row], orch: Orchestrator) -> str:
    lines = [
        "# deploy-code start-up benchmark",
        "",
        f"- machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}",
        f"- commit: {machine['commit'] or 'unknown'}, {machine['date']}",
        f"- orchestrator: `{' '.join(orch.exe)}`" + ("" if orch.available else f" (NOT RUN: {orch.why_not})"),
        "",
        "| scenario | result | target | met | notes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r.ok]
        cells = [r.scenario, r.result, r.target, met, r.notes]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def default_deploy_code() -> str:
    beside = Path(sys.executable).parent / "deploy-code"
    if beside.exists():
        return str(beside)
    return shutil.which("deploy-code") or str(beside)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    lo, hi = ephemeral_range()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="5 s idle window instead of 30 s")
    p.add_argument("--deploy-code", default=default_deploy_code(), help="the deploy-code executable")
    p.add_argument(
        "--port-base",
        type=int,
        default=24000,
        help=f"first port to try (default 24000: below the ephemeral range {lo}-{hi}, "
        "so probe sockets never take a service's port)",
    )
    p.add_argument("--period", default="1s", help="readiness probe period for (ii) and (iii)")
    p.add_argument("--idle-period", default="30s", help="readiness probe period for (i) and (iv)")
    p.add_argument("--repeat", type=int, help="runs of each (i) start, median reported (3; --quick: 1)")
    p.add_argument("--crash-settle", type=float, default=0.3, help="seconds between re-ready and next kill")
    p.add_argument(
        "--only",
        action="append",
        choices=["floor", "start_50", "start_200", "chain_20", "crash_ready"],
        help="run only these scenarios (repeatable); start_200 includes (iv)",
    )
    p.add_argument(
        "--supervisord",
        default=shutil.which("supervisord") or "",
        help="also run (i) and (iii) under this supervisord for comparison (default: one on PATH)",
    )
    p.add_argument("--json", type=Path, default=OUT_DIR / "startup.json", help="where to write the JSON")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        log("this benchmark reads /proc and needs Linux")
        return 2
    server = compile_server()
    stale = kill_leftovers(server)
    if stale:
        log(f"killed {stale} trivial_server process(es) left from an earlier run")
    orch = Orchestrator([args.deploy_code])
    orch.check()
    if not orch.available:
        log(f"deploy-code is not runnable, only the baselines will run: {orch.why_not}")
    machine = machine_info()
    bench = Bench(args, orch, server)
    if args.supervisord:
        version = supervisord_version(args.supervisord)
        if version:
            bench.sv_exe, bench.sv_label = args.supervisord, f"supervisord {version}"
        else:
            log(f"--supervisord {args.supervisord}: not runnable, comparison skipped")
    warm_up(server)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: below

    signal.signal(signal.SIGTERM, on_term)
    try:
        bench.run()
    finally:
        kill_leftovers(server)
    report = {
        "machine": machine,
        "orchestrator": {"exe": orch.exe, "available": orch.available, "why_not": orch.why_not},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "targets": {
            "start_200_s": TARGET_200_S,
            "chain_slack": TARGET_CHAIN_SLACK,
            "crash_median_s": TARGET_CRASH_MEDIAN_S,
            "idle_rss_mib": TARGET_IDLE_RSS_MIB,
            "idle_cpu_s_per_30s": TARGET_IDLE_CPU_PER_30S,
        },
        "results": bench.results,
        "table": [vars(r) for r in bench.rows],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(machine, bench.rows, orch))
    log(f"wrote {args.json}")
    # Missed targets are findings, not failures; a scenario that could not run is a failure.
    return 1 if any(r.result == "error" for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
