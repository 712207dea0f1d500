"""Unit tests for deploy_code.ports.allocator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deploy_code.ports as ports_pkg
from deploy_code.errors import ErrorCode, PlacementError, SupervisionError
from deploy_code.ports import PortAllocator


def test_allocates_never_used_ports_in_ascending_order() -> None:
    pa = PortAllocator(9000, 9003)
    assert [pa.allocate(f"r{i}", 0.0) for i in range(4)] == [9000, 9001, 9002, 9003]
    assert pa.in_use == 4
    assert pa.free_count == 0
    assert pa.owner_of(9002) == "r2"
    assert pa.owner_of(9999) is None


def test_exhausted_range_raises_e004_with_counts() -> None:
    pa = PortAllocator(9000, 9001, quarantine_s=5.0)
    pa.allocate("a", 0.0)
    pa.allocate("b", 0.0)
    pa.release(9000, 0.0)
    with pytest.raises(PlacementError) as info:
        pa.allocate("c", 1.0)
    err = info.value
    assert err.code is ErrorCode.E004
    assert "port range exhausted: 9000-9001" in err.message
    assert "1 in use, 1 in quarantine, 0 free" in err.message
    assert "'c'" in err.message
    assert pa.snapshot()["exhausted"] == 1


def test_quarantine_is_honoured_then_port_is_reused() -> None:
    pa = PortAllocator(9000, 9000, quarantine_s=2.0)
    assert pa.allocate("a", 0.0) == 9000
    pa.release(9000, 10.0)
    assert pa.quarantined == 1
    with pytest.raises(PlacementError):
        pa.allocate("b", 11.999)
    assert pa.allocate("b", 12.0) == 9000
    assert pa.quarantined == 0


def test_never_used_ports_come_before_released_ones_and_release_order_is_fifo() -> None:
    pa = PortAllocator(9000, 9003, quarantine_s=1.0)
    a, b = pa.allocate("a", 0.0), pa.allocate("b", 0.0)
    pa.release(b, 0.0)
    pa.release(a, 0.5)
    # fresh ports first even though b has matured
    assert pa.allocate("c", 5.0) == 9002
    assert pa.allocate("d", 5.0) == 9003
    # then least recently released first
    assert pa.allocate("e", 5.0) == b
    assert pa.allocate("f", 5.0) == a


def test_zero_quarantine_reuses_at_once() -> None:
    pa = PortAllocator(9000, 9000, quarantine_s=0.0)
    pa.allocate("a", 0.0)
    pa.release(9000, 1.0)
    assert pa.allocate("b", 1.0) == 9000


def test_release_is_idempotent() -> None:
    pa = PortAllocator(9000, 9001)
    port = pa.allocate("a", 0.0)
    pa.release(port, 0.0)
    pa.release(port, 0.0)
    pa.release(12345, 0.0)
    assert pa.in_use == 0
    assert pa.quarantined == 1


def test_probe_rejected_ports_are_skipped_moved_back_and_counted() -> None:
    busy = {9000, 9001}
    pa = PortAllocator(9000, 9004, is_free=lambda p: p not in busy)
    assert pa.allocate("a", 0.0) == 9002
    assert pa.snapshot()["probe_rejections"] == 2
    busy.clear()
    # the rejected ports went to the back: 9003, 9004 first, then 9000, 9001
    assert [pa.allocate(f"r{i}", 0.0) for i in range(4)] == [9003, 9004, 9000, 9001]


def test_probe_tries_at_most_max_probe_ports() -> None:
    calls: list[int] = []

    def probe(port: int) -> bool:
        calls.append(port)
        return False

    pa = PortAllocator(9000, 9999, is_free=probe, max_probe=8)
    with pytest.raises(PlacementError) as info:
        pa.allocate("a", 0.0)
    assert len(calls) == 8
    assert "8 of 8 tried rejected by the bind probe" in info.value.message


def test_probe_tries_each_port_once_per_call() -> None:
    calls: list[int] = []

    def probe(port: int) -> bool:
        calls.append(port)
        return False

    pa = PortAllocator(9000, 9002, is_free=probe, max_probe=64)
    with pytest.raises(PlacementError):
        pa.allocate("a", 0.0)
    assert sorted(calls) == [9000, 9001, 9002]


def test_reserve_conflict_is_s004_naming_both_claimants() -> None:
    pa = PortAllocator(9000, 9010)
    pa.reserve(8080, "api.1")
    with pytest.raises(SupervisionError) as info:
        pa.reserve(8080, "web.1")
    err = info.value
    assert err.code is ErrorCode.S004
    assert "'api.1'" in err.message and "'web.1'" in err.message
    assert "8080" in err.message


def test_reserve_same_owner_twice_is_a_no_op() -> None:
    pa = PortAllocator(9000, 9010)
    pa.reserve(8080, "api.1")
    pa.reserve(8080, "api.1")
    assert pa.in_use == 1


def test_reserve_in_range_port_is_never_allocated_twice() -> None:
    pa = PortAllocator(9000, 9002)
    pa.reserve(9001, "fixed")
    got = {pa.allocate("a", 0.0), pa.allocate("b", 0.0)}
    assert got == {9000, 9002}
    with pytest.raises(PlacementError):
        pa.allocate("c", 0.0)


def test_reserve_conflicts_with_allocated_port() -> None:
    pa = PortAllocator(9000, 9002)
    port = pa.allocate("api.1", 0.0)
    with pytest.raises(SupervisionError, match=r"already held by 'api\.1'"):
        pa.reserve(port, "web.1")


def test_reserve_takes_a_port_out_of_quarantine() -> None:
    pa = PortAllocator(9000, 9001, quarantine_s=10.0)
    pa.allocate("a", 0.0)
    pa.release(9000, 0.0)
    pa.reserve(9000, "fixed")
    assert pa.quarantined == 0
    pa.release(9000, 1.0)
    # released again: back in quarantine from t=1, so not before t=11
    assert pa.allocate("b", 10.5) == 9001
    with pytest.raises(PlacementError):
        pa.allocate("c", 10.9)
    assert pa.allocate("c", 11.0) == 9000


def test_out_of_range_fixed_ports_are_tracked_but_not_quarantined() -> None:
    pa = PortAllocator(9000, 9001)
    pa.reserve(80, "edge")
    assert pa.in_use == 1
    snap = pa.snapshot()
    assert snap["in_use_fixed"] == 1
    assert snap["in_use_range"] == 0
    pa.release(80, 0.0)
    assert pa.in_use == 0
    assert pa.quarantined == 0


def test_release_owner_releases_all_its_ports() -> None:
    pa = PortAllocator(9000, 9010)
    a = pa.allocate("api.1", 0.0)
    b = pa.allocate("api.1", 0.0)
    pa.reserve(8080, "api.1")
    other = pa.allocate("api.2", 0.0)
    assert pa.ports_of("api.1") == [8080, a, b]
    assert pa.release_owner("api.1", 1.0) == [8080, a, b]
    assert pa.release_owner("api.1", 1.0) == []
    assert pa.in_use == 1
    assert pa.owner_of(other) == "api.2"


def test_snapshot_shape() -> None:
    pa = PortAllocator(9000, 9009, quarantine_s=1.0)
    pa.allocate("b", 0.0)
    pa.allocate("a", 0.0)
    pa.release(9000, 0.0)
    assert pa.snapshot() == {
        "range": [9000, 9009],
        "size": 10,
        "quarantine_s": 1.0,
        "in_use": 1,
        "in_use_range": 1,
        "in_use_fixed": 0,
        "free": 8,
        "quarantined": 1,
        "probe_rejections": 0,
        "exhausted": 0,
        "owners": {"a": [9001]},
    }


def test_a_free_port_reserved_by_name_is_skipped_then_handed_out_once_free_again() -> None:
    pa = PortAllocator(9000, 9003, quarantine_s=0.0)
    pa.reserve(9001, "fixed")
    assert pa.free_count == 3
    assert [pa.allocate(f"r{i}", 0.0) for i in range(3)] == [9000, 9002, 9003]
    with pytest.raises(PlacementError):
        pa.allocate("x", 0.0)
    pa.release(9001, 1.0)
    assert pa.free_count == 1
    assert pa.allocate("y", 1.0) == 9001
    assert pa.free_count == 0


def test_reserve_release_cycles_keep_the_free_order_bounded() -> None:
    pa = PortAllocator(9000, 9001, quarantine_s=0.0)
    for i in range(1000):
        pa.reserve(9000, "fixed")
        pa.release(9000, float(i))
        assert len(pa._free) <= 2 * pa.size + 1
    assert pa.free_count == 2
    assert sorted([pa.allocate("a", 1000.0), pa.allocate("b", 1000.0)]) == [9000, 9001]
    with pytest.raises(PlacementError):
        pa.allocate("c", 1000.0)


def test_reserve_out_of_quarantine_cycles_keep_the_quarantine_bounded_and_exact() -> None:
    pa = PortAllocator(9000, 9001, quarantine_s=10.0)
    pa.allocate("a", 0.0)
    pa.release(9000, 0.0)
    for i in range(1000):
        pa.reserve(9000, "fixed")  # out of quarantine
        pa.release(9000, i / 1000)  # back in, for 10 s from now
        assert len(pa._fifo) <= 2 * pa.size + 1
    assert pa.quarantined == 1
    assert pa.allocate("b", 10.5) == 9001
    with pytest.raises(PlacementError):
        pa.allocate("c", 10.9985)  # released last at 0.999: not before 10.999
    assert pa.allocate("c", 10.999) == 9000


def test_probe_with_stale_entries_still_tries_each_free_port_once() -> None:
    calls: list[int] = []

    def probe(port: int) -> bool:
        calls.append(port)
        return False

    pa = PortAllocator(9000, 9005, quarantine_s=0.0, is_free=probe, max_probe=64)
    pa.reserve(9001, "fixed")
    pa.reserve(9004, "fixed")
    pa.release(9001, 0.0)  # free again: now it has a stale entry and a fresh one
    with pytest.raises(PlacementError) as info:
        pa.allocate("a", 0.0)
    assert sorted(calls) == [9000, 9001, 9002, 9003, 9005]
    assert "5 of 5 tried rejected" in info.value.message


def test_an_owner_with_several_ports_keeps_them_all_until_the_last_release() -> None:
    pa = PortAllocator(9000, 9010, quarantine_s=0.0)
    a, b, c = (pa.allocate("api.1", 0.0) for _ in range(3))
    pa.release(b, 0.0)
    assert pa.ports_of("api.1") == [a, c]
    pa.release(a, 0.0)
    assert pa.ports_of("api.1") == [c]
    assert pa.snapshot()["owners"] == {"api.1": [c]}
    pa.release(c, 0.0)
    assert pa.ports_of("api.1") == []
    assert pa.snapshot()["owners"] == {}
    pa.reserve(80, "api.1")
    assert pa.allocate("api.1", 0.0) in range(9000, 9011)
    assert len(pa.ports_of("api.1")) == 2


def test_allocate_and_release_cost_does_not_grow_with_occupancy() -> None:
    # Structural, not timed: the free order is consumed from the front, so a nearly full range
    # hands out a port without looking at the held ones.
    pa = PortAllocator(1, 65535, quarantine_s=0.0)
    held = [pa.allocate(f"r{i}", 0.0) for i in range(65534)]
    assert len(pa._free) == 1
    pa.release(held[30000], 1.0)
    assert pa.allocate("x", 1.0) == 65535
    assert pa.allocate("y", 1.0) == held[30000]


@pytest.mark.parametrize(
    ("low", "high", "kwargs"),
    [
        (0, 10, {}),
        (10, 9, {}),
        (1, 65536, {}),
        (1, 10, {"quarantine_s": -1.0}),
        (1, 10, {"max_probe": 0}),
    ],
)
def test_bad_arguments(low: int, high: int, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PortAllocator(low, high, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_reserve_rejects_invalid_port_numbers(port: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(9000, 9001).reserve(port, "x")


def test_ports_package_is_pure() -> None:
    forbidden = {"asyncio", "subprocess", "socket", "sqlite3", "httpx", "time"}
    for path in Path(ports_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"
