"""The ``max_in_flight`` slots (``actors._slots``): taken when free, waited for in FIFO
order, and never lost to a waiter that is cancelled, under trio and asyncio."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from actors._slots import Slots


async def test_free_slots_are_taken_and_given_back() -> None:
    slots = Slots(2)
    assert slots.acquire_nowait()
    await slots.acquire()  # a free one: no wait
    assert slots.free == 0
    assert not slots.acquire_nowait()
    slots.release()
    slots.release()
    assert slots.free == 2


async def _settle() -> None:
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


async def test_waiters_get_the_slots_given_back_in_order() -> None:
    slots = Slots(1)
    assert slots.acquire_nowait()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await slots.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(waiter, i)
            await _settle()  # each waits before the next one starts
        for _ in range(3):
            slots.release()  # to the first waiter: none becomes free meanwhile
            assert slots.free == 0
            await _settle()
    assert order == [0, 1, 2]
    slots.release()
    assert slots.free == 1


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    slots = Slots(1)
    assert slots.acquire_nowait()
    got: list[str] = []

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await slots.acquire()
            got.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first", first)
        await _settle()
        tg.start_soon(waiter, "second", second)
        await _settle()
        first.cancel()  # it leaves the queue
        await _settle()
        slots.release()  # so the slot goes to the second
        await _settle()
    assert got == ["second"]
    assert slots.free == 0


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    slots = Slots(1)
    assert slots.acquire_nowait()
    got: list[str] = []
    scope = anyio.CancelScope()

    async def waiter(name: str, own: anyio.CancelScope | None) -> None:
        with own or anyio.CancelScope():
            await slots.acquire()
            got.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first", scope)
        await _settle()
        tg.start_soon(waiter, "second", None)
        await _settle()
        scope.cancel()  # the first is cancelled, but has not run since: still queued
        slots.release()  # so the slot is handed to it, and it passes it on
        await _settle()
    assert got == ["second"]
    assert slots.free == 0
