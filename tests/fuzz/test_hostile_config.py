"""Hostile configuration files: each one refused fast, in bounded memory, with a coded error.

Every case is checked twice: in process (``load``: the code, a message that names the problem, a
location, under :data:`SECONDS` and :data:`PEAK_BYTES`), and through the real CLI
(``python -m deploy_code validate -f FILE`` under an address-space limit: non-zero exit, the code on
stderr, no traceback). Then hypothesis mutates a valid file at the byte level and at the data level,
and generates YAML from a small grammar with anchors, aliases, tags and merge keys: whatever comes
in, ``load`` ends in a Project or in a ConfigError with codes and a location, and a Project that
loads holds nothing the OS or the event loop would choke on later (NUL, NaN, 1e400 seconds).

tests/property/test_config_fuzz.py covers random text, token soups and random data; this file adds
the hostile inputs and the mutations. Figures go to ``test-artifacts/fuzz_tally.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from deploy_code.config import Project, load, load_text
from deploy_code.config.loader import MAX_FILE_BYTES, MAX_MESSAGE_CHARS
from deploy_code.config.validate import template_fields
from deploy_code.errors import ConfigError, ErrorCode
from deploy_code.scheduling import check, effective_capacity
from deploy_code.units import MAX_DURATION_S, Resources
from tests.fuzz.conftest import EXAMPLES, Tally, examples
from tests.helpers import PY

SECONDS = 3.0  # per hostile file, in process; each takes well under 0.5 s
PEAK_BYTES = 64 * 2**20  # Python allocations while loading one hostile file (a 50 MB file included)
CLI_ADDRESS_SPACE = 2 * 2**30  # RLIMIT_AS for the CLI child: a bomb would die with MemoryError
CLI_SECONDS = 30.0
FILE = "deploy-code.yaml"
MB50 = 50 * 2**20
PWNED = "PWNED"  # what the python-tag cases would create if a tag ever ran


# -- the hostile files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile file: its bytes (or a writer for big ones), what must come out, files around it."""

    id: str
    body: bytes | Callable[[Path], None]
    code: ErrorCode
    needle: str  # part of the error text (any diagnostic)
    setup: Callable[[Path], None] | None = None  # gets the project directory; its parent is "outside"


def svc(fields: str, name: str = "a") -> bytes:
    """A one-service file whose service has ``command: [x]`` plus ``fields`` (flow style)."""
    extra = f", {fields}" if fields else ""
    return f"services:\n  {name}: {{command: [x]{extra}}}\n".encode()


def _laughs(levels: int, mapping: bool) -> bytes:
    if mapping:
        lines = ["l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(9)) + "}"]
        for n in range(1, levels):
            lines.append(f"l{n}: &l{n} {{" + ", ".join(f"k{i}: *l{n - 1}" for i in range(9)) + "}")
    else:
        lines = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
        for n in range(1, levels):
            lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return ("\n".join(lines) + f"\nservices: {{a: {{command: *l{levels - 1}}}}}\n").encode()


