"""A plugin pipeline that places replicas on a :class:`~deploy_code.scheduling.cluster.SimCluster`.

For each request the :class:`Scheduler` asks every filter and scorer to *prepare* a per-node
function (or ``None`` when the plugin has nothing to say about this request), then walks the nodes
from a rotating start offset. A node passes when every filter returns ``None``; the first non-``None``
reason is counted. The walk stops after ``sample`` feasible nodes (Nomad-style limit); only those are
scored, the highest weighted sum wins (ties: the first examined), and the request is reserved on it.
See ``docs/placement.md`` for the plugin interface.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from deploy_code.errors import PlacementError
from deploy_code.scheduling.cluster import DIMENSIONS, NodeId, SimCluster, SimNode, Vector, to_units
from deploy_code.units import Resources

__all__ = [
    "Affinity",
    "AntiAffinity",
    "BinPack",
    "FilterPlugin",
    "NodeCheck",
    "NodeLabels",
    "NodeScore",
    "PlacementRequest",
    "PreferredAffinity",
    "PreparedRequest",
    "ResourceFit",
    "Scheduler",
    "ScorePlugin",
    "Spread",
    "default_filters",
    "default_scorers",
]

NodeCheck = Callable[[SimNode], str | None]
"""A prepared filter: ``None`` when the node passes, else a short rejection reason."""

NodeScore = Callable[[SimNode], float]
"""A prepared scorer: a score in ``[0, 1]``, higher is better."""


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """One replica to place.

    Args:
        owner: the project (tenant) the service belongs to; affinity names resolve within it.
        service: the service name.
        resources: what one replica needs.
        node_labels: labels a node must carry with exactly these values.
        anti_affinity: services (same owner) that must not share a node with this replica (hard).
        affinity: services (same owner) that must each already have a replica on the node (hard).
        preferred_affinity: services (same owner) this replica would like to share a node with (soft).
        spread: spread the replicas of this service over nodes instead of bin-packing them.
    """

    owner: str
    service: str
    resources: Resources
    node_labels: tuple[tuple[str, str], ...] = ()
    anti_affinity: frozenset[str] = frozenset()
    preferred_affinity: frozenset[str] = frozenset()
    spread: bool = False
    affinity: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """The service key recorded on nodes: ``owner/service``."""
        return f"{self.owner}/{self.service}"


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request with its derived data, handed to plugins' ``prepare``.

    Args:
        request: the original request.
        vec: its resources in integer units (rounded up).
        key: the service key, ``owner/service``.
        anti_keys: anti-affinity service keys.
        preferred_keys: preferred-affinity service keys.
        affinity_keys: required-affinity service keys.
        reserve_resources: whether the scheduler takes the resources from the chosen node; when
            ``False`` resource filters compare with the node's total capacity, not its free capacity.
    """

    request: PlacementRequest
    vec: Vector
    key: str
    anti_keys: frozenset[str]
    preferred_keys: frozenset[str]
    affinity_keys: frozenset[str] = frozenset()
    reserve_resources: bool = True

    @classmethod
    def of(cls, request: PlacementRequest, *, reserve_resources: bool = True) -> PreparedRequest:
        """Derive the prepared form of ``request``.

        Args:
            request: the request.
            reserve_resources: see the class attribute of the same name.

        Returns:
            The prepared request.

        Raises:
            ValueError: a resource dimension is negative.
        """
        owner = request.owner
        return cls(
            request,
            to_units(request.resources, round_up=True),
            request.key,
            frozenset(f"{owner}/{s}" for s in request.anti_affinity),
            frozenset(f"{owner}/{s}" for s in request.preferred_affinity),
            frozenset(f"{owner}/{s}" for s in request.affinity),
            reserve_resources,
        )


@runtime_checkable
class FilterPlugin(Protocol):
    """A hard constraint. ``prepare`` returns a per-node check, or ``None`` when it does not apply."""

    name: str

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeCheck | None:
        """Build the per-node check for ``req``.

        Args:
            req: the prepared request.
            cluster: the cluster being scheduled.

        Returns:
            A function returning ``None`` (node passes) or a rejection reason; ``None`` to skip.
        """
        ...


@runtime_checkable
class ScorePlugin(Protocol):
    """A soft preference with a weight. ``prepare`` returns a per-node score in ``[0, 1]`` or ``None``."""

    name: str
    weight: float

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeScore | None:
        """Build the per-node score for ``req``.

        Args:
            req: the prepared request.
            cluster: the cluster being scheduled.

        Returns:
            A function returning a score in ``[0, 1]``; ``None`` when the plugin does not apply.
        """
        ...


