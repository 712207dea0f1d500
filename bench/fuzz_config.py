"""Coverage-guided fuzzing of the config loader with atheris. Optional, run by hand; CI never runs it.

```sh
.venv/bin/pip install atheris                      # a wheel on x86_64 Linux; needs clang otherwise
.venv/bin/python bench/fuzz_config.py -runs=200000 -max_len=4096 [CORPUS_DIR ...]
.venv/bin/python bench/fuzz_config.py -max_total_time=600 -jobs=2 bench/out/fuzz-corpus
```

Each input is written as a config file's bytes (so ``read_text`` sees it: size, UTF-8, NUL) and
loaded beside an existing ``app.env`` and ``data/``; a file that loads is then planned as ``validate``
plans it. Anything but a Project, a coded ``ConfigError`` or coded planning diagnostics is a crash:
atheris prints the traceback and writes the input as ``crash-*``. The seeds are the bundled example
and a few hand-written files; arguments after the script go to libFuzzer (``-help=1`` lists them).
tests/fuzz/ holds the bounded hypothesis version that CI runs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

try:
    import atheris
except ImportError:  # pragma: no cover - optional tool
    sys.exit("atheris is not installed: .venv/bin/pip install atheris")

with atheris.instrument_imports(include=["deploy_code"]):
    from deploy_code.config import load
    from deploy_code.errors import ConfigError, ErrorCode
    from deploy_code.scheduling import check, effective_capacity
    from deploy_code.units import Resources

ROOT = Path(__file__).resolve().parents[1]
MACHINE = Resources(cpu_cores=8.0, memory_mb=16_384.0, storage_gb=100.0, gpu_count=1)
SEEDS = [
    b"services:\n  a: {command: [x]}\n",
    b"services:\n  kv: {command: [kv, '${ports.main}'], ports: {main: auto}, env_file: app.env}\n"
    b"  api: {command: [api, '${services.kv.host}'], depends_on: {kv: healthy}, working_dir: data}\n",
    b"d: &d {k: v}\nservices:\n  a: {<<: *d, command: [x], timeouts: {start: 5s}}\n",
]


def _workdir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="deploy-code-fuzz-"))
    (work / "app.env").write_text("LEVEL=debug\n")
    (work / "data").mkdir()
    return work


WORK = _workdir()
FILE = WORK / "deploy-code.yaml"


def one_input(data: bytes) -> None:
    """The fuzz target: raise (a crash) unless the outcome is a Project or coded errors."""
    FILE.write_bytes(data)
    try:
        project = load(FILE, environ={})
    except ConfigError as exc:
        if not isinstance(exc.code, ErrorCode) or exc.location is None:
            raise AssertionError(f"uncoded or unlocated: {exc!r}") from exc
        return
    for diag in check(project, effective_capacity(project, MACHINE)):
        if not isinstance(diag.code, ErrorCode):
            raise AssertionError(f"uncoded diagnostic: {diag!r}")


def main() -> None:
    args = sys.argv[1:]
    corpus = [a for a in args if not a.startswith("-")]
    for directory in corpus:  # libFuzzer reads and grows the first corpus directory
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        example = ROOT / "examples" / "quickstart" / "deploy-code.yaml"
        seeds = [*SEEDS, *([example.read_bytes()] if example.exists() else [])]
        for i, seed in enumerate(seeds):
            (path / f"seed-{i}.yaml").write_bytes(seed)
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
