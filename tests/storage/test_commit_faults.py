"""Commit faults in the storage layer: a full disk or map says so, and a writer thread
that dies of any ``BaseException`` fails every waiter, present and future, and leaves a
store that closes cleanly and reopens with everything committed before.

Faults are injected with ``Store.open(..., _fault_hook=...)``, which runs inside each
write transaction just before it commits. One test fills a real (tmpfs) filesystem in a
subprocess, in a private mount namespace, to check what LMDB itself reports.
"""

from __future__ import annotations

import errno
import json
import textwrap
import threading
from typing import TYPE_CHECKING

import lmdb
import pytest
from small_disk import FILL, run_in_small_tmpfs

from actors.storage import (
    CommitFailedError,
    CommitMode,
    DiskFullError,
    Store,
    StoreBrokenError,
    StoreFullError,
    Table,
    WriteBatch,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

commit_modes = pytest.mark.parametrize("commit_mode", ["thread", "inline"])
MiB = 1 << 20


def put(key: bytes, value: bytes = b"v") -> WriteBatch:
    batch = WriteBatch()
    batch.put(Table.STATE, key, value)
    return batch


class Faults:
    """A ``_fault_hook`` that raises ``raise_for(batches)`` when it returns an exception."""

    def __init__(self, raise_for: Callable[[Sequence[WriteBatch]], BaseException | None]) -> None:
        self.raise_for = raise_for

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        error = self.raise_for(batches)
        if error is not None:
            raise error


def lmdb_enospc() -> BaseException:
    """What py-lmdb raises when a write of the commit returned ENOSPC."""
    return lmdb.DiskError("mdb_txn_commit: No space left on device")


def holding(key: bytes) -> Callable[[Sequence[WriteBatch]], bool]:
    def test(batches: Sequence[WriteBatch]) -> bool:
        return any(op[2] == key for batch in batches for op in batch.ops)

    return test


# --- a full disk, a full map ----------------------------------------------------------------


@commit_modes
@pytest.mark.parametrize(
    "error",
    [lmdb_enospc, lambda: OSError(errno.ENOSPC, "No space left on device")],
    ids=["lmdb-DiskError", "OSError-ENOSPC"],
)
def test_a_full_disk_is_reported_as_disk_full(
    tmp_path: Path, commit_mode: CommitMode, error: Callable[[], BaseException]
) -> None:
    path = tmp_path / "s"
    bad = holding(b"big")
    faults = Faults(lambda batches: error() if bad(batches) else None)
    with Store.open(path, commit_mode=commit_mode, _fault_hook=faults) as store:
        store.commit_blocking(put(b"before"))
        with pytest.raises(DiskFullError, match=rf"^commit to {path} failed: disk full") as info:
            store.commit_blocking(put(b"big"))
        assert isinstance(info.value, CommitFailedError)
        store.commit_blocking(put(b"after"))  # only that commit failed
        assert [k for k, _ in store.scan(Table.STATE)] == [b"after", b"before"]


@commit_modes
def test_an_io_error_with_room_on_the_disk_is_not_called_disk_full(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    path = tmp_path / "s"
    eio = lmdb.Error("mdb_txn_commit: Input/output error")
    vars(eio)["code"] = errno.EIO  # as py-lmdb's C extension sets it on what it raises
    faults = Faults(lambda batches: eio if holding(b"bad")(batches) else None)
    with Store.open(path, commit_mode=commit_mode, _fault_hook=faults) as store:
        with pytest.raises(CommitFailedError) as info:
            store.commit_blocking(put(b"bad"))
        assert not isinstance(info.value, DiskFullError)
        assert str(info.value) == f"commit to {path} failed: mdb_txn_commit: Input/output error"


@commit_modes
def test_a_full_map_names_the_map_size_limit(tmp_path: Path, commit_mode: CommitMode) -> None:
    path = tmp_path / "s"
    with Store.open(path, commit_mode=commit_mode, map_size=MiB, max_map_size=2 * MiB) as store:
        with pytest.raises(
            StoreFullError,
            match=rf"^store {path} is full: the commit needs more than the map size limit "
            rf"of {2 * MiB} bytes \(max_map_size\)$",
        ):
            store.commit_blocking(put(b"big", bytes(3 * MiB)))
        store.commit_blocking(put(b"small"))


_FILL_SCRIPT = """
import json, os, sys
from actors.storage import CommitFailedError, DiskFullError, Store, Table, WriteBatch

root, durability, leave = sys.argv[1], sys.argv[2], int(sys.argv[3])
filler = os.path.join(root, "filler")
store = Store.open(os.path.join(root, "db"), durability=durability, commit_mode="thread")
first = WriteBatch()
first.put(Table.STATE, b"before", b"1")
store.commit_blocking(first)
fill(filler, leave)  # with a little room left, LMDB's write is cut short (EIO)
big = WriteBatch()
big.put(Table.STATE, b"big", os.urandom(256 * 1024))
try:
    store.commit_blocking(big)
    error = None
except CommitFailedError as exc:
    error = {"type": type(exc).__name__, "message": str(exc)}
os.unlink(filler)  # the operator frees some space
store.commit_blocking(big)  # and the same commit goes through
store.close()
with Store.open(os.path.join(root, "db"), commit_mode="inline") as reopened:
    keys = [k.decode() for k, _ in reopened.scan(Table.STATE)]
print(json.dumps({"error": error, "keys": keys}))
"""


@pytest.mark.parametrize("durability", ["fsync", "process"])
@pytest.mark.parametrize("leave", [0, 64 * 1024], ids=["no-room", "a-little-room"])
def test_a_really_full_filesystem_is_reported_as_disk_full(durability: str, leave: int) -> None:
    # With no room at all LMDB says ENOSPC; with a little, its write is cut short and it
    # says EIO ("Input/output error"): the store looks at the filesystem to tell.
    result = run_in_small_tmpfs(FILL + textwrap.dedent(_FILL_SCRIPT), durability, str(leave))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["error"]["type"] == "DiskFullError", outcome
    assert outcome["error"]["message"].startswith("commit to /mnt/db failed: disk full"), outcome
    assert outcome["keys"] == ["before", "big"]


# --- a writer thread that dies ---------------------------------------------------------------


class WriterBug(BaseException):
    """Stands for anything that kills a thread: a bug, MemoryError, a test's crash."""


class DeadlyGate:
    """Holds the writer in its first transaction until ``release``; a transaction that
    holds ``deadly`` then raises ``WriterBug`` (after ``RuntimeError`` for a group, so
    that the writer retries the group batch by batch)."""

    def __init__(self, deadly: bytes) -> None:
        self.deadly = deadly
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        self.entered.set()
        assert self.release.wait(timeout=30), "never released"
        if holding(self.deadly)(batches):
            if len(batches) > 1:
                raise RuntimeError("one batch of the group is bad")
            raise WriterBug("the writer thread dies here")


def _died(path: Path) -> str:
    return (
        rf"^store {path} takes no more writes: its writer thread died of "
        rf"WriterBug\('the writer thread dies here'\)"
    )


async def test_a_dead_writer_fails_every_waiter_and_every_later_submit(tmp_path: Path) -> None:
    path = tmp_path / "s"
    gate = DeadlyGate(deadly=b"deadly")
    store = Store.open(path, commit_mode="thread", _fault_hook=gate)
    try:
        plug = store.submit(put(b"deadly"))
        assert gate.entered.wait(timeout=30)
        queued = [store.submit(put(b"q%d" % i)) for i in range(5)]
        blocking_error: list[BaseException] = []

        def blocking_commit() -> None:
            try:
                store.commit_blocking(put(b"blocking"))
            except BaseException as exc:
                blocking_error.append(exc)

        thread = threading.Thread(target=blocking_commit)
        thread.start()
        gate.release.set()
        for ticket in [plug, *queued]:
            with pytest.raises(StoreBrokenError, match=_died(path)):
                await ticket.wait()
        thread.join(timeout=30)
        assert not thread.is_alive(), "a blocking committer hangs"
        assert len(blocking_error) == 1
        assert isinstance(blocking_error[0], StoreBrokenError)
        with pytest.raises(StoreBrokenError, match=_died(path)):
            store.submit(put(b"later"))
        with pytest.raises(StoreBrokenError, match=_died(path)):
            await store.commit(put(b"later"))
        assert store.broken is not None
        assert store.get(Table.STATE, b"deadly") is None  # reads still work
    finally:
        gate.release.set()
        store.close()  # promptly, and it releases the directory
    with Store.open(path, commit_mode="inline") as reopened:
        assert reopened.scan(Table.STATE) == []
        reopened.commit_blocking(put(b"after"))


async def test_a_writer_dying_mid_group_keeps_what_it_committed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    gate = DeadlyGate(deadly=b"deadly")
    store = Store.open(path, commit_mode="thread", _fault_hook=gate)
    try:
        plug = store.submit(put(b"plug"))
        assert gate.entered.wait(timeout=30)
        # Queued behind the plug, these three are tried as one group, which fails; then
        # one by one: "first" commits, and the writer dies on "deadly".
        first = store.submit(put(b"first"))
        deadly = store.submit(put(b"deadly"))
        last = store.submit(put(b"last"))
        gate.release.set()
        await plug.wait()
        await first.wait()  # it is in LMDB: it must not be reported as failed
        for ticket in (deadly, last):
            with pytest.raises(StoreBrokenError):
                await ticket.wait()
        assert store.get(Table.STATE, b"first") == b"v"
    finally:
        gate.release.set()
        store.close()
    with Store.open(path, commit_mode="inline") as reopened:
        assert [k for k, _ in reopened.scan(Table.STATE)] == [b"first", b"plug"]


def test_submits_racing_a_dying_writer_never_hang(tmp_path: Path) -> None:
    path = tmp_path / "s"
    gate = DeadlyGate(deadly=b"deadly")
    gate.release.set()
    store = Store.open(path, commit_mode="thread", _fault_hook=gate)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submitter(n: int) -> None:
        for i in range(200):
            try:
                store.commit_blocking(put(b"k%d-%d" % (n, i)))
                result = "ok"
            except StoreBrokenError:
                result = "broken"
            with lock:
                outcomes.append(result)
            if result == "broken":
                return

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    store.commit_blocking(put(b"warm"))
    with pytest.raises(StoreBrokenError):
        store.commit_blocking(put(b"deadly"))
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert not any(t.is_alive() for t in threads), "a submitter hangs"
        assert outcomes.count("broken") == 4  # every submitter met the dead writer
    finally:
        store.close()


@commit_modes
def test_lmdb_panic_breaks_the_store(tmp_path: Path, commit_mode: CommitMode) -> None:
    # After a failed meta-page write LMDB refuses every write (MDB_PANIC) until the
    # environment is reopened: retrying is pointless, so the store says it is broken.
    path = tmp_path / "s"
    panic = lmdb.PanicError("mdb_txn_commit: MDB_PANIC: Update of meta page failed")
    faults = Faults(lambda batches: panic if holding(b"bad")(batches) else None)
    with Store.open(path, commit_mode=commit_mode, _fault_hook=faults) as store:
        store.commit_blocking(put(b"before"))
        with pytest.raises(StoreBrokenError, match=rf"^store {path} takes no more writes"):
            store.commit_blocking(put(b"bad"))
        with pytest.raises(StoreBrokenError, match=rf"^store {path} takes no more writes"):
            store.commit_blocking(put(b"after"))
    with Store.open(path, commit_mode=commit_mode) as reopened:
        assert [k for k, _ in reopened.scan(Table.STATE)] == [b"before"]
