"""The single-node :class:`Ledger`: the scheduler's and orchestrator's API, a facade over one node of a
:class:`~deploy_code.resources.engine.Cluster`.

Levels, units and concurrency are the engine's (see :mod:`deploy_code.resources.engine`): nested pools
whose omitted resources are limited by their ancestors, integer quantities (exact zero after releasing
everything), optimistic compare-and-set commits with a per-node swap lock held only for the pointer
swap. The facade books on node :data:`LOCAL_NODE`; time is passed in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from deploy_code.resources.engine import UNLIMITED, BatchItem, Cluster, NodeState
from deploy_code.resources.quantity import Vec, from_units, unit_value
from deploy_code.units import Resources

__all__ = ["LOCAL_NODE", "Ledger", "LedgerItem"]

LOCAL_NODE = "local"
"""The node id the facade books on."""

LedgerItem = tuple[str, Resources] | tuple[str, Resources, str | None]
"""``(owner, request)`` or ``(owner, request, pool)``."""

_ZERO = Resources()
_FIELDS = Resources.FIELDS


def _ratios(used: Vec, limit: Vec) -> dict[str, float]:
    return {name: (used[d] / limit[d] if limit[d] > 0 else 0.0) for d, name in enumerate(_FIELDS)}


def _free(used: Vec, limit: Vec) -> Vec:
    return (limit[0] - used[0], limit[1] - used[1], limit[2] - used[2], limit[3] - used[3])


class Ledger:
    """Allocations of one node's capacity, keyed by owner (a replica id such as ``"api.1"``).

    Every mutation is all-or-nothing and bumps :attr:`version`; it is safe to call from several
    threads. Pools and leases are optional: without them this is a flat node ledger. The engine
    underneath (several nodes, ``release_all``, leases as values) is :attr:`cluster`.

    Args:
        capacity: what the node offers (discovered by the runtime backend, or configured).

    Raises:
        ValueError: a capacity dimension is negative.
    """

    def __init__(self, capacity: Resources) -> None:
        self._cluster = Cluster()
        self._cluster.add_node(LOCAL_NODE, capacity)
        self._capacity = capacity

    @property
    def cluster(self) -> Cluster:
        """The engine (one node, :data:`LOCAL_NODE`)."""
        return self._cluster

    def _state(self) -> NodeState:
        return self._cluster.state(LOCAL_NODE)

    # -- read side -------------------------------------------------------------------------

    @property
    def capacity(self) -> Resources:
        """What the node offers (as given)."""
        return self._capacity

    @property
    def allocated(self) -> Resources:
        """The sum of every owner's allocation (exact: integer units underneath)."""
        return from_units(self._state().used[0])

    @property
    def free(self) -> Resources:
        """Capacity minus allocations."""
        state = self._state()
        return from_units(_free(state.used[0], state.pools.limits[0]))

    @property
    def version(self) -> int:
        """Bumped by every change; equal versions mean equal allocations."""
        return self._state().version

    @property
    def owners(self) -> int:
        """Number of owners holding an allocation."""
        return len(self._state().leases)

    @property
    def conflicts(self) -> int:
        """How many commits lost a compare-and-set race and were recomputed (diagnostics)."""
        return self._cluster.conflicts

    @property
    def pools(self) -> list[str]:
        """Names of the pools, in the order they were added."""
        return list(self._state().pools.names[1:])

    def holding(self, owner: str) -> Resources:
        """What ``owner`` holds (zero when nothing)."""
        lease = self._state().leases.get(owner)
        return _ZERO if lease is None else lease.request

    def expires(self, owner: str) -> float | None:
        """When ``owner``'s lease expires (None when it has no TTL or holds nothing)."""
        lease = self._state().leases.get(owner)
        return None if lease is None else lease.expires_at

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
        state = self._state()
        pools = state.pools
        idx = pools.by_name.get(pool or "")
        if idx is None:
            raise ValueError(f"unknown pool {pool!r}; add it with add_pool() first")
        free = list(_free(state.used[0], pools.limits[0]))
        for level in pools.chains[idx]:
            quota, used = pools.quotas[level], state.used[level]
            for d in range(4):
                if quota[d] != UNLIMITED:
                    free[d] = min(free[d], quota[d] - used[d])
        return request.exceeded(from_units((free[0], free[1], free[2], free[3])))

    # -- pools -----------------------------------------------------------------------------

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
        self._cluster.add_pool(LOCAL_NODE, name, quota, parent=parent)

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
        items: Sequence[LedgerItem],
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
        if ttl is not None and now is None:
            raise ValueError(f"a lease needs ttl > 0 and now (got ttl={ttl!r}, now={now!r})")
        batch = [
            BatchItem(item[0], item[1], LOCAL_NODE, item[2] if len(item) == 3 else pool, ttl)
            for item in items
        ]
        self._cluster.allocate_batch(batch, now=now)

    def release(self, owner: str) -> Resources:
        """Free everything ``owner`` holds. Safe to call when it holds nothing.

        Returns:
            What was freed (zero when nothing was held).
        """
        lease = self._cluster.release(owner)
        return _ZERO if lease is None else lease.request

    def release_all(self, prefix: str) -> list[str]:
        """Free every allocation whose owner starts with ``prefix`` (a failed or cancelled deployment).

        Returns:
            The owners released, sorted.
        """
        return [lease.owner for lease in self._cluster.release_all(prefix)]

    # -- leases ----------------------------------------------------------------------------

    def renew(self, owner: str, now: float) -> float | None:
        """Extend ``owner``'s lease to ``now + ttl``.

        Returns:
            The new expiry, or None when the allocation has no TTL (nothing to renew).

        Raises:
            KeyError: ``owner`` holds nothing, or its lease expired at ``now`` (it may be reaped at
                any moment, so it is not renewed: place it again).
        """
        lease = self._cluster.renew(owner, now)
        if lease is None:
            raise KeyError(f"{owner!r} holds no live allocation (expired or reaped?)")
        return lease.expires_at

    def reap(self, now: float) -> list[str]:
        """Release every lease that expired at or before ``now``.

        Returns:
            The owners released, sorted.
        """
        return sorted(lease.owner for lease in self._cluster.reap(now))

    # -- reporting -------------------------------------------------------------------------

    def utilization(self) -> dict[str, float]:
        """Allocated / capacity per dimension (0.0 where the capacity is zero)."""
        state = self._state()
        return _ratios(state.used[0], state.pools.limits[0])

    def pool_snapshot(self) -> dict[str, object]:
        """Per-level figures from one consistent state: the node and every pool.

        Returns:
            ``{"version", "node": {...}, "pools": {name: {...}}}`` where each level has
            ``allocated``, ``free`` and ``utilization`` per resource, the node its ``capacity``
            and each pool its ``parent``, ``quota`` (only the resources it limits) and ``limit``
            (the limiting quota, inherited where the pool sets none).
        """
        return self._levels(self._state())

    def _levels(self, state: NodeState) -> dict[str, object]:
        pools_t = state.pools
        used0, cap = state.used[0], pools_t.limits[0]
        node = {
            "capacity": self._capacity.to_dict(),
            "allocated": from_units(used0).to_dict(),
            "free": from_units(_free(used0, cap)).to_dict(),
            "utilization": _ratios(used0, cap),
        }
        pools: dict[str, object] = {}
        for i in range(1, len(pools_t.names)):
            used, limit, quota = state.used[i], pools_t.limits[i], pools_t.quotas[i]
            parent = pools_t.parents[i]
            pools[pools_t.names[i]] = {
                "parent": pools_t.names[parent] if parent > 0 else None,
                "quota": {_FIELDS[d]: unit_value(d, q) for d, q in enumerate(quota) if q != UNLIMITED},
                "limit": from_units(limit).to_dict(),
                "allocated": from_units(used).to_dict(),
                "free": from_units(_free(used, limit)).to_dict(),
                "utilization": _ratios(used, limit),
            }
        return {"version": state.version, "node": node, "pools": pools}

    def snapshot(self) -> dict[str, object]:
        """Plain-data state for ``status`` and the API, from one consistent state.

        Returns:
            ``version``, ``capacity``, ``allocated``, ``free``, ``utilization``, ``owners``
            (owner -> request), ``leases`` (owner -> expiry, for owners with a TTL), ``owner_pools``
            (owner -> pool, for owners in a pool) and ``pools`` (as in :meth:`pool_snapshot`).
        """
        state = self._state()
        levels = self._levels(state)
        node = levels["node"]
        assert isinstance(node, dict)
        held = sorted(state.leases.items())
        return {
            "version": state.version,
            "capacity": node["capacity"],
            "allocated": node["allocated"],
            "free": node["free"],
            "utilization": node["utilization"],
            "owners": {owner: lease.request.to_dict() for owner, lease in held},
            "leases": {o: lease.expires_at for o, lease in held if lease.expires_at is not None},
            "owner_pools": {o: lease.pool for o, lease in held if lease.pool is not None},
            "pools": levels["pools"],
        }
