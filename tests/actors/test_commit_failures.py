"""Commit failures at the runtime level, completions (DESIGN.md invariant 13; issue 12,
item 3; steps, acceptances, a dying writer thread and the lifecycle rows:
test_writer_failures.py).

A failed commit of a step, of a completion or of what a completion depends on leaves the
invocation in the live runtime: attachable, answered only once its outcome is durable,
and committed again (with the retry policy's backoff, for as long as it takes) when the
store accepts writes again. A failed acceptance is the caller's ``PersistenceError``:
nothing was accepted. A full disk says so. A writer thread that dies stops the runtime
with a ``PersistenceError``; nothing spins and nobody hangs.

Every test runs with inline commits and with the writer thread, under trio and asyncio
(tests/conftest.py). The disk is a ``_fault_hook`` that fails chosen commits the way LMDB
does on a full disk; tests wait for its failures on a thread condition (no sleeps), and
backoffs are a millisecond.
"""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import lmdb
import pytest
from small_disk import FILL, run_in_small_tmpfs

import actors
import actors.testing
from actors.storage import Table, WriteBatch

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from actors.storage import CommitMode

from commit_failure_actors import FAST, Box, Disk, _open, completion, modes, state_write

# --- completions ------------------------------------------------------------------------------


@modes
async def test_a_failed_completion_stays_attachable_and_lands_once_the_disk_has_room(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(completion)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        handle = await rt.send(Box.put, 7, key="b")
        await disk.failed(1)
        answers: list[object] = []
        async with anyio.create_task_group() as tg:

            async def attach() -> None:
                answers.append(await rt.attach(handle.invocation_id))

            async def result() -> None:
                answers.append(await handle.result())

            tg.start_soon(attach)
            tg.start_soon(result)
            await disk.failed(3)  # committed again, and again
            with pytest.raises(actors.NotReadyError):
                await rt.output(handle.invocation_id)
            assert await rt.call(Box.get, key="b") is None  # nothing of it is visible
            assert answers == []
            disk.full = False
        assert answers == [7, 7]
        assert await rt.call(Box.get, key="b") == 7
        assert await rt.output(handle.invocation_id) == 7


@modes
async def test_failed_completions_on_a_key_land_in_order_and_the_next_run_sees_them(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    # Each completion hands the key on at once (pipelining): the next add may already
    # have run on the failed one's writes. Nothing may be lost or counted twice.
    disk = Disk(completion, full_for=2)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        handles = [await rt.send(Box.add, 1, key="k") for _ in range(3)]
        assert [await h.result() for h in handles] == [1, 2, 3]
        assert await rt.call(Box.count, key="k") == 3
        assert disk.failures == 2
    async with _open(tmp_path / "db", commit_mode, None) as rt:
        assert await rt.call(Box.count, key="k") == 3  # nothing ran again at the reopen
        assert [await rt.attach(h.invocation_id) for h in handles] == [1, 2, 3]


@modes
async def test_an_exclusive_read_after_a_failed_completion_answers_once_it_lands(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(completion, full_for=3)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        added = await rt.send(Box.add, 1, key="k")
        await disk.failed(1)  # the add has run; its completion is being committed again
        assert await rt.call(Box.read_n, key="k") == 1
        assert await added.result() == 1


class HeldDisk:
    """A ``_fault_hook`` that holds the writer in the first completion's commit until
    ``fail``, then fails it like a full disk (once): meanwhile the key's next invocation
    runs on the completion's writes (pipelining)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()
        self.failed = False

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if self.failed or not any(completion(batch) for batch in batches):
            return
        self.entered.set()
        assert self.go.wait(timeout=20), "never told to fail"
        self.failed = True
        raise lmdb.DiskError("mdb_txn_commit: No space left on device")


async def test_a_read_that_ran_on_a_completion_that_then_failed_answers_once_it_lands(
    tmp_path: Path,
) -> None:
    disk = HeldDisk()
    async with _open(tmp_path / "db", "thread", disk) as rt:
        added = await rt.send(Box.add, 1, key="k")
        assert await anyio.to_thread.run_sync(disk.entered.wait, 20)
        answers: list[int] = []
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                answers.append(await rt.call(Box.read_n, key="k"))

            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()  # it read 1 from the overlay, and waits
            assert answers == []
            disk.go.set()
        assert answers == [1]
        assert await added.result() == 1
        assert await rt.call(Box.count, key="k") == 1


def _marker_batch(batch: WriteBatch) -> bool:
    return any(key == b"hold the writer here" for _, _, key, _ in batch.ops)


class ReorderingDisk:
    """A ``_fault_hook`` that forces the order in which a key's failed completions come
    back to ``Recommits``: it holds the writer in the key's first completion until
    ``fail_first``, then fails it; holds it again on the marker batch (queued behind the
    second completion, which fails as its dependent in the same group) until
    ``release_marker``; then fails the next completion (the first one, committed again)
    once more, and lets everything through after that."""

    def __init__(self) -> None:
        self.holding_first = threading.Event()
        self.fail_first = threading.Event()
        self.holding_marker = threading.Event()
        self.release_marker = threading.Event()
        self.failures = 0

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if any(_marker_batch(batch) for batch in batches):
            self.holding_marker.set()
            assert self.release_marker.wait(timeout=20), "the marker was never released"
            return
        if self.failures < 2 and any(state_write(batch) for batch in batches):
            if self.failures == 0:
                self.holding_first.set()
                assert self.fail_first.wait(timeout=20), "never told to fail"
            self.failures += 1
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")


class _Recommitting(logging.Handler):
    """Sets ``submitted`` when a failed completion is submitted again (logged in the loop)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.submitted = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "committing its completion again" in record.getMessage():
            self.submitted.set()


async def test_a_later_completion_that_fails_before_an_earlier_one_fails_again_lands_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The lost update once seen under load: add1's completion C1 fails and is committed
    # again (C1'), and only then does the failure of add2's completion C2 (computed on
    # C1's writes, so depending on it) reach the loop, C1' being still in flight. C1'
    # fails again. C2 must land after C1' all the same, or n goes back to 1. The writer
    # thread is what lets C1' be queued while C2 is not settled yet: inline commits
    # settle in ``submit``, so this interleaving has no inline form.
    caplog.set_level(logging.INFO, logger="actors")
    recommitting = _Recommitting()
    logging.getLogger("actors").addHandler(recommitting)
    disk = ReorderingDisk()
    try:
        async with _open(tmp_path / "db", "thread", disk) as rt:
            answers: dict[str, int] = {}

            async def add(name: str) -> None:
                answers[name] = await rt.call(Box.add, 1, key="k")

            async with anyio.create_task_group() as tg:
                tg.start_soon(add, "first")
                assert await anyio.to_thread.run_sync(disk.holding_first.wait, 20)
                tg.start_soon(add, "second")  # runs on the first's writes (the overlay)
                await anyio.wait_all_tasks_blocked()  # C2 is queued, behind C1
                marker = WriteBatch()
                marker.put(Table.META, b"hold the writer here", b"1")
                rt._store.submit(marker)  # the writer's next group: C2 (fails) and this
                disk.fail_first.set()
                assert await anyio.to_thread.run_sync(disk.holding_marker.wait, 20)
                await recommitting.submitted.wait()  # C1' is queued; C2 is not settled
                disk.release_marker.set()
            assert answers == {"first": 1, "second": 2}
            assert disk.failures == 2
            assert await rt.call(Box.count, key="k") == 2
            assert await rt.call(Box.add, 1, key="k") == 3
        async with _open(tmp_path / "db", "thread", None) as rt:
            assert await rt.call(Box.count, key="k") == 3
    finally:
        logging.getLogger("actors").removeHandler(recommitting)


@modes
async def test_a_call_whose_completion_fails_waits_until_it_lands(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(state_write, full_for=3)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        assert await rt.call(Box.put, 5, key="c") == 5
        assert disk.failures == 3
        assert await rt.call(Box.get, key="c") == 5


@modes
async def test_a_runtime_closed_while_a_completion_is_retried_loses_nothing(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(completion)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        handle = await rt.send(Box.put, 3, key="d")
        await disk.failed(2)
    async with _open(tmp_path / "db", commit_mode, None) as rt:
        assert await rt.attach(handle.invocation_id) == 3
        assert await rt.call(Box.get, key="d") == 3


class Doubler(actors.Service):
    @actors.handler
    async def double(self, ctx: actors.Context, n: int) -> int:
        return 2 * n


class Caller(actors.VirtualObject):
    @actors.exclusive
    async def ask(self, ctx: actors.ObjectContext, n: int) -> int:
        doubled = await ctx.call(Doubler.double, n)
        ctx.set("last", doubled)
        return doubled


@modes
async def test_a_callee_whose_completion_fails_answers_its_caller_once_it_lands(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    # The service's completion also writes the answer into its caller's journal: both
    # land together, late, and the caller goes on from there.
    def service_completion(batch: WriteBatch) -> bool:
        return completion(batch) and any(
            table is Table.INVOCATIONS and value is not None and b"Doubler" in value
            for _, table, _, value in batch.ops
        )

    disk = Disk(service_completion, full_for=3)
    async with actors.open_runtime(
        tmp_path / "db", [Doubler, Caller], commit_mode=commit_mode, retry=FAST, _fault_hook=disk
    ) as rt:
        disk.full = True
        handle = await rt.send(Caller.ask, 21, key="c")
        assert await handle.result() == 42
        assert disk.failures == 3


@modes
async def test_a_crash_plan_with_the_writer_thread_raises_SimulatedCrash(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    with pytest.raises(actors.testing.SimulatedCrash):
        async with actors.testing.open_test_runtime(
            [Box()],
            path=tmp_path,
            commit_mode=commit_mode,
            crash=actors.testing.CrashPlan(after_commits=1),
            retry=FAST,
        ) as rt:
            handle = await rt.send(Box.put, 4, key="x")  # commit 1: the acceptance
            await handle.result()  # commit 2: the crash
    async with actors.testing.open_test_runtime([Box()], path=tmp_path, retry=FAST) as rt:
        assert await rt.attach(handle.invocation_id) == 4


_REAL_DISK_SCRIPT = """
import json, logging, os, sys, threading
import trio
import actors

root = sys.argv[1]


class Blob(actors.VirtualObject):
    @actors.exclusive
    async def fill(self, ctx: actors.ObjectContext, size: int) -> int:
        ctx.set("blob", "x" * size)
        return size

    @actors.shared
    async def size(self, ctx: actors.ObjectSharedContext) -> int:
        return len((await ctx.get("blob", str)) or "")


failures = []
failed = threading.Event()


class Watch(logging.Handler):
    def emit(self, record):
        if "committed again" in record.getMessage():
            failures.append(record.getMessage())
            failed.set()


logging.getLogger("actors").addHandler(Watch())
retry = actors.RetryPolicy(initial_interval=0.01, max_interval=0.05, max_attempts=None)


async def main():
    filler = os.path.join(root, "filler")
    async with actors.open_runtime(os.path.join(root, "db"), [Blob], retry=retry) as rt:
        fill(filler, 64 * 1024)  # the disk is full, but for a little room
        handle = await rt.send(Blob.fill, 300_000, key="b")  # a small acceptance fits
        assert await trio.to_thread.run_sync(failed.wait, 20), "the completion never failed"
        try:
            await rt.output(handle.invocation_id)
            running = False
        except actors.NotReadyError:
            running = True
        os.unlink(filler)  # the operator makes room
        result = await rt.attach(handle.invocation_id)
        size = await rt.call(Blob.size, key="b")
    print(json.dumps({"running": running, "result": result, "size": size, "log": failures[0]}))


trio.run(main)
"""


def test_a_completion_on_a_really_full_disk_lands_once_there_is_room() -> None:
    result = run_in_small_tmpfs(FILL + textwrap.dedent(_REAL_DISK_SCRIPT))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["running"] is True  # attachable, not dropped, while the disk was full
    assert (outcome["result"], outcome["size"]) == (300_000, 300_000)
    assert "commit to /mnt/db failed: disk full" in outcome["log"], outcome
