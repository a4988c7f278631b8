"""A session's slot: one holder, arrival order, a restart first (no Ray)."""

from __future__ import annotations

import asyncio

from raykernel.sessions.record import Slot


async def test_holders_follow_arrival_order_and_an_urgent_one_goes_first() -> None:
    slot = Slot()
    order: list[str] = []
    await slot.acquire()

    async def hold(name: str, urgent: bool = False) -> None:
        await slot.acquire(urgent)
        order.append(name)
        await asyncio.sleep(0)
        slot.release()

    tasks = [asyncio.ensure_future(hold(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    tasks.append(asyncio.ensure_future(hold("restart", urgent=True)))
    await asyncio.sleep(0)
    assert slot.waiting == 3
    slot.release()
    await asyncio.gather(*tasks)
    assert order == ["restart", "a", "b"]
    assert not slot.locked()


async def test_a_waiter_that_gives_up_does_not_keep_the_slot() -> None:
    slot = Slot()
    await slot.acquire()
    waiter = asyncio.ensure_future(slot.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slot.release()
    assert not slot.locked()
    await asyncio.wait_for(slot.acquire(), 1)
