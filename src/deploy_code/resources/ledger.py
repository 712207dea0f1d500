"""Capacity ledger: who holds how much of one node's resources, in nested pools. Never over-commits.

Levels. Every allocation counts against the node and, when it names a pool, against that pool and
every ancestor pool. A pool's quota may leave resources out (unlimited at that level, so the
enclosing level limits them) and may not exceed its parent's limiting quota (the node's capacity
for a top-level pool).

Leases. An allocation may carry a ``ttl``: it then expires at ``now + ttl`` unless :meth:`Ledger.renew`
moves the deadline, and :meth:`Ledger.reap` releases every expired lease. Time is always passed
in as ``now`` (seconds on the caller's monotonic clock); the ledger reads no clock itself.

Integers. Quantities are stored as integers: milli-cores, MiB of memory, MiB of storage and GPUs.
Requests round up to the unit (a request never books less than it asked for), capacities and
quotas round down, so sums are exact and releasing everything returns exactly to zero.

Concurrency (optimistic). The whole state is one immutable :class:`_State` with a ``version``.
A mutation reads the current state, computes the next one from it without holding any lock,
and commits with compare-and-set: the commit succeeds only if the version is still the one it
read, otherwise the mutation is recomputed from the newer state (retry on conflict). Readers
take the current state with a single attribute read and never block, so every reader sees a
consistent snapshot. CPython has no atomic compare-and-swap on an attribute that Python code
can use, so the compare plus the pointer swap run under a tiny :class:`threading.Lock`; it is
held only for those two steps (a comparison and an assignment), never while computing. Under
the GIL the computing itself does not run in parallel either; what this design buys is that
no thread waits on another's computation, readers never lock, and a failed or slow mutation
never blocks the rest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.units import Resources

__all__ = ["Ledger"]

_ZERO = Resources()
_FIELDS: tuple[str, ...] = Resources.FIELDS
# Integer units per public unit: milli-cores, MiB memory, MiB storage (from GiB), GPUs.
_SCALE: tuple[int, ...] = (1000, 1, 1024, 1)
_EPS = 1e-6
_HINT = "lower the request or replicas, or free capacity by stopping services"

Vec = tuple[int, int, int, int]
Quota = tuple[int | None, int | None, int | None, int | None]
BatchItem = tuple[str, Resources] | tuple[str, Resources, str | None]
_T = TypeVar("_T")
_VZERO: Vec = (0, 0, 0, 0)


def _check_request(owner: str, request: Resources) -> None:
    negative = [n for n in _FIELDS if getattr(request, n) < 0]
    if negative:
        raise ValueError(f"request for {owner!r} has negative {', '.join(negative)}: {request}")


def _up(value: float, scale: int) -> int:
    """``value`` in integer units, rounded up (what a request books)."""
    return max(0, math.ceil(value * scale - _EPS))


def _down(value: float, scale: int) -> int:
    """``value`` in integer units, rounded down (what a capacity or quota offers)."""
    return max(0, math.floor(value * scale + _EPS))


def _request_vec(request: Resources) -> Vec:
    return (
        _up(request.cpu_cores, 1000),
        _up(request.memory_mb, 1),
        _up(request.storage_gb, 1024),
        _up(request.gpu_count, 1),
    )


def _capacity_vec(capacity: Resources) -> Vec:
    return (
        _down(capacity.cpu_cores, 1000),
        _down(capacity.memory_mb, 1),
        _down(capacity.storage_gb, 1024),
        _down(capacity.gpu_count, 1),
    )


def _public(index: int, value: int) -> float:
    """Integer units back to the public unit of dimension ``index``."""
    return value / _SCALE[index]


def _to_resources(vec: Vec) -> Resources:
    if vec == _VZERO:
        return _ZERO
    return Resources(vec[0] / 1000, float(vec[1]), vec[2] / 1024, vec[3])


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


@dataclass(frozen=True, slots=True)
class _Pool:
    """A pool definition: its quota per dimension (None = unlimited here) and its ancestry."""

    name: str
    parent: str | None
    quota: Quota
    limit: Vec  # the limiting quota: min over this pool, its ancestors and the node capacity
    chain: tuple[str, ...]  # this pool, then its parent, ..., up to the top-level pool


@dataclass(frozen=True, slots=True)
class _Hold:
    """One owner's allocation."""

    request: Resources
    vec: Vec
    pool: str | None
    ttl: float | None
    expires: float | None


