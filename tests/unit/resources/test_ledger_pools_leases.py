"""Unit tests for the ledger's pools, leases and integer bookkeeping."""

from __future__ import annotations

import pytest

from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.resources import Ledger
from deploy_code.units import Resources

CAP = Resources(cpu_cores=8, memory_mb=16384, storage_gb=100, gpu_count=2)


def _pools(led: Ledger) -> dict[str, dict[str, object]]:
    pools = led.pool_snapshot()["pools"]
    assert isinstance(pools, dict)
    return pools


def test_nested_pools_count_against_every_level() -> None:
    led = Ledger(CAP)
    led.add_pool("batch", {"cpu_cores": 4, "memory_mb": 8000})
    led.add_pool("etl", {"memory_mb": 1000}, parent="batch")
    led.allocate("job.1", Resources(cpu_cores=1, memory_mb=500), pool="etl")
    pools = _pools(led)
    assert pools["etl"]["allocated"] == Resources(cpu_cores=1, memory_mb=500).to_dict()
    assert pools["batch"]["allocated"] == Resources(cpu_cores=1, memory_mb=500).to_dict()
    assert led.allocated == Resources(cpu_cores=1, memory_mb=500)
    # etl leaves cpu out: it inherits batch's 4 cores as its limit.
    assert pools["etl"]["quota"] == {"memory_mb": 1000}
    assert (
        pools["etl"]["limit"] == Resources(cpu_cores=4, memory_mb=1000, storage_gb=100, gpu_count=2).to_dict()
    )
    assert pools["etl"]["utilization"] == {
        "cpu_cores": 0.25,
        "memory_mb": 0.5,
        "storage_gb": 0.0,
        "gpu_count": 0.0,
    }
    assert led.pools == ["batch", "etl"]
    led.release("job.1")
    assert _pools(led)["batch"]["allocated"] == Resources().to_dict()


def test_pool_failure_names_the_full_level() -> None:
    led = Ledger(CAP)
    led.add_pool("batch", {"memory_mb": 1000})
    led.allocate("a", Resources(memory_mb=900), pool="batch")
    with pytest.raises(PlacementError) as info:
        led.allocate("b", Resources(memory_mb=512), pool="batch")
    assert info.value.code is ErrorCode.E004
    assert info.value.message == (
        "cannot place 'b': pool 'batch': memory_mb requested 512 but only 100 free (quota 1000)"
    )
    # Outside the pool the node still has room.
    led.allocate("c", Resources(memory_mb=512))
    assert led.owners == 2


def test_parent_pool_failure_names_the_parent() -> None:
    led = Ledger(CAP)
    led.add_pool("batch", {"cpu_cores": 2})
    led.add_pool("a", {"memory_mb": 100}, parent="batch")
    led.add_pool("b", {}, parent="batch")
    led.allocate("x", Resources(cpu_cores=1.5), pool="a")
    with pytest.raises(PlacementError) as info:
        led.allocate("y", Resources(cpu_cores=1), pool="b")
    assert "pool 'batch': cpu_cores requested 1 but only 0.5 free (quota 2)" in info.value.message


def test_node_failure_message_unchanged_with_pools() -> None:
    led = Ledger(CAP)
    led.add_pool("p", {})
    led.allocate("big", Resources(gpu_count=2))
    with pytest.raises(PlacementError) as info:
        led.allocate("g", Resources(gpu_count=1), pool="p")
    assert info.value.message == "cannot place 'g': gpu_count requested 1 but only 0 free (capacity 2)"


def test_batch_with_per_item_pools_is_all_or_nothing() -> None:
    led = Ledger(CAP)
    led.add_pool("p", {"cpu_cores": 1})
    with pytest.raises(PlacementError) as info:
        led.allocate_batch(
            [
                ("a", Resources(cpu_cores=3)),
                ("b", Resources(cpu_cores=0.6), "p"),
                ("c", Resources(cpu_cores=0.6), "p"),
            ]
        )
    assert "'c': pool 'p'" in info.value.message
    assert "batch of 3 placed nothing" in info.value.message
    assert led.owners == 0
    assert led.allocated == Resources()
    led.allocate_batch([("a", Resources(cpu_cores=0.5)), ("b", Resources(cpu_cores=0.5))], pool="p")
    assert _pools(led)["p"]["allocated"] == Resources(cpu_cores=1).to_dict()


@pytest.mark.parametrize(
    ("quota", "parent", "fragment"),
    [
        ({"cpu_cores": 9}, None, "exceeds the node capacity 8"),
        ({"memory_mb": 2000}, "top", "exceeds the pool 'top' limit 1000"),
        ({"cpu_cores": 8.5}, "top", "exceeds the pool 'top' limit 8"),  # inherited from the node
        ({"bogus": 1}, None, "unknown resource"),
        ({"cpu_cores": -1}, None, "must not be negative"),
        ({}, "nope", "unknown pool 'nope'"),
        ({}, "top", "already exists"),
    ],
)
def test_quota_errors(quota: dict[str, float], parent: str | None, fragment: str) -> None:
    led = Ledger(CAP)
    led.add_pool("top", {"memory_mb": 1000})
    name = "top" if fragment == "already exists" else "child"
    with pytest.raises(ValueError, match=fragment):
        led.add_pool(name, quota, parent=parent)
    assert led.pools == ["top"]


