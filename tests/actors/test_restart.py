"""Restarts: accepted but unfinished invocations resume in acceptance order, exactly once,
and their results can be attached in the new runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

import actors

if TYPE_CHECKING:
    from pathlib import Path


class JournalBlocking(actors.VirtualObject, name="Journal"):
    """First life: every handler writes, announces itself, then blocks forever."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.entered = anyio.Event()

    @actors.exclusive
    async def append(self, ctx: actors.ObjectContext, item: int) -> str:
        self.started.append(item)
        ctx.set("uncommitted", item)
        self.entered.set()
        await anyio.Event().wait()  # a gate nobody sets
        raise AssertionError("unreachable")  # pragma: no cover


class JournalFree(actors.VirtualObject, name="Journal"):
    """Second life: the same actor name and handler, without blocking."""

    def __init__(self, log: list[tuple[str, int]] | None = None) -> None:
        self.log = log if log is not None else []

    @actors.exclusive
    async def append(self, ctx: actors.ObjectContext, item: int) -> str:
        self.log.append((ctx.key, item))
        assert await ctx.get("uncommitted", int) is None  # the first life's write was lost
        items = (await ctx.get("items", list[int])) or []
        ctx.set("items", [*items, item])
        return f"{ctx.key}:{item}"

    @actors.shared
    async def items(self, ctx: actors.ObjectSharedContext) -> list[int]:
        return (await ctx.get("items", list[int])) or []


class PingBlocking(actors.Service, name="Ping"):
    def __init__(self) -> None:
        self.entered = anyio.Event()

    @actors.handler
    async def ping(self, ctx: actors.Context, n: int) -> int:
        self.entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


class PingFree(actors.Service, name="Ping"):
    def __init__(self) -> None:
        self.seen: list[int] = []

    @actors.handler
    async def ping(self, ctx: actors.Context, n: int) -> int:
        self.seen.append(n)
        return n * 2


async def test_unfinished_invocations_resume_in_acceptance_order(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first_life = JournalBlocking()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [first_life]) as rt:
            handles = [await rt.send(JournalBlocking.append, i, key="k") for i in range(5)]
            await first_life.entered.wait()
            assert first_life.started == [0]  # the others wait behind it
        # Exiting cancelled the running handler; nothing was completed.
        second_life = JournalFree()
        async with actors.open_runtime(path, [second_life]) as rt:
            # New work on the key queues behind the resumed invocations.
            handles.append(await rt.send(JournalFree.append, 5, key="k"))
            results = [await rt.attach(h.invocation_id) for h in handles]
            assert results == [f"k:{i}" for i in range(6)]
            assert await rt.call(JournalFree.items, key="k") == [0, 1, 2, 3, 4, 5]
    assert second_life.log == [("k", i) for i in range(6)]
    assert [h.status for h in handles] == ["Accepted"] * 6


async def test_resumed_invocations_keep_per_key_order_across_keys(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first_life = JournalBlocking()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [first_life]) as rt:
            handles = [await rt.send(JournalBlocking.append, i, key="ab"[i % 2]) for i in range(10)]
            await first_life.entered.wait()
        second_life = JournalFree()
        async with actors.open_runtime(path, [second_life]) as rt:
            for h in handles:
                await rt.attach(h.invocation_id)
            assert await rt.call(JournalFree.items, key="a") == [0, 2, 4, 6, 8]
            assert await rt.call(JournalFree.items, key="b") == [1, 3, 5, 7, 9]
    for key in "ab":
        assert [item for k, item in second_life.log if k == key] == [
            i for i in range(10) if "ab"[i % 2] == key
        ]


async def test_completed_invocations_do_not_run_again(tmp_path: Path) -> None:
    path = tmp_path / "db"
    log: list[tuple[str, int]] = []
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [JournalFree(log)]) as rt:
            handles = [await rt.send(JournalFree.append, i, key="k") for i in range(3)]
            assert [await h.result() for h in handles] == ["k:0", "k:1", "k:2"]
        async with actors.open_runtime(path, [JournalFree(log)]) as rt:
            assert [await rt.attach(h.invocation_id) for h in handles] == ["k:0", "k:1", "k:2"]
            assert await rt.call(JournalFree.items, key="k") == [0, 1, 2]
            assert rt.statistics().in_flight == 0
    assert log == [("k", 0), ("k", 1), ("k", 2)]


async def test_accepted_service_invocation_resumes(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first_life = PingBlocking()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [first_life]) as rt:
            h = await rt.send(PingBlocking.ping, 21)
            await first_life.entered.wait()
        second_life = PingFree()
        async with actors.open_runtime(path, [second_life]) as rt:
            assert await rt.attach(h.invocation_id) == 42
    assert second_life.seen == [21]


async def test_restart_after_cancelled_scope_resumes(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first_life = JournalBlocking()
    with anyio.CancelScope() as scope:
        async with actors.open_runtime(path, [first_life]) as rt:
            h = await rt.send(JournalBlocking.append, 3, key="k")
            await first_life.entered.wait()
            scope.cancel()
            await anyio.sleep_forever()
    async with actors.open_runtime(path, [JournalFree()]) as rt:
        with anyio.fail_after(30):
            assert await rt.attach(h.invocation_id) == "k:3"
