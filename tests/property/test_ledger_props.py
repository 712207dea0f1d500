"""Stateful property tests: the Ledger facade and the multi-node Cluster never over-commit and return to zero."""

from __future__ import annotations

import functools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from deploy_code.errors import PlacementError
from deploy_code.resources import BatchItem, CapacityError, Cluster, Ledger
from deploy_code.resources.quantity import to_units
from deploy_code.units import Resources

OWNERS = st.sampled_from([f"r{i}" for i in range(8)])


def resources(
    max_cpu_quarters: int, max_mem: int, max_disk: int, max_gpu: int
) -> st.SearchStrategy[Resources]:
    # CPU in quarter cores and whole MiB/GiB: every sum is exact in binary floating point,
    # so the model below can use == without tolerances.
    return st.builds(
        Resources,
        cpu_cores=st.integers(0, max_cpu_quarters).map(lambda q: q / 4),
        memory_mb=st.integers(0, max_mem).map(float),
        storage_gb=st.integers(0, max_disk).map(float),
        gpu_count=st.integers(0, max_gpu),
    )


REQUESTS = resources(12, 3000, 40, 2)


def fits(total: Resources, cap: Resources) -> bool:
    return all(getattr(total, n) <= getattr(cap, n) for n in Resources.FIELDS)


