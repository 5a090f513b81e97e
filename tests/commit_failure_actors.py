"""What the commit-failure tests share (test_commit_failures.py, test_writer_failures.py):
a ``Disk`` fault hook that fails chosen commits the way LMDB does on a full disk, the
predicates that choose them, the ``Box`` object and the runtime they open."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import lmdb
import pytest

import actors
import actors.testing
from actors.storage import InvocationRecord, InvocationStatus, Table, WriteBatch, loads

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from actors.storage import CommitMode

FAST = actors.RetryPolicy(initial_interval=0.001, max_interval=0.01, max_attempts=None)
modes = pytest.mark.parametrize("commit_mode", ["inline", "thread"])


def completion(batch: WriteBatch) -> bool:
    """The batch completes an invocation: it writes a COMPLETED (or KILLED) record."""
    for _op, table, _key, value in batch.ops:
        if table is Table.INVOCATIONS and value is not None:
            status = loads(InvocationRecord, value).status
            if status in (InvocationStatus.COMPLETED, InvocationStatus.KILLED):
                return True
    return False


def acceptance(batch: WriteBatch) -> bool:
    return any(table is Table.INBOX and value is not None for _, table, _, value in batch.ops)


def state_write(batch: WriteBatch) -> bool:
    return any(table is Table.STATE for _, table, _, _ in batch.ops)


def step(batch: WriteBatch) -> bool:
    """A step's batch: journal entries, no completion."""
    return any(table is Table.JOURNAL for _, table, _, _ in batch.ops) and not completion(batch)


class Disk:
    """A ``_fault_hook``: while ``full``, a commit holding a batch that ``fails`` picks
    raises what LMDB raises when the disk is full; after ``full_for`` failures (if given)
    the disk has room again by itself."""

    def __init__(self, fails: Callable[[WriteBatch], bool], *, full_for: int | None = None) -> None:
        self.fails = fails
        self.full = False
        self.full_for = full_for
        self.failures = 0
        self._changed = threading.Condition()

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if not self.full or not any(self.fails(batch) for batch in batches):
            return
        with self._changed:
            self.failures += 1
            if self.full_for is not None and self.failures >= self.full_for:
                self.full = False
            self._changed.notify_all()
        raise lmdb.DiskError("mdb_txn_commit: No space left on device")

    async def failed(self, times: int) -> None:
        """Return once ``times`` commits have failed (the hook may run on the writer
        thread, so wait on a worker thread; the timeout only turns a hang into a failure)."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: self.failures >= times, timeout=20)

        if not await anyio.to_thread.run_sync(wait):
            raise AssertionError(f"only {self.failures} commits failed, not {times}")


async def _step_body(counter: list[int]) -> int:
    counter.append(1)
    return len(counter)


class Box(actors.VirtualObject):
    def __init__(self) -> None:
        self.bodies: list[int] = []
        self.release = threading.Event()

    @actors.exclusive
    async def put(self, ctx: actors.ObjectContext, value: int) -> int:
        ctx.set("v", value)
        return value

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = ((await ctx.get("n", int)) or 0) + delta
        ctx.set("n", n)
        return n

    @actors.exclusive
    async def read_n(self, ctx: actors.ObjectContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.exclusive(
        retry=actors.RetryPolicy(initial_interval=0.001, max_interval=0.01, max_attempts=2)
    )
    async def two_steps(self, ctx: actors.ObjectContext) -> int:
        first = await ctx.run("first", _step_body, self.bodies)
        await ctx.run("second", _step_body, [])  # its gate commits the first's result
        return first

    @actors.exclusive
    async def slow(self, ctx: actors.ObjectContext) -> int:
        await anyio.to_thread.run_sync(self.release.wait)  # not a durable step
        ctx.set("v", 1)
        return 1

    @actors.shared
    async def get(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("v", int)

    @actors.shared
    async def count(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)


def _open(
    path: Path, commit_mode: CommitMode, disk: Callable[[Sequence[WriteBatch]], None] | None
) -> AbstractAsyncContextManager[actors.Runtime]:
    return actors.open_runtime(path, [Box()], commit_mode=commit_mode, retry=FAST, _fault_hook=disk)
