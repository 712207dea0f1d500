"""The capacity engine: cluster -> node -> pool -> lease, with optimistic versioned commits.

Model:

* A :class:`Cluster` holds nodes by id. Each node offers a capacity and holds a tree of named
  pools; a pool's parent is another pool or the node itself, and its quota may not exceed its
  parent's. The node is the root of its tree (pool ``None``).
* A :class:`Lease` books a request in one pool of one node and counts against that pool and every
  ancestor up to the node. A lease has an owner (unique in the cluster), an optional group (a
  deployment id, for :meth:`Cluster.release_all`) and an optional TTL; a lease with a TTL must be
  renewed by its owner before it expires or :meth:`Cluster.reap` frees it.

Concurrency (no global write lock):

* Each node's whole state (pool table, per-pool usage, leases) is one immutable
  :class:`NodeState`. A change computes a new state from the current one *outside any lock*, then
  publishes it with a compare-and-set on the node's state pointer: if another thread published
  first, the change is recomputed from the newer state and tried again. Someone commits on every
  failed try, so the node as a whole always makes progress.
* CPython has no user-level atomic compare-and-set on an attribute, so the swap itself takes a tiny
  per-node lock that covers only ``if state is expected: state = new`` (two pointer operations);
  no computation, allocation or callback happens under it. Readers take no lock: one attribute
  read gives a consistent snapshot of a node.
* The cluster-wide owner index is a dict changed only with single atomic dict operations
  (``setdefault`` to claim an owner id, ``pop`` to free it).
* A batch over several nodes claims its owners, checks every request against the current states,
  then commits node by node in node id order (a fixed order, so two batches cannot keep undoing
  each other); if a later node no longer fits, the nodes already committed are rolled back and
  nothing stays booked. Between those commits another thread may see part of the batch booked
  (and be refused for lack of room): batches are atomic in outcome, not isolated.

Every quantity is an integer (see :mod:`deploy_code.resources.quantity`), so releasing everything
returns every level to exactly zero.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from deploy_code.clock import Clock
from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.resources.quantity import ZERO, Vec, from_units, to_units, unit_value
from deploy_code.units import Resources

__all__ = [
    "BatchItem",
    "CapacityError",
    "Cluster",
    "Lease",
    "NodeState",
    "PoolTable",
    "Shortfall",
]

_T = TypeVar("_T")
_ROOT = ""  # the node itself, as a key in the pool table; public APIs spell it ``pool=None``
_FIELDS = Resources.FIELDS
UNLIMITED = 1 << 62
"""Quota figure of a resource a pool leaves out: never the binding limit at that level."""


class Shortfall(NamedTuple):
    """One dimension of a request that does not fit one level (a pool or the node)."""

    resource: str
    """The dimension, e.g. ``"cpu_cores"``."""
    wanted: float
    """What the request asks for, in ``Resources`` units."""
    free: float
    """What that level has left."""
    limit: float
    """That level's capacity (node) or quota (pool)."""
    node: str
    pool: str | None
    """``None`` when the level is the node itself."""


class CapacityError(PlacementError):
    """A request does not fit a pool or a node (E004). Nothing was booked.

    Args:
        message: the sentence shown to people (names the owner, resource, wanted and free figures).
        owner: the owner whose request did not fit.
        shortfalls: the dimensions that did not fit, at the first level that refused.
    """

    def __init__(self, message: str, *, owner: str, shortfalls: Sequence[Shortfall]) -> None:
        super().__init__(
            message,
            code=ErrorCode.E004,
            hint="lower the request or replicas, or free capacity by stopping services",
        )
        self.owner = owner
        self.shortfalls: tuple[Shortfall, ...] = tuple(shortfalls)


