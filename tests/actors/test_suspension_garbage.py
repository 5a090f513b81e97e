"""A suspended invocation is freed by reference counting, not left to the cyclic
garbage collector.

The signal that unwinds a suspending handler has a traceback through the executor's
frame; a local there that still held the signal made a cycle, so every parked
invocation left about 40 objects that only a GC pass frees. After a restart that
re-parks N workflows they piled up in the youngest generation (its count is
decremented by the frees of older objects) and the first collection paid for all N at
once: with 100,000 parked, the first resolves after the restart cost ~17x more
(``bench/scaling.py``, parked dimension).
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import trio
import trio.testing

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

PARKED = 10


class Waiter(actors.Workflow):
    """Parks on a durable promise until ``approve`` resolves it."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> int:
        return await ctx.promise("p", int).value()

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: int) -> None:
        await ctx.promise("p", int).resolve(value)


class NoCollector:
    """The cyclic collector off; ``garbage()`` counts what it would have had to free."""

    def __enter__(self) -> NoCollector:
        gc.collect()
        gc.disable()
        return self

    def __exit__(self, *_: object) -> None:
        gc.enable()

    def garbage(self) -> int:
        return gc.collect()


async def park(rt: actors.Runtime, first: int, count: int) -> None:
    for i in range(first, first + count):
        await rt.send(Waiter.run, key=f"w{i}")
    await trio.sleep(5)  # past suspend_after: all parked (mock clock)


async def test_parking_leaves_no_cyclic_garbage(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_runtime([Waiter], suspend_after=1.0) as rt:
        await park(rt, 0, 1)  # first use of every code path (caches) outside the count
        with NoCollector() as collector:
            await park(rt, 1, PARKED)
            assert rt.statistics().parked == PARKED + 1
            assert collector.garbage() == 0
        await rt.call(Waiter.approve, 7, key="w1")
        assert await rt.attach_workflow(Waiter, "w1") == 7


async def test_re_parking_after_a_restart_leaves_no_cyclic_garbage(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_test_runtime([Waiter], path=tmp_path, suspend_after=1.0) as first:
        await park(first, 0, PARKED)
        assert first.statistics().parked == PARKED
    del first  # its own cycles are collected before the count
    with NoCollector() as collector:
        async with open_test_runtime([Waiter], path=tmp_path, suspend_after=1.0) as rt:
            await trio.sleep(5)
            assert rt.statistics().parked == PARKED  # recovered, replayed, parked again
            # Opening a runtime leaves a few objects of its own; a cycle per parked
            # workflow left about 40 each.
            assert collector.garbage() < PARKED


class Steps(actors.Service):
    """Three durable steps, so each call commits a journal before its completion."""

    @actors.handler
    async def run(self, ctx: actors.Context, n: int) -> int:
        total = 0
        for i in range(3):
            total += await ctx.run(f"step{i}", lambda i=i: n + i)
        return total


async def test_completed_calls_leave_no_cyclic_garbage() -> None:
    # A completion's ticket kept its ``on_done`` callback, which holds the invocation
    # that holds the ticket: ~35 objects per call left for the cyclic collector.
    async with open_test_runtime([Steps]) as rt:
        await rt.call(Steps.run, 0)  # first use of every code path outside the count
        with NoCollector() as collector:
            for n in range(PARKED):
                assert await rt.call(Steps.run, n) == 3 * n + 3
            assert collector.garbage() < PARKED