def test_unknown_pool_on_allocate_books_nothing() -> None:
    led = Ledger(CAP)
    with pytest.raises(ValueError, match="unknown pool"):
        led.allocate("a", Resources(cpu_cores=1), pool="ghost")
    assert led.owners == 0


def test_check_with_pool() -> None:
    led = Ledger(CAP)
    led.add_pool("p", {"cpu_cores": 1})
    assert led.check(Resources(cpu_cores=2)) == []
    assert led.check(Resources(cpu_cores=2), pool="p") == [("cpu_cores", 2.0, 1.0)]


def test_lease_renew_and_reap() -> None:
    led = Ledger(CAP)
    led.allocate("a", Resources(cpu_cores=1), ttl=10, now=100.0)
    led.allocate_batch([("b", Resources(cpu_cores=1)), ("c", Resources(cpu_cores=1))], ttl=5, now=100.0)
    led.allocate("forever", Resources(cpu_cores=1))
    assert led.expires("a") == 110.0
    assert led.reap(104.9) == []
    assert led.renew("b", now=103.0) == 108.0
    assert led.reap(105.0) == ["c"]
    assert led.reap(110.0) == ["a", "b"]
    assert led.holding("forever") == Resources(cpu_cores=1)
    assert led.renew("forever", now=200.0) is None
    assert led.reap(1e12) == []
    with pytest.raises(KeyError):
        led.renew("a", now=111.0)
    snap = led.snapshot()
    assert snap["leases"] == {}
    assert led.owners == 1


def test_lease_in_pool_is_reaped_from_every_level() -> None:
    led = Ledger(CAP)
    led.add_pool("p", {"cpu_cores": 2})
    led.add_pool("q", {}, parent="p")
    led.allocate("a", Resources(cpu_cores=2), pool="q", ttl=1, now=0.0)
    assert led.reap(1.0) == ["a"]
    pools = _pools(led)
    assert pools["p"]["allocated"] == Resources().to_dict()
    assert pools["q"]["allocated"] == Resources().to_dict()
    led.allocate("b", Resources(cpu_cores=2), pool="q")


@pytest.mark.parametrize(("ttl", "now"), [(5.0, None), (0.0, 1.0), (-1.0, 1.0)])
def test_bad_lease_arguments(ttl: float, now: float | None) -> None:
    led = Ledger(CAP)
    with pytest.raises(ValueError):
        led.allocate("a", Resources(cpu_cores=1), ttl=ttl, now=now)


def test_release_all_returns_exactly_to_zero() -> None:
    led = Ledger(Resources(cpu_cores=3, memory_mb=10000, storage_gb=10, gpu_count=4))
    led.add_pool("p", {"cpu_cores": 2})
    led.add_pool("q", {"storage_gb": 1}, parent="p")
    owners = []
    for i in range(30):
        pool = ("p", "q", None)[i % 3]
        led.allocate(f"r{i}", Resources(cpu_cores=0.1, memory_mb=33.3, storage_gb=0.03), pool=pool)
        owners.append(f"r{i}")
    for o in owners:
        led.release(o)
    snap = led.pool_snapshot()
    assert led.allocated == Resources()
    assert led.free == Resources(cpu_cores=3, memory_mb=10000, storage_gb=10, gpu_count=4)
    pools = snap["pools"]
    assert isinstance(pools, dict)
    for p in pools.values():
        assert p["allocated"] == Resources().to_dict()


def test_requests_round_up_so_nothing_is_under_booked() -> None:
    led = Ledger(Resources(cpu_cores=1))
    led.allocate("tiny", Resources(cpu_cores=0.0001))
    assert led.allocated == Resources(cpu_cores=0.001)
    assert led.holding("tiny") == Resources(cpu_cores=0.0001)


def test_snapshot_has_levels_and_leases() -> None:
    led = Ledger(CAP)
    led.add_pool("p", {"gpu_count": 1})
    led.allocate("a", Resources(gpu_count=1), pool="p", ttl=3, now=1.0)
    snap = led.snapshot()
    assert snap["leases"] == {"a": 4.0}
    assert snap["owner_pools"] == {"a": "p"}
    assert snap["utilization"] == {"cpu_cores": 0.0, "memory_mb": 0.0, "storage_gb": 0.0, "gpu_count": 0.5}
    pools = snap["pools"]
    assert isinstance(pools, dict)
    assert pools["p"]["utilization"]["gpu_count"] == 1.0
    assert pools["p"]["parent"] is None
