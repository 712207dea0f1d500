"""File -> :class:`Project`: read, parse, validate, report every problem at once.

The stages, each of which must pass before the next runs:

1. read the file (E001 when it is missing, a directory or unreadable; E002 when too large or not UTF-8);
2. parse YAML into data plus positions (:mod:`.yamlread`; E002 at the offending mark);
3. validate the data against the models (:mod:`.model`; every error, E002, located by key);
4. read env_files and check cross-field rules (:mod:`.validate`; E002 / E003 / S004, all at once).

This module does the reading (the only I/O in ``config``). Nothing escapes as a traceback: any
unexpected exception while loading becomes an E002 :class:`ConfigError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from deploy_code.config.diagnostics import cap_diagnostics, dotted, validation_diagnostics
from deploy_code.config.envfile import parse_env_file
from deploy_code.config.model import ProjectSpec
from deploy_code.config.project import Project, state_dir_for
from deploy_code.config.source import SourceMap
from deploy_code.config.validate import inside_dir, validate
from deploy_code.config.yamlread import parse_yaml
from deploy_code.errors import MAX_TEXT, ConfigError, Diagnostic, ErrorCode, Location, clip

__all__ = [
    "DEFAULT_FILENAME",
    "MAX_ENV_FILE_BYTES",
    "MAX_FILE_BYTES",
    "MAX_MESSAGE_CHARS",
    "load",
    "load_text",
    "resolve_state_dir",
]

DEFAULT_FILENAME = "deploy-code.yaml"
MAX_FILE_BYTES = 10 * 2**20  # a deploy file is a few KiB; this only stops accidents and floods
MAX_ENV_FILE_BYTES = 2**20
MAX_MESSAGE_CHARS = MAX_TEXT  # per diagnostic message or hint: a 2 MB unknown key is not echoed whole
DEFAULT_STATE_DIR = ".deploy-code"
_NOT_FOUND_HINT = f"create {DEFAULT_FILENAME} or pass -f FILE"


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def read_text(
    path: Path, *, shown: str, limit: int, missing: ErrorCode = ErrorCode.E001, regular_only: bool = False
) -> str:
    """Read a UTF-8 text file of at most ``limit`` bytes, never more, never blocking on a FIFO.

    Args:
        path: the file.
        shown: the name used in messages and locations.
        limit: the largest accepted size in bytes; nothing past ``limit + 1`` bytes is read.
        missing: the code for a missing or unreadable file (E001 for the config, E002 for env files).
        regular_only: refuse FIFOs, devices and sockets (env files); the config itself may be a pipe
            the user handed over (``-f <(generate)``).

    Raises:
        ConfigError: ``missing`` when the file cannot be opened or is a directory; E002 when it is
            not a regular file (``regular_only``), too large, not UTF-8, or holds a NUL byte.
    """
    hint = _NOT_FOUND_HINT if missing is ErrorCode.E001 else None
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{shown} not found", code=missing, hint=hint) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read {shown}: {why}", code=missing, hint=hint) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{shown} is a directory, not a file", code=missing, hint=hint)
        if regular_only and not stat.S_ISREG(mode):
            raise ConfigError(
                f"{shown} is not a regular file (a FIFO, device or socket)",
                code=ErrorCode.E002,
                location=Location(shown),
            )
        os.set_blocking(fd, True)  # a pipe with a writer is read to its end; without one: EOF
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {shown}: {exc.strerror or exc}", code=missing, hint=hint) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(
            f"{shown}: file too large (more than {limit} bytes)",
            code=ErrorCode.E002,
            location=Location(shown),
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise ConfigError(
            f"{shown}: not valid UTF-8 at byte {exc.start} (0x{data[exc.start]:02x})",
            code=ErrorCode.E002,
            location=Location(shown, line, col),
            hint="save the file as UTF-8",
        ) from None
    nul = data.find(b"\0")
    if nul >= 0:
        line, col = _line_col(data, nul)
        raise ConfigError(
            f"{shown}: NUL byte at byte {nul} (a text file holds none)",
            code=ErrorCode.E002,
            location=Location(shown, line, col),
            hint="save the file as plain UTF-8 text",
        )
    return text


def _read_env_file(
    base_dir: Path, rel: str, at: Location, where: str
) -> tuple[dict[str, str], list[Diagnostic]]:
    try:
        text = read_text(
            base_dir / rel, shown=rel, limit=MAX_ENV_FILE_BYTES, missing=ErrorCode.E002, regular_only=True
        )
    except ConfigError as exc:
        inside = exc.location is not None and exc.location.line is not None
        hint = exc.hint or ("create it or remove env_file" if "not found" in exc.message else None)
        diag = Diagnostic(ErrorCode.E002, f"{where}: {exc.message}", exc.location if inside else at, hint)
        return {}, [diag]
    return parse_env_file(text, rel)


def _env_files(
    spec: ProjectSpec, source: SourceMap, base_dir: Path
) -> tuple[dict[str, Mapping[str, str]], list[Diagnostic]]:
    """Read every service's env_file(s), in order (later files win). Each file is read once."""
    cache: dict[str, dict[str, str]] = {}
    result: dict[str, Mapping[str, str]] = {}
    diags: list[Diagnostic] = []
    for name, svc in spec.services.items():
        files = [svc.env_file] if isinstance(svc.env_file, str) else list(svc.env_file or [])
        merged: dict[str, str] = {}
        for i, rel in enumerate(files):
            path = ("services", name, "env_file", *((i,) if isinstance(svc.env_file, list) else ()))
            at = source.locate(*path)
            if "\0" in rel:  # reported by validate (a path cannot hold NUL)
                continue
            if not inside_dir(base_dir, rel):
                diags.append(
                    Diagnostic(
                        ErrorCode.E002,
                        f"{dotted(path)}: {rel!r} leaves the project directory {base_dir}",
                        at,
                        "use a path inside the directory of the config file",
                    )
                )
                continue
            if rel not in cache:  # problems of a shared file are reported once
                cache[rel], file_diags = _read_env_file(base_dir, rel, at, dotted(path))
                diags.extend(file_diags)
            merged.update(cache[rel])
        result[name] = MappingProxyType(merged)
    return result, diags


