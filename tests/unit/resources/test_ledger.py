"""Unit tests for deploy_code.resources.ledger."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deploy_code.resources as resources_pkg
from deploy_code.errors import ErrorCode, PlacementError
from deploy_code.resources import Ledger
from deploy_code.units import Resources

CAP = Resources(cpu_cores=8, memory_mb=16384, storage_gb=100, gpu_count=2)


def test_allocate_and_release_round_trip() -> None:
    led = Ledger(CAP)
    req = Resources(cpu_cores=2, memory_mb=1024)
    led.allocate("api.1", req)
    assert led.allocated == req
    assert led.free == CAP - req
    assert led.owners == 1
    assert led.holding("api.1") == req
    assert led.release("api.1") == req
    assert led.allocated.is_zero()
    assert led.owners == 0


def test_release_is_idempotent_and_returns_zero() -> None:
    led = Ledger(CAP)
    v = led.version
    assert led.release("nobody") == Resources()
    assert led.version == v


def test_version_bumps_on_every_change() -> None:
    led = Ledger(CAP)
    assert led.version == 0
    led.allocate("a", Resources(cpu_cores=1))
    led.allocate_batch([("b", Resources(cpu_cores=1)), ("c", Resources(cpu_cores=1))])
    assert led.version == 2
    led.release("a")
    assert led.version == 3


def test_check_lists_dimensions_that_do_not_fit() -> None:
    led = Ledger(CAP)
    led.allocate("a", Resources(cpu_cores=6, gpu_count=2))
    assert led.check(Resources(cpu_cores=1)) == []
    assert led.check(Resources(cpu_cores=3, gpu_count=1, memory_mb=10)) == [
        ("cpu_cores", 3.0, 2.0),
        ("gpu_count", 1.0, 0.0),
    ]


def test_allocate_failure_is_e004_naming_owner_resource_and_figures() -> None:
    led = Ledger(CAP)
    led.allocate("a", Resources(cpu_cores=6))
    with pytest.raises(PlacementError) as info:
        led.allocate("api.1", Resources(cpu_cores=4, memory_mb=512))
    err = info.value
    assert err.code is ErrorCode.E004
    assert err.message == "cannot place 'api.1': cpu_cores requested 4 but only 2 free (capacity 8)"
    assert led.owners == 1
    assert led.version == 1


def test_exact_fit_is_allowed() -> None:
    led = Ledger(CAP)
    led.allocate("all", CAP)
    assert led.free.is_zero()
    assert led.check(Resources(cpu_cores=0.001)) == [("cpu_cores", 0.001, 0.0)]


def test_fractional_cpu_does_not_drift() -> None:
    led = Ledger(Resources(cpu_cores=1.0))
    for i in range(10):
        led.allocate(f"r{i}", Resources(cpu_cores=0.1))
    for i in range(10):
        led.release(f"r{i}")
    assert led.allocated == Resources()


def test_batch_is_all_or_nothing_and_names_first_owner_that_does_not_fit() -> None:
    led = Ledger(CAP)
    items = [(f"api.{i}", Resources(cpu_cores=3)) for i in range(3)]
    with pytest.raises(PlacementError) as info:
        led.allocate_batch(items)
    msg = info.value.message
    assert "'api.2'" in msg
    assert "cpu_cores requested 3 but only 2 free" in msg
    assert "batch of 3 placed nothing" in msg
    assert led.owners == 0
    assert led.version == 0
    assert led.allocated == Resources()


def test_empty_batch_changes_nothing() -> None:
    led = Ledger(CAP)
    led.allocate_batch([])
    assert led.version == 0


@pytest.mark.parametrize(
    "items",
    [
        [("a", Resources(cpu_cores=1)), ("a", Resources(cpu_cores=1))],
        [("held", Resources(cpu_cores=1))],
        [("x", Resources(cpu_cores=1)), ("y", Resources(memory_mb=-1))],
    ],
)
def test_batch_rejects_duplicates_held_owners_and_negative_requests(
    items: list[tuple[str, Resources]],
) -> None:
    led = Ledger(CAP)
    led.allocate("held", Resources(cpu_cores=1))
    with pytest.raises(ValueError):
        led.allocate_batch(items)
    assert led.owners == 1
    assert led.version == 1


def test_utilization() -> None:
    led = Ledger(Resources(cpu_cores=4, memory_mb=1000, storage_gb=0, gpu_count=2))
    led.allocate("a", Resources(cpu_cores=1, memory_mb=500, gpu_count=2))
    assert led.utilization() == {"cpu_cores": 0.25, "memory_mb": 0.5, "storage_gb": 0.0, "gpu_count": 1.0}


def test_snapshot() -> None:
    led = Ledger(CAP)
    led.allocate("a", Resources(cpu_cores=1))
    snap = led.snapshot()
    assert snap["version"] == 1
    assert snap["owners"] == {"a": Resources(cpu_cores=1).to_dict()}
    assert snap["free"] == (CAP - Resources(cpu_cores=1)).to_dict()


def test_negative_capacity_rejected() -> None:
    with pytest.raises(ValueError):
        Ledger(Resources(cpu_cores=-1))


def test_resources_package_is_pure() -> None:
    forbidden = {"asyncio", "subprocess", "socket", "sqlite3", "httpx", "time"}
    for path in Path(resources_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"
