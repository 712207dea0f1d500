"""Stress test: 8 threads hammer one Ledger with random allocate / batch / release operations.

Each thread checks, after every operation, that one consistent snapshot (``pool_snapshot``) never
shows allocated above capacity at the node or above the limit at any pool. At the end the sum of
what the threads believe they hold equals ``allocated`` at every level, and after every thread
releases everything the ledger is exactly zero.

Operations per thread come from ``DEPLOY_CODE_STRESS_OPS``; the default keeps the test near 10 s
on 2 cores. The full run, 8 x 100,000 operations, is ``DEPLOY_CODE_STRESS_OPS=100000``.
"""

from __future__ import annotations

import os
import random
import threading

from deploy_code.errors import PlacementError
from deploy_code.resources import Ledger
from deploy_code.units import Resources

THREADS = 8
OPS = int(os.environ.get("DEPLOY_CODE_STRESS_OPS", "18000"))
OWNERS_PER_THREAD = 12
CAP = Resources(cpu_cores=16, memory_mb=32768, storage_gb=200, gpu_count=4)
POOLS: dict[str, tuple[dict[str, float], str | None]] = {
    "batch": ({"cpu_cores": 8, "memory_mb": 16000}, None),
    "etl": ({"memory_mb": 6000, "gpu_count": 2}, "batch"),
    "web": ({"cpu_cores": 6, "storage_gb": 50}, None),
}
CHOICES: list[str | None] = [None, "batch", "etl", "web"]
EPS = 1e-9


def _random_request(rng: random.Random) -> Resources:
    return Resources(
        cpu_cores=rng.randint(0, 2000) / 1000,
        memory_mb=float(rng.randint(0, 4000)),
        storage_gb=rng.randint(0, 20) / 4,
        gpu_count=rng.choice((0, 0, 0, 1)),
    )


def _check_levels(led: Ledger) -> None:
    snap = led.pool_snapshot()
    node = snap["node"]
    pools = snap["pools"]
    assert isinstance(node, dict) and isinstance(pools, dict)
    for name in Resources.FIELDS:
        assert node["allocated"][name] <= node["capacity"][name] + EPS, snap
        assert node["free"][name] >= -EPS, snap
        for pool in pools.values():
            assert pool["allocated"][name] <= pool["limit"][name] + EPS, snap
            assert pool["allocated"][name] <= node["allocated"][name] + EPS, snap
            parent = pool["parent"]
            if parent is not None:
                assert pool["allocated"][name] <= pools[parent]["allocated"][name] + EPS, snap


def _worker(
    led: Ledger, tid: int, held: dict[str, tuple[Resources, str | None]], errors: list[BaseException]
) -> None:
    rng = random.Random(tid)
    owners = [f"t{tid}.{k}" for k in range(OWNERS_PER_THREAD)]
    try:
        for _ in range(OPS):
            free = [o for o in owners if o not in held]
            roll = rng.random()
            if roll < 0.4 and held:
                owner = rng.choice(list(held))
                assert led.release(owner) == held.pop(owner)[0]
            elif roll < 0.75 and free:
                owner = rng.choice(free)
                req, pool = _random_request(rng), rng.choice(CHOICES)
                try:
                    led.allocate(owner, req, pool=pool)
                except PlacementError:
                    assert led.holding(owner) == Resources()
                else:
                    held[owner] = (req, pool)
            elif len(free) >= 2:
                batch = [
                    (o, _random_request(rng), rng.choice(CHOICES))
                    for o in rng.sample(free, rng.randint(2, min(4, len(free))))
                ]
                try:
                    led.allocate_batch(batch)
                except PlacementError:
                    assert all(led.holding(o) == Resources() for o, _, _ in batch)
                else:
                    held.update({o: (r, p) for o, r, p in batch})
            _check_levels(led)
    except BaseException as exc:  # reported by the main thread
        errors.append(exc)


def _chain(pool: str | None) -> list[str]:
    out: list[str] = []
    while pool is not None:
        out.append(pool)
        pool = POOLS[pool][1]
    return out


def test_concurrent_operations_never_over_commit_and_balance() -> None:
    led = Ledger(CAP)
    for name, (quota, parent) in POOLS.items():
        led.add_pool(name, quota, parent=parent)
    helds: list[dict[str, tuple[Resources, str | None]]] = [{} for _ in range(THREADS)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_worker, args=(led, t, helds[t], errors)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]

    node_total = Resources()
    pool_totals = {name: Resources() for name in POOLS}
    for held in helds:
        for owner, (req, pool) in held.items():
            assert led.holding(owner) == req
            node_total = node_total + req
            for level in _chain(pool):
                pool_totals[level] = pool_totals[level] + req
    assert led.owners == sum(len(h) for h in helds)
    pools = led.pool_snapshot()["pools"]
    assert isinstance(pools, dict)
    for name in Resources.FIELDS:
        assert abs(getattr(led.allocated, name) - getattr(node_total, name)) < 1e-6
        for pool, total in pool_totals.items():
            assert abs(pools[pool]["allocated"][name] - getattr(total, name)) < 1e-6

    releasers = [threading.Thread(target=lambda h=h: [led.release(o) for o in list(h)]) for h in helds]
    for t in releasers:
        t.start()
    for t in releasers:
        t.join()
    assert led.allocated == Resources()
    assert led.owners == 0
    for pool in led.pool_snapshot()["pools"].values():  # type: ignore[attr-defined]
        assert pool["allocated"] == Resources().to_dict()
