"""A sequential caller commits in its own task (``_idle_commit``'s ``sole_waiter``).

Under trio, a task that waits for a held batch with no other task runnable, after
``SEQUENTIAL_STREAK`` commits of one batch each, commits what its loop holds itself
instead of parking until the loop's idle committer does it. These tests show that it
does, that tasks which share a pass of the loop still share their commits (a burst
costs at most one commit more), and that nothing changes under asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actors.storage import StorageError, Store, Table, WriteBatch, _idle_commit

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.trio_only

STREAK = _idle_commit.SEQUENTIAL_STREAK


def put(key: bytes) -> WriteBatch:
    batch = WriteBatch()
    batch.put(Table.STATE, key, b"v")
    return batch


class Commits:
    """A ``_fault_hook``: the size of each transaction, and the thread it ran on."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        self.sizes.append(len(batches))
        self.threads.add(threading.current_thread().name)


class CommitterSteps(trio.abc.Instrument):
    """Counts the steps of the idle committer's task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == "actors-idle-commit":
            self.steps += 1


@pytest.fixture(autouse=True)
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loaded machine can pause the process for longer than IDLE_WAIT (0.2 ms), after
    # which a busy loop commits anyway: these tests are about idle moments only.
    monkeypatch.setattr(_idle_commit, "IDLE_WAIT", 30.0)


async def test_a_sequential_caller_commits_in_its_own_task(tmp_path: Path) -> None:
    commits = Commits()
    committer = CommitterSteps()
    with Store.open(tmp_path / "s", _fault_hook=commits) as store:
        for i in range(STREAK + 1):  # the streak: each commit by the idle committer
            await store.submit(put(b"warm%d" % i)).wait()
        trio.lowlevel.add_instrument(committer)
        for i in range(20):
            ticket = store.submit(put(b"k%d" % i))
            await ticket.wait()
            assert ticket.error is None
        trio.lowlevel.remove_instrument(committer)
        assert store.get(Table.STATE, b"k19") == b"v"
    assert committer.steps == 0  # it never had to wake
    assert commits.sizes == [1] * (STREAK + 1 + 20)
    assert commits.threads == {threading.current_thread().name}


async def test_the_streak_comes_first(tmp_path: Path) -> None:
    # Until SEQUENTIAL_STREAK commits of one batch each, the idle committer commits.
    committer = CommitterSteps()
    trio.lowlevel.add_instrument(committer)
    with Store.open(tmp_path / "s") as store:
        for i in range(STREAK):
            await store.submit(put(b"k%d" % i)).wait()
    trio.lowlevel.remove_instrument(committer)
    assert committer.steps >= STREAK


async def test_a_burst_after_a_streak_shares_its_commits_but_the_first(tmp_path: Path) -> None:
    # Eight tasks start in one pass after a sequential streak, each committing three
    # times. Trio does not show a task the rest of its pass: the first to wait sees
    # nothing runnable and commits alone. The others see it runnable (it checkpoints
    # after its commit) and wait to share; its next wait finds all seven held and
    # commits them with its own; from then on the streak is broken and the pass of
    # all eight commits at idle, as without the streak: one commit more in all.
    commits = Commits()
    with Store.open(tmp_path / "s", _fault_hook=commits) as store:
        for i in range(STREAK + 2):
            await store.submit(put(b"warm%d" % i)).wait()
        del commits.sizes[:]

        async def caller(i: int) -> None:
            for round_ in range(3):
                await store.submit(put(b"k%d-%d" % (i, round_))).wait()

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(caller, i)
    assert commits.sizes == [1, 8, 8, 7]


async def test_a_second_burst_shares_every_commit(tmp_path: Path) -> None:
    # After a burst has broken the streak, the next one commits as without it.
    commits = Commits()
    with Store.open(tmp_path / "s", _fault_hook=commits) as store:
        for i in range(STREAK + 2):
            await store.submit(put(b"warm%d" % i)).wait()

        async def caller(i: int, burst: int) -> None:
            await store.submit(put(b"k%d-%d" % (i, burst))).wait()

        for burst in range(2):
            del commits.sizes[:]
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(caller, i, burst)
            if burst == 0:
                assert commits.sizes == [1, 7]
    assert commits.sizes == [8]


async def test_a_task_that_submits_twice_before_waiting_commits_both_at_once(
    tmp_path: Path,
) -> None:
    commits = Commits()
    with Store.open(tmp_path / "s", _fault_hook=commits) as store:
        for i in range(STREAK + 1):
            await store.submit(put(b"warm%d" % i)).wait()
        del commits.sizes[:]
        first = store.submit(put(b"a"))
        second = store.submit(put(b"b"))
        await second.wait()
        assert first.done
        await first.wait()
    assert commits.sizes == [2]


async def test_a_caller_with_another_task_runnable_leaves_it_to_the_committer(
    tmp_path: Path,
) -> None:
    commits = Commits()
    committer = CommitterSteps()
    with Store.open(tmp_path / "s", _fault_hook=commits) as store:
        for i in range(STREAK + 1):
            await store.submit(put(b"warm%d" % i)).wait()
        trio.lowlevel.add_instrument(committer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.lowlevel.checkpoint)  # runnable when we wait
            await store.submit(put(b"k")).wait()
        trio.lowlevel.remove_instrument(committer)
    assert committer.steps >= 1
    assert commits.sizes[-1] == 1


async def test_a_failed_commit_in_the_callers_task_fails_its_ticket(tmp_path: Path) -> None:
    # The commit made in the waiting task fails as one made by the committer would:
    # the ticket carries the error, and the store takes the next batch.
    failing = {b"bad"}

    def hook(batches: Sequence[WriteBatch]) -> None:
        if any(op[2] in failing for batch in batches for op in batch.ops):
            raise OSError(28, "No space left on device")

    with Store.open(tmp_path / "s", _fault_hook=hook) as store:
        for i in range(STREAK + 1):
            await store.submit(put(b"warm%d" % i)).wait()
        ticket = store.submit(put(b"bad"))
        with pytest.raises(StorageError) as caught:
            await ticket.wait()
        assert ticket.error is caught.value
        await store.submit(put(b"good")).wait()
        assert store.get(Table.STATE, b"good") == b"v"
        assert store.get(Table.STATE, b"bad") is None


def test_under_asyncio_the_committer_commits(tmp_path: Path) -> None:
    # asyncio's ready queue shows the whole pass, and the committer's check is cheap
    # there: a sequential caller's batches commit by the committer's callback.
    commits = Commits()

    async def main() -> None:
        with Store.open(tmp_path / "s", _fault_hook=commits) as store:
            for i in range(STREAK + 5):
                await store.submit(put(b"k%d" % i)).wait()
            loop = asyncio.get_running_loop()
            committer = store._writer._committers[loop.call_soon_threadsafe]
            assert committer is not None
            assert not committer.sole_waiter()

    asyncio.run(main())
    assert commits.sizes == [1] * (STREAK + 5)


def test_a_trio_without_the_run_queue_commits_at_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    # If trio's internals move, no task commits its own: the committer does, as before.
    monkeypatch.setattr(_idle_commit, "_RUN_CONTEXT", None)

    async def main() -> None:
        assert _idle_commit._trio_runq() is None

    trio.run(main)
