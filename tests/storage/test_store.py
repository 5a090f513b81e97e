"""The Store contract: reads and writes, atomic batches, group commit, durability
tickets, map growth, per-batch failures, closing.

Most data-contract tests run in both commit modes: ``"thread"`` (the group-commit writer)
and ``"inline"`` (commit inside ``submit``, for MockClock tests). Where a test must force
batches into one transaction it uses ``Gate``, a ``_fault_hook`` that holds the writer
inside a transaction until the test has queued everything: no sleeps, no timing luck.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
import pytest
import sniffio
import trio
import trio.testing

from actors.storage import (
    CommitFailedError,
    CommitMode,
    CommitTicket,
    Durability,
    KeyPart,
    StorageError,
    Store,
    StoreClosedError,
    StoreFullError,
    Table,
    WriteBatch,
    encode_key,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

MODES: list[CommitMode] = ["thread", "inline"]
commit_modes = pytest.mark.parametrize("commit_mode", MODES)
MiB = 1 << 20


def key(*parts: KeyPart) -> bytes:
    return encode_key(parts)


def puts(*items: tuple[Table, bytes, bytes]) -> WriteBatch:
    batch = WriteBatch()
    for table, k, value in items:
        batch.put(table, k, value)
    return batch


def put(k: bytes, value: bytes, table: Table = Table.STATE) -> WriteBatch:
    return puts((table, k, value))


class Gate:
    """A ``_fault_hook`` that holds the writer inside its first transaction until
    ``open()``: batches submitted meanwhile queue up and the writer takes them as one
    group. A transaction holding a batch listed in ``failing`` raises."""

    def __init__(self, *, opened: bool = False) -> None:
        self.entered = threading.Event()
        self._opened = threading.Event()
        if opened:
            self._opened.set()
        self.failing: list[WriteBatch] = []
        self.transactions: list[list[WriteBatch]] = []

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        self.transactions.append(list(batches))
        self.entered.set()
        self._opened.wait()
        if any(batch is bad for batch in batches for bad in self.failing):
            raise RuntimeError("injected fault")

    def wait_entered(self) -> None:
        # Not a sleep: returns as soon as the writer thread is inside the hook. The
        # timeout only turns a broken writer into a failure instead of a hang.
        assert self.entered.wait(timeout=30), "the writer never started a transaction"

    def open(self) -> None:
        self._opened.set()


@contextmanager
def gated_store(
    path: Path, gate: Gate, *, map_size: int = 64 * MiB, max_map_size: int = 1 << 40
) -> Iterator[Store]:
    store = Store.open(
        path, commit_mode="thread", map_size=map_size, max_map_size=max_map_size, _fault_hook=gate
    )
    try:
        yield store
    finally:
        gate.open()  # a failed assertion must not leave the writer parked forever
        store.close()


def test_Table_names_are_frozen() -> None:
    # The LMDB database names are on disk.
    assert {t.name: t.value for t in Table} == {
        "INVOCATIONS": "invocations",
        "INBOX": "inbox",
        "JOURNAL": "journal",
        "STATE": "state",
        "TIMERS": "timers",
        "PROMISES": "promises",
        "IDEMPOTENCY": "idempotency",
        "WORKFLOWS": "workflows",
        "META": "meta",
    }


# --- puts, gets, deletes, scans ----------------------------------------------------------


@commit_modes
def test_Store_put_then_get(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        assert store.get(Table.STATE, key("a")) is None
        store.commit_blocking(put(key("a"), b"1"))
        assert store.get(Table.STATE, key("a")) == b"1"
        store.commit_blocking(put(key("a"), b"2"))
        assert store.get(Table.STATE, key("a")) == b"2"
        assert type(store.get(Table.STATE, key("a"))) is bytes


@commit_modes
def test_Store_tables_are_separate(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts(*((t, b"k", t.value.encode()) for t in Table)))
        for table in Table:
            assert store.get(table, b"k") == table.value.encode()


@commit_modes
def test_Store_delete(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts((Table.STATE, b"a", b"1"), (Table.STATE, b"b", b"2")))
        batch = WriteBatch()
        batch.delete(Table.STATE, b"a")
        batch.delete(Table.STATE, b"absent")  # no error
        batch.delete(Table.JOURNAL, b"b")  # other table: b stays
        store.commit_blocking(batch)
        assert store.scan(Table.STATE) == [(b"b", b"2")]


@commit_modes
def test_Store_delete_prefix_removes_exactly_the_prefixed_keys(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    keep = [
        key("obj", "alex", "n"),
        key("obj", "alicex", "n"),  # "alice" is a str prefix, not a key prefix
        key("obj", "alicf"),
        key("obj", "alic"),
        key("obk"),
    ]
    gone = [key("obj", "alice"), key("obj", "alice", "a"), key("obj", "alice", "z", 1 << 70)]
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts(*((Table.STATE, k, b"v") for k in keep + gone)))
        store.commit_blocking(puts(*((Table.JOURNAL, k, b"v") for k in gone)))
        batch = WriteBatch()
        batch.delete_prefix(Table.STATE, key("obj", "alice"))
        store.commit_blocking(batch)
        assert [k for k, _ in store.scan(Table.STATE)] == sorted(keep)
        assert len(store.scan(Table.JOURNAL)) == len(gone)  # other tables untouched


@commit_modes
def test_Store_delete_prefix_at_the_end_of_a_table(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts(*((Table.STATE, k, b"v") for k in (b"a", b"\xff", b"\xff\xff"))))
        batch = WriteBatch()
        batch.delete_prefix(Table.STATE, b"\xff")
        batch.delete_prefix(Table.STATE, b"zzz")  # matches nothing
        store.commit_blocking(batch)
        assert store.scan(Table.STATE) == [(b"a", b"v")]


@commit_modes
def test_WriteBatch_ops_apply_in_submission_order(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        batch = WriteBatch()
        batch.put(Table.STATE, key("o", "x"), b"1")
        batch.put(Table.STATE, key("o", "y"), b"1")
        batch.delete_prefix(Table.STATE, key("o"))
        batch.put(Table.STATE, key("o", "y"), b"2")
        batch.put(Table.STATE, key("p"), b"1")
        batch.delete(Table.STATE, key("p"))
        batch.put(Table.STATE, key("q"), b"1")
        batch.put(Table.STATE, key("q"), b"3")
        assert len(batch) == 8
        store.commit_blocking(batch)
        assert store.scan(Table.STATE) == [(key("o", "y"), b"2"), (key("q"), b"3")]


SCAN_KEYS = sorted(
    bytes(chars) for n in (1, 2, 3) for chars in itertools.product(b"\x00a\xff", repeat=n)
)


def _model_scan(prefix: bytes, start: bytes | None, limit: int | None) -> list[tuple[bytes, bytes]]:
    items = [(k, b"v" + k) for k in SCAN_KEYS if k.startswith(prefix)]
    if start is not None:
        items = [(k, v) for k, v in items if k >= start]
    return items if limit is None else items[:limit]


@commit_modes
def test_Store_scan_prefix_start_limit(tmp_path: Path, commit_mode: CommitMode) -> None:
    probes = [b"", *SCAN_KEYS[::2], b"b", b"\xff\xff\xff\xff"]
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts(*((Table.INBOX, k, b"v" + k) for k in SCAN_KEYS)))
        assert store.scan(Table.INBOX) == _model_scan(b"", None, None)
        for prefix in probes:
            for start in [None, *probes]:
                for limit in (None, 1, 2, 5):
                    got = store.scan(Table.INBOX, prefix, start=start, limit=limit)
                    assert got == _model_scan(prefix, start, limit), (prefix, start, limit)
                    with store.read() as view:
                        assert view.scan(Table.INBOX, prefix, start=start, limit=limit) == got


def test_Store_scan_limit_zero_returns_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", commit_mode="inline") as store:
        store.commit_blocking(put(b"a", b"1"))
        assert store.scan(Table.STATE, limit=0) == []


def test_Store_get_empty_key(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", commit_mode="inline") as store:
        try:
            value = store.get(Table.STATE, b"")
        except StorageError:
            return
        assert value is None


@commit_modes
def test_ReadView_reads_one_snapshot(tmp_path: Path, commit_mode: CommitMode) -> None:
    with Store.open(tmp_path / "s", commit_mode=commit_mode) as store:
        store.commit_blocking(puts((Table.STATE, b"a", b"old"), (Table.STATE, b"b", b"old")))
        with store.read() as view:
            assert view.get(Table.STATE, b"a") == b"old"
            batch = put(b"a", b"new")
            batch.delete(Table.STATE, b"b")
            batch.put(Table.STATE, b"c", b"new")
            store.commit_blocking(batch)
            assert view.get(Table.STATE, b"a") == b"old"
            assert view.get(Table.STATE, b"b") == b"old"
            assert view.get(Table.STATE, b"c") is None
            assert view.count(Table.STATE) == 2
            assert view.scan(Table.STATE) == [(b"a", b"old"), (b"b", b"old")]
        assert store.scan(Table.STATE) == [(b"a", b"new"), (b"c", b"new")]
        with store.read() as view:
            assert view.count(Table.STATE) == 2
            assert view.count(Table.JOURNAL) == 0


def test_Store_get_inside_a_read_view_does_not_deadlock(tmp_path: Path) -> None:
    # In a child process: the deadlock is forever and would take this process with it.
    script = textwrap.dedent(
        """
        import sys
        from actors.storage import Store, Table
        with Store.open(sys.argv[1], commit_mode="inline") as store:
            with store.read() as view:
                view.get(Table.STATE, b"a")
                store.get(Table.STATE, b"a")
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=5,  # the fixed version answers in well under a second
        check=False,
    )
    assert result.stdout == "ok\n", result.stderr


