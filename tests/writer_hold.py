"""``WriterHold``: a ``_fault_hook`` that holds the writer thread inside a commit, for
tests that need a batch to stay unlanded while they act (trio, ``commit_mode="thread"``).
Shared by tests/actors/test_lifecycle_races.py and test_lazy_scope.py."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import anyio
import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.storage import Table, WriteBatch


class WriterHold:
    """When armed, holds the writer thread inside the next commit (with ``table``: the
    next that writes to it) until ``release`` is set, then fails it with ``fail`` if
    given; ``entered`` is set on the loop as it starts holding. Every batch submitted
    meanwhile lands in one later group."""

    def __init__(self, table: Table | None = None, fail: OSError | None = None) -> None:
        self.armed = False
        self.table = table
        #: Raised in the held commit once released (the commit fails), if given.
        self.fail = fail
        self.entered = anyio.Event()
        self.release = threading.Event()
        self._wake = trio.lowlevel.current_trio_token().run_sync_soon

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if not self.armed:
            return
        if self.table is not None and not any(
            op[1] is self.table for batch in batches for op in batch.ops
        ):
            return
        self.armed = False
        self._wake(self.entered.set)
        self.release.wait(timeout=30)  # a safety net: never hold the writer forever
        if self.fail is not None:
            raise self.fail
