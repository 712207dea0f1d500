"""Units: durations, byte sizes, port ranges and resource vectors. Pure, frozen, no I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "MAX_DURATION_S",
    "MAX_SIZE_BYTES",
    "Resources",
    "parse_duration",
    "parse_port_range",
    "parse_size_bytes",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
# Ten years. Far beyond any real timeout or retention, and far below what timers, sockets and thread
# waits accept (time_t, threading.TIMEOUT_MAX): `.inf`, `.nan` or 1e400 must fail here, not at run time.
MAX_DURATION_S = 10 * 365 * 86_400.0
MAX_SIZE_BYTES = 2**62  # fits SQLite's INTEGER and every size an OS call takes
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
}


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else "a huge number"
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: object) -> float:
    """Parse ``100ms``, ``5s``, ``2m``, ``1h`` or plain (int/float/str) seconds into seconds.

    Raises:
        ValueError: the value is negative, not a number (NaN), longer than 10 years, or has an
            unknown unit.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        seconds = float(value) if value <= MAX_DURATION_S else math.inf  # 10**400 cannot be a float
    elif isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 100ms, 5s, 2m, 1h or plain seconds)")
        seconds = float(m.group(1)) * _DURATION_FACTORS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not seconds <= MAX_DURATION_S:  # also false for NaN
        raise ValueError(f"duration {_short(value)} is not a number of seconds up to 10 years")
    return seconds


def parse_size_bytes(value: object) -> int:
    """Parse ``64MiB``, ``1GB``, ``512k`` or a plain number of bytes.

    Raises:
        ValueError: the value is negative, malformed, NaN, or above 2**62.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"size must not be negative: {value!r}")
        size: float = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m is None:
            raise ValueError(f"not a size: {value!r} (use e.g. 64MiB, 1GB or plain bytes)")
        size = float(m.group(1)) * _SIZE_FACTORS[(m.group(2) or "b").lower()]
    else:
        raise ValueError(f"not a size: {value!r}")
    if not size <= MAX_SIZE_BYTES:  # also false for NaN; int(inf) would raise OverflowError
        raise ValueError(f"size {_short(value)} is not a number of bytes up to 2**62")
    return int(size)


def parse_port_range(value: str) -> tuple[int, int]:
    """Parse ``30000-32000`` into an inclusive ``(low, high)`` pair.

    Raises:
        ValueError: malformed, out of 1..65535, or low > high.
    """
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if m is None:
        raise ValueError(f"not a port range: {value!r} (use LOW-HIGH, e.g. 30000-32000)")
    low, high = int(m.group(1)), int(m.group(2))
    if not (1 <= low <= high <= 65535):
        raise ValueError(f"port range {value!r} must satisfy 1 <= low <= high <= 65535")
    return low, high


@dataclass(frozen=True, slots=True)
class Resources:
    """A resource vector. Memory is MiB, storage GiB; CPU is fractional cores."""

    cpu_cores: float = 0.0
    memory_mb: float = 0.0
    storage_gb: float = 0.0
    gpu_count: int = 0

    FIELDS = ("cpu_cores", "memory_mb", "storage_gb", "gpu_count")

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_cores + other.cpu_cores,
            self.memory_mb + other.memory_mb,
            self.storage_gb + other.storage_gb,
            self.gpu_count + other.gpu_count,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_cores - other.cpu_cores,
            self.memory_mb - other.memory_mb,
            self.storage_gb - other.storage_gb,
            self.gpu_count - other.gpu_count,
        )

    def scale(self, factor: float) -> Resources:
        """Every dimension times ``factor`` (GPU count rounded down)."""
        return Resources(
            self.cpu_cores * factor,
            self.memory_mb * factor,
            self.storage_gb * factor,
            int(self.gpu_count * factor),
        )

    def fits_in(self, capacity: Resources, eps: float = 1e-9) -> bool:
        """True when every dimension is at most the same dimension of ``capacity``."""
        return not self.exceeded(capacity, eps)

    def exceeded(self, capacity: Resources, eps: float = 1e-9) -> list[tuple[str, float, float]]:
        """Dimensions where ``self`` is larger than ``capacity``: ``(name, requested, available)``."""
        out: list[tuple[str, float, float]] = []
        for name in self.FIELDS:
            want = getattr(self, name)
            have = getattr(capacity, name)
            if want > have + eps:
                out.append((name, float(want), float(have)))
        return out

    def is_zero(self, eps: float = 1e-6) -> bool:
        """True when every dimension is (numerically) zero."""
        return all(abs(getattr(self, n)) <= eps for n in self.FIELDS)

    def to_dict(self) -> dict[str, float]:
        """Plain-data form."""
        return {n: getattr(self, n) for n in self.FIELDS}
