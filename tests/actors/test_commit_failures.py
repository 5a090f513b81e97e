"""Commit failures at the runtime level (DESIGN.md invariant 13; issue 12, item 3).

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
from actors._lifecycle import Action, Event, Lifecycle, LifecycleError, Phase
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


# --- steps and acceptances --------------------------------------------------------------------


@modes
async def test_step_commit_failures_do_not_use_up_the_retry_policy(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    box = Box()
    disk = Disk(step, full_for=4)
    async with actors.open_runtime(
        tmp_path / "db", [box], commit_mode=commit_mode, retry=FAST, _fault_hook=disk
    ) as rt:
        disk.full = True
        handle = await rt.send(Box.two_steps, key="s")
        # max_attempts=2, but a full disk is not the handler's failure: it is retried
        # until the store takes the step, not paused after two attempts.
        await disk.failed(4)
        assert await handle.result() == 5
        assert rt.statistics().paused == 0
    assert len(box.bodies) == 5  # the first body ran again each time its result was lost


@modes
async def test_a_send_whose_acceptance_fails_is_told_the_disk_is_full(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(acceptance)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        with pytest.raises(actors.PersistenceError, match=r"failed: disk full") as info:
            await rt.send(Box.put, 1, key="a")
        assert str(tmp_path / "db") in str(info.value)
        assert rt._store.scan(Table.INVOCATIONS) == []  # nothing was accepted
        assert rt._store.scan(Table.INBOX) == []
        disk.full = False
        handle = await rt.send(Box.put, 2, key="a")
        assert await handle.result() == 2


@modes
async def test_over_http_a_full_disk_is_507_naming_no_path(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    import httpx

    from actors._ingress import IngressApp

    disk = Disk(acceptance)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        transport = httpx.ASGITransport(app=IngressApp(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            disk.full = True
            answer = await client.post("/Box/a/put/send", content=b"1")
            assert answer.status_code == 507, answer.text
            body = answer.json()
            assert body["code"] == 507
            assert "disk full" in body["message"]
            assert str(tmp_path) not in body["message"]
            disk.full = False
            answer = await client.post("/Box/a/put", content=b"2")
            assert (answer.status_code, answer.json()) == (200, 2)


# --- a writer thread that dies ----------------------------------------------------------------


class WriterBug(BaseException):
    """Stands for anything that kills the writer thread."""


class Deadly:
    """A ``_fault_hook`` that kills the writer thread at the first commit ``kills`` picks."""

    def __init__(self, kills: Callable[[WriteBatch], bool]) -> None:
        self.kills = kills

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if any(self.kills(batch) for batch in batches):
            raise WriterBug("the writer thread dies here")


DIED = r"takes no more writes: its writer thread died of WriterBug"


async def _result_outside(
    handle: actors.InvocationHandle, errors: list[BaseException], done: anyio.Event
) -> None:
    """Wait for ``handle`` from a task outside the runtime (the runtime's stop cancels
    the block's body, not this): it must be answered."""
    try:
        await handle.result()
    except BaseException as exc:
        errors.append(exc)
    finally:
        done.set()


async def test_a_dead_writer_fails_the_waiting_caller_and_stops_the_runtime(
    tmp_path: Path,
) -> None:
    deadly = Deadly(completion)
    errors: list[BaseException] = []
    answered = anyio.Event()
    with anyio.fail_after(30):  # a safety net: the runtime must stop by itself
        async with anyio.create_task_group() as outside:
            with pytest.raises(actors.PersistenceError, match=DIED):
                async with actors.open_runtime(
                    tmp_path / "db", [Box()], commit_mode="thread", retry=FAST, _fault_hook=deadly
                ) as rt:
                    handle = await rt.send(Box.put, 1, key="a")
                    outside.start_soon(_result_outside, handle, errors, answered)
                    await anyio.sleep_forever()  # the runtime stops, and cancels this
            await answered.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], actors.PersistenceError), errors
    assert "writer thread died" in str(errors[0])
    # The store was closed cleanly: reopened, the accepted invocation completes.
    async with _open(tmp_path / "db", "inline", None) as rt:
        assert await rt.attach(handle.invocation_id) == 1
        assert await rt.call(Box.get, key="a") == 1