def _write_repeated(chunk: bytes, size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
            f.write(chunk[: size % len(chunk)])

    return write


def _one_line(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as f:
            f.write(b"x: ")
            block = b"a" * 2**20
            for _ in range(size // len(block)):
                f.write(block)

    return write


def _outside(name: str, text: str = "SECRET=1\n") -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        (project.parent / name).write_text(text)

    return setup


def _inside(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        (project / name).write_bytes(data)

    return setup


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        (project.parent / "outside").mkdir(exist_ok=True)
        (project / name).symlink_to(target if target.startswith("/") else project.parent / target)

    return setup


def _fifo(project: Path) -> None:
    os.mkfifo(project / "pipe.env")


def _directory(project: Path) -> None:
    (project / "confdir").mkdir()


def _with_ok_env(project: Path) -> None:
    (project / "ok.env").write_text("A=1\n")
    (project.parent / "secret.env").write_text("SECRET=1\n")


BAD_NAMES = [
    "../evil",
    "a/b",
    "..",
    ".hidden",
    "-rf",
    "a\\b",
    "x" * 64,
    "a b",
    "a\nb",
    "",
    "a\u202eb",
    "\uff41",
]
LEAVES = "leaves the project directory"
TOO_LONG_DURATION = "is not a number of seconds up to 10 years"
DEEP = 10_000

CASES: list[Case] = [
    # YAML alias bombs: refused while counting, never expanded.
    Case("billion-laughs-lists", _laughs(9, mapping=False), ErrorCode.E002, "expands to more than"),
    Case("billion-laughs-maps", _laughs(9, mapping=True), ErrorCode.E002, "expands to more than"),
    Case(
        "alias-flood",
        b"a: &a x\nb: [" + b", ".join([b"*a"] * 1000) + b"]\n" + svc(""),
        ErrorCode.E002,
        "too many aliases",
    ),
    Case(
        "merge-key-bomb",
        b"d: &d {k: v}\nb: {<<: [" + b", ".join([b"*d"] * 500) + b"]}\n" + svc(""),
        ErrorCode.E002,
        "too many aliases",
    ),
    Case("recursive-alias", b"a: &a [1, *a]\n" + svc(""), ErrorCode.E002, "unfinished anchor"),
    # Python-object and other non-plain tags: refused by name, never constructed.
    Case("python-apply-root", f"!!python/object/apply:os.system ['touch {PWNED}']\n".encode(), ErrorCode.E002, "unsupported tag"),
    Case("python-apply", f"services: !!python/object/apply:os.system ['touch {PWNED}']\n".encode(), ErrorCode.E002, "unsupported tag"),
    Case("python-new", f"x: !!python/object/new:subprocess.Popen [[touch, {PWNED}]]\n".encode() + svc(""), ErrorCode.E002, "unsupported tag"),
    Case("python-name", svc("stop_signal: !!python/name:os.system ''"), ErrorCode.E002, "unsupported tag"),
    Case("python-module", b"x: !!python/module:os ''\n" + svc(""), ErrorCode.E002, "unsupported tag"),
    Case("verbatim-tag", f"x: !<tag:yaml.org,2002:python/object/apply:os.system> [touch {PWNED}]\n".encode() + svc(""), ErrorCode.E002, "unsupported tag"),
    Case("tag-directive", f"%TAG !! tag:yaml.org,2002:python/\n---\nx: !!object/apply:os.system [touch {PWNED}]\n".encode(), ErrorCode.E002, "unsupported tag"),
    Case("custom-tag", b"x: !include /etc/passwd\n" + svc(""), ErrorCode.E002, "unsupported tag"),
    Case("set-tag", b"x: !!set {a, b}\n" + svc(""), ErrorCode.E002, "unsupported tag"),
    # Not UTF-8, or bytes no text file has: E002 at the byte.
    Case("byte-ff", b"services:\n  a: {command: [x\xff]}\n", ErrorCode.E002, "not valid UTF-8 at byte 27 (0xff)"),
    Case("latin-1", b"services:\n  caf\xe9: {command: [x]}\n", ErrorCode.E002, "not valid UTF-8 at byte 15 (0xe9)"),
    Case("utf-16", "services: {a: {command: [x]}}\n".encode("utf-16"), ErrorCode.E002, "not valid UTF-8 at byte 0"),
    Case("overlong", b"x: \xc0\xaf\n" + svc(""), ErrorCode.E002, "not valid UTF-8 at byte 3 (0xc0)"),
    Case("surrogate", b"x: \xed\xa0\x80\n" + svc(""), ErrorCode.E002, "not valid UTF-8 at byte 3 (0xed)"),
    Case("truncated", svc("") + b"x: \xe2\x82", ErrorCode.E002, "not valid UTF-8 at byte"),
    Case("nul-byte", b"services:\n  a: {command: [x\x00]}\n", ErrorCode.E002, "NUL byte at byte 27"),
    Case("control-char", b"x: a\x07b\n" + svc(""), ErrorCode.E002, "control characters"),
    # Size: refused before reading it all.
    Case("50mb-of-comments", _write_repeated(b"# padding padding\n", MB50), ErrorCode.E002, "file too large"),
    Case("50mb-one-line", _one_line(MB50), ErrorCode.E002, "file too large"),
    Case("limit-plus-one", _write_repeated(b"#\n", MAX_FILE_BYTES + 1), ErrorCode.E002, "file too large"),
    Case("2mb-unknown-key", b"? " + b"k" * 2_000_000 + b"\n: 1\n" + svc(""), ErrorCode.E002, "unknown key"),
    Case(
        "1000-broken-services",
        b"services:\n" + b"".join(b"  s%d: {command: [x], bogus: 1}\n" % i for i in range(1000)),
        ErrorCode.E002,
        "more problems not shown",
    ),
    # 10,000 levels of nesting: E002, never RecursionError.
    Case("flow-lists", b"[" * DEEP + b"]" * DEEP, ErrorCode.E002, "nesting"),
    Case("flow-maps", b"{a: " * DEEP + b"1" + b"}" * DEEP, ErrorCode.E002, "nest"),
    Case("block-lists", b"- " * DEEP + b"x\n", ErrorCode.E002, "nesting"),
    Case("block-maps", "".join(" " * i + "a:\n" for i in range(2000)).encode() + b" " * 2000 + b"1\n", ErrorCode.E002, "nesting"),
    Case("unclosed", b"[" * DEEP, ErrorCode.E002, "nest"),
    Case("deep-command", b"services: {a: {command: " + b"[" * DEEP + b"]" * DEEP + b"}}\n", ErrorCode.E002, "nest"),
    Case("regex-groups", svc("health: {readiness: {log_line: {pattern: '" + "(" * DEEP + ")" * DEEP + "'}}}"), ErrorCode.E002, "invalid regular expression"),
    # Paths that leave the project directory.
    Case("working-dir-dotdot", svc("working_dir: ../.."), ErrorCode.E002, LEAVES),
    Case("working-dir-absolute", svc("working_dir: /etc"), ErrorCode.E002, LEAVES),
    Case("working-dir-sneaky", svc("working_dir: sub/../../outside"), ErrorCode.E002, LEAVES),
    Case("working-dir-symlink", svc("working_dir: link"), ErrorCode.E002, LEAVES, _symlink("link", "outside")),
    Case("env-file-dotdot", svc("env_file: ../secret.env"), ErrorCode.E002, LEAVES, _outside("secret.env")),
    Case("env-file-absolute", svc("env_file: /etc/passwd"), ErrorCode.E002, LEAVES),
    Case("env-file-dev-zero", svc("env_file: /dev/zero"), ErrorCode.E002, LEAVES),
    Case("env-file-symlink", svc("env_file: env"), ErrorCode.E002, LEAVES, _symlink("env", "/etc/hostname")),
    Case("env-file-list", svc("env_file: [ok.env, ../secret.env]"), ErrorCode.E002, LEAVES, _with_ok_env),
    # Env files that are not text files.
    Case("env-file-fifo", svc("env_file: pipe.env"), ErrorCode.E002, "not a regular file", _fifo),
    Case("env-file-directory", svc("env_file: confdir"), ErrorCode.E002, "is a directory", _directory),
    Case("env-file-nul", svc("env_file: nul.env"), ErrorCode.E002, "NUL byte at byte 6", _inside("nul.env", b"A=1\nB=\x00\n")),
    Case("env-file-huge", svc("env_file: big.env"), ErrorCode.E002, "file too large", _inside("big.env", b"A=1\n" * (2**18 + 1))),
    Case("env-file-latin-1", svc("env_file: l1.env"), ErrorCode.E002, "not valid UTF-8", _inside("l1.env", b"A=caf\xe9\n")),
    # Names become log file names (state_dir/logs/NAME.N.log): only [A-Za-z0-9][A-Za-z0-9_.-]{0,62}.
    *(
        Case(f"service-name-{i}", f"services:\n  {json.dumps(n)}: {{command: [x]}}\n".encode(), ErrorCode.E002, "invalid name")
        for i, n in enumerate(BAD_NAMES)
    ),
    Case("project-name", b"name: ../x\n" + svc(""), ErrorCode.E002, "name"),
    Case("depends-on-traversal", svc("depends_on: [../etc]"), ErrorCode.E002, "unknown service"),
    # Numbers the event loop, timers and sockets cannot take.
    Case("duration-nan", svc("timeouts: {start: .nan}"), ErrorCode.E002, TOO_LONG_DURATION),
    Case("duration-inf", svc("timeouts: {stop: .inf}"), ErrorCode.E002, TOO_LONG_DURATION),
    Case("duration-1e400", svc("restart: {backoff: {initial: 1.0e+400}}"), ErrorCode.E002, TOO_LONG_DURATION),
    Case("duration-10e400", svc("health: {readiness: {exec: {command: [x]}, period: 1" + "0" * 400 + "}}"), ErrorCode.E002, TOO_LONG_DURATION),
    Case("duration-string", svc("timeouts: {start: " + "9" * 400 + "h}"), ErrorCode.E002, TOO_LONG_DURATION),
    Case("size-inf", b"settings: {log_max_size: .inf}\n" + svc(""), ErrorCode.E002, "is not a number of bytes"),
    Case("size-huge", b"settings: {log_max_size: 1" + b"0" * 400 + b"}\n" + svc(""), ErrorCode.E002, "is not a number of bytes"),
    Case("priority-huge", svc("priority: 1" + "0" * 400), ErrorCode.E002, "priority"),
    Case("cpu-1e308", svc("resources: {cpu_cores: 1.0e+308}"), ErrorCode.E002, "less than or equal to"),
    Case("gpu-10e400", svc("resources: {gpu_count: 1" + "0" * 400 + "}"), ErrorCode.E002, "less than or equal to"),
    Case("capacity-1e308", b"settings: {capacity: {cpu_cores: 1.0e+308}}\n" + svc(""), ErrorCode.E002, "less than or equal to"),
    Case("headroom-1e308", b"settings: {headroom: {memory_mb: 1.0e+308}}\n" + svc(""), ErrorCode.E002, "less than or equal to"),
    Case("pool-10e400", b"pools: {p: {gpu_count: 1" + b"0" * 400 + b"}}\n" + svc("pool: p"), ErrorCode.E002, "less than or equal to"),
    Case("int-5000-digits", svc("replicas: " + "9" * 5000), ErrorCode.E002, "invalid value"),
    # Text the OS receives: no NUL, no '=' in a variable name.
    Case("argv-nul", b'services:\n  a: {command: [x, "a\\0b"]}\n', ErrorCode.E002, "NUL character"),
    Case("shell-nul", b'services:\n  a: {command: "echo \\0", shell: true}\n', ErrorCode.E002, "NUL character"),
    Case("env-name-equals", svc('env: {"A=B": "1"}'), ErrorCode.E002, "invalid variable name"),
    Case("env-name-empty", svc('env: {"": "1"}'), ErrorCode.E002, "invalid variable name"),
    Case("env-value-nul", svc('env: {A: "x\\0"}'), ErrorCode.E002, "NUL character"),
    Case("probe-argv-nul", svc('health: {liveness: {exec: {command: ["x\\0"]}}}'), ErrorCode.E002, "NUL character"),
    Case("working-dir-nul", svc('working_dir: "a\\0b"'), ErrorCode.E002, "NUL character"),
    Case("env-file-name-nul", svc('env_file: "a\\0b"'), ErrorCode.E002, "NUL character"),
    Case("host-nul", b'settings: {host: "127.0.0.1\\0"}\n' + svc(""), ErrorCode.E002, "NUL character"),
    # Interpolation floods.
    Case("dollar-brace-flood", b"services:\n  a: {command: [x, '" + b"${" * DEEP + b"']}\n", ErrorCode.E003, "unterminated reference"),
    Case("nested-default", svc("env: {A: '${B:-${C}}'}"), ErrorCode.E003, "services.a.env.A"),
    Case("service-ref-traversal", svc("env: {A: '${services.../etc.host}'}"), ErrorCode.E003, "services.a.env.A"),
    # Structure.
    Case("two-documents", svc("") + b"---\n" + svc(""), ErrorCode.E002, "only one YAML document"),
    Case("duplicate-key", b"services: {a: {command: [x]}, a: {command: [y]}}\n", ErrorCode.E002, "duplicate key"),
    Case("complex-key", b"? [a]\n: 1\n" + svc(""), ErrorCode.E002, "mapping keys must be plain"),
    Case("empty", b"", ErrorCode.E002, "is empty"),
    Case("bom-only", b"\xef\xbb\xbf", ErrorCode.E002, "is empty"),
    Case("top-level-list", b"- services\n", ErrorCode.E002, "top level must be a mapping"),
]  # fmt: skip


def _write_case(case: Case, root: Path) -> Path:
    project = root / "proj"
    project.mkdir()
    if case.setup is not None:
        case.setup(project)
    path = project / FILE
    if isinstance(case.body, bytes):
        path.write_bytes(case.body)
    else:
        case.body(path)
    return path


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    """Fails the block if it runs longer than :data:`SECONDS` or allocates more than :data:`PEAK_BYTES`."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < SECONDS, f"took {elapsed:.2f} s"
    assert peak < PEAK_BYTES, f"allocated {peak / 2**20:.0f} MiB"


def _assert_coded(exc: ConfigError) -> None:
    """Codes everywhere, a location on the error, bounded text, plain-data form works."""
    assert isinstance(exc.code, ErrorCode)
    assert exc.location is not None
    assert exc.diagnostics and all(isinstance(d.code, ErrorCode) for d in exc.diagnostics)
    assert all(len(d.message) <= 2 * MAX_MESSAGE_CHARS for d in exc.diagnostics)
    str(exc)
    exc.to_dict()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file_in_process(case: Case, tmp_path: Path, tally: Tally) -> None:
    path = _write_case(case, tmp_path)
    with _bounded(), pytest.raises(ConfigError) as info:
        load(path, environ={})
    exc = info.value
    _assert_coded(exc)
    assert exc.code is case.code, str(exc)[:2000]
    assert case.needle in str(exc), str(exc)[:2000]
    assert len(str(exc)) < 200_000
    assert not (path.parent / PWNED).exists()
    tally.record("hostile files, in process", str(exc.code))


def _cli(path: Path) -> tuple[Path, subprocess.CompletedProcess[str], float]:
    # `python -m deploy_code validate -f FILE`, with an address-space limit set first.
    limited = (
        "import resource, runpy, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({CLI_ADDRESS_SPACE}, {CLI_ADDRESS_SPACE}))\n"
        "sys.argv = ['deploy-code', *sys.argv[1:]]\n"
        "runpy.run_module('deploy_code', run_name='__main__', alter_sys=True)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [PY, "-c", limited, "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=CLI_SECONDS,
        cwd=path.parent,
        stdin=subprocess.DEVNULL,
    )
    return path, proc, time.perf_counter() - started


# One or two of each kind by default (each CLI start costs ~0.4 s of CPU); every case in a long run.
CLI_SAMPLE = {
    "billion-laughs-maps", "merge-key-bomb", "python-apply", "tag-directive", "byte-ff", "utf-16",
    "nul-byte", "50mb-of-comments", "2mb-unknown-key", "1000-broken-services", "flow-lists",
    "block-maps", "regex-groups", "working-dir-symlink", "env-file-dotdot", "env-file-fifo",
    "service-name-0", "duration-nan", "priority-huge", "cpu-1e308", "gpu-10e400", "capacity-1e308", "argv-nul", "env-name-equals",
    "dollar-brace-flood", "two-documents",
}  # fmt: skip
CLI_CASES = CASES if EXAMPLES else [c for c in CASES if c.id in CLI_SAMPLE]


def test_hostile_files_through_the_cli(tmp_path: Path, tally: Tally) -> None:
    """Hostile files through the real CLI (4 at a time): a code on stderr, never a traceback.

    The sample by default, all of :data:`CASES` when DEPLOY_CODE_FUZZ_EXAMPLES is set.
    """
    assert len(CLI_CASES) >= len(CLI_SAMPLE)
    paths = []
    for i, case in enumerate(CLI_CASES):
        root = tmp_path / f"{i:03d}"
        root.mkdir()
        paths.append(_write_case(case, root))
    failures = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for case, (path, proc, elapsed) in zip(CLI_CASES, pool.map(_cli, paths), strict=True):
            err = proc.stderr
            problems = [
                *(["exit status 0"] if proc.returncode == 0 else []),
                *(["traceback"] if "Traceback" in err or "Traceback" in proc.stdout else []),
                *([f"no {case.code} on stderr"] if str(case.code) not in err else []),
                *([f"{len(err)} characters on stderr"] if len(err) > 200_000 else []),
                *([f"took {elapsed:.1f} s"] if elapsed > CLI_SECONDS / 2 else []),
                *(["a tag ran"] if (path.parent / PWNED).exists() else []),
            ]
            if problems:
                failures.append(f"{case.id}: {', '.join(problems)}\n{err[-1500:]}")
            else:
                tally.record("hostile files, CLI", str(case.code))
    assert not failures, "\n\n".join(failures)


# -- generated inputs ------------------------------------------------------------------------------

VALID = """\
settings:
  port_range: 30000-30100
  log_max_size: 1MiB
services:
  kv:
    command: [kv, --port, "${ports.main}"]
    ports: {main: auto}
    env_file: app.env
    working_dir: data
    restart: &restart {policy: on-failure, backoff: {initial: 100ms, max: 5s}}
    timeouts: &timeouts {start: 10s, stop: 5s}
    health:
      readiness: {tcp: {port: main}, period: 1s}
      liveness: {exec: {command: [kv-check, "${ports.main}"]}, period: 5s, timeout: 1s}
  api:
    command: [api, "${services.kv.host}:${services.kv.ports.main}", "${LEVEL:-info}"]
    replicas: 2
    ports: {http: auto}
    env: {MODE: prod, RETRIES: 3}
    depends_on: {kv: healthy}
    priority: 5
    restart: *restart
    timeouts: {<<: *timeouts, stop: 3s}
    health:
      readiness: {http: {port: http, path: /ready}, period: 500ms}
  web:
    command: "web ${replica} $$HOME"
    shell: true
    ports: {http: 8080}
    depends_on: [api]
    health:
      startup: {log_line: {pattern: "listening on \\\\d+"}}
"""

SNIPPETS = [
    b"\xff", b"\x00", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xef\xbb\xbf", b"\t", b"\r", b"\x07",
    b"*defaults", b"&a ", b"*a", b"<<: *defaults", b"!!python/object/apply:os.system ", b"!!binary ",
    b"!x ", b"%TAG ! tag:x/\n", b"---\n", b"...\n", b"? ", b"[" * 100, b"{" * 100, b"- " * 100,
    b"../..", b"/etc/passwd", b"${", b"$${", b"${ports.", b"${services.kv.", b".nan", b".inf",
    b"1e400", b"9" * 30, b"-1", b"0", b"\\0", b'"\\0"', b"'", b'"', b"#", b"|", b">", b": ", b",",
]  # fmt: skip

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("snippet"), st.integers(0, 10**6), st.sampled_from(SNIPPETS)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("repeat"), st.integers(0, 10**6), st.integers(1, 40)),
)


def _mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        at = op[1] % (len(buf) + 1)
        if op[0] == "flip" and at < len(buf):
            buf[at] ^= 1 << op[2]
        elif op[0] in ("insert", "snippet"):
            buf[at:at] = op[2]
        elif op[0] == "delete":
            del buf[at : at + op[2]]
        elif op[0] == "repeat":
            buf[at:at] = buf[at : at + op[2]] * 20
    return bytes(buf)


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project directory where VALID is valid (its env_file and working_dir exist)."""
    root = tmp_path_factory.mktemp("fuzz-project")
    (root / "app.env").write_text("LEVEL=debug\nSECRET='a b'\n")
    (root / "data").mkdir()
    return root


def _sane(project: Project) -> None:
    """What later layers rely on: finite numbers in range, no NUL in what reaches the OS."""

    def walk(value: Any, where: str) -> None:
        if isinstance(value, BaseModel):
            for key, item in value:
                walk(item, f"{where}.{key}")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key, f"{where}[key]")
                walk(item, f"{where}.{key}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, float):
            assert math.isfinite(value), f"{where} = {value!r}"
        elif isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= 2**63, f"{where} is {len(str(value))} digits long"

    walk(project.spec, "spec")
    for name, svc_spec in project.services.items():
        for path, text in template_fields(name, svc_spec):
            assert "\0" not in text, path
        for key in svc_spec.env:
            assert key and "=" not in key and "\0" not in key, key
        assert "\0" not in (svc_spec.working_dir or "")
        for seconds in (svc_spec.timeouts.start, svc_spec.timeouts.stop, svc_spec.restart.backoff.max):
            assert seconds <= MAX_DURATION_S


MACHINE = Resources(cpu_cores=8.0, memory_mb=16_384.0, storage_gb=100.0, gpu_count=1)


def _outcome(load_it: Callable[[], Project]) -> str:
    """Load, then plan as ``validate`` does; anything but a Project or coded errors fails the test."""
    try:
        project = load_it()
    except ConfigError as exc:
        _assert_coded(exc)
        return str(exc.code)
    _sane(project)
    diags = check(project, effective_capacity(project, MACHINE))
    assert all(isinstance(d.code, ErrorCode) for d in diags)
    return str(diags[0].code) if diags else "accepted"


def fuzz(default: int) -> settings:
    """hypothesis settings: ``default`` examples (or DEPLOY_CODE_FUZZ_EXAMPLES), no deadline."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )


def test_the_valid_file_is_valid(project_dir: Path) -> None:
    project = load_text(VALID, base_dir=project_dir, environ={})
    _sane(project)


@fuzz(250)
@given(ops=st.lists(_mutation, min_size=1, max_size=6))
def test_byte_mutations_of_a_valid_file(ops: list[tuple[Any, ...]], project_dir: Path, tally: Tally) -> None:
    data = _mutate(VALID.encode(), ops)
    path = project_dir / FILE
    path.write_bytes(data)
    tally.record("byte mutations", _outcome(lambda: load(path, environ={})))


ODD_VALUES: list[Any] = [
    math.nan, math.inf, -math.inf, 1e308, -1e308, 10**40, -(10**40), 2**63, 2**53 + 1, -1, 0, 1,
    "", " ", "\0", "a\0b", "../..", "/etc/passwd", "/dev/zero", "${", "${ports.nope}",
    "${services.kv.ports.main}", "$$", "\u202e", "x" * 5000, "A=B", "auto", "1e400s", ".nan", "1h",
    "100ms", "-5s", "9" * 40, True, False, None, [], {}, [[[[[]]]]], {"a": {"b": {"c": {}}}}, ["x\0"],
    {"A=B": "1"}, {"": ""}, {"\0": "x"}, "SIGKILL", "healthy", "rolling",
]  # fmt: skip
HOSTILE_VALUES = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _replace(doc: Any, path: tuple[Any, ...], value: Any, add_key: str | None) -> Any:
    if not path:
        if add_key is not None and isinstance(doc, dict):
            return {**doc, add_key: value}
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, value, add_key)}
    copy = list(doc)
    copy[head] = _replace(copy[head], rest, value, add_key)
    return copy


_DOC = yaml.safe_load(VALID)
_ALL_PATHS = list(_paths(_DOC))


@fuzz(300)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(_ALL_PATHS),
            HOSTILE_VALUES,
            st.one_of(
                st.none(), st.sampled_from(["working_dir", "env_file", "priority", "env", "timeouts", "x"])
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_hostile_values_anywhere_in_a_valid_file(
    edits: list[tuple[tuple[Any, ...], Any, str | None]], project_dir: Path, tally: Tally
) -> None:
    doc = _DOC
    for path, value, add_key in edits:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier edit moved the path
            doc = _replace(doc, path, value, add_key)
    try:
        text = yaml.safe_dump(doc, allow_unicode=True, width=10**9)
    except (yaml.YAMLError, ValueError):
        assume(False)
    tally.record(
        "hostile values in a valid file", _outcome(lambda: load_text(text, base_dir=project_dir, environ={}))
    )


# A little YAML grammar: flow collections, anchors, aliases (often unknown or unfinished), tags,
# merge keys and awkward scalars, so the builder's bookkeeping is exercised, not just the parser's.
_SCALARS = st.sampled_from(
    [
        "x", "auto", "1", "-1", "0x1F", "0o17", "1_000", "1e400", ".nan", "-.inf", "~", "null", "yes", "no",
        "2001-12-14t21:59:43.10-05:00", "2001-02-30", '"\\0"', '"\\ud800"', '"\\x07"', "'it''s'", '"${"',
        "'${ports.main}'", "!!binary aGVsbG8=", "!!binary '***'", "!!int x", "!!float y", "!!str 1",
        "!!bool maybe", "!!timestamp 2001", "!!null ''", "!foo x", "!!python/none ''", '"' + "9" * 5000 + '"',
        "9" * 5000,
    ]
)  # fmt: skip
_TAGS = st.sampled_from(["", "", "", "!!map ", "!!seq ", "!!set ", "!!omap ", "! ", "!x ", "!!python/dict "])


def _node(depth: int) -> st.SearchStrategy[str]:
    anchor = st.one_of(st.just(""), st.sampled_from(["&a ", "&b ", "&c "]))
    alias = st.sampled_from(["*a", "*b", "*c", "*zz"])
    if depth == 0:
        return st.one_of(_SCALARS, alias)
    child = _node(depth - 1)
    seq = st.builds(
        lambda t, a, items: f"{t}{a}[{', '.join(items)}]", _TAGS, anchor, st.lists(child, max_size=4)
    )
    key = st.one_of(st.sampled_from(["services", "command", "a", "<<", "? x", "1", "null"]), _SCALARS)
    pairs = st.lists(st.tuples(key, child), max_size=4)
    mapping = st.builds(
        lambda t, a, ps: f"{t}{a}{{{', '.join(f'{k}: {v}' for k, v in ps)}}}", _TAGS, anchor, pairs
    )
    return st.one_of(_SCALARS, alias, seq, mapping)


@fuzz(250)
@given(
    node=_node(4),
    where=st.sampled_from(
        [
            "{node}\n",
            "services: {node}\n",
            "services: {{a: {{command: {node}}}}}\n",
            "services: {{a: {{command: [x], env: {node}}}}}\n",
            "x: &a {{k: v}}\nservices: {{a: {{<<: {node}, command: [x]}}}}\n",
            "settings: {node}\nservices: {{a: {{command: [x]}}}}\n",
        ]
    ),
)
def test_yaml_grammar(node: str, where: str, tally: Tally) -> None:
    text = where.format(node=node)
    tally.record("YAML grammar", _outcome(lambda: load_text(text, base_dir=Path("/nonexistent"), environ={})))


def test_messages_quote_the_file_within_bounds() -> None:
    """A 2 MB key is named, not echoed whole (MAX_MESSAGE_CHARS per message and hint)."""
    with pytest.raises(ConfigError) as info:
        load_text("services:\n  a: {command: [x], depends_on: [" + "k" * 2_000_000 + "]}\n", environ={})
    assert info.value.code is ErrorCode.E002
    assert all(len(d.message) <= MAX_MESSAGE_CHARS for d in info.value.diagnostics)
    assert re.search(r"\(\d+ characters in all\)", info.value.message)
