"""Capacity ledger: who holds how much of one node's resources. Never over-commits."""

from __future__ import annotations

from collections.abc import Sequence

from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.units import Resources

__all__ = ["Ledger"]

_ZERO = Resources()


def _check_request(owner: str, request: Resources) -> None:
    negative = [n for n in Resources.FIELDS if getattr(request, n) < 0]
    if negative:
        raise ValueError(f"request for {owner!r} has negative {', '.join(negative)}: {request}")


def _describe(owner: str, problems: list[tuple[str, float, float]], capacity: Resources) -> str:
    parts = [
        f"{name} requested {want:g} but only {free:g} free (capacity {getattr(capacity, name):g})"
        for name, want, free in problems
    ]
    return f"cannot place {owner!r}: " + "; ".join(parts)


class Ledger:
    """Allocations of one node's capacity, keyed by owner (a replica id such as ``"api.1"``).

    Every mutation is synchronous and all-or-nothing, and bumps :attr:`version`, so a later
    versioned compare-and-commit (pools, nodes, leases with TTL) can check that nothing
    changed between planning and committing.

    Args:
        capacity: what the node offers (discovered by the runtime backend, or configured).

    Raises:
        ValueError: a capacity dimension is negative.
    """

    def __init__(self, capacity: Resources) -> None:
        _check_request("capacity", capacity)
        self._capacity = capacity
        # One entry per owner holding something; bounded by the number of placed replicas.
        self._held: dict[str, Resources] = {}
        self._allocated = _ZERO
        self._version = 0

    @property
    def capacity(self) -> Resources:
        """What the node offers."""
        return self._capacity

    @property
    def allocated(self) -> Resources:
        """The sum of every owner's allocation."""
        return self._allocated

    @property
    def free(self) -> Resources:
        """Capacity minus allocations."""
        return self._capacity - self._allocated

    @property
    def version(self) -> int:
        """Bumped by every change; equal versions mean equal allocations."""
        return self._version

    @property
    def owners(self) -> int:
        """Number of owners holding an allocation."""
        return len(self._held)

    def holding(self, owner: str) -> Resources:
        """What ``owner`` holds (zero when nothing)."""
        return self._held.get(owner, _ZERO)

    def check(self, request: Resources) -> list[tuple[str, float, float]]:
        """Dimensions of ``request`` that do not fit the free capacity now.

        Returns:
            ``(name, requested, free)`` per dimension that does not fit; empty when it fits.
        """
        return request.exceeded(self.free)

    def allocate(self, owner: str, request: Resources) -> None:
        """Allocate ``request`` to ``owner``.

        Args:
            owner: who holds it; must not hold anything yet.
            request: how much.

        Raises:
            PlacementError: the request does not fit (E004); the message names the owner and,
                per dimension, the requested and free figures.
            ValueError: ``owner`` already holds an allocation, or ``request`` is negative.
        """
        self.allocate_batch([(owner, request)])

    def allocate_batch(self, items: Sequence[tuple[str, Resources]]) -> None:
        """Allocate several requests, all or nothing.

        Args:
            items: ``(owner, request)`` pairs; owners must be distinct and hold nothing yet.

        Raises:
            PlacementError: the batch does not fit (E004); the message names the first owner
                whose cumulative request does not fit and the figures. Nothing is allocated.
            ValueError: a duplicate owner, an owner that already holds something, or a
                negative request. Nothing is allocated.
        """
        seen: set[str] = set()
        for owner, request in items:
            _check_request(owner, request)
            if owner in self._held or owner in seen:
                raise ValueError(f"{owner!r} already holds an allocation; release it first")
            seen.add(owner)
        # Check cumulatively, in order, so the error names the first owner that does not fit.
        total = _ZERO
        free = self.free
        for owner, request in items:
            total = total + request
            problems = total.exceeded(free)
            if problems:
                # Report this owner's own request against what was left for it.
                left = free - (total - request)
                own = request.exceeded(left) or problems
                msg = _describe(owner, own, self._capacity)
                if len(items) > 1:
                    msg += f" (batch of {len(items)} placed nothing)"
                raise PlacementError(
                    msg,
                    code=ErrorCode.E004,
                    hint="lower the request or replicas, or free capacity by stopping services",
                )
        if not items:
            return
        for owner, request in items:
            self._held[owner] = request
        self._allocated = self._allocated + total
        self._version += 1

    def release(self, owner: str) -> Resources:
        """Free everything ``owner`` holds. Safe to call when it holds nothing.

        Returns:
            What was freed (zero when nothing was held).
        """
        held = self._held.pop(owner, None)
        if held is None:
            return _ZERO
        # Reset to exact zero when empty so float drift cannot accumulate over a long run.
        self._allocated = self._allocated - held if self._held else _ZERO
        self._version += 1
        return held

    def utilization(self) -> dict[str, float]:
        """Allocated / capacity per dimension (0.0 where the capacity is zero)."""
        alloc = self._allocated
        cap = self._capacity
        return {
            name: (getattr(alloc, name) / getattr(cap, name)) if getattr(cap, name) > 0 else 0.0
            for name in Resources.FIELDS
        }

    def snapshot(self) -> dict[str, object]:
        """Plain-data state for ``status`` and the API."""
        return {
            "version": self._version,
            "capacity": self._capacity.to_dict(),
            "allocated": self._allocated.to_dict(),
            "free": self.free.to_dict(),
            "owners": {owner: res.to_dict() for owner, res in sorted(self._held.items())},
        }
