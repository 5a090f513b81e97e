"""What the Store tests share (tests/storage/test_store.py, test_store_commits.py): the
commit modes, batch builders, and ``Gate``, a ``_fault_hook`` that holds the writer inside
a transaction until the test has queued everything (no sleeps, no timing luck)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

from actors.storage import (
    CommitMode,
    KeyPart,
    Store,
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
