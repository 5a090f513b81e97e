"""Readers of a key do not starve its writers.

A shared handler never waits for an exclusive one (invariant 3), so 64 callers looping on
a shared read are 64 runnable tasks in every scheduling round. The writers' exclusive
invocations on the same key run one at a time; when each queued one needed a round of its
own to start, the key moved one write per round, and 16 writers got ~1 write per 64
reads. The mailbox now relays a key's queued exclusive invocations within one task
(``actors.mailbox._driver``, *Relay*), and state reads do not yield, so a round moves
every queued writer.

Counted in reads, not seconds: the figure is deterministic up to the event loop's
choice of order within a round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

READERS = 64
WRITERS = 16
READS = READERS * 100  # a hundred reads per reader: ~100 scheduling rounds


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


async def writes_during_reads(path: Path) -> tuple[int, int]:
    async with open_test_runtime([Counter], path=path) as rt:
        reads = writes = 0
        done = anyio.Event()

        async def reader() -> None:
            nonlocal reads
            while reads < READS:
                await rt.call(Counter.value, key="one")
                reads += 1
            done.set()

        async def writer() -> None:
            nonlocal writes
            while not done.is_set():
                await rt.call(Counter.add, 1, key="one")
                writes += 1

        async with anyio.create_task_group() as tg:
            for _ in range(READERS):
                tg.start_soon(reader)
            for _ in range(WRITERS):
                tg.start_soon(writer)
        assert await rt.call(Counter.value, key="one") == writes
        return reads, writes


async def test_writers_get_a_share_of_a_key_its_readers_keep_busy(tmp_path: Path) -> None:
    reads, writes = await writes_during_reads(tmp_path)
    # Before the relay: 115 writes in 6,400 reads (about one per scheduling round). The
    # relay alone: ~210, since each handler still yielded once in ``ctx.get``; with
    # reads that do not yield (``_ops_state``): ~800 under both loops, every queued
    # writer in one round. The bound leaves room for the loops' choice of order.
    assert writes >= 600, f"{writes} writes during {reads} reads"