class LedgerMachine(RuleBasedStateMachine):
    """Random allocate / batch / release sequences against a dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger(Resources())
        self.model: dict[str, Resources] = {}
        self.last_version = 0

    @initialize(cap=resources(32, 8000, 100, 4))
    def setup(self, cap: Resources) -> None:
        self.ledger = Ledger(cap)

    def _model_total(self) -> Resources:
        total = Resources()
        for r in self.model.values():
            total = total + r
        return total

    @rule(owner=OWNERS, request=REQUESTS)
    def allocate(self, owner: str, request: Resources) -> None:
        if owner in self.model:
            with pytest.raises(ValueError):
                self.ledger.allocate(owner, request)
            return
        should_fit = fits(self._model_total() + request, self.ledger.capacity)
        assert (self.ledger.check(request) == []) == should_fit
        try:
            self.ledger.allocate(owner, request)
        except PlacementError as err:
            assert not should_fit
            assert repr(owner) in err.message
            return
        assert should_fit
        self.model[owner] = request

    @rule(items=st.lists(st.tuples(OWNERS, REQUESTS), max_size=4, unique_by=lambda t: t[0]))
    def allocate_batch(self, items: list[tuple[str, Resources]]) -> None:
        before = dict(self.model)
        if any(owner in self.model for owner, _ in items):
            with pytest.raises(ValueError):
                self.ledger.allocate_batch(items)
            return
        total = self._model_total()
        for _, r in items:
            total = total + r
        try:
            self.ledger.allocate_batch(items)
        except PlacementError:
            assert not fits(total, self.ledger.capacity)
            assert self.model == before
            return
        assert fits(total, self.ledger.capacity)
        self.model.update(items)

    @rule(owner=OWNERS)
    def release(self, owner: str) -> None:
        freed = self.ledger.release(owner)
        assert freed == self.model.pop(owner, Resources())

    @invariant()
    def never_over_commits_and_matches_model(self) -> None:
        led = self.ledger
        assert fits(led.allocated, led.capacity)
        assert all(getattr(led.free, n) >= 0 for n in Resources.FIELDS)
        assert led.allocated == self._model_total()
        assert led.owners == len(self.model)
        assert led.version >= self.last_version
        self.last_version = led.version

    def teardown(self) -> None:
        for owner in list(self.model):
            self.ledger.release(owner)
        assert self.ledger.allocated == Resources()
        assert self.ledger.owners == 0
        assert self.ledger.free == self.ledger.capacity


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedger = LedgerMachine.TestCase


# -- the multi-node engine: nodes, nested pools, leases in time --------------------------------

NODE_IDS = ("a", "b")
CLUSTER_POOLS: tuple[str | None, ...] = (None, "p", "q", "r")  # q nests in p; r is a sibling of p
CLUSTER_OWNERS = st.sampled_from([f"o{i}" for i in range(10)])
Vec = tuple[int, int, int, int]


def vec_add(x: Vec, y: Vec) -> Vec:
    return (x[0] + y[0], x[1] + y[1], x[2] + y[2], x[3] + y[3])


class ClusterMachine(RuleBasedStateMachine):
    """Random allocate / batch / release / release_all / renew / reap on a two-node Cluster.

    The model is a dict of owner -> (node, pool, request units, expiry). Invariants: no level is
    over its limit, every level's allocation equals the sum of the model's leases under it, and
    after releasing everything every level is exactly zero.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster()
        self.model: dict[str, tuple[str, str | None, Vec, float | None]] = {}
        self.now = 0.0

    @initialize(
        caps=st.lists(resources(32, 8000, 100, 4), min_size=2, max_size=2),
        fractions=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    )
    def setup(self, caps: list[Resources], fractions: list[int]) -> None:
        for node, cap in zip(NODE_IDS, caps, strict=True):
            self.cluster.add_node(node, cap)
            p = cap.scale(fractions[0] / 4)
            self.cluster.add_pool(node, "p", {"cpu_cores": p.cpu_cores, "memory_mb": p.memory_mb})
            self.cluster.add_pool(node, "q", {"memory_mb": p.memory_mb * fractions[1] / 4}, parent="p")
            self.cluster.add_pool(node, "r", {"gpu_count": cap.gpu_count * fractions[2] // 4})

    def _fits(self, extra: list[tuple[str, str | None, Vec]]) -> bool:
        """Whether the model's leases plus ``extra`` respect every quota (the reference check)."""
        for node in NODE_IDS:
            state = self.cluster.state(node)
            pools = state.pools
            totals = [(0, 0, 0, 0)] * len(pools.names)
            entries = [(n, p, u) for n, p, u, _ in self.model.values()] + extra
            for n, p, u in entries:
                if n != node:
                    continue
                for i in pools.chains[pools.by_name[p or ""]]:
                    totals[i] = vec_add(totals[i], u)
            for t, q in zip(totals, pools.quotas, strict=True):
                if any(t[d] > q[d] for d in range(4)):
                    return False
        return True

    @rule(
        owner=CLUSTER_OWNERS,
        request=REQUESTS,
        node=st.sampled_from(NODE_IDS),
        pool=st.sampled_from(CLUSTER_POOLS),
        ttl=st.none() | st.integers(1, 5).map(float),
    )
    def allocate(
        self, owner: str, request: Resources, node: str, pool: str | None, ttl: float | None
    ) -> None:
        if owner in self.model:
            with pytest.raises(ValueError):
                self.cluster.allocate(owner, request, node=node, pool=pool, ttl=ttl, now=self.now)
            return
        units = to_units(request)
        should_fit = self._fits([(node, pool, units)])
        assert (self.cluster.check(request, node=node, pool=pool) == []) == should_fit
        try:
            lease = self.cluster.allocate(owner, request, node=node, pool=pool, ttl=ttl, now=self.now)
        except CapacityError as err:
            assert not should_fit
            assert err.owner == owner and err.shortfalls
            return
        assert should_fit
        self.model[owner] = (node, pool, units, lease.expires_at)

    @rule(
        items=st.lists(
            st.tuples(CLUSTER_OWNERS, REQUESTS, st.sampled_from(NODE_IDS), st.sampled_from(CLUSTER_POOLS)),
            max_size=4,
            unique_by=lambda t: t[0],
        )
    )
    def allocate_batch(self, items: list[tuple[str, Resources, str, str | None]]) -> None:
        batch = [BatchItem(o, r, n, p) for o, r, n, p in items]
        before = dict(self.model)
        if any(o in self.model for o, *_ in items):
            with pytest.raises(ValueError):
                self.cluster.allocate_batch(batch)
            assert self.model == before
            return
        should_fit = self._fits([(n, p, to_units(r)) for _, r, n, p in items])
        try:
            leases = self.cluster.allocate_batch(batch)
        except CapacityError:
            assert not should_fit
            return
        assert should_fit
        for lease in leases:
            self.model[lease.owner] = (lease.node, lease.pool, lease.units, None)

    @rule(owner=CLUSTER_OWNERS)
    def release(self, owner: str) -> None:
        lease = self.cluster.release(owner)
        held = self.model.pop(owner, None)
        assert (lease is None) == (held is None)
        if lease is not None and held is not None:
            assert (lease.node, lease.pool, lease.units) == held[:3]

    @rule(prefix=st.sampled_from(["o", "o1", "o2", "o9"]))
    def release_all(self, prefix: str) -> None:
        freed = {lease.owner for lease in self.cluster.release_all(prefix)}
        expected = {o for o in self.model if o.startswith(prefix)}
        assert freed == expected
        for o in expected:
            del self.model[o]

    @rule(owner=CLUSTER_OWNERS)
    def renew(self, owner: str) -> None:
        lease = self.cluster.renew(owner, now=self.now)
        held = self.model.get(owner)
        if held is None or (held[3] is not None and held[3] <= self.now):
            assert lease is None
            return
        assert lease is not None
        self.model[owner] = (*held[:3], lease.expires_at)
        if lease.ttl is not None:
            assert lease.expires_at == self.now + lease.ttl

    @rule(seconds=st.integers(0, 4).map(float))
    def tick_and_reap(self, seconds: float) -> None:
        self.now += seconds
        reaped = {lease.owner for lease in self.cluster.reap(now=self.now)}
        expired = {o for o, (*_, exp) in self.model.items() if exp is not None and exp <= self.now}
        assert reaped == expired
        for o in expired:
            del self.model[o]

    @invariant()
    def levels_match_leases_and_limits(self) -> None:
        if not self.cluster.nodes:
            return
        total: Vec = (0, 0, 0, 0)
        for node in NODE_IDS:
            state = self.cluster.state(node)
            assert state.over_committed() == []
            assert state.recount() == state.used
            mine = {o for o, (n, *_) in self.model.items() if n == node}
            assert set(state.leases) == mine
            assert state.ttl_leases == sum(1 for o in mine if self.model[o][3] is not None)
            total = vec_add(total, state.used[0])
        assert total == functools.reduce(vec_add, (u for _, _, u, _ in self.model.values()), (0, 0, 0, 0))
        assert self.cluster.owners == len(self.model)

    def teardown(self) -> None:
        if not self.cluster.nodes:
            return
        self.cluster.release_all("")
        for node in NODE_IDS:
            state = self.cluster.state(node)
            assert all(u == (0, 0, 0, 0) for u in state.used)
            assert not state.leases
        assert self.cluster.owners == 0
        assert self.cluster.allocated() == Resources()


ClusterMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestCluster = ClusterMachine.TestCase