def _clip(text: str | None) -> str | None:
    return None if text is None else clip(text)


def _raise(diags: list[Diagnostic]) -> ConfigError:
    # Messages quote the file (keys, names, "services are: ..."): bounded, whatever the file holds.
    diags = [
        Diagnostic(d.code, _clip(d.message) or "", d.location, _clip(d.hint)) for d in cap_diagnostics(diags)
    ]
    codes = {d.code for d in diags}
    first = diags[0]
    code = first.code if len(codes) == 1 else ErrorCode.E002
    message = first.message if len(diags) == 1 else f"{len(diags)} problems; first: {first.message}"
    return ConfigError(message, code=code, location=first.location, hint=first.hint, diagnostics=diags)


def _build(text: str, *, filename: str, path: Path, base_dir: Path, environ: Mapping[str, str]) -> Project:
    data, source = parse_yaml(text, filename)
    if data is None:
        raise ConfigError(
            f"{filename} is empty",
            code=ErrorCode.E002,
            location=Location(filename),
            hint="add a services: mapping (see docs/config.md)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping with a services: key, not {type(data).__name__}",
            code=ErrorCode.E002,
            location=source.locate(),
        )
    try:
        spec = ProjectSpec.model_validate(data)
    except ValidationError as exc:
        raise _raise(validation_diagnostics(exc, data, source)) from None
    env_files, diags = _env_files(spec, source, base_dir)
    diags.extend(validate(spec, source, base_dir=base_dir, environ=environ, env_files=env_files))
    if diags:
        raise _raise(diags)
    return Project(
        spec=spec,
        path=path,
        base_dir=base_dir,
        state_dir=state_dir_for(base_dir, spec.settings.state_dir),
        env_files=MappingProxyType(env_files),
        source=source,
    )


def _guarded(filename: str, build: Any) -> Project:
    try:
        project: Project = build()
    except ConfigError:
        raise
    except Exception as exc:  # never a traceback: whatever slipped through is still "config invalid"
        raise ConfigError(
            f"cannot load {filename}: {type(exc).__name__}: {exc}",
            code=ErrorCode.E002,
            location=Location(filename),
        ) from exc
    return project


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(os.fspath(path)))


def load(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Project:
    """Load and validate a configuration file.

    Args:
        path: the file (relative paths resolve against the current directory).
        environ: variables ``${NAME}`` resolves against; defaults to the process environment.

    Returns:
        The validated project.

    Raises:
        ConfigError: E001 when the file is missing or unreadable; otherwise E002 (or E003/S004 when
            every problem has that code) carrying every diagnostic found.
    """
    shown = os.fspath(path)
    absolute = _absolute(path)
    env = os.environ if environ is None else environ

    def build() -> Project:
        text = read_text(absolute, shown=shown, limit=MAX_FILE_BYTES)
        return _build(text, filename=shown, path=absolute, base_dir=absolute.parent, environ=env)

    return _guarded(shown, build)


def load_text(
    text: str,
    *,
    filename: str = DEFAULT_FILENAME,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Project:
    """Load and validate configuration text as if it were the file ``base_dir / filename``.

    Args:
        text: the YAML document.
        filename: shown in diagnostics.
        base_dir: the directory relative paths resolve against; defaults to the current directory.
        environ: variables ``${NAME}`` resolves against; defaults to the process environment.

    Raises:
        ConfigError: as :func:`load`, without E001.
    """
    base = _absolute(base_dir if base_dir is not None else Path.cwd())
    env = os.environ if environ is None else environ

    def build() -> Project:
        if len(text) > MAX_FILE_BYTES:
            raise ConfigError(
                f"{filename}: file too large (more than {MAX_FILE_BYTES} bytes)",
                code=ErrorCode.E002,
                location=Location(filename),
            )
        return _build(text, filename=filename, path=base / filename, base_dir=base, environ=env)

    return _guarded(filename, build)


def resolve_state_dir(path: str | Path) -> Path:
    """The state directory for a config file, without validating the file.

    ``status`` and ``down`` must find a running project's state even when its file has since been
    broken, so this reads ``settings.state_dir`` if the YAML still parses far enough, and otherwise
    answers the default ``.deploy-code`` beside the file. It never raises for a bad file.
    """
    absolute = _absolute(path)
    setting = DEFAULT_STATE_DIR
    try:
        data, _ = parse_yaml(read_text(absolute, shown=str(path), limit=MAX_FILE_BYTES), str(path))
        settings = data.get("settings") if isinstance(data, dict) else None
        value = settings.get("state_dir") if isinstance(settings, dict) else None
        if isinstance(value, str) and value.strip():
            setting = value
    except Exception:  # a broken file still has the default state dir
        setting = DEFAULT_STATE_DIR
    return state_dir_for(absolute.parent, setting)
