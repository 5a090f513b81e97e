"""The Store contract, commits: group commit, durability tickets and their order, several
event loops, reopening, map growth, a full map, closing (reads, writes and atomic batches:
test_store.py, whose docstring says how the commit modes and ``Gate`` are used).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio
import trio
import trio.testing

from actors.storage import (
    CommitMode,
    CommitTicket,
    Durability,
    Store,
    StoreClosedError,
    StoreFullError,
    Table,
)

if TYPE_CHECKING:
    from pathlib import Path

from store_helpers import Gate, MiB, commit_modes, gated_store, key, put, puts

# --- group commit, tickets, durability order -------------------------------------------------


async def test_Store_concurrent_commits_are_grouped_and_durable(tmp_path: Path) -> None:
    n = 500
    gate = Gate()
    with gated_store(tmp_path / "s", gate, map_size=64 * MiB) as store:
        store.submit(put(b"plug", b"1"))
        gate.wait_entered()

        async def commit(i: int) -> None:
            await store.commit(puts((Table.JOURNAL, key("inv", i), b"entry %d" % i)))
            assert store.durable_seq >= i + 2  # its own seq (the plug is #1)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(commit, i)
            await anyio.wait_all_tasks_blocked()
            assert store.statistics().submitted_seq == n + 1
            gate.open()

        stats = store.statistics()
        assert (stats.commits, stats.batches) == (2, n + 1)  # the plug, then all 500 at once
        assert stats.durable_seq == stats.submitted_seq == n + 1
        stored = store.scan(Table.JOURNAL)
        assert stored == sorted((key("inv", i), b"entry %d" % i) for i in range(n))


@commit_modes
async def test_Store_many_concurrent_commits_all_land(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    n = 500
    with Store.open(tmp_path / "s", commit_mode=commit_mode, durability="process") as store:

        async def commit(i: int) -> None:
            await store.commit(puts((Table.JOURNAL, key("inv", i), b"%d" % i)))

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(commit, i)
        stats = store.statistics()
        assert stats.batches == stats.durable_seq == n
        if commit_mode == "inline":
            assert stats.commits == n
        else:
            assert 1 <= stats.commits <= n
        assert len(store.scan(Table.JOURNAL)) == n


@commit_modes
async def test_CommitTicket_wait_and_durable_seq(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        assert store.durable_seq == 0
        tickets: list[CommitTicket] = [store.submit(put(key(i), b"v")) for i in range(20)]
        assert [t.seq for t in tickets] == list(range(1, 21))
        seen = [store.durable_seq]
        for ticket in tickets:
            await ticket.wait()
            assert ticket.done
            assert ticket.error is None
            assert store.durable_seq >= ticket.seq
            assert store.get(Table.STATE, key(ticket.seq - 1)) == b"v"
            seen.append(store.durable_seq)
        assert seen == sorted(seen)  # never moves backwards
        assert store.durable_seq == 20
        await tickets[0].wait()  # waiting again on a done ticket is fine


@commit_modes
async def test_CommitTicket_done_is_the_durable_watermark(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    """One notion of durable: whenever a task or an ``on_done`` looks, a ticket is done
    exactly when ``durable_seq`` has reached it."""
    n = 200
    tickets: list[CommitTicket] = []
    seen: list[tuple[int, int, bool]] = []  # (seq, durable_seq, watermark agrees) in on_done

    def agrees() -> bool:
        durable = store.durable_seq
        return all(t.done == (t.seq <= durable) for t in tickets)

    def on_done(ticket: CommitTicket) -> None:
        seen.append((ticket.seq, store.durable_seq, ticket.done and agrees()))

    with Store.open(tmp_path / "s", commit_mode=commit_mode, durability="process") as store:

        async def commit(i: int) -> None:
            ticket = store.submit(put(key(i), b"v"), on_done)
            tickets.append(ticket)
            await ticket.wait()
            assert store.durable_seq >= ticket.seq
            assert agrees()

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(commit, i)
        assert seen == [(seq, seq, True) for seq in range(1, n + 1)]
        assert store.durable_seq == n


async def test_Store_durable_seq_passes_a_batch_only_in_its_loop(tmp_path: Path) -> None:
    """LMDB holds a batch before the watermark passes it, and the watermark passes it
    only in the loop that submitted it, never under a task that has not awaited."""
    with Store.open(tmp_path / "s", commit_mode="thread") as store:
        first = store.submit(put(b"a", b"1"))
        # Blocking on the loop's own thread: returns once LMDB holds both batches (they
        # commit in order), without waiting for the loop, which cannot run meanwhile.
        store.commit_blocking(put(b"b", b"2"))
        assert store.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"2")]
        assert store.durable_seq == 0
        assert not first.done
        await first.wait()
        assert first.done
        assert store.durable_seq == 2  # the blocking batch is published right after


def test_Store_serves_two_event_loops_at_once(tmp_path: Path) -> None:
    """Tickets of a trio and an asyncio loop sharing one store complete in submission
    order across both loops, each in its own loop, with the watermark at the ticket."""
    n = 100
    seen: dict[str, list[tuple[int, int]]] = {"trio": [], "asyncio": []}

    def on_done(ticket: CommitTicket) -> None:
        # Each loop runs in a thread named after its backend.
        seen[threading.current_thread().name].append((ticket.seq, store.durable_seq))

    async def commits(name: str) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(store.submit(put(key(name, i), b"v"), on_done).wait)

    with Store.open(tmp_path / "s", durability="process") as store:
        threads = [
            threading.Thread(
                target=anyio.run, args=(commits, backend), kwargs={"backend": backend}, name=backend
            )
            for backend in ("trio", "asyncio")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.durable_seq == 2 * n
        assert len(store.scan(Table.STATE)) == 2 * n
    for records in seen.values():
        assert len(records) == n
        assert all(seq == durable for seq, durable in records)
    assert sorted(seq for records in seen.values() for seq, _ in records) == list(
        range(1, 2 * n + 1)
    )


def test_Store_tickets_of_a_finished_loop_do_not_stall_the_others(tmp_path: Path) -> None:
    gate = Gate()
    with gated_store(tmp_path / "s", gate) as store:

        async def submit_and_leave() -> CommitTicket:
            return store.submit(put(b"orphan", b"1"))

        orphan = trio.run(submit_and_leave)  # that loop has exited: nobody to wake
        gate.wait_entered()
        gate.open()

        async def commit() -> None:
            await store.commit(put(b"later", b"2"))

        trio.run(commit)
        assert orphan.done
        assert orphan.error is None
        assert store.durable_seq == 2
        assert store.scan(Table.STATE) == [(b"later", b"2"), (b"orphan", b"1")]


@commit_modes
async def test_Store_commit_blocking_from_a_worker_thread(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        await anyio.to_thread.run_sync(store.commit_blocking, put(b"t", b"1"))
        await store.commit(put(b"a", b"2"))
        assert store.scan(Table.STATE) == [(b"a", b"2"), (b"t", b"1")]


@commit_modes
async def test_Store_cancelled_wait_does_not_cancel_the_commit(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.commit(put(b"a", b"1"))
        assert scope.cancelled_caught
        await store.commit(put(b"b", b"1"))  # durable in order: "a" is durable now
        assert store.get(Table.STATE, b"a") == b"1"


def test_Store_submit_outside_an_event_loop_raises(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(RuntimeError, match=r"needs a running trio or asyncio loop"):
            store.submit(put(b"a", b"1"))
        assert store.statistics().submitted_seq == 0


@pytest.mark.trio_only
@commit_modes
async def test_Store_commit_and_wait_are_checkpoints(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        with trio.testing.assert_checkpoints():
            await store.commit(put(b"a", b"1"))
        ticket = store.submit(put(b"b", b"1"))
        with trio.testing.assert_checkpoints():
            await ticket.wait()
        with trio.testing.assert_checkpoints():
            await ticket.wait()  # already done: still a checkpoint


async def test_Store_runs_under_each_backend(tmp_path: Path, async_backend: str) -> None:
    # Also checks the harness: each coroutine test runs once per backend.
    assert sniffio.current_async_library() == async_backend
    async with anyio.create_task_group():
        with Store.open(tmp_path / "s") as store:
            await store.commit(put(b"backend", async_backend.encode()))
            assert store.get(Table.STATE, b"backend") == async_backend.encode()


async def test_Store_inline_mode_under_autojump_clock(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Inline commits never leave the event loop, so autojump cannot fire a timeout early.
    with Store.open(tmp_path / "s", commit_mode="inline") as store:
        start = trio.current_time()
        with trio.fail_after(1):
            for i in range(50):
                await store.commit(put(key(i), b"v"))
        assert trio.current_time() == start
        await trio.sleep(3600)
        assert trio.current_time() - start >= 3600
        assert len(store.scan(Table.STATE)) == 50


# --- durability, reopening, growth ----------------------------------------------------------


@commit_modes
@pytest.mark.parametrize("durability", ["fsync", "process"])
async def test_Store_reopen_keeps_data(
    tmp_path: Path, commit_mode: CommitMode, durability: Durability
) -> None:
    path = tmp_path / "s"
    store = Store.open(path, commit_mode=commit_mode, durability=durability)
    assert (store.durability, store.commit_mode) == (durability, commit_mode)
    await store.commit(puts((Table.STATE, b"a", b"1"), (Table.META, b"user", b"2")))
    store.commit_blocking(put(b"b", b"3"))
    await store.aclose()
    with Store.open(path, commit_mode=commit_mode, durability=durability) as store:
        assert store.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"3")]
        assert store.get(Table.META, b"user") == b"2"
        assert store.statistics().durable_seq == 0  # counters are per opening
        await store.commit(put(b"c", b"4"))
    with Store.open(path) as store:
        assert len(store.scan(Table.STATE)) == 3


@commit_modes
async def test_Store_map_grows_by_itself(tmp_path: Path, commit_mode: CommitMode) -> None:
    big = os.urandom(3 * MiB)
    with Store.open(tmp_path / "s", commit_mode=commit_mode, map_size=MiB) as store:
        assert store.statistics().map_size == MiB
        await store.commit(put(b"big", big))
        assert store.statistics().map_size >= 4 * MiB
        assert store.get(Table.STATE, b"big") == big
    with Store.open(tmp_path / "s", commit_mode=commit_mode, map_size=MiB) as store:
        assert store.get(Table.STATE, b"big") == big


@commit_modes
async def test_Store_full_fails_only_that_batch(tmp_path: Path, commit_mode: CommitMode) -> None:
    path = tmp_path / "s"
    with Store.open(path, commit_mode=commit_mode, map_size=MiB, max_map_size=2 * MiB) as store:
        await store.commit(put(b"before", b"1"))
        with pytest.raises(
            StoreFullError,
            match=rf"^store {path} is full: the commit needs more than the map size limit "
            rf"of {2 * MiB} bytes \(max_map_size\)$",
        ):
            await store.commit(put(b"big", bytes(3 * MiB)))
        assert store.statistics().map_size == 2 * MiB
        assert store.get(Table.STATE, b"big") is None
        assert store.get(Table.STATE, b"before") == b"1"
        await store.commit(put(b"after", b"2"))
        assert [k for k, _ in store.scan(Table.STATE)] == [b"after", b"before"]


async def test_Store_full_fails_only_that_batch_of_a_group(tmp_path: Path) -> None:
    gate = Gate()
    with gated_store(tmp_path / "s", gate, map_size=MiB, max_map_size=2 * MiB) as store:
        store.submit(put(b"plug", b"1"))
        gate.wait_entered()
        small1 = store.submit(put(b"small1", b"1"))
        big = store.submit(put(b"big", bytes(3 * MiB)))
        small2 = store.submit(put(b"small2", b"1"))
        gate.open()
        await small1.wait()
        with pytest.raises(StoreFullError):
            await big.wait()
        await small2.wait()
        assert [k for k, _ in store.scan(Table.STATE)] == [b"plug", b"small1", b"small2"]


# --- closing --------------------------------------------------------------------------------


@commit_modes
async def test_Store_closed_raises(tmp_path: Path, commit_mode: CommitMode) -> None:
    store = Store.open(tmp_path / "s", commit_mode=commit_mode)
    store.commit_blocking(put(b"a", b"1"))
    store.close()
    match = rf"^store {tmp_path / 's'} is closed$"
    with pytest.raises(StoreClosedError, match=match):
        store.get(Table.STATE, b"a")
    with pytest.raises(StoreClosedError, match=match):
        store.scan(Table.STATE)
    with pytest.raises(StoreClosedError, match=match), store.read():
        pass
    with pytest.raises(StoreClosedError, match=match):
        store.submit(put(b"b", b"1"))
    with pytest.raises(StoreClosedError, match=match):
        await store.commit(put(b"b", b"1"))
    with pytest.raises(StoreClosedError, match=match):
        store.commit_blocking(put(b"b", b"1"))
    assert store.durable_seq == 1


@commit_modes
def test_Store_statistics_after_close(tmp_path: Path, commit_mode: CommitMode) -> None:
    store = Store.open(tmp_path / "s", commit_mode=commit_mode)
    store.commit_blocking(put(b"a", b"1"))
    stats = store.statistics()
    assert (stats.commits, stats.batches, stats.submitted_seq) == (1, 1, 1)
    store.close()
    # The counters die with the environment (map_size is asked of LMDB), so asking after
    # close() is an error like any other use, not a stale snapshot.
    with pytest.raises(StoreClosedError, match=rf"^store {tmp_path / 's'} is closed$"):
        store.statistics()
    assert store.durable_seq == 1  # the watermark stays readable


@commit_modes
async def test_Store_close_is_idempotent(tmp_path: Path, commit_mode: CommitMode) -> None:
    store = Store.open(tmp_path / "s", commit_mode=commit_mode)
    store.close()
    store.close()
    await store.aclose()
    store2 = Store.open(tmp_path / "s", commit_mode=commit_mode)  # the lock was released
    await store2.aclose()
    await store2.aclose()
    store2.close()
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store3:
        store3.commit_blocking(put(b"a", b"1"))
    store3.close()


@pytest.mark.parametrize("closer", ["close", "aclose"])
async def test_Store_close_commits_what_was_submitted(tmp_path: Path, closer: str) -> None:
    gate = Gate()
    store = Store.open(tmp_path / "s", commit_mode="thread", _fault_hook=gate)
    try:
        first = store.submit(put(key(0), b"v"))
        gate.wait_entered()
        tickets = [first, *(store.submit(put(key(i), b"v")) for i in range(1, 50))]
    finally:
        gate.open()
    if closer == "close":
        store.close()
    else:
        await store.aclose()
    for ticket in tickets:
        await ticket.wait()
    with Store.open(tmp_path / "s") as reopened:
        assert len(reopened.scan(Table.STATE)) == 50