class ResourceFit:
    """Filter: the request fits the node's free capacity in every dimension.

    When the request is prepared with ``reserve_resources=False`` it is compared with the node's total
    capacity instead: a replica larger than the node is rejected, the sum of replicas is not limited.
    """

    name = "resource-fit"

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeCheck | None:
        """Build the fit check (reason ``insufficient <dimension>``, first short dimension).

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The check.
        """
        c, m, s, g = req.vec
        rc, rm, rs, rg = (f"insufficient {d}" for d in DIMENSIONS)

        if not req.reserve_resources:

            def check_total(node: SimNode) -> str | None:
                t = node.cap
                if t[1] < m:
                    return rm
                if t[0] < c:
                    return rc
                if t[2] < s:
                    return rs
                if t[3] < g:
                    return rg
                return None

            return check_total

        def check(node: SimNode) -> str | None:
            f = node.free
            if f[1] < m:
                return rm
            if f[0] < c:
                return rc
            if f[2] < s:
                return rs
            if f[3] < g:
                return rg
            return None

        return check


class NodeLabels:
    """Filter: the node carries every required label with the required value."""

    name = "node-labels"

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeCheck | None:
        """Build the label check (reason ``node label KEY!=VALUE``); ``None`` when nothing is required.

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The check, or ``None``.
        """
        wanted = [(k, v, f"node label {k}!={v}") for k, v in req.request.node_labels]
        if not wanted:
            return None

        def check(node: SimNode) -> str | None:
            labels = node.labels
            for key, value, reason in wanted:
                if labels.get(key) != value:
                    return reason
            return None

        return check


class AntiAffinity:
    """Filter: no replica of an anti-affine service is on the node (hard, as declared by the request)."""

    name = "anti-affinity"

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeCheck | None:
        """Build the anti-affinity check (reason ``anti-affinity with SERVICE``).

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The check, or ``None`` when the request names no anti-affine services.
        """
        anti = [(k, f"anti-affinity with {k.split('/', 1)[1]}") for k in sorted(req.anti_keys)]
        if not anti:
            return None

        def check(node: SimNode) -> str | None:
            services = node.services
            if services:
                for key, reason in anti:
                    if key in services:
                        return reason
            return None

        return check


class Affinity:
    """Filter: a replica of every required-affinity service is already on the node (hard)."""

    name = "affinity"

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeCheck | None:
        """Build the affinity check (reason ``affinity: SERVICE not on node``, first missing service).

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The check, or ``None`` when the request requires no services.
        """
        wanted = [(k, f"affinity: {k.split('/', 1)[1]} not on node") for k in sorted(req.affinity_keys)]
        if not wanted:
            return None

        def check(node: SimNode) -> str | None:
            services = node.services
            for key, reason in wanted:
                if key not in services:
                    return reason
            return None

        return check


def _utilisation_after(node: SimNode, c: int, m: int) -> float:
    cap = node.cap
    used_c = cap[0] - node.free[0] + c
    used_m = cap[1] - node.free[1] + m
    uc = used_c / cap[0] if cap[0] else 1.0
    um = used_m / cap[1] if cap[1] else 1.0
    return (uc + um) / 2


class BinPack:
    """Score: prefer the node that is fullest (CPU and memory) after placing; skips spread requests.

    Args:
        weight: the weight of this score in the sum.
    """

    name = "bin-pack"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeScore | None:
        """Build the bin-pack score.

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The score, or ``None`` for spread requests.
        """
        if req.request.spread:
            return None
        c, m = req.vec[0], req.vec[1]

        def score(node: SimNode) -> float:
            # _utilisation_after, inlined: this runs for every sampled node.
            cap, free = node.cap, node.free
            cc, cm = cap[0], cap[1]
            uc = (cc - free[0] + c) / cc if cc else 1.0
            um = (cm - free[1] + m) / cm if cm else 1.0
            return (uc + um) / 2

        return score


