"""The Store contract, reads and writes: puts, gets, deletes, scans, read views, atomic
batches and per-batch failures (group commit, tickets, durability, growth and closing:
test_store_commits.py).

Most data-contract tests run in both commit modes: ``"thread"`` (the group-commit writer)
and ``"inline"`` (commit inside ``submit``, for MockClock tests). Where a test must force
batches into one transaction it uses ``Gate``, a ``_fault_hook`` that holds the writer
inside a transaction until the test has queued everything: no sleeps, no timing luck.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import anyio
import pytest

from actors.storage import (
    CommitFailedError,
    CommitMode,
    StorageError,
    Store,
    Table,
    WriteBatch,
)

if TYPE_CHECKING:
    from pathlib import Path

from store_helpers import Gate, commit_modes, gated_store, key, put, puts


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
