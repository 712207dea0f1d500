import asyncio

from deploy_code.clock import FakeClock
from deploy_code.supervisor import Admission, derive_limit, start_weight


def test_derive_limit_from_machine_and_file() -> None:
    assert derive_limit(2, 0.1, "auto") == 16
    assert derive_limit(2, 5.0, "auto") == 8
    assert derive_limit(1, 100.0, "auto") == 4
    assert derive_limit(64, 0.0, 3) == 3


async def test_limit_is_honoured() -> None:
    adm = Admission(2, FakeClock())
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        async with adm.slot(0):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(20):
            tg.create_task(job())
    assert peak == 2
    assert adm.in_use == 0 and adm.waiting == 0


async def test_priority_then_aging_prevents_starvation() -> None:
    clock = FakeClock()
    adm = Admission(1, clock)
    await adm.acquire(0)  # hold the only slot
    order: list[str] = []

    async def waiter(name: str, prio: int) -> None:
        await adm.acquire(prio)
        order.append(name)
        adm.release()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(waiter("low-old", 0))
        await asyncio.sleep(0)
        clock.advance(100)  # the low-priority start has waited 100 s
        tg.create_task(waiter("high-new", 50))
        await asyncio.sleep(0)
        tg.create_task(waiter("higher-new", 200))
        await asyncio.sleep(0)
        adm.release()
    # 200 beats the aged 0+100; the aged low one beats the newer 50.
    assert order == ["higher-new", "low-old", "high-new"]


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    adm = Admission(1, FakeClock())
    await adm.acquire(0)
    task = asyncio.ensure_future(adm.acquire(0))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    adm.release()
    assert adm.in_use == 0
    await asyncio.wait_for(adm.acquire(0), 1)
    adm.release()


def test_start_weight_grows_with_size() -> None:
    assert start_weight(0.25, 64, 0) == 1
    assert start_weight(4, 2048, 0) == 7
    assert start_weight(0, 0, 1) == 5


async def test_weights_share_the_limit_and_the_head_is_never_bypassed() -> None:
    clock = FakeClock()
    adm = Admission(4, clock)
    await adm.acquire(0, 3)  # 3 of 4 units held
    heavy = asyncio.ensure_future(adm.acquire(5, 2))  # needs 2: waits
    light = asyncio.ensure_future(adm.acquire(0, 1))  # would fit, but must not overtake the head
    await asyncio.sleep(0)
    assert not heavy.done() and not light.done() and adm.in_use == 3
    adm.release(3)
    await asyncio.sleep(0)
    assert heavy.done() and light.done() and adm.in_use == 3


async def test_a_start_heavier_than_the_limit_runs_alone() -> None:
    adm = Admission(2, FakeClock())
    await adm.acquire(0, 10)
    assert adm.in_use == 10
    other = asyncio.ensure_future(adm.acquire(0, 1))
    await asyncio.sleep(0)
    assert not other.done()
    adm.release(10)
    await asyncio.sleep(0)
    assert other.done()


def test_aimd_grows_on_fast_spawns_and_halves_on_slow_ones() -> None:
    load = [0.0]
    adm = Admission(8, FakeClock(), adaptive=True, min_limit=2, max_limit=32, load=lambda: load[0], cores=2)
    for _ in range(10):
        adm.observe(0.002)
    assert adm.limit == 18 and adm.increases == 10
    adm.observe(0.050)  # 25x the best: overload
    assert adm.limit == 9 and adm.decreases == 1
    load[0] = 5.0  # load above twice the cores halves too, however fast the spawn
    adm.observe(0.002)
    assert adm.limit == 4
    for _ in range(10):
        adm.observe(0.0001)
    assert adm.limit == 2  # never below min_limit
    load[0] = 0.0
    for _ in range(100):
        adm.observe(0.0001)
    assert adm.limit == 32  # nor above max_limit


def test_a_fixed_limit_does_not_adapt() -> None:
    adm = Admission(3, FakeClock(), adaptive=False)
    for _ in range(10):
        adm.observe(0.001)
    adm.observe(10.0)
    assert adm.limit == 3


async def test_low_priority_is_not_starved_by_a_stream_of_high_priority() -> None:
    clock = FakeClock()
    adm = Admission(1, clock)
    await adm.acquire(0)  # the single slot is busy
    low = asyncio.ensure_future(adm.acquire(-100))
    await asyncio.sleep(0)
    # Each second a new priority-10 start arrives and the slot frees once; aging lifts `low` by one
    # point per second waited, so after ~110 s it outranks the newcomers and is granted.
    granted_at = None
    highs = []
    for second in range(1, 200):
        clock.advance(1.0)
        highs.append(asyncio.ensure_future(adm.acquire(10)))
        await asyncio.sleep(0)
        adm.release()
        await asyncio.sleep(0)
        if low.done():
            granted_at = second
            break
    assert granted_at is not None and granted_at <= 120
    for h in highs:
        h.cancel()
    await asyncio.gather(*highs, return_exceptions=True)