# --- atomic batches and failures -----------------------------------------------------------


@commit_modes
def test_Store_failed_batch_changes_nothing(tmp_path: Path, commit_mode: CommitMode) -> None:
    gate = Gate(opened=True)
    with Store.open(tmp_path / "s", commit_mode=commit_mode, _fault_hook=gate) as store:
        store.commit_blocking(puts((Table.STATE, b"a", b"old"), (Table.INBOX, b"q", b"old")))
        bad = puts((Table.STATE, b"a", b"new"), (Table.JOURNAL, b"j", b"new"))
        bad.delete(Table.INBOX, b"q")
        bad.delete_prefix(Table.STATE, b"a")
        gate.failing.append(bad)
        with pytest.raises(
            CommitFailedError,
            match=rf"^commit to {tmp_path / 's'} failed: RuntimeError\('injected fault'\)$",
        ):
            store.commit_blocking(bad)
        assert store.get(Table.STATE, b"a") == b"old"
        assert store.get(Table.INBOX, b"q") == b"old"
        assert store.get(Table.JOURNAL, b"j") is None
        store.commit_blocking(put(b"after", b"ok"))  # the store keeps working
        assert store.get(Table.STATE, b"after") == b"ok"


async def test_Store_reads_never_see_a_batch_in_flight(tmp_path: Path) -> None:
    gate = Gate()
    with gated_store(tmp_path / "s", gate) as store:
        ticket = store.submit(put(b"a", b"new"))
        gate.wait_entered()  # the writer holds the batch applied but not committed
        assert store.get(Table.STATE, b"a") is None
        assert not ticket.done
        gate.open()
        await ticket.wait()
        assert store.get(Table.STATE, b"a") == b"new"


