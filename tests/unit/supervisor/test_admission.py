import asyncio

from deploy_code.clock import FakeClock
from deploy_code.supervisor import Admission, derive_limit


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
