"""Deterministic concurrency per key: single writer, FIFO acceptance order, shared
handlers that never wait and read committed state only, and pipelined commits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

import actors

if TYPE_CHECKING:
    from pathlib import Path


class Counter(actors.VirtualObject):
    """``add`` counts; ``add_blocking`` writes, then blocks on ``gate`` before finishing."""

    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.gate = gate if gate is not None else anyio.Event()
        self.blocked = anyio.Event()
        self.running_exclusive = 0
        self.max_running_exclusive = 0
        self.seen: list[int] = []

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        self.running_exclusive += 1
        self.max_running_exclusive = max(self.max_running_exclusive, self.running_exclusive)
        try:
            n = (await ctx.get("n", int)) or 0
            await anyio.lowlevel.checkpoint()  # invite interleaving between read and write
            ctx.set("n", n + delta)
            return n + delta
        finally:
            self.running_exclusive -= 1

    @actors.exclusive
    async def add_blocking(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        self.blocked.set()
        await self.gate.wait()
        return n + delta

    @actors.exclusive
    async def record(self, ctx: actors.ObjectContext, i: int) -> int:
        self.seen.append(i)
        return i

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


class Waiter(actors.VirtualObject):
    """Each handler announces itself in ``entered`` and waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.entered: dict[str, anyio.Event] = {}

    def entered_event(self, name: str) -> anyio.Event:
        return self.entered.setdefault(name, anyio.Event())

    @actors.shared
    async def shared_wait(self, ctx: actors.ObjectSharedContext, name: str) -> str:
        self.entered_event(name).set()
        await self.gate.wait()
        return name

    @actors.exclusive
    async def exclusive_wait(self, ctx: actors.ObjectContext, name: str) -> str:
        self.entered_event(name).set()
        await self.gate.wait()
        return name


async def test_thousand_concurrent_adds_on_one_key(tmp_path: Path) -> None:
    counter = Counter()
    results: list[int] = []

    async def add_one(rt: actors.Runtime) -> None:
        results.append(await rt.call(Counter.add, 1, key="k"))

    with anyio.fail_after(60):
        async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(add_one, rt)
            assert await rt.call(Counter.value, key="k") == 1000
    # Each invocation saw every earlier one: the results are exactly 1..1000.
    assert sorted(results) == list(range(1, 1001))
    assert counter.max_running_exclusive == 1


async def test_exclusive_invocations_start_in_acceptance_order(tmp_path: Path) -> None:
    counter = Counter()
    async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
        handles = [await rt.send(Counter.record, i, key="k") for i in range(50)]
        assert [await h.result() for h in handles] == list(range(50))
    assert counter.seen == list(range(50))


async def test_acceptance_order_holds_behind_a_blocked_invocation(tmp_path: Path) -> None:
    counter = Counter()
    async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
        first = await rt.send(Counter.add_blocking, 1, key="k")
        await counter.blocked.wait()
        handles = [await rt.send(Counter.record, i, key="k") for i in range(20)]
        assert counter.seen == []  # all queued behind the blocked one
        assert rt.statistics().queued_exclusive == 20
        counter.gate.set()
        assert await first.result() == 1
        for h in handles:
            await h.result()
    assert counter.seen == list(range(20))


async def test_shared_handler_does_not_wait_and_sees_committed_state(tmp_path: Path) -> None:
    counter = Counter()
    async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
        assert await rt.call(Counter.add, 1, key="k") == 1
        h = await rt.send(Counter.add_blocking, 5, key="k")
        await counter.blocked.wait()  # it has called ctx.set("n", 6) and holds the key
        with anyio.fail_after(10):
            assert await rt.call(Counter.value, key="k") == 1  # the old, committed value
        counter.gate.set()
        assert await h.result() == 6
        assert await rt.call(Counter.value, key="k") == 6


async def test_shared_handlers_run_alongside_each_other_and_the_exclusive(
    tmp_path: Path,
) -> None:
    waiter = Waiter()
    results: list[str] = []

    async def run(rt: actors.Runtime, handler: actors.Handler[str, str], name: str) -> None:
        results.append(await rt.call(handler, name, key="k"))

    with anyio.fail_after(30):
        async with (
            actors.open_runtime(tmp_path / "db", [waiter]) as rt,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(run, rt, Waiter.exclusive_wait, "x")
            await waiter.entered_event("x").wait()
            tg.start_soon(run, rt, Waiter.shared_wait, "s1")
            tg.start_soon(run, rt, Waiter.shared_wait, "s2")
            # Both shared handlers start while the exclusive one holds the key.
            await waiter.entered_event("s1").wait()
            await waiter.entered_event("s2").wait()
            assert results == []
            waiter.gate.set()
    assert sorted(results) == ["s1", "s2", "x"]


async def test_exclusive_handlers_on_different_keys_run_concurrently(tmp_path: Path) -> None:
    waiter = Waiter()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [waiter]) as rt:
            handles = [await rt.send(Waiter.exclusive_wait, k, key=k) for k in ("a", "b", "c")]
            for k in ("a", "b", "c"):
                await waiter.entered_event(k).wait()
            waiter.gate.set()
            assert [await h.result() for h in handles] == ["a", "b", "c"]


async def test_exclusive_on_one_key_waits_for_the_running_one(tmp_path: Path) -> None:
    waiter = Waiter()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [waiter]) as rt:
            first = await rt.send(Waiter.exclusive_wait, "first", key="k")
            second = await rt.send(Waiter.exclusive_wait, "second", key="k")
            await waiter.entered_event("first").wait()
            assert "second" not in waiter.entered
            assert rt.statistics().queued_exclusive == 1
            waiter.gate.set()
            assert await first.result() == "first"
            assert await second.result() == "second"


async def test_pipelined_callers_on_one_key_count_exactly(tmp_path: Path) -> None:
    counter = Counter()
    results: list[int] = []

    async def caller(rt: actors.Runtime) -> None:
        for _ in range(10):
            results.append(await rt.call(Counter.add, 1, key="k"))

    with anyio.fail_after(60):
        async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
            async with anyio.create_task_group() as tg:
                for _ in range(64):
                    tg.start_soon(caller, rt)
            assert await rt.call(Counter.value, key="k") == 640
        async with actors.open_runtime(tmp_path / "db", [counter]) as rt:
            assert await rt.call(Counter.value, key="k") == 640
    assert sorted(results) == list(range(1, 641))
    assert counter.max_running_exclusive == 1
