"""A sequential caller's commits are made in its own task, under trio: an exclusive
call's completion, and each ``ctx.run`` step's gate (``async def`` and plain ``def``
bodies), with the idle committer never woken (``storage._idle_commit.sole_waiter``).
Concurrent callers still share their commits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

import actors
from actors.storage import _idle_commit

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from actors.storage import StorageError, WriteBatch

pytestmark = pytest.mark.trio_only


class Tally(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta


def double(i: int) -> int:
    return 2 * i


async def double_async(i: int) -> int:
    return 2 * i


class Steps(actors.Service):
    @actors.handler
    async def three(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(3):
            total += await ctx.run(f"s{i}", double_async, i)
        return total

    @actors.handler
    async def three_threaded(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(3):
            total += await ctx.run(f"s{i}", double, i)
        return total


class CommittingTasks:
    """Wraps the store's LMDB commit: the name of the task each one ran in."""

    def __init__(self, rt: actors.Runtime) -> None:
        writer = rt._store._writer  # private: only to see where commits run
        self.names: list[str] = []
        apply = writer._apply

        def recorded(batches: Sequence[WriteBatch]) -> StorageError | None:
            self.names.append(trio.lowlevel.current_task().name)
            return apply(batches)

        writer._apply = recorded  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only idle moments matter here, not a loaded machine's pauses (IDLE_WAIT is 0.2 ms).
    monkeypatch.setattr(_idle_commit, "IDLE_WAIT", 30.0)


@pytest.mark.parametrize("handler", ["add", "three", "three_threaded"])
async def test_sequential_calls_commit_in_the_callers_task(tmp_path: Path, handler: str) -> None:
    async with actors.open_runtime(tmp_path, [Tally, Steps]) as rt:

        async def call(i: int) -> int:
            if handler == "add":
                return await rt.call(Tally.add, 1, key="k")
            if handler == "three":
                return await rt.call(Steps.three)
            return await rt.call(Steps.three_threaded)

        for i in range(_idle_commit.SEQUENTIAL_STREAK + 1):
            await call(i)
        before = rt._store.statistics()
        committing = CommittingTasks(rt)
        results = [await call(i) for i in range(10)]
        after = rt._store.statistics()
    first = _idle_commit.SEQUENTIAL_STREAK + 2
    assert results == (list(range(first, first + 10)) if handler == "add" else [6] * 10)
    commits = after.commits - before.commits
    assert commits == after.batches - before.batches >= 10  # one batch each
    # Every one of them in the caller's task (here, the test's), none in the committer's.
    assert committing.names[:commits] == [trio.lowlevel.current_task().name] * commits


async def test_concurrent_callers_still_share_commits(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path, [Tally]) as rt:
        for _ in range(_idle_commit.SEQUENTIAL_STREAK + 1):
            await rt.call(Tally.add, 1, key="warm")
        before = rt._store.statistics()

        async def caller(i: int) -> None:
            for _ in range(5):
                await rt.call(Tally.add, 1, key=f"k{i}")

        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(caller, i)
        after = rt._store.statistics()
        assert [await rt.call(Tally.add, 0, key=f"k{i}") for i in range(16)] == [5] * 16
    # 80 completions: without sharing they would take 80 commits.
    assert after.commits - before.commits <= 10