@dataclass(frozen=True, slots=True)
class _State:
    """Everything the ledger knows, immutable; replaced wholesale by each committed mutation."""

    version: int
    held: Mapping[str, _Hold]
    allocated: Vec
    pools: Mapping[str, _Pool]
    pool_allocated: Mapping[str, Vec]


def _describe(owner: str, level: str | None, problems: list[tuple[int, int, int, int]]) -> str:
    """``problems`` holds ``(dimension index, requested, free, limit)`` in integer units."""
    word = "capacity" if level is None else "quota"
    parts = [
        f"{_FIELDS[i]} requested {_public(i, want):g} but only {_public(i, free):g} free "
        f"({word} {_public(i, limit):g})"
        for i, want, free, limit in problems
    ]
    prefix = f"cannot place {owner!r}: " + ("" if level is None else f"pool {level!r}: ")
    return prefix + "; ".join(parts)


def _utilization(allocated: Vec, limit: Vec) -> dict[str, float]:
    return {name: (allocated[i] / limit[i]) if limit[i] > 0 else 0.0 for i, name in enumerate(_FIELDS)}


class Ledger:
    """Allocations of one node's capacity, keyed by owner (a replica id such as ``"api.1"``).

    Every mutation is all-or-nothing and bumps :attr:`version`; mutations commit with
    compare-and-set on the version and are safe to call from several threads (see the module
    docstring). Pools and leases are optional: without them this is a flat node ledger.

    Args:
        capacity: what the node offers (discovered by the runtime backend, or configured).

    Raises:
        ValueError: a capacity dimension is negative.
    """

    def __init__(self, capacity: Resources) -> None:
        _check_request("capacity", capacity)
        self._capacity = capacity
        self._cap: Vec = _capacity_vec(capacity)
        self._state = _State(version=0, held={}, allocated=_VZERO, pools={}, pool_allocated={})
        self._swap_lock = threading.Lock()  # held only for compare + pointer swap
        self._conflicts = 0

    # -- concurrency core ------------------------------------------------------------------

    def _commit(self, mutate: Callable[[_State], tuple[_State | None, _T]]) -> _T:
        """Apply ``mutate`` optimistically: compute from a snapshot, compare-and-set, retry on conflict.

        Args:
            mutate: computes ``(next state or None for no change, result)`` from the current
                state; it may raise, in which case nothing is committed.

        Returns:
            The result ``mutate`` returned for the state that was committed.
        """
        while True:
            current = self._state
            new, result = mutate(current)
            if new is None:
                return result
            with self._swap_lock:
                if self._state.version == current.version:
                    self._state = new
                    return result
                self._conflicts += 1

    @property
    def conflicts(self) -> int:
        """How many commits lost a compare-and-set race and were recomputed (diagnostics)."""
        return self._conflicts

    # -- read side -------------------------------------------------------------------------

    @property
    def capacity(self) -> Resources:
        """What the node offers."""
        return self._capacity

    @property
    def allocated(self) -> Resources:
        """The sum of every owner's allocation."""
        return _to_resources(self._state.allocated)

    @property
    def free(self) -> Resources:
        """Capacity minus allocations."""
        return _to_resources(_sub(self._cap, self._state.allocated))

    @property
    def version(self) -> int:
        """Bumped by every change; equal versions mean equal allocations."""
        return self._state.version

    @property
    def owners(self) -> int:
        """Number of owners holding an allocation."""
        return len(self._state.held)

    @property
    def pools(self) -> list[str]:
        """Names of the pools, in the order they were added."""
        return list(self._state.pools)

    def holding(self, owner: str) -> Resources:
        """What ``owner`` holds (zero when nothing)."""
        hold = self._state.held.get(owner)
        return _ZERO if hold is None else hold.request

    def expires(self, owner: str) -> float | None:
        """When ``owner``'s lease expires (None when it has no TTL or holds nothing)."""
        hold = self._state.held.get(owner)
        return None if hold is None else hold.expires

    def check(self, request: Resources, pool: str | None = None) -> list[tuple[str, float, float]]:
        """Dimensions of ``request`` that do not fit the free capacity now.

        Args:
            request: what would be asked for.
            pool: check against this pool (and its ancestors) as well as the node.

        Returns:
            ``(name, requested, free)`` per dimension that does not fit at the tightest level;
            empty when it fits.

        Raises:
            ValueError: ``pool`` is not defined.
        """
        state = self._state
        free = list(_sub(self._cap, state.allocated))
        if pool is not None:
            for name in self._pool(state, pool).chain:
                p = state.pools[name]
                used = state.pool_allocated[name]
                for i, q in enumerate(p.quota):
                    if q is not None:
                        free[i] = min(free[i], q - used[i])
        return request.exceeded(_to_resources((free[0], free[1], free[2], free[3])))

    # -- pools -----------------------------------------------------------------------------

    @staticmethod
    def _pool(state: _State, name: str) -> _Pool:
        pool = state.pools.get(name)
        if pool is None:
            raise ValueError(f"unknown pool {name!r}; add it with add_pool() first")
        return pool

    def add_pool(self, name: str, quota: Mapping[str, float], parent: str | None = None) -> None:
        """Define a pool.

        Args:
            name: the pool's name; unique.
            quota: per resource (``cpu_cores``, ``memory_mb``, ``storage_gb``, ``gpu_count``) the
                most the pool may hold; a resource left out is unlimited at this level.
            parent: the enclosing pool; None for a top-level pool (enclosed by the node).

        Raises:
            ValueError: the name is taken, the parent is unknown, a resource name is unknown, a
                quota is negative, or a quota exceeds the parent's limiting quota (the node's
                capacity for a top-level pool).
        """
        unknown = sorted(set(quota) - set(_FIELDS))
        if unknown:
            raise ValueError(f"pool {name!r}: unknown resource(s) {', '.join(unknown)}; use {_FIELDS}")
        for res, value in quota.items():
            if value < 0:
                raise ValueError(f"pool {name!r}: quota for {res} must not be negative: {value:g}")
        values = [quota.get(f) for f in _FIELDS]
        q: Quota = (
            None if values[0] is None else _down(values[0], _SCALE[0]),
            None if values[1] is None else _down(values[1], _SCALE[1]),
            None if values[2] is None else _down(values[2], _SCALE[2]),
            None if values[3] is None else _down(values[3], _SCALE[3]),
        )

        def mutate(state: _State) -> tuple[_State | None, None]:
            if name in state.pools:
                raise ValueError(f"pool {name!r} already exists")
            chain: tuple[str, ...]
            if parent is None:
                outer, outer_name, chain = self._cap, "node capacity", (name,)
            else:
                up = self._pool(state, parent)
                outer, outer_name, chain = up.limit, f"pool {parent!r} limit", (name, *up.chain)
            for i, qi in enumerate(q):
                if qi is not None and qi > outer[i]:
                    raise ValueError(
                        f"pool {name!r}: {_FIELDS[i]} quota {_public(i, qi):g} exceeds the "
                        f"{outer_name} {_public(i, outer[i]):g}"
                    )
            limit = tuple(outer[i] if qi is None else qi for i, qi in enumerate(q))
            pool = _Pool(name, parent, q, (limit[0], limit[1], limit[2], limit[3]), chain)
            return (
                _State(
                    version=state.version + 1,
                    held=state.held,
                    allocated=state.allocated,
                    pools={**state.pools, name: pool},
                    pool_allocated={**state.pool_allocated, name: _VZERO},
                ),
                None,
            )

        self._commit(mutate)

    # -- allocate / release ----------------------------------------------------------------

    def allocate(
        self,
        owner: str,
        request: Resources,
        *,
        pool: str | None = None,
        ttl: float | None = None,
        now: float | None = None,
    ) -> None:
        """Allocate ``request`` to ``owner``.

        Args:
            owner: who holds it; must not hold anything yet.
            request: how much.
            pool: the pool it counts against (with that pool's ancestors and the node).
            ttl: lease length in seconds; None = no expiry.
            now: the current time; required with ``ttl``.

        Raises:
            PlacementError: the request does not fit (E004); the message names the owner, the
                level that is full and, per dimension, the requested and free figures.
            ValueError: ``owner`` already holds an allocation, ``request`` is negative, the pool
                is unknown, or ``ttl`` is given without ``now`` or is not positive.
        """
        self.allocate_batch([(owner, request)], pool=pool, ttl=ttl, now=now)

    def allocate_batch(
        self,
        items: Sequence[BatchItem],
        *,
        pool: str | None = None,
        ttl: float | None = None,
        now: float | None = None,
    ) -> None:
        """Allocate several requests, all or nothing.

        Args:
            items: ``(owner, request)`` or ``(owner, request, pool)``; owners must be distinct
                and hold nothing yet. A per-item pool overrides ``pool``.
            pool: the default pool for items that name none.
            ttl: lease length in seconds for every item; None = no expiry.
            now: the current time; required with ``ttl``.

        Raises:
            PlacementError: the batch does not fit (E004); the message names the first owner
                whose cumulative request does not fit at some level, that level and the
                figures. Nothing is allocated.
            ValueError: a duplicate owner, an owner that already holds something, a negative
                request, an unknown pool, or a bad ``ttl``/``now``. Nothing is allocated.
        """
        if ttl is not None and (now is None or ttl <= 0):
            raise ValueError(f"a lease needs ttl > 0 and now (got ttl={ttl!r}, now={now!r})")
        expires = None if ttl is None or now is None else now + ttl
        parsed: list[tuple[str, Resources, Vec, str | None]] = []
        seen: set[str] = set()
        for item in items:
            owner, request = item[0], item[1]
            item_pool = item[2] if len(item) == 3 else pool
            _check_request(owner, request)
            if owner in seen:
                raise ValueError(f"{owner!r} already holds an allocation; release it first")
            seen.add(owner)
            parsed.append((owner, request, _request_vec(request), item_pool))
        if not parsed:
            return
        cap = self._cap
        count = len(parsed)

        def mutate(state: _State) -> tuple[_State | None, None]:
            for owner, *_ in parsed:
                if owner in state.held:
                    raise ValueError(f"{owner!r} already holds an allocation; release it first")
            total = state.allocated
            pool_totals = dict(state.pool_allocated)
            held = dict(state.held)
            for owner, request, vec, pname in parsed:
                chain = () if pname is None else self._pool(state, pname).chain
                # Check the innermost level first, then outwards to the node.
                for level in chain:
                    p = state.pools[level]
                    used = pool_totals[level]
                    bad = [
                        (i, vec[i], q - used[i], q)
                        for i, q in enumerate(p.quota)
                        if q is not None and used[i] + vec[i] > q
                    ]
                    if bad:
                        self._fail(owner, level, bad, count)
                    pool_totals[level] = _add(used, vec)
                bad = [(i, vec[i], cap[i] - total[i], cap[i]) for i in range(4) if total[i] + vec[i] > cap[i]]
                if bad:
                    self._fail(owner, None, bad, count)
                total = _add(total, vec)
                held[owner] = _Hold(request, vec, pname, ttl, expires)
            new = _State(state.version + 1, held, total, state.pools, pool_totals)
            return new, None

        self._commit(mutate)

    @staticmethod
    def _fail(owner: str, level: str | None, bad: list[tuple[int, int, int, int]], count: int) -> None:
        msg = _describe(owner, level, bad)
        if count > 1:
            msg += f" (batch of {count} placed nothing)"
        raise PlacementError(msg, code=ErrorCode.E004, hint=_HINT)

    @staticmethod
    def _without(state: _State, owners: Sequence[str]) -> _State:
        """``state`` with ``owners`` (all held) released, version bumped."""
        held = dict(state.held)
        total = state.allocated
        pool_totals = dict(state.pool_allocated)
        for owner in owners:
            hold = held.pop(owner)
            total = _sub(total, hold.vec)
            if hold.pool is not None:
                for level in state.pools[hold.pool].chain:
                    pool_totals[level] = _sub(pool_totals[level], hold.vec)
        return _State(state.version + 1, held, total, state.pools, pool_totals)

    def release(self, owner: str) -> Resources:
        """Free everything ``owner`` holds. Safe to call when it holds nothing.

        Args:
            owner: whose allocation to free.

        Returns:
            What was freed (zero when nothing was held).
        """

        def mutate(state: _State) -> tuple[_State | None, Resources]:
            hold = state.held.get(owner)
            if hold is None:
                return None, _ZERO
            return self._without(state, [owner]), hold.request

        return self._commit(mutate)

    # -- leases ----------------------------------------------------------------------------

    def renew(self, owner: str, now: float) -> float | None:
        """Extend ``owner``'s lease to ``now + ttl``.

        Args:
            owner: a current holder.
            now: the current time.

        Returns:
            The new expiry, or None when the allocation has no TTL (nothing to renew).

        Raises:
            KeyError: ``owner`` holds nothing (for example, it was already reaped).
        """

        def mutate(state: _State) -> tuple[_State | None, float | None]:
            hold = state.held.get(owner)
            if hold is None:
                raise KeyError(f"{owner!r} holds no allocation (expired and reaped?)")
            if hold.ttl is None:
                return None, None
            expires = now + hold.ttl
            held = {**state.held, owner: _Hold(hold.request, hold.vec, hold.pool, hold.ttl, expires)}
            new = _State(state.version + 1, held, state.allocated, state.pools, state.pool_allocated)
            return new, expires

        return self._commit(mutate)

    def reap(self, now: float) -> list[str]:
        """Release every lease that expired at or before ``now``.

        Args:
            now: the current time.

        Returns:
            The owners released, sorted.
        """

        def mutate(state: _State) -> tuple[_State | None, list[str]]:
            expired = sorted(o for o, h in state.held.items() if h.expires is not None and h.expires <= now)
            if not expired:
                return None, []
            return self._without(state, expired), expired

        return self._commit(mutate)

    # -- reporting -------------------------------------------------------------------------

    def utilization(self) -> dict[str, float]:
        """Allocated / capacity per dimension (0.0 where the capacity is zero)."""
        return _utilization(self._state.allocated, self._cap)

    def pool_snapshot(self) -> dict[str, object]:
        """Per-level figures from one consistent state: the node and every pool.

        Returns:
            ``{"version", "node": {...}, "pools": {name: {...}}}`` where each level has
            ``allocated``, ``free`` and ``utilization`` per resource, the node its ``capacity``
            and each pool its ``parent``, ``quota`` (only the resources it limits) and ``limit``
            (the limiting quota, inherited where the pool sets none).
        """
        return self._levels(self._state)

    def _levels(self, state: _State) -> dict[str, object]:
        cap = self._cap
        node = {
            "capacity": self._capacity.to_dict(),
            "allocated": _to_resources(state.allocated).to_dict(),
            "free": _to_resources(_sub(cap, state.allocated)).to_dict(),
            "utilization": _utilization(state.allocated, cap),
        }
        pools: dict[str, object] = {}
        for name, p in state.pools.items():
            used = state.pool_allocated[name]
            pools[name] = {
                "parent": p.parent,
                "quota": {_FIELDS[i]: _public(i, q) for i, q in enumerate(p.quota) if q is not None},
                "limit": _to_resources(p.limit).to_dict(),
                "allocated": _to_resources(used).to_dict(),
                "free": _to_resources(_sub(p.limit, used)).to_dict(),
                "utilization": _utilization(used, p.limit),
            }
        return {"version": state.version, "node": node, "pools": pools}

    def snapshot(self) -> dict[str, object]:
        """Plain-data state for ``status`` and the API, from one consistent state.

        Returns:
            ``version``, ``capacity``, ``allocated``, ``free``, ``utilization``, ``owners``
            (owner -> request), ``leases`` (owner -> expiry, for owners with a TTL), ``owner_pools``
            (owner -> pool, for owners in a pool) and ``pools`` (as in :meth:`pool_snapshot`).
        """
        state = self._state
        levels = self._levels(state)
        node = levels["node"]
        assert isinstance(node, dict)
        return {
            "version": state.version,
            "capacity": node["capacity"],
            "allocated": node["allocated"],
            "free": node["free"],
            "utilization": node["utilization"],
            "owners": {owner: h.request.to_dict() for owner, h in sorted(state.held.items())},
            "leases": {o: h.expires for o, h in sorted(state.held.items()) if h.expires is not None},
            "owner_pools": {o: h.pool for o, h in sorted(state.held.items()) if h.pool is not None},
            "pools": levels["pools"],
        }