class Lease(NamedTuple):
    """A booked request: who holds how much, where, and until when. Immutable.

    ``renew`` publishes a new ``Lease`` with the same ``lease_id`` and a later ``expires_at``.
    """

    owner: str
    node: str
    pool: str | None
    request: Resources
    """The request as asked (before conversion to integer units)."""
    units: Vec
    """The request in integer ledger units (what is booked)."""
    ttl: float | None
    """Seconds a renewal extends the lease by; ``None`` never expires."""
    expires_at: float | None
    """Monotonic time after which the reaper frees it; ``None`` never."""
    group: str | None
    """A deployment id or similar, for :meth:`Cluster.release_all`."""
    lease_id: int
    """Unique in the cluster's lifetime; kept across renewals."""

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for events and the API."""
        return {
            "owner": self.owner,
            "node": self.node,
            "pool": self.pool,
            "request": self.request.to_dict(),
            "ttl": self.ttl,
            "expires_at": self.expires_at,
            "group": self.group,
            "lease_id": self.lease_id,
        }


class BatchItem(NamedTuple):
    """One request of :meth:`Cluster.allocate_batch`."""

    owner: str
    request: Resources
    node: str
    pool: str | None = None
    ttl: float | None = None
    group: str | None = None


class PoolTable(NamedTuple):
    """A node's pools. Index 0 is the node itself (name ``""``). Immutable, shared between states."""

    names: tuple[str, ...]
    parents: tuple[int, ...]
    """Parent index per pool; -1 for the node."""
    quotas: tuple[Vec, ...]
    """What each level checks: the node's capacity (index 0) or the pool's quota, with
    :data:`UNLIMITED` for a resource the pool leaves out (its ancestors limit it)."""
    limits: tuple[Vec, ...]
    """The effective limit per level: its quota, or the nearest ancestor's where it sets none."""
    chains: tuple[tuple[int, ...], ...]
    """Per pool: its own index, then every ancestor's, ending with 0 (the node)."""
    by_name: Mapping[str, int]
    """Pool name -> index (never mutated once published)."""

    @staticmethod
    def for_node(capacity: Vec) -> PoolTable:
        """The table of a node with no pools yet."""
        return PoolTable((_ROOT,), (-1,), (capacity,), (capacity,), ((0,),), {_ROOT: 0})

    def with_pool(self, name: str, quota: Vec, parent: int) -> PoolTable:
        """A copy with one more pool under ``parent`` (``quota`` may hold :data:`UNLIMITED`)."""
        idx = len(self.names)
        up = self.limits[parent]
        limit = tuple(up[d] if quota[d] == UNLIMITED else quota[d] for d in range(4))
        by_name = dict(self.by_name)
        by_name[name] = idx
        return PoolTable(
            (*self.names, name),
            (*self.parents, parent),
            (*self.quotas, quota),
            (*self.limits, (limit[0], limit[1], limit[2], limit[3])),
            (*self.chains, (idx, *self.chains[parent])),
            by_name,
        )

    def without_pool(self, idx: int) -> PoolTable:
        """A copy with the childless pool ``idx`` removed (indices above it shift down by one)."""
        keep = [i for i in range(len(self.names)) if i != idx]
        remap = {old: new for new, old in enumerate(keep)}
        names = tuple(self.names[i] for i in keep)
        return PoolTable(
            names,
            tuple(-1 if self.parents[i] < 0 else remap[self.parents[i]] for i in keep),
            tuple(self.quotas[i] for i in keep),
            tuple(self.limits[i] for i in keep),
            tuple(tuple(remap[j] for j in self.chains[i]) for i in keep),
            {n: i for i, n in enumerate(names)},
        )


class NodeState(NamedTuple):
    """One node's whole state at one version. Immutable: a reader holding it sees a consistent view.

    ``used[i]`` is the sum of the leases booked in pool ``i`` and all its descendants.
    """

    node: str
    version: int
    pools: PoolTable
    used: tuple[Vec, ...]
    leases: Mapping[str, Lease]
    """Owner -> lease booked on this node (a dict never mutated once published)."""
    ttl_leases: int
    """How many of ``leases`` can expire (lets the reaper skip nodes with none)."""

    def over_committed(self) -> list[str]:
        """Levels whose usage exceeds their limit (always empty unless the engine is broken)."""
        bad = []
        for i, (u, lim) in enumerate(zip(self.used, self.pools.limits, strict=True)):
            if u[0] > lim[0] or u[1] > lim[1] or u[2] > lim[2] or u[3] > lim[3] or min(u) < 0:
                bad.append(f"{self.node}/{self.pools.names[i] or '(node)'}: used {u} > limit {lim}")
        return bad

    def recount(self) -> tuple[Vec, ...]:
        """Usage per level recomputed from the leases (O(leases); for tests and audits)."""
        sums = [[0, 0, 0, 0] for _ in self.pools.names]
        for lease in self.leases.values():
            for i in self.pools.chains[self.pools.by_name[lease.pool or _ROOT]]:
                acc = sums[i]
                for d in range(4):
                    acc[d] += lease.units[d]
        return tuple((s[0], s[1], s[2], s[3]) for s in sums)