class Spread:
    """Score: for spread requests, prefer nodes with fewer replicas of the service, then emptier ones.

    Args:
        weight: the weight of this score in the sum.
    """

    name = "spread"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeScore | None:
        """Build the spread score: ``0.75 / (1 + replicas here) + 0.25 * (1 - utilisation after)``.

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The score, or ``None`` when the request does not ask to spread.
        """
        if not req.request.spread:
            return None
        c, m, key = req.vec[0], req.vec[1], req.key

        def score(node: SimNode) -> float:
            return 0.75 / (1 + node.services.get(key, 0)) + 0.25 * (1.0 - _utilisation_after(node, c, m))

        return score


class PreferredAffinity:
    """Score: the fraction of preferred services that already have a replica on the node.

    Args:
        weight: the weight of this score in the sum.
    """

    name = "preferred-affinity"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def prepare(self, req: PreparedRequest, cluster: SimCluster) -> NodeScore | None:
        """Build the affinity score.

        Args:
            req: the prepared request.
            cluster: unused.

        Returns:
            The score, or ``None`` when the request prefers no services.
        """
        keys = tuple(req.preferred_keys)
        if not keys:
            return None
        n = len(keys)

        def score(node: SimNode) -> float:
            services = node.services
            return sum(1 for k in keys if k in services) / n

        return score


def default_filters() -> list[FilterPlugin]:
    """The default filters, cheapest-rejecting first: resource fit, labels, anti-affinity, affinity."""
    return [ResourceFit(), NodeLabels(), AntiAffinity(), Affinity()]


def default_scorers() -> list[ScorePlugin]:
    """The default scorers: ``BinPack(1)``, ``Spread(1)``, ``PreferredAffinity(0.5)``."""
    return [BinPack(1.0), Spread(1.0), PreferredAffinity(0.5)]


_PREPARED_CACHE = 4096


@dataclass(slots=True)
class _Reservation:
    node: SimNode
    vec: Vector
    key: str


