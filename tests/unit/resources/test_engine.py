"""Unit tests for deploy_code.resources.engine: the multi-node Cluster, its pools, leases and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from deploy_code.clock import FakeClock
from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.resources import BatchItem, CapacityError, Cluster, NodeState, Shortfall
from deploy_code.resources.engine import _Node
from deploy_code.resources.quantity import from_units, to_units
from deploy_code.units import Resources

_T = TypeVar("_T")
CAP = Resources(cpu_cores=8, memory_mb=16384, storage_gb=100, gpu_count=2)


def two_nodes(clock: FakeClock | None = None) -> Cluster:
    cluster = Cluster(clock=clock)
    cluster.add_node("n1", CAP, pools={"batch": {"cpu_cores": 4, "memory_mb": 8192}})
    cluster.add_pool("n1", "etl", {"memory_mb": 2048}, parent="batch")
    cluster.add_node("n2", Resources(cpu_cores=2, memory_mb=1024))
    return cluster


# -- quantities ---------------------------------------------------------------------------


def test_units_are_exact_integers_rounded_safely() -> None:
    assert to_units(Resources(cpu_cores=0.1, memory_mb=0.5, storage_gb=1.5, gpu_count=1)) == (
        100,
        512,
        1536,
        1,
    )
    assert to_units(Resources(cpu_cores=0.0001)) == (1, 0, 0, 0)  # requests round up
    assert to_units(Resources(cpu_cores=0.0019), round_up=False) == (1, 0, 0, 0)  # limits round down
    assert from_units((1500, 1024, 2048, 3)) == Resources(1.5, 1.0, 2.0, 3)
    with pytest.raises(ValueError, match="negative"):
        to_units(Resources(memory_mb=-1))
    with pytest.raises(ValueError, match="non-finite"):
        to_units(Resources(cpu_cores=float("nan")))


# -- topology -----------------------------------------------------------------------------


def test_nodes_and_pools_are_listed_and_versioned() -> None:
    cluster = two_nodes()
    assert cluster.nodes == ("n1", "n2")
    assert cluster.state("n1").pools.names == ("", "batch", "etl")
    assert cluster.state("n1").version == 2  # two pools added
    assert cluster.capacity() == CAP + Resources(cpu_cores=2, memory_mb=1024)
    assert cluster.capacity("n1", "etl") == Resources(
        cpu_cores=4, memory_mb=2048, storage_gb=100, gpu_count=2
    )


@pytest.mark.parametrize(
    ("quota", "parent", "fragment"),
    [
        ({"cpu_cores": 9}, None, "exceeds the node capacity 8"),
        ({"memory_mb": 9000}, "batch", "exceeds the pool 'batch' limit 8192"),
        ({"storage_gb": 101}, "batch", "exceeds the pool 'batch' limit 100"),  # inherited from the node
        ({"gpus": 1}, None, "unknown resource"),
        ({"cpu_cores": -1}, None, "must not be negative"),
        ({}, "ghost", "unknown pool 'ghost'"),
    ],
)
def test_pool_quota_errors(quota: dict[str, float], parent: str | None, fragment: str) -> None:
    cluster = two_nodes()
    with pytest.raises(ValueError, match=fragment):
        cluster.add_pool("n1", "child", quota, parent=parent)
    assert "child" not in cluster.state("n1").pools.by_name


def test_topology_errors() -> None:
    cluster = two_nodes()
    with pytest.raises(ValueError, match="already exists"):
        cluster.add_node("n1", CAP)
    with pytest.raises(ValueError, match="already exists"):
        cluster.add_pool("n1", "batch", {})
    with pytest.raises(ValueError, match="needs a name"):
        cluster.add_pool("n1", "", {})
    with pytest.raises(ValueError, match="unknown node"):
        cluster.add_pool("n9", "p", {})
    with pytest.raises(ValueError, match="unknown node"):
        cluster.state("n9")
    with pytest.raises(ValueError, match="child pools"):
        cluster.remove_pool("n1", "batch")
    cluster.allocate("a", Resources(cpu_cores=1), node="n1", pool="etl")
    with pytest.raises(ValueError, match="holds leases"):
        cluster.remove_pool("n1", "etl")
    with pytest.raises(ValueError, match="still holds"):
        cluster.remove_node("n1")
    cluster.release("a")
    cluster.remove_pool("n1", "etl")
    cluster.remove_pool("n1", "batch")
    assert cluster.state("n1").pools.names == ("",)
    cluster.remove_node("n1")
    assert cluster.nodes == ("n2",)


def test_removing_a_middle_pool_keeps_the_others_consistent() -> None:
    cluster = Cluster()
    cluster.add_node("n", CAP, pools={"a": {"cpu_cores": 1}, "b": {"cpu_cores": 2}})
    cluster.add_pool("n", "c", {"cpu_cores": 1}, parent="b")
    cluster.remove_pool("n", "a")
    cluster.allocate("x", Resources(cpu_cores=1), node="n", pool="c")
    assert cluster.allocated("n", "b") == Resources(cpu_cores=1)
    state = cluster.state("n")
    assert state.recount() == state.used


# -- allocate / check / errors --------------------------------------------------------------


def test_allocation_counts_against_pool_and_every_ancestor() -> None:
    cluster = two_nodes()
    lease = cluster.allocate("job.1", Resources(cpu_cores=1, memory_mb=512), node="n1", pool="etl")
    assert (lease.owner, lease.node, lease.pool, lease.units) == (
        "job.1",
        "n1",
        "etl",
        (1000, 512 * 1024, 0, 0),
    )
    for pool in ("etl", "batch", None):
        assert cluster.allocated("n1", pool) == Resources(cpu_cores=1, memory_mb=512)
    assert cluster.allocated("n2") == Resources()
    assert cluster.allocated() == Resources(cpu_cores=1, memory_mb=512)
    assert cluster.utilization("n1", "etl")["memory_mb"] == 0.25
    assert cluster.utilization("n1", "batch") == {
        "cpu_cores": 0.25,
        "memory_mb": 0.0625,
        "storage_gb": 0.0,
        "gpu_count": 0.0,
    }
    assert cluster.free("n1", "batch") == Resources(cpu_cores=3, memory_mb=7680, storage_gb=100, gpu_count=2)
    assert cluster.lease("job.1") == lease


def test_pool_refusal_is_e004_naming_owner_level_resource_and_figures() -> None:
    cluster = two_nodes()
    cluster.allocate("a", Resources(memory_mb=2000), node="n1", pool="etl")
    with pytest.raises(CapacityError) as info:
        cluster.allocate("b", Resources(memory_mb=100), node="n1", pool="etl")
    err = info.value
    assert isinstance(err, PlacementError) and err.code is ErrorCode.E004
    assert err.message == (
        "cannot place 'b': node 'n1': pool 'etl': memory_mb requested 100 but only 48 free (quota 2048)"
    )
    assert err.owner == "b"
    assert err.shortfalls == (Shortfall("memory_mb", 100.0, 48.0, 2048.0, "n1", "etl"),)
    # The same amount fits beside the pool.
    cluster.allocate("c", Resources(memory_mb=100), node="n1")


def test_parent_and_node_refusals_name_their_level() -> None:
    cluster = two_nodes()
    cluster.allocate("a", Resources(cpu_cores=3.5), node="n1", pool="etl")
    with pytest.raises(CapacityError, match=r"pool 'batch': cpu_cores requested 1 but only 0\.5 free"):
        cluster.allocate("b", Resources(cpu_cores=1), node="n1", pool="batch")
    with pytest.raises(CapacityError) as info:
        cluster.allocate("g", Resources(cpu_cores=3, gpu_count=1), node="n2")
    assert info.value.message == (
        "cannot place 'g': node 'n2': cpu_cores requested 3 but only 2 free (capacity 2); "
        "gpu_count requested 1 but only 0 free (capacity 0)"
    )


def test_check_reports_every_level_that_refuses() -> None:
    cluster = two_nodes()
    assert cluster.check(Resources(cpu_cores=4), node="n1", pool="etl") == []
    got = cluster.check(Resources(cpu_cores=5, memory_mb=4096), node="n1", pool="etl")
    assert [(s.pool, s.resource) for s in got] == [
        ("etl", "memory_mb"),
        ("batch", "cpu_cores"),
    ]
    with pytest.raises(ValueError, match="unknown pool"):
        cluster.check(Resources(), node="n1", pool="ghost")


def test_allocation_argument_errors_book_nothing() -> None:
    cluster = two_nodes()
    cluster.allocate("held", Resources(cpu_cores=1), node="n2")
    cases: list[tuple[list[BatchItem], str]] = [
        ([BatchItem("held", Resources(), "n1")], "already holds"),
        ([BatchItem("x", Resources(), "n1"), BatchItem("x", Resources(), "n2")], "twice"),
        ([BatchItem("x", Resources(cpu_cores=-1), "n1")], "negative"),
        ([BatchItem("x", Resources(), "n1", "ghost")], "unknown pool"),
        ([BatchItem("x", Resources(), "n9")], "unknown node"),
        ([BatchItem("x", Resources(), "n1", ttl=0)], "ttl"),
        ([BatchItem("x", Resources(), "n1", ttl=5)], "now="),  # no clock and no now
    ]
    for items, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            cluster.allocate_batch(items)
        assert cluster.owners == 1
        assert cluster.lease("x") is None
    assert cluster.allocated() == Resources(cpu_cores=1)


def test_multi_node_batch_is_all_or_nothing() -> None:
    cluster = two_nodes()
    v1, v2 = cluster.state("n1").version, cluster.state("n2").version
    items = [
        BatchItem("a", Resources(cpu_cores=1), "n1", "etl"),
        BatchItem("b", Resources(cpu_cores=1), "n2"),
        BatchItem("c", Resources(cpu_cores=1.5), "n2"),
    ]
    with pytest.raises(CapacityError) as info:
        cluster.allocate_batch(items)
    assert "cannot place 'c': node 'n2': cpu_cores requested 1.5 but only 1 free" in info.value.message
    assert "batch of 3 placed nothing" in info.value.message
    assert (cluster.state("n1").version, cluster.state("n2").version) == (v1, v2)  # nothing committed
    assert cluster.owners == 0
    leases = cluster.allocate_batch(items[:2])
    assert [lease.owner for lease in leases] == ["a", "b"]
    assert cluster.allocated() == Resources(cpu_cores=2)


class _RacedNode(_Node):
    """A real node whose first commit is preceded by a rival booking all its room (a lost race)."""

    def __init__(self, cluster: Cluster, node: _Node) -> None:
        super().__init__(node.node_id, node.capacity, node.state.pools.limits[0])
        self.state = node.state
        self.cluster = cluster
        self.raced = False

    def update(self, change: Callable[[NodeState], tuple[NodeState | None, _T]]) -> _T:
        if not self.raced:
            self.raced = True
            self.cluster.allocate("rival", Resources(cpu_cores=2), node=self.node_id)
        return super().update(change)


def test_multi_node_batch_rolls_back_committed_nodes_when_a_later_node_refuses() -> None:
    # The pre-check passes on both nodes; n1 commits first (node id order); then a rival takes n2's
    # room before n2 commits, so n2 refuses and n1's part is rolled back.
    cluster = two_nodes()
    cluster._nodes["n2"] = _RacedNode(cluster, cluster._nodes["n2"])
    v1 = cluster.state("n1").version
    with pytest.raises(CapacityError, match="cannot place 'b'"):
        cluster.allocate_batch(
            [
                BatchItem("a", Resources(cpu_cores=1), "n1", "etl"),
                BatchItem("b", Resources(cpu_cores=1), "n2"),
            ]
        )
    assert cluster.state("n1").version == v1 + 2  # committed, then rolled back
    assert cluster.allocated("n1") == Resources()
    assert cluster.allocated("n1", "etl") == Resources()
    assert cluster.lease("a") is None and cluster.lease("b") is None
    assert cluster.owners == 1  # only the rival
    assert cluster.allocated("n2") == Resources(cpu_cores=2)


def test_empty_batch_changes_nothing() -> None:
    cluster = two_nodes()
    v = cluster.version
    assert cluster.allocate_batch([]) == []
    assert cluster.version == v


# -- release -------------------------------------------------------------------------------


def test_release_returns_the_lease_and_is_idempotent() -> None:
    cluster = two_nodes()
    lease = cluster.allocate("a", Resources(cpu_cores=1), node="n1", pool="batch")
    assert cluster.release("a") == lease
    v = cluster.version
    assert cluster.release("a") is None
    assert cluster.release("never") is None
    assert cluster.version == v
    assert cluster.owners == 0


def test_release_all_by_prefix_and_by_group() -> None:
    cluster = two_nodes()
    cluster.allocate_batch(
        [
            BatchItem("d1/api.0", Resources(cpu_cores=1), "n1", group="d1"),
            BatchItem("d1/api.1", Resources(cpu_cores=1), "n2", group="d1"),
            BatchItem("d2/db.0", Resources(cpu_cores=1), "n1", "etl", group="d2"),
            BatchItem("other", Resources(cpu_cores=1), "n1", "etl", group="d2"),
        ]
    )
    freed = cluster.release_all("d1/")
    assert [(lease.owner, lease.node) for lease in freed] == [("d1/api.0", "n1"), ("d1/api.1", "n2")]
    assert [lease.owner for lease in cluster.release_all(group="d2")] == ["d2/db.0", "other"]
    assert cluster.release_all("d1/") == []
    assert cluster.owners == 0
    assert cluster.allocated() == Resources()
    with pytest.raises(ValueError):
        cluster.release_all()


def test_released_owners_leave_no_entries_anywhere() -> None:
    cluster = two_nodes()
    for round_ in range(50):
        for i in range(20):
            cluster.allocate(
                f"r{round_}.{i}", Resources(cpu_cores=0.1, memory_mb=33.3), node="n1", pool="etl"
            )
        cluster.release_all(f"r{round_}.")
    assert cluster.owners == 0
    assert len(cluster._owners) == 0
    state = cluster.state("n1")
    assert state.leases == {} and state.ttl_leases == 0
    assert all(u == (0, 0, 0, 0) for u in state.used)  # exactly zero, no float drift


# -- leases in time --------------------------------------------------------------------------


def test_ttl_renew_and_reap_with_a_fake_clock() -> None:
    clock = FakeClock(start=100.0)
    cluster = two_nodes(clock)
    a = cluster.allocate("a", Resources(cpu_cores=1), node="n1", pool="etl", ttl=10)
    cluster.allocate_batch(
        [
            BatchItem("b", Resources(cpu_cores=1), "n1", ttl=5),
            BatchItem("c", Resources(cpu_cores=1), "n2", ttl=5),
        ]
    )
    forever = cluster.allocate("forever", Resources(cpu_cores=1), node="n1")
    assert a.expires_at == 110.0 and forever.expires_at is None
    assert cluster.state("n1").ttl_leases == 2
    clock.advance(3)
    renewed = cluster.renew("b")
    assert (
        renewed is not None
        and renewed.expires_at == 108.0
        and renewed.lease_id == cluster.lease("b").lease_id
    )  # type: ignore[union-attr]
    clock.advance(1.9)  # 104.9
    assert cluster.reap() == []
    clock.advance(0.1)  # 105: c expires (exactly at its deadline)
    reaped = cluster.reap()
    assert [(lease.owner, lease.node) for lease in reaped] == [("c", "n2")]
    assert cluster.renew("a", now=109.0) is not None  # a now runs to 119
    assert [lease.owner for lease in cluster.reap(now=118.0)] == ["b"]
    assert cluster.renew("forever") == forever  # no TTL: unchanged
    assert cluster.renew("b") is None  # reaped: the owner must place again
    assert cluster.renew("a", now=119.0) is None  # expired, not yet reaped: not renewed
    assert [lease.owner for lease in cluster.reap(now=119.0)] == ["a"]
    assert cluster.allocated("n1", "etl") == Resources()
    assert cluster.allocated() == Resources(cpu_cores=1)
    assert cluster.owners == 1 and cluster.state("n1").ttl_leases == 0
    assert cluster.lease("a") is None


def test_reap_returns_leases_for_events_in_expiry_order() -> None:
    cluster = two_nodes()
    cluster.allocate("late", Resources(), node="n1", ttl=2, now=0.0)
    cluster.allocate("early", Resources(), node="n2", ttl=1, now=0.0)
    reaped = cluster.reap(now=5.0)
    assert [lease.owner for lease in reaped] == ["early", "late"]
    assert reaped[0].to_dict()["expires_at"] == 1.0


def test_now_is_required_without_a_clock() -> None:
    cluster = two_nodes()
    with pytest.raises(ValueError, match="now="):
        cluster.reap()
    with pytest.raises(ValueError, match="now="):
        cluster.allocate("a", Resources(), node="n1", ttl=1)


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_has_every_level_in_plain_data() -> None:
    cluster = two_nodes()
    cluster.allocate(
        "a", Resources(cpu_cores=2, memory_mb=1024), node="n1", pool="etl", ttl=3, now=1.0, group="d"
    )
    snap = cluster.snapshot()
    assert snap["allocated"] == Resources(cpu_cores=2, memory_mb=1024).to_dict()
    assert snap["capacity"] == (CAP + Resources(cpu_cores=2, memory_mb=1024)).to_dict()
    nodes = snap["nodes"]
    assert isinstance(nodes, dict)
    n1 = nodes["n1"]
    assert n1["utilization"]["cpu_cores"] == 0.25
    assert n1["pools"]["etl"]["parent"] == "batch"
    assert n1["pools"]["batch"]["parent"] is None
    assert n1["pools"]["etl"]["utilization"]["memory_mb"] == 0.5
    assert n1["pools"]["etl"]["capacity"]["cpu_cores"] == 4.0  # inherited from batch
    assert n1["leases"]["a"]["expires_at"] == 4.0 and n1["leases"]["a"]["group"] == "d"
    assert nodes["n2"]["allocated"] == Resources().to_dict()
    assert snap["version"] == cluster.version


def test_state_is_an_immutable_consistent_snapshot() -> None:
    cluster = two_nodes()
    before = cluster.state("n1")
    cluster.allocate("a", Resources(cpu_cores=1), node="n1", pool="etl")
    after = cluster.state("n1")
    assert before.used == ((0, 0, 0, 0),) * 3 and before.leases == {}
    assert after.version == before.version + 1
    assert after.recount() == after.used
    assert after.over_committed() == []