class _NoFit(Exception):
    """Internal: ``lease`` does not fit level ``level`` whose usage before it was ``used``."""

    def __init__(self, lease: Lease, level: int, used: Vec, pools: PoolTable) -> None:
        super().__init__(lease.owner)
        self.lease = lease
        self.level = level
        self.used = used
        self.pools = pools


class _Node:
    """The mutable holder of one node's current :class:`NodeState`."""

    __slots__ = ("capacity", "conflicts", "node_id", "state", "swap_lock")

    def __init__(self, node_id: str, capacity: Resources, cap_units: Vec) -> None:
        self.node_id = node_id
        self.capacity = capacity
        self.state = NodeState(node_id, 0, PoolTable.for_node(cap_units), (ZERO,), {}, 0)
        # Held only for the pointer compare-and-set in ``cas``; never around any other work.
        self.swap_lock = threading.Lock()
        self.conflicts = 0  # failed compare-and-sets (a retry each); written under swap_lock

    def cas(self, expected: NodeState, new: NodeState) -> bool:
        with self.swap_lock:
            if self.state is expected:
                self.state = new
                return True
            self.conflicts += 1
            return False

    def update(self, change: Callable[[NodeState], tuple[NodeState | None, _T]]) -> _T:
        """Apply ``change`` optimistically until its result is published (or it asks for no change)."""
        while True:
            current = self.state
            new, result = change(current)
            if new is None or self.cas(current, new):
                return result


def _place(state: NodeState, leases: Sequence[Lease]) -> NodeState:
    """``state`` with ``leases`` booked, checked from the pool out to the node. Raises ``_NoFit``.

    Raises:
        _NoFit: a lease does not fit a level.
        ValueError: a lease names an unknown pool.
    """
    pools = state.pools
    quotas = pools.quotas
    chains = pools.chains
    by_name = pools.by_name
    used = list(state.used)
    booked = dict(state.leases)
    ttl = state.ttl_leases
    for lease in leases:
        pi = by_name.get(lease.pool or _ROOT)
        if pi is None:
            raise ValueError(
                f"unknown pool {lease.pool!r} on node {state.node!r}; add it with add_pool() first"
            )
        a0, a1, a2, a3 = lease.units
        for i in chains[pi]:
            u = used[i]
            lim = quotas[i]
            n0, n1, n2, n3 = u[0] + a0, u[1] + a1, u[2] + a2, u[3] + a3
            if n0 > lim[0] or n1 > lim[1] or n2 > lim[2] or n3 > lim[3]:
                raise _NoFit(lease, i, u, pools)
            used[i] = (n0, n1, n2, n3)
        booked[lease.owner] = lease
        if lease.expires_at is not None:
            ttl += 1
    return NodeState(state.node, state.version + 1, pools, tuple(used), booked, ttl)


def _placer(leases: Sequence[Lease]) -> Callable[[NodeState], tuple[NodeState | None, None]]:
    def change(state: NodeState) -> tuple[NodeState | None, None]:
        return _place(state, leases), None

    return change


def _unbook(state: NodeState, victims: Sequence[Lease]) -> NodeState:
    """``state`` without ``victims`` (each must be booked in it)."""
    pools = state.pools
    used = list(state.used)
    booked = dict(state.leases)
    ttl = state.ttl_leases
    for lease in victims:
        del booked[lease.owner]
        a0, a1, a2, a3 = lease.units
        for i in pools.chains[pools.by_name[lease.pool or _ROOT]]:
            u = used[i]
            used[i] = (u[0] - a0, u[1] - a1, u[2] - a2, u[3] - a3)
        if lease.expires_at is not None:
            ttl -= 1
    return NodeState(state.node, state.version + 1, pools, tuple(used), booked, ttl)


def _level_dict(used: Vec, limit: Vec) -> dict[str, object]:
    return {
        "capacity": _plain(limit),
        "allocated": _plain(used),
        "free": _plain((limit[0] - used[0], limit[1] - used[1], limit[2] - used[2], limit[3] - used[3])),
        "utilization": _ratios(used, limit),
    }


