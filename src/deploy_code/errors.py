"""Errors are values with stable codes.

The tree::

    DeployCodeError            every error we raise on purpose; carries code, message, location, hint
    ├── ConfigError            E001 config not found, E002 config invalid, E003 interpolation failed
    ├── PlacementError         E004 insufficient resources
    ├── StartError             E005 service start failed
    ├── HealthError            E006 health check failed
    ├── DependencyError        E007 dependency failed
    ├── TimeoutExceeded        E008 timeout exceeded
    ├── RollbackError          E009 rollback failed
    ├── NetworkError           E010 network error
    └── SupervisionError       S001 service not found, S002 orchestrator not running,
                               S003 orchestrator already running, S004 port conflict,
                               S005 illegal state transition, S006 state directory unusable,
                               S007 API access denied, S008 not supported, S009 internal error

Codes are never renumbered or reused; ``tests/unit/test_errors.py`` pins the table. The CLI prints
errors with :func:`format_diagnostic`; the API returns them as problem+json.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DependencyError",
    "DeployCodeError",
    "Diagnostic",
    "ErrorCode",
    "HealthError",
    "Location",
    "NetworkError",
    "PlacementError",
    "RollbackError",
    "StartError",
    "SupervisionError",
    "TimeoutExceeded",
    "format_diagnostic",
]


class ErrorCode(enum.StrEnum):
    """Stable error codes. Add new ones at the end of their series; never renumber."""

    E001 = "E001"
    E002 = "E002"
    E003 = "E003"
    E004 = "E004"
    E005 = "E005"
    E006 = "E006"
    E007 = "E007"
    E008 = "E008"
    E009 = "E009"
    E010 = "E010"
    S001 = "S001"
    S002 = "S002"
    S003 = "S003"
    S004 = "S004"
    S005 = "S005"
    S006 = "S006"
    S007 = "S007"
    S008 = "S008"
    S009 = "S009"

    @property
    def summary(self) -> str:
        """One-line meaning of the code, as documented in docs/errors.md."""
        return _TITLES[self]


_TITLES: dict[ErrorCode, str] = {
    ErrorCode.E001: "config not found",
    ErrorCode.E002: "config invalid",
    ErrorCode.E003: "interpolation failed",
    ErrorCode.E004: "insufficient resources",
    ErrorCode.E005: "service start failed",
    ErrorCode.E006: "health check failed",
    ErrorCode.E007: "dependency failed",
    ErrorCode.E008: "timeout exceeded",
    ErrorCode.E009: "rollback failed",
    ErrorCode.E010: "network error",
    ErrorCode.S001: "service not found",
    ErrorCode.S002: "orchestrator not running",
    ErrorCode.S003: "orchestrator already running",
    ErrorCode.S004: "port conflict",
    ErrorCode.S005: "illegal state transition",
    ErrorCode.S006: "state directory unusable",
    ErrorCode.S007: "API access denied",
    ErrorCode.S008: "not supported",
    ErrorCode.S009: "internal error",
}


MAX_TEXT = 1_000  # characters of a diagnostic's message or hint; longer ones are cut


def clip(text: str) -> str:
    """``text`` when it fits ``MAX_TEXT``, else its start and ``... (N characters in all)``."""
    if len(text) <= MAX_TEXT:
        return text
    return f"{text[: MAX_TEXT - 40]}... ({len(text)} characters in all)"


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a file. ``line`` and ``column`` are 1-based; either may be unknown."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found, with its code, where it is, and how to fix it."""

    code: ErrorCode
    message: str
    location: Location | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        # Bounded whatever the input: a message quoting a 20 MB name must not become a 20 MB reply.
        if len(self.message) > MAX_TEXT:
            object.__setattr__(self, "message", clip(self.message))
        if self.hint is not None and len(self.hint) > MAX_TEXT:
            object.__setattr__(self, "hint", clip(self.hint))

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for JSON output."""
        loc = self.location
        return {
            "code": str(self.code),
            "message": self.message,
            "location": None if loc is None else {"file": loc.file, "line": loc.line, "column": loc.column},
            "hint": self.hint,
        }


def format_diagnostic(diag: Diagnostic) -> str:
    """Render ``diag`` as ``file:line:col: E002 message (hint: ...)``."""
    prefix = f"{diag.location}: " if diag.location is not None else ""
    text = f"{prefix}{diag.code} {diag.message}"
    if diag.hint:
        text += f"\n    hint: {diag.hint}"
    return text


class DeployCodeError(Exception):
    """Base of every error raised on purpose. Holds one or more diagnostics.

    Args:
        code: the stable code of the first (main) diagnostic.
        message: what went wrong, in one sentence.
        location: where, when a file position is known.
        hint: how to fix it.
        diagnostics: further diagnostics reported together (validation reports them all).
    """

    default_code: ErrorCode = ErrorCode.E002

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        location: Location | None = None,
        hint: str | None = None,
        diagnostics: Iterable[Diagnostic] = (),
    ) -> None:
        message = clip(message)
        hint = None if hint is None else clip(hint)
        super().__init__(message)
        self.code: ErrorCode = code if code is not None else self.default_code
        self.message = message
        self.location = location
        self.hint = hint
        extra = tuple(diagnostics)
        self.diagnostics: tuple[Diagnostic, ...] = extra or (Diagnostic(self.code, message, location, hint),)

    @classmethod
    def from_diagnostics(cls, diagnostics: Iterable[Diagnostic]) -> DeployCodeError:
        """Build one error that reports every diagnostic; the first one names the error."""
        diags = tuple(diagnostics)
        if not diags:
            raise ValueError("from_diagnostics needs at least one diagnostic")
        first = diags[0]
        return cls(
            first.message, code=first.code, location=first.location, hint=first.hint, diagnostics=diags
        )

    def __str__(self) -> str:
        return "\n".join(format_diagnostic(d) for d in self.diagnostics)

    def to_dict(self) -> dict[str, object]:
        """Problem+json-style body."""
        return {
            "code": str(self.code),
            "title": self.code.summary,
            "detail": self.message,
            "hint": self.hint,
            "errors": [d.to_dict() for d in self.diagnostics],
        }


class ConfigError(DeployCodeError):
    """The configuration file is missing (E001), invalid (E002) or cannot be interpolated (E003)."""

    default_code = ErrorCode.E002


class PlacementError(DeployCodeError):
    """A request does not fit the machine, a pool, or the free capacity (E004)."""

    default_code = ErrorCode.E004


class StartError(DeployCodeError):
    """A replica's process could not be started (E005)."""

    default_code = ErrorCode.E005


class HealthError(DeployCodeError):
    """A replica did not pass its health checks (E006)."""

    default_code = ErrorCode.E006


class DependencyError(DeployCodeError):
    """A dependency failed, so a dependant was not started (E007)."""

    default_code = ErrorCode.E007


class TimeoutExceeded(DeployCodeError):
    """An operation ran past its timeout (E008)."""

    default_code = ErrorCode.E008


class RollbackError(DeployCodeError):
    """A rollback could not complete (E009)."""

    default_code = ErrorCode.E009


class NetworkError(DeployCodeError):
    """A socket or HTTP operation failed (E010)."""

    default_code = ErrorCode.E010


class SupervisionError(DeployCodeError):
    """The orchestrator refused an operation (S00x)."""

    default_code = ErrorCode.S001