class Scheduler:
    """Runs the filter and score plugins over a cluster and reserves on the chosen node.

    Args:
        filters: filter plugins, run in order; the first rejection reason of a node is counted.
        scorers: score plugins; a node's score is the weighted sum.
        sample: stop after this many feasible nodes (``k``, Nomad-style limit); at least 1.
        cluster: the cluster to place on (its nodes' free capacity is mutated).
        reserve_resources: when ``False``, place by constraints only: ``ResourceFit`` compares with
            each node's total capacity, and placing records the service on the node (for affinity,
            anti-affinity and spread) without taking its resources; ``release`` only forgets it.
            For a one-node planner whose resources are booked elsewhere (a ledger).

    Raises:
        ValueError: ``sample`` is less than 1.
    """

    def __init__(
        self,
        filters: Sequence[FilterPlugin],
        scorers: Sequence[ScorePlugin],
        sample: int = 16,
        *,
        cluster: SimCluster,
        reserve_resources: bool = True,
    ) -> None:
        if sample < 1:
            raise ValueError(f"sample must be at least 1, got {sample}")
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.sample = sample
        self.cluster = cluster
        self.reserve_resources = reserve_resources
        self._offset = 0
        self._prepared: dict[PlacementRequest, PreparedRequest] = {}

    def place(self, request: PlacementRequest) -> NodeId:
        """Place one replica and reserve its resources (only record it without ``reserve_resources``).

        Args:
            request: the replica to place.

        Returns:
            The chosen node's identifier.

        Raises:
            PlacementError: no node passes every filter (E004); the message counts rejections per reason.
            ValueError: the request has a negative resource.
        """
        return self._place(self._prepare(request)).id

    def _prepare(self, request: PlacementRequest) -> PreparedRequest:
        # Requests are immutable values and replicas of one service repeat them: memoise (bounded).
        cache = self._prepared
        try:
            prepared = cache.get(request)
        except TypeError:  # an unhashable field (e.g. a list passed as node_labels)
            return PreparedRequest.of(request, reserve_resources=self.reserve_resources)
        if prepared is None:
            prepared = PreparedRequest.of(request, reserve_resources=self.reserve_resources)
            if len(cache) >= _PREPARED_CACHE:
                cache.clear()
            cache[request] = prepared
        return prepared

    def _place(self, req: PreparedRequest) -> SimNode:
        cluster = self.cluster
        nodes = cluster.nodes
        n = len(nodes)
        k = self.sample
        # A plain ``ResourceFit`` against free capacity is evaluated inline (same verdict); the other
        # filters run as prepared. Rejections are not counted on this path: a node passes only when
        # every filter passes, whatever their order, and the counts are needed only when nothing is
        # feasible, in which case ``_error`` walks every node again with the filters in order.
        inline = req.reserve_resources
        checks: list[NodeCheck] = []
        for plugin in self.filters:
            if inline and type(plugin) is ResourceFit:
                continue
            check = plugin.prepare(req, cluster)
            if check is not None:
                checks.append(check)
        if inline:
            c, m, st, g = req.vec
        else:
            c = m = st = g = 0
        feasible: list[SimNode] = []
        add = feasible.append
        start = self._offset if self._offset < n else 0
        stop = -1
        for lo, hi in ((start, n), (0, start)):
            if not checks:
                for i in range(lo, hi):
                    node = nodes[i]
                    f = node.free
                    if f[1] < m or f[0] < c or f[2] < st or f[3] < g:
                        continue
                    add(node)
                    if len(feasible) >= k:
                        stop = i
                        break
            elif len(checks) == 1:
                only = checks[0]
                for i in range(lo, hi):
                    node = nodes[i]
                    f = node.free
                    if f[1] < m or f[0] < c or f[2] < st or f[3] < g or only(node) is not None:
                        continue
                    add(node)
                    if len(feasible) >= k:
                        stop = i
                        break
            else:
                for i in range(lo, hi):
                    node = nodes[i]
                    f = node.free
                    if f[1] < m or f[0] < c or f[2] < st or f[3] < g:
                        continue
                    for check in checks:
                        if check(node) is not None:
                            break
                    else:
                        add(node)
                        if len(feasible) >= k:
                            stop = i
                            break
            if stop >= 0:
                break
        if not feasible:
            raise self._error(req, nodes, start)
        if stop >= 0:
            self._offset = stop + 1 if stop + 1 < n else 0
        else:
            self._offset = start
        best = feasible[0]
        if len(feasible) > 1:
            scores = [(s.weight, fn) for s in self.scorers if (fn := s.prepare(req, cluster)) is not None]
            if scores:
                best_score = float("-inf")
                for node in feasible:
                    total = 0.0
                    for weight, fn in scores:
                        total += weight * fn(node)
                    if total > best_score:
                        best_score = total
                        best = node
        if req.reserve_resources:
            best.reserve(req.vec, req.key)
        else:
            best.record(req.key)
        return best

    def _error(self, req: PreparedRequest, nodes: list[SimNode], start: int) -> PlacementError:
        checks = [c for c in (f.prepare(req, self.cluster) for f in self.filters) if c is not None]
        rejected: dict[str, int] = {}
        for node in nodes[start:] + nodes[:start]:
            for check in checks:
                reason = check(node)
                if reason is not None:
                    rejected[reason] = rejected.get(reason, 0) + 1
                    break
        n = len(nodes)
        parts = ", ".join(f"{count} {reason}" for reason, count in Counter(rejected).most_common())
        detail = f": {parts}" if parts else ""
        return PlacementError(
            f"cannot place {req.key}: 0 of {n} nodes fit{detail}",
            hint="add nodes, relax node_labels, affinity or anti_affinity, or lower the request",
        )

    def place_batch(self, requests: Iterable[PlacementRequest]) -> list[NodeId]:
        """Place every request or none: on the first failure every reservation made here is released.

        Args:
            requests: the replicas, placed in order.

        Returns:
            The chosen node identifiers, one per request, in order.

        Raises:
            PlacementError: one request cannot be placed; the cluster is left as it was.
            ValueError: a request has a negative resource; the cluster is left as it was.
        """
        done: list[_Reservation] = []
        offset = self._offset
        reserve = self.reserve_resources
        try:
            for request in requests:
                req = self._prepare(request)
                node = self._place(req)
                done.append(_Reservation(node, req.vec, req.key))
        except (PlacementError, ValueError):
            for r in reversed(done):
                if reserve:
                    r.node.release(r.vec, r.key)
                else:
                    r.node.forget(r.key)
            self._offset = offset
            raise
        return [r.node.id for r in done]

    def release(self, node_id: NodeId, request: PlacementRequest) -> None:
        """Give back one replica placed on ``node_id``; without ``reserve_resources``, only forget it.

        Args:
            node_id: where it was placed.
            request: the request as placed.

        Raises:
            KeyError: no such node.
            ValueError: no replica of this service is on the node.
        """
        node = self.cluster.node(node_id)
        if self.reserve_resources:
            req = PreparedRequest.of(request)
            node.release(req.vec, req.key)
        else:
            node.forget(request.key)
