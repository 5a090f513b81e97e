"""``commit_mode="auto"``: a batch submitted from a loop commits on that loop's thread,
at its next idle moment or, if it stays busy, after ``IDLE_WAIT``; order, failures and
closing behave as in thread mode (``actors.storage._idle_commit``).

Which thread committed is seen by a ``_fault_hook`` (it runs inside each transaction).
Under trio and asyncio.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from actors.storage import Store, StoreBrokenError, Table, WriteBatch, _idle_commit

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def put(key: bytes, value: bytes = b"v") -> WriteBatch:
    batch = WriteBatch()
    batch.put(Table.STATE, key, value)
    return batch


class Threads:
    """A ``_fault_hook`` that records, per transaction, its thread and its keys."""

    def __init__(self) -> None:
        self.commits: list[tuple[str, list[bytes]]] = []
        self.die_on: bytes | None = None

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        keys = [op[2] for batch in batches for op in batch.ops]
        self.commits.append((threading.current_thread().name, keys))
        if self.die_on is not None and self.die_on in keys:
            raise KeyboardInterrupt("simulated crash in a commit")


LOOP_THREAD = threading.current_thread().name  # pytest runs the loops on this thread


@pytest.fixture(autouse=True)
def patient(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A held batch waits up to IDLE_WAIT (0.2 ms) for its loop to go idle; a loaded
    machine can pause the process for longer. Tests that expect a commit on the loop
    wait longer, so that what they see does not depend on the machine's load."""
    if "busy" not in request.node.name:
        monkeypatch.setattr(_idle_commit, "IDLE_WAIT", 30.0)


async def test_a_waiting_caller_commits_on_its_idle_loop(tmp_path: Path) -> None:
    threads = Threads()
    with Store.open(tmp_path / "s", _fault_hook=threads) as store:
        for i in range(5):
            await store.submit(put(b"k%d" % i)).wait()
        assert [name for name, _ in threads.commits] == [LOOP_THREAD] * 5
        assert store.statistics().commits == 5


async def test_batches_of_one_pass_commit_together_at_idle(tmp_path: Path) -> None:
    threads = Threads()
    with Store.open(tmp_path / "s", _fault_hook=threads) as store:
        tickets = [store.submit(put(b"k%d" % i)) for i in range(10)]
        for ticket in tickets:
            await ticket.wait()
        assert threads.commits == [(LOOP_THREAD, [b"k%d" % i for i in range(10)])]


async def test_a_busy_loop_commits_on_its_own_thread_all_the_same(tmp_path: Path) -> None:
    threads = Threads()
    with Store.open(tmp_path / "s", _fault_hook=threads) as store:
        ticket = store.submit(put(b"busy"))
        with anyio.fail_after(30):
            # This task stays runnable, so the loop is never idle: after IDLE_WAIT the
            # batch commits on the loop anyway (a busy loop would starve a writer
            # thread of the GIL).
            while not ticket.done:
                await anyio.lowlevel.checkpoint()
        await ticket.wait()
        assert [name for name, _ in threads.commits] == [LOOP_THREAD]


async def test_a_blocking_commit_from_another_thread_keeps_submission_order(
    tmp_path: Path,
) -> None:
    threads = Threads()
    with Store.open(tmp_path / "s", _fault_hook=threads) as store:
        held = store.submit(put(b"first"))  # held on this loop until it is idle
        other = threading.Thread(target=store.commit_blocking, args=(put(b"second"),))
        other.start()
        await anyio.to_thread.run_sync(other.join)
        await held.wait()
        keys = [key for _, batch_keys in threads.commits for key in batch_keys]
        assert keys == [b"first", b"second"]


async def test_a_crash_in_a_commit_on_the_loop_breaks_the_store(tmp_path: Path) -> None:
    threads = Threads()
    threads.die_on = b"deadly"
    store = Store.open(tmp_path / "s", _fault_hook=threads)
    try:
        await store.submit(put(b"before")).wait()
        ticket = store.submit(put(b"deadly"))
        with pytest.raises(StoreBrokenError, match="died of KeyboardInterrupt"):
            await ticket.wait()
        with pytest.raises(StoreBrokenError):
            store.submit(put(b"later"))
        assert store.get(Table.STATE, b"before") == b"v"
        assert store.get(Table.STATE, b"deadly") is None
    finally:
        store.close()
    with Store.open(tmp_path / "s", commit_mode="inline") as reopened:
        assert [key for key, _ in reopened.scan(Table.STATE)] == [b"before"]


async def test_close_commits_what_is_held(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    tickets = [store.submit(put(b"k%d" % i)) for i in range(3)]
    store.close()  # before the loop was ever idle: the writer thread takes them
    for ticket in tickets:
        await ticket.wait()
    with Store.open(tmp_path / "s") as reopened:
        assert len(reopened.scan(Table.STATE)) == 3


async def test_thread_mode_never_commits_on_the_loop(tmp_path: Path) -> None:
    threads = Threads()
    with Store.open(tmp_path / "s", commit_mode="thread", _fault_hook=threads) as store:
        await store.submit(put(b"k")).wait()
        assert [name for name, _ in threads.commits] == [f"actors-writer:{store.path.name}"]


def test_a_loop_without_a_ready_queue_gets_no_committer(monkeypatch: pytest.MonkeyPatch) -> None:
    class OpaqueLoop:  # what a loop such as uvloop looks like from here
        pass

    assert _idle_commit.idle_committer(_NoWriter(), print) is None  # no loop at all
    monkeypatch.setattr("asyncio.get_running_loop", OpaqueLoop)
    assert _idle_commit.idle_committer(_NoWriter(), print) is None


class _NoWriter:
    def commit_held(self, committer: _idle_commit.IdleCommitter) -> None:
        raise AssertionError("not called")

    def retire(self, committer: _idle_commit.IdleCommitter) -> None:
        raise AssertionError("not called")


async def test_callers_that_wait_in_the_same_pass_share_every_commit(tmp_path: Path) -> None:
    # Eight tasks each commit and wait, three times over: after the first round they
    # are woken together, so each round is one pass of the loop and one commit of all
    # eight. (A commit made by the first of them to wait, before the others of the same
    # pass had run, halved the groups of bench/objects.py.)
    threads = Threads()
    with Store.open(tmp_path / "s", _fault_hook=threads) as store:

        async def caller(i: int) -> None:
            for round_ in range(3):
                await store.submit(put(b"k%d-%d" % (i, round_))).wait()

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(caller, i)
        assert [len(keys) for _, keys in threads.commits] == [8, 8, 8]


async def test_a_busy_loop_gives_a_held_batch_its_whole_wait_from_its_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wait for an idle moment runs from the first batch held, not from the last
    # commit: a batch submitted late in a busy spell still gets IDLE_WAIT to be joined
    # by others (under trio, the wait once began at the previous commit).
    idle_wait = 0.2
    monkeypatch.setattr(_idle_commit, "IDLE_WAIT", idle_wait)
    with Store.open(tmp_path / "s") as store:
        await store.submit(put(b"first")).wait()  # committed at an idle moment
        started = anyio.current_time()
        while anyio.current_time() < started + idle_wait * 0.6:
            await anyio.lowlevel.checkpoint()  # busy: this task stays runnable
        submitted = anyio.current_time()  # before the submit: the wait starts after it
        ticket = store.submit(put(b"late"))
        with anyio.fail_after(30):
            while not ticket.done:
                await anyio.lowlevel.checkpoint()
                if anyio.current_time() - submitted < idle_wait:
                    assert not ticket.done, "committed before its IDLE_WAIT was up"
        await ticket.wait()