async def test_Store_failed_commit_fails_only_its_own_batch(tmp_path: Path) -> None:
    """Several batches in one transaction, one of them bad: only that one fails."""
    gate = Gate()
    with gated_store(tmp_path / "s", gate) as store:
        store.submit(put(b"existing", b"old"))  # the plug: holds the writer
        gate.wait_entered()
        batches = [puts((Table.STATE, key("b", i), b"%d" % i)) for i in range(10)]
        bad = batches[6]
        bad.put(Table.STATE, b"existing", b"overwritten")
        gate.failing.append(bad)
        errors: dict[int, BaseException | None] = {}

        async def commit(i: int) -> None:
            try:
                await store.commit(batches[i])
            except CommitFailedError as exc:
                errors[i] = exc
            else:
                errors[i] = None

        async with anyio.create_task_group() as tg:
            for i in range(len(batches)):
                tg.start_soon(commit, i)
            await anyio.wait_all_tasks_blocked()  # every batch is queued behind the plug
            gate.open()

        # The ten were tried together first, then one by one.
        assert [len(t) for t in gate.transactions[:2]] == [1, 10]
        assert any(b is bad for b in gate.transactions[1])
        assert [i for i, e in errors.items() if e is not None] == [6]
        assert str(errors[6]) == f"commit to {store.path} failed: RuntimeError('injected fault')"
        for i in range(10):
            expected = None if i == 6 else b"%d" % i
            assert store.get(Table.STATE, key("b", i)) == expected
        assert store.get(Table.STATE, b"existing") == b"old"
        assert store.durable_seq == store.statistics().submitted_seq == 11


@commit_modes
async def test_Store_batch_depending_on_a_failed_batch_fails_too(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    gate = Gate(opened=True)
    with Store.open(tmp_path / "s", commit_mode=commit_mode, _fault_hook=gate) as store:
        base = store.submit(put(b"base", b"1"))
        bad = put(b"bad", b"1")
        gate.failing.append(bad)
        failed = store.submit(bad)
        dependent = put(b"dependent", b"1")
        dependent.depends_on = failed.seq
        dependent_ticket = store.submit(dependent)
        fine = put(b"fine", b"1")
        fine.depends_on = base.seq
        fine_ticket = store.submit(fine)
        await base.wait()
        with pytest.raises(CommitFailedError, match="injected fault"):
            await failed.wait()
        with pytest.raises(
            CommitFailedError,
            match=rf"^batch #{dependent_ticket.seq} for {store.path} was not committed: "
            rf"it depends on batch #{failed.seq}, which failed$",
        ):
            await dependent_ticket.wait()
        await fine_ticket.wait()
        assert [k for k, _ in store.scan(Table.STATE)] == [b"base", b"fine"]


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