def _plain(vec: Vec) -> dict[str, float]:
    return {name: (vec[3] if d == 3 else unit_value(d, vec[d])) for d, name in enumerate(_FIELDS)}


def _ratios(used: Vec, limit: Vec) -> dict[str, float]:
    return {name: (used[d] / limit[d] if limit[d] > 0 else 0.0) for d, name in enumerate(_FIELDS)}


def _sum(vecs: Iterable[Vec]) -> Vec:
    t0 = t1 = t2 = t3 = 0
    for v in vecs:
        t0 += v[0]
        t1 += v[1]
        t2 += v[2]
        t3 += v[3]
    return (t0, t1, t2, t3)


class Cluster:
    """The capacity ledger of a set of nodes, each with nested pools, booked by leases.

    Thread-safe without a global lock (see the module docstring). Methods that take ``now`` use
    ``clock.now()`` when it is omitted; a cluster without a clock needs ``now`` wherever a TTL is
    involved.

    Bounds (every map here): nodes and pools are bounded by configuration (``add_node`` /
    ``add_pool``, removable when empty); the owner index and each node's lease map hold exactly
    the leases currently booked plus in-flight claims of running calls; a released, reaped or
    rolled-back owner leaves no entry anywhere.

    Args:
        clock: where ``now`` comes from when a caller omits it.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock
        # node id -> node; bounded by configuration.
        self._nodes: dict[str, _Node] = {}
        # owner -> (lease_id, node id) for every booked lease and every claim of a call in flight;
        # bounded by what is allocated (entries leave on release, reap, rollback and failure).
        self._owners: dict[str, tuple[int, str]] = {}
        self._ids = itertools.count(1)  # next() on a count is atomic in CPython

    # ------------------------------------------------------------------ topology

    def add_node(
        self, node_id: str, capacity: Resources, pools: Mapping[str, Mapping[str, float]] | None = None
    ) -> None:
        """Add a node offering ``capacity``, with optional top-level pools.

        Args:
            node_id: unique name of the node.
            capacity: what the node offers.
            pools: pool name -> quota, each directly under the node (use :meth:`add_pool` to nest).

        Raises:
            ValueError: the id is taken, a figure is negative, or a pool is refused (see :meth:`add_pool`).
        """
        node = _Node(node_id, capacity, to_units(capacity, what="capacity", round_up=False))
        if self._nodes.setdefault(node_id, node) is not node:
            raise ValueError(f"node {node_id!r} already exists")
        for name, quota in (pools or {}).items():
            self.add_pool(node_id, name, quota)

    def remove_node(self, node_id: str) -> None:
        """Remove a node that holds no lease.

        Raises:
            ValueError: no such node, or it still holds leases.
        """
        node = self._node(node_id)
        if node.state.leases:
            raise ValueError(f"node {node_id!r} still holds {len(node.state.leases)} lease(s)")
        self._nodes.pop(node_id, None)

    def add_pool(
        self,
        node_id: str,
        name: str,
        quota: Mapping[str, float] | Resources,
        *,
        parent: str | None = None,
    ) -> None:
        """Add pool ``name`` on ``node_id`` under ``parent`` (another pool, or ``None`` for the node).

        Args:
            node_id: the node.
            name: unique on that node.
            quota: per resource the most the pool may hold; a resource left out of a mapping is
                unlimited at this level (its ancestors limit it). A ``Resources`` sets all four.
            parent: the enclosing pool; ``None`` for a top-level pool (enclosed by the node).

        Raises:
            ValueError: unknown node or parent, a taken or empty name, an unknown resource, a
                negative quota, or a quota above the parent's limit (the node's capacity for a
                top-level pool).
        """
        if not name:
            raise ValueError("a pool needs a name")
        figures = quota.to_dict() if isinstance(quota, Resources) else dict(quota)
        unknown = sorted(set(figures) - set(_FIELDS))
        if unknown:
            raise ValueError(f"pool {name!r}: unknown resource(s) {', '.join(unknown)}; use {_FIELDS}")
        for res, value in figures.items():
            if value < 0:
                raise ValueError(f"pool {name!r}: quota for {res} must not be negative: {value:g}")
        as_res = Resources(
            figures.get("cpu_cores", 0.0),
            figures.get("memory_mb", 0.0),
            figures.get("storage_gb", 0.0),
            int(figures.get("gpu_count", 0)),
        )
        full = to_units(as_res, what=f"pool {name!r}", round_up=False)
        wanted: Vec = (
            full[0] if "cpu_cores" in figures else UNLIMITED,
            full[1] if "memory_mb" in figures else UNLIMITED,
            full[2] if "storage_gb" in figures else UNLIMITED,
            full[3] if "gpu_count" in figures else UNLIMITED,
        )
        node = self._node(node_id)

        def change(state: NodeState) -> tuple[NodeState | None, None]:
            pools = state.pools
            if name in pools.by_name:
                raise ValueError(f"pool {name!r} already exists on node {node_id!r}")
            pidx = pools.by_name.get(parent or _ROOT)
            if pidx is None:
                raise ValueError(f"unknown pool {parent!r} on node {node_id!r}; add it first")
            outer = pools.limits[pidx]
            outer_name = "node capacity" if pidx == 0 else f"pool {parent!r} limit"
            for d in range(4):
                if wanted[d] != UNLIMITED and wanted[d] > outer[d]:
                    raise ValueError(
                        f"pool {name!r}: {_FIELDS[d]} quota {unit_value(d, wanted[d]):g} exceeds the "
                        f"{outer_name} {unit_value(d, outer[d]):g}"
                    )
            new_pools = pools.with_pool(name, wanted, pidx)
            return state._replace(version=state.version + 1, pools=new_pools, used=(*state.used, ZERO)), None

        node.update(change)

    def remove_pool(self, node_id: str, name: str) -> None:
        """Remove a pool that has no child pools and no usage.

        Raises:
            ValueError: no such node or pool, or the pool has child pools or holds leases.
        """
        node = self._node(node_id)

        def change(state: NodeState) -> tuple[NodeState | None, None]:
            pools = state.pools
            idx = pools.by_name.get(name) if name else None
            if idx is None:
                raise ValueError(f"unknown pool {name!r} on node {node_id!r}")
            if idx in pools.parents:
                raise ValueError(f"pool {name!r} on node {node_id!r} has child pools")
            if state.used[idx] != ZERO:
                raise ValueError(f"pool {name!r} on node {node_id!r} still holds leases")
            used = tuple(u for i, u in enumerate(state.used) if i != idx)
            return state._replace(version=state.version + 1, pools=pools.without_pool(idx), used=used), None

        node.update(change)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node ids, sorted."""
        return tuple(sorted(self._nodes))

    def state(self, node_id: str) -> NodeState:
        """The node's current immutable state: a consistent snapshot of that node, lock-free.

        Raises:
            ValueError: no such node.
        """
        return self._node(node_id).state

    def _node(self, node_id: str) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            raise ValueError(f"unknown node {node_id!r}")
        return node

    def _now(self, now: float | None) -> float:
        if now is not None:
            return now
        if self._clock is None:
            raise ValueError("pass now= or give the Cluster a clock")
        return self._clock.now()

    # ------------------------------------------------------------------ reading

    @property
    def version(self) -> int:
        """Sum of the node versions: grows with every change anywhere."""
        return sum(n.state.version for n in list(self._nodes.values()))

    @property
    def owners(self) -> int:
        """Owners holding a lease or claimed by a call in flight."""
        return len(self._owners)

    @property
    def conflicts(self) -> int:
        """Failed compare-and-sets so far (each one recomputed and retried), over all nodes."""
        return sum(n.conflicts for n in list(self._nodes.values()))

    def lease(self, owner: str) -> Lease | None:
        """The lease ``owner`` holds now, or ``None``."""
        entry = self._owners.get(owner)
        if entry is None:
            return None
        node = self._nodes.get(entry[1])
        if node is None:
            return None
        lease = node.state.leases.get(owner)
        return lease if lease is not None and lease.lease_id == entry[0] else None

    def capacity(self, node: str | None = None, pool: str | None = None) -> Resources:
        """Capacity of the cluster (no node), of a node, or a pool's quota."""
        return from_units(self._level(node, pool)[1])

    def allocated(self, node: str | None = None, pool: str | None = None) -> Resources:
        """What is booked in the cluster, a node, or a pool (including its sub-pools)."""
        return from_units(self._level(node, pool)[0])

    def free(self, node: str | None = None, pool: str | None = None) -> Resources:
        """Capacity (or quota) minus what is booked, at one level."""
        used, limit = self._level(node, pool)
        return from_units((limit[0] - used[0], limit[1] - used[1], limit[2] - used[2], limit[3] - used[3]))

    def utilization(self, node: str | None = None, pool: str | None = None) -> dict[str, float]:
        """Booked / limit per resource at one level (0.0 where the limit is zero)."""
        used, limit = self._level(node, pool)
        return _ratios(used, limit)

    def _level(self, node: str | None, pool: str | None) -> tuple[Vec, Vec]:
        if node is None:
            if pool is not None:
                raise ValueError("a pool is named together with its node")
            states = [n.state for n in list(self._nodes.values())]
            return _sum(s.used[0] for s in states), _sum(s.pools.limits[0] for s in states)
        state = self._node(node).state
        idx = state.pools.by_name.get(pool or _ROOT)
        if idx is None:
            raise ValueError(f"unknown pool {pool!r} on node {node!r}")
        return state.used[idx], state.pools.limits[idx]

    def check(self, request: Resources, *, node: str, pool: str | None = None) -> list[Shortfall]:
        """What of ``request`` would not fit ``pool`` on ``node`` now, at every level up to the node.

        Returns:
            One :class:`Shortfall` per level and dimension that does not fit; empty when it fits.

        Raises:
            ValueError: no such node or pool.
            ValueError: a negative request.
        """
        units = to_units(request)
        state = self._node(node).state
        idx = state.pools.by_name.get(pool or _ROOT)
        if idx is None:
            raise ValueError(f"unknown pool {pool!r} on node {node!r}")
        out: list[Shortfall] = []
        for level in state.pools.chains[idx]:
            out.extend(_shortfalls(units, state.used[level], state.pools, level, node))
        return out

    def snapshot(self) -> dict[str, object]:
        """Plain data for ``status`` and the API: every level's capacity, allocation, free, utilization.

        Each node's part is read from one immutable state, so it is consistent; the cluster totals
        add the node parts read one after the other.
        """
        states = [n.state for n in sorted(list(self._nodes.values()), key=lambda n: n.node_id)]
        nodes: dict[str, object] = {}
        for s in states:
            pools: dict[str, object] = {}
            for i in range(1, len(s.pools.names)):
                parent = s.pools.parents[i]
                pools[s.pools.names[i]] = {
                    "parent": s.pools.names[parent] or None,
                    **_level_dict(s.used[i], s.pools.limits[i]),
                }
            nodes[s.node] = {
                "version": s.version,
                **_level_dict(s.used[0], s.pools.limits[0]),
                "pools": pools,
                "leases": {o: lease.to_dict() for o, lease in sorted(s.leases.items())},
            }
        return {
            "version": sum(s.version for s in states),
            **_level_dict(_sum(s.used[0] for s in states), _sum(s.pools.limits[0] for s in states)),
            "nodes": nodes,
        }

    # ------------------------------------------------------------------ booking

    def allocate(
        self,
        owner: str,
        request: Resources,
        *,
        node: str,
        pool: str | None = None,
        ttl: float | None = None,
        group: str | None = None,
        now: float | None = None,
    ) -> Lease:
        """Book ``request`` for ``owner`` in ``pool`` on ``node`` (all or nothing).

        Args:
            owner: who holds it; unique in the cluster while held.
            request: how much.
            node: where.
            pool: which pool of the node; ``None`` books on the node directly.
            ttl: seconds until the lease expires unless renewed; ``None`` never expires.
            group: a deployment id, for :meth:`release_all`.
            now: monotonic seconds (default ``clock.now()``); needed only with a ``ttl``.

        Returns:
            The lease.

        Raises:
            CapacityError: it does not fit the pool or an ancestor (E004, a ``PlacementError``).
            ValueError: ``owner`` already holds a lease, a negative request or a bad ttl.
            ValueError: no such node or pool.
        """
        return self.allocate_batch([BatchItem(owner, request, node, pool, ttl, group)], now=now)[0]

    def allocate_batch(self, items: Sequence[BatchItem], *, now: float | None = None) -> list[Lease]:
        """Book several requests on any nodes and pools: every one, or none.

        Every request is checked against the current states first; then the nodes are committed in
        node id order; if a node refuses (another thread took the room meanwhile), what was already
        committed is rolled back.

        Args:
            items: the requests; owners must be distinct and hold nothing yet.
            now: monotonic seconds (default ``clock.now()``); needed only when an item has a ``ttl``.

        Returns:
            The leases, in the order of ``items``.

        Raises:
            CapacityError: a request does not fit (E004); the message names the first owner that
                does not fit, the resource, and the wanted and free figures. Nothing is booked.
            ValueError: a duplicate or already holding owner, a negative request, a bad ttl.
            ValueError: no such node or pool.
        """
        if not items:
            return []
        leases = self._make_leases(items, now)
        claimed = self._claim(leases)
        try:
            by_node: dict[str, list[Lease]] = {}
            for lease in leases:
                by_node.setdefault(lease.node, []).append(lease)
            order = sorted(by_node)
            nodes = [self._node(n) for n in order]
            if len(order) > 1:
                # Check everything against the current states before committing anything.
                for node in nodes:
                    _place(node.state, by_node[node.node_id])
            done: list[tuple[_Node, list[Lease]]] = []
            try:
                for node in nodes:
                    group = by_node[node.node_id]
                    node.update(_placer(group))
                    done.append((node, group))
            except BaseException:
                for node, group in reversed(done):
                    self._unbook_exact(node, group)
                raise
        except _NoFit as miss:
            self._unclaim(claimed)
            raise self._error(miss, len(items)) from None
        except BaseException:
            self._unclaim(claimed)
            raise
        return leases

    def _make_leases(self, items: Sequence[BatchItem], now: float | None) -> list[Lease]:
        seen: set[str] = set()
        out: list[Lease] = []
        stamp: float | None = None
        for it in items:
            if it.owner in seen:
                raise ValueError(f"{it.owner!r} appears twice in one batch")
            seen.add(it.owner)
            units = to_units(it.request, what=f"request for {it.owner!r}")
            expires: float | None = None
            if it.ttl is not None:
                if not it.ttl > 0:
                    raise ValueError(f"ttl for {it.owner!r} must be positive seconds or None: {it.ttl!r}")
                if stamp is None:
                    stamp = self._now(now)
                expires = stamp + it.ttl
            out.append(
                Lease(
                    it.owner, it.node, it.pool, it.request, units, it.ttl, expires, it.group, next(self._ids)
                )
            )
        return out

    def _claim(self, leases: Sequence[Lease]) -> list[Lease]:
        claimed: list[Lease] = []
        for lease in leases:
            entry = (lease.lease_id, lease.node)
            if self._owners.setdefault(lease.owner, entry) is not entry:
                self._unclaim(claimed)
                raise ValueError(f"{lease.owner!r} already holds an allocation; release it first")
            claimed.append(lease)
        return claimed

    def _unclaim(self, leases: Iterable[Lease]) -> None:
        for lease in leases:
            entry = self._owners.get(lease.owner)
            if entry is not None and entry[0] == lease.lease_id:
                self._owners.pop(lease.owner, None)

    def _unbook_exact(self, node: _Node, leases: Sequence[Lease]) -> list[Lease]:
        """Remove those of ``leases`` (by id) still booked on ``node``; returns what was removed."""

        def change(state: NodeState) -> tuple[NodeState | None, list[Lease]]:
            victims = []
            for lease in leases:
                cur = state.leases.get(lease.owner)
                if cur is not None and cur.lease_id == lease.lease_id:
                    victims.append(cur)
            return (_unbook(state, victims) if victims else None), victims

        return node.update(change)

    def _error(self, miss: _NoFit, batch: int) -> CapacityError:
        lease = miss.lease
        sfs = _shortfalls(lease.units, miss.used, miss.pools, miss.level, lease.node)
        where = "" if len(self._nodes) == 1 else f"node {lease.node!r}: "
        if miss.level:
            where += f"pool {miss.pools.names[miss.level]!r}: "
        kind = "quota" if miss.level else "capacity"
        parts = [
            f"{sf.resource} requested {sf.wanted:g} but only {sf.free:g} free ({kind} {sf.limit:g})"
            for sf in sfs
        ]
        msg = f"cannot place {lease.owner!r}: {where}" + "; ".join(parts)
        if batch > 1:
            msg += f" (batch of {batch} placed nothing)"
        return CapacityError(msg, owner=lease.owner, shortfalls=sfs)

    # ------------------------------------------------------------------ freeing

    def release(self, owner: str) -> Lease | None:
        """Free what ``owner`` holds. Safe when it holds nothing.

        Returns:
            The freed lease, or ``None`` when nothing was held.
        """
        entry = self._owners.get(owner)
        if entry is None:
            return None
        lease_id, node_id = entry
        node = self._nodes.get(node_id)
        if node is None:
            return None

        def change(state: NodeState) -> tuple[NodeState | None, Lease | None]:
            cur = state.leases.get(owner)
            if cur is None or cur.lease_id != lease_id:
                return None, None  # not booked (yet): a claim of a call in flight, or gone already
            return _unbook(state, (cur,)), cur

        freed = node.update(change)
        if freed is not None:
            self._unclaim((freed,))
        return freed

    def release_all(self, prefix: str | None = None, *, group: str | None = None) -> list[Lease]:
        """Free every lease whose owner starts with ``prefix`` and/or whose group is ``group``.

        For a failed or cancelled deployment: pass its deployment id as ``group`` (or the owner
        prefix its replicas share). One compare-and-set per node touched.

        Args:
            prefix: owner prefix to match (``""`` matches everyone).
            group: group to match.

        Returns:
            The freed leases, sorted by owner.

        Raises:
            ValueError: neither ``prefix`` nor ``group`` given.
        """
        if prefix is None and group is None:
            raise ValueError("release_all needs a prefix or a group")
        freed: list[Lease] = []
        for node in list(self._nodes.values()):

            def match(lease: Lease) -> bool:
                return (prefix is None or lease.owner.startswith(prefix)) and (
                    group is None or lease.group == group
                )

            freed.extend(self._unbook_where(node, match))
        freed.sort(key=lambda lease: lease.owner)
        return freed

    def _unbook_where(self, node: _Node, match: Callable[[Lease], bool]) -> list[Lease]:
        def change(state: NodeState) -> tuple[NodeState | None, list[Lease]]:
            victims = [lease for lease in state.leases.values() if match(lease)]
            return (_unbook(state, victims) if victims else None), victims

        victims = node.update(change)
        self._unclaim(victims)
        return victims

    # ------------------------------------------------------------------ leases in time

    def renew(self, owner: str, now: float | None = None) -> Lease | None:
        """Extend ``owner``'s lease to ``now + ttl``.

        A lease without a TTL is returned unchanged. An expired lease is *not* renewed (the reaper
        may free it at any moment): the owner must place again.

        Returns:
            The renewed lease, or ``None`` when ``owner`` holds nothing or its lease has expired.
        """
        entry = self._owners.get(owner)
        if entry is None:
            return None
        node = self._nodes.get(entry[1])
        if node is None:
            return None
        stamp = self._now(now)

        def change(state: NodeState) -> tuple[NodeState | None, Lease | None]:
            cur = state.leases.get(owner)
            if cur is None or cur.lease_id != entry[0]:
                return None, None
            if cur.ttl is None:
                return None, cur
            if cur.expires_at is not None and cur.expires_at <= stamp:
                return None, None
            fresh = cur._replace(expires_at=stamp + cur.ttl)
            booked = dict(state.leases)
            booked[owner] = fresh
            return state._replace(version=state.version + 1, leases=booked), fresh

        return node.update(change)

    def reap(self, now: float | None = None) -> list[Lease]:
        """Free every lease that expired at or before ``now``.

        Returns:
            The freed leases, by expiry time then owner, so the caller can emit an event for each.
        """
        stamp = self._now(now)
        freed: list[Lease] = []
        for node in list(self._nodes.values()):
            if node.state.ttl_leases == 0:
                continue
            freed.extend(
                self._unbook_where(
                    node, lambda lease: lease.expires_at is not None and lease.expires_at <= stamp
                )
            )
        freed.sort(key=lambda lease: (lease.expires_at, lease.owner))
        return freed


def _shortfalls(units: Vec, used: Vec, pools: PoolTable, level: int, node: str) -> list[Shortfall]:
    """Dimensions of ``units`` over the quota of ``level`` (resources the level leaves out never are)."""
    limit = pools.quotas[level]
    pool = pools.names[level] or None
    return [
        Shortfall(
            _FIELDS[d],
            unit_value(d, units[d]),
            unit_value(d, limit[d] - used[d]),
            unit_value(d, limit[d]),
            node,
            pool,
        )
        for d in range(4)
        if used[d] + units[d] > limit[d]
    ]