def _marker(batch: WriteBatch) -> bool:
    return any(key == b"kill the writer" for _, _, key, _ in batch.ops)


@pytest.mark.timeout(30)  # the old runtime spun here, synchronously: no anyio timeout helps
async def test_a_completion_after_the_writer_died_unnoticed_does_not_spin(
    tmp_path: Path,
) -> None:
    box = Box()
    errors: list[BaseException] = []
    answered = anyio.Event()
    async with anyio.create_task_group() as outside:
        with pytest.raises(actors.PersistenceError, match=DIED):
            async with actors.open_runtime(
                tmp_path / "db", [box], commit_mode="thread", _fault_hook=Deadly(_marker)
            ) as rt:
                handle = await rt.send(Box.slow, key="w")
                outside.start_soon(_result_outside, handle, errors, answered)
                # The writer dies on a batch nobody waits for: the runtime learns of it
                # only when the running handler completes.
                batch = WriteBatch()
                batch.put(Table.META, b"kill the writer", b"1")
                rt._store.submit(batch)
                await anyio.to_thread.run_sync(rt._store._writer.join)
                box.release.set()
                await anyio.sleep_forever()  # the runtime stops, and cancels this
        await answered.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], actors.PersistenceError), errors
    assert "writer thread died" in str(errors[0])


async def test_requests_after_the_runtime_stopped_get_the_persistence_error(
    tmp_path: Path,
) -> None:
    deadly = Deadly(acceptance)
    runtime: list[actors.Runtime] = []
    with pytest.raises(actors.PersistenceError, match=DIED):
        async with actors.open_runtime(
            tmp_path / "db", [Box()], commit_mode="thread", retry=FAST, _fault_hook=deadly
        ) as rt:
            runtime.append(rt)
            with pytest.raises(actors.PersistenceError, match=DIED):
                await rt.send(Box.put, 1, key="a")
            await anyio.sleep_forever()
    with pytest.raises(actors.PersistenceError, match=DIED):
        await runtime[0].call(Box.put, 2, key="a")


# --- the lifecycle rows -----------------------------------------------------------------------


def test_a_failed_completion_is_committed_again_and_nothing_else_changes() -> None:
    for ending, durable in ((Phase.COMPLETING, Phase.COMPLETED),):
        life = Lifecycle(phase=Phase.RUNNING)
        life.apply(Event.COMPLETE)
        assert life.phase is ending
        assert life.apply(Event.COMMIT_FAILED) == (Action.RECOMMIT,)
        assert life.phase is ending  # still completing: its outcome is settled
        assert life.apply(Event.CANCEL) == (Action.REJECT_COMPLETED,)
        life.apply(Event.DURABLE)
        assert life.phase is durable
    killed = Lifecycle(phase=Phase.KILLING)
    killed.apply(Event.COMPLETE)
    assert killed.apply(Event.COMMIT_FAILED) == (Action.RECOMMIT,)
    assert killed.phase is Phase.KILL_COMPLETING
    with pytest.raises(LifecycleError):
        Lifecycle(phase=Phase.RUNNING).apply(Event.COMMIT_FAILED)


def test_step_failures_count_apart_from_handler_failures() -> None:
    life = Lifecycle(phase=Phase.RUNNING)
    assert life.apply(Event.STEP_FAILED) == (Action.COUNT_COMMIT_FAILURE, Action.SCHEDULE_RETRY)
    assert (life.failures, life.commit_failures) == (0, 1)
    life.apply(Event.RETRY)
    life.apply(Event.START)
    life.apply(Event.FAIL)
    assert (life.failures, life.commit_failures) == (1, 1)
