"""Exact integer quantities for the ledger: a :class:`~deploy_code.units.Resources` as four ints.

The ledger never adds floats. Every request is converted once, at the edge, into integer units:

=============  ==================  =====================
dimension      ``Resources`` unit  ledger unit
=============  ==================  =====================
cpu_cores      cores (fractional)  milli-cores (x1000)
memory_mb      MiB                 KiB (x1024)
storage_gb     GiB                 MiB (x1024)
gpu_count      whole GPUs          whole GPUs
=============  ==================  =====================

so allocating and releasing any sequence of requests returns the totals to exactly zero. A figure
finer than the ledger unit is rounded *up* for requests and *down* for capacities and quotas, so the
ledger can refuse a request a float comparison would accept, never the other way round.
"""

from __future__ import annotations

import math

from deploy_code.units import Resources

__all__ = ["SCALES", "ZERO", "Vec", "from_units", "to_units"]

Vec = tuple[int, int, int, int]
"""Integer quantities in ledger units, in the order of :attr:`Resources.FIELDS`."""

ZERO: Vec = (0, 0, 0, 0)
SCALES: tuple[int, int, int, int] = (1000, 1024, 1024, 1)
"""Ledger units per ``Resources`` unit, per dimension."""

# Relative tolerance under which a product is taken as the integer it nearly is (0.1 * 1000 is
# 100.00000000000001 in binary floating point and must mean 100 milli-cores, not 101).
_REL_TOL = 1e-9


def _quantize(value: float, scale: int, round_up: bool) -> int:
    product = value * scale
    nearest = round(product)
    if abs(product - nearest) <= _REL_TOL * max(1.0, abs(product)):
        return int(nearest)
    return math.ceil(product) if round_up else math.floor(product)


def to_units(res: Resources, *, what: str = "request", round_up: bool = True) -> Vec:
    """Convert ``res`` into integer ledger units.

    Args:
        res: the quantities.
        what: names the value in the error message (an owner, ``"capacity"``, a pool).
        round_up: round a figure finer than the unit up (requests) rather than down (limits).

    Returns:
        The four integer quantities.

    Raises:
        ValueError: a dimension is negative or not finite.
    """
    out = []
    for name, scale in zip(Resources.FIELDS, SCALES, strict=True):
        value = getattr(res, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} has a negative or non-finite {name}: {res}")
        out.append(_quantize(value, scale, round_up))
    return (out[0], out[1], out[2], out[3])


def from_units(vec: Vec) -> Resources:
    """Convert integer ledger units back into a :class:`Resources` (exact for the ledger's sums)."""
    return Resources(vec[0] / 1000, vec[1] / 1024, vec[2] / 1024, vec[3])


def unit_value(index: int, amount: int) -> float:
    """One dimension's ledger units as a ``Resources`` figure (for messages and plain data)."""
    return float(amount) / SCALES[index]
