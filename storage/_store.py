"""The store: one open data directory, wiring its environment, reads and writer.

``Store`` owns no mechanism of its own. The directory, its lock and LMDB live in
``_environment``; the commit path, group commit and the durable watermark in
``_writer``; snapshots in ``_reader``. What is left here is the contract a caller
relies on, and the checks that make it hold before anything reaches the writer:

*A bad batch is refused at ``submit``, before it is numbered or queued,* so that it
can fail no one else: every key within LMDB's limit and non-empty (range deletes
excepted), the whole batch within ``max_value_size``. Errors a batch only meets inside
a transaction (a full map, an I/O error) are the writer's to isolate.

*Reads run inline* in short read transactions on the caller's thread (~1-5 us), holding
the environment's ``resize_lock`` so the writer never resizes the map under them. A read
sees only committed data; a batch is readable from the moment LMDB commits it, which is
no later than its ticket is published (``durable_seq``).

*Closing is ordered:* stop the writer after what is queued, fail anything submitted
after that (``StoreClosedError``), close LMDB, and only then release the lock, so a next
opener never sees a half-closed environment.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import attrs
import lmdb

from ._batch import _Op
from ._environment import MAX_KEY_SIZE, Durability, open_environment
from ._errors import StoreClosedError, ValueTooLargeError
from ._reader import ReadView, read_error
from ._ticket import CommitTicket, Waker, current_waker
from ._writer import CommitMode, FaultHook, Writer

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Collection, Iterator
    from types import TracebackType

    from ._batch import Table, WriteBatch
    from ._environment import Environment
    from ._errors import StoreBrokenError


@attrs.frozen
class StoreStatistics:
    """Counters since the store was opened."""

    commits: int
    batches: int
    submitted_seq: int
    durable_seq: int
    map_size: int


class Store:
    """An open data directory. Create with ``Store.open``; close with ``close()``.

    Guarantees:
      * one ``Store`` per directory across all processes (an exclusive ``flock``);
      * a batch is applied atomically, and is durable when its ticket completes: with
        ``durability="fsync"`` against power loss, with ``"process"`` against a killed
        process (LMDB's ``sync=False``: the OS holds the pages, not the disk);
      * batches become durable in submission order, and ``durable_seq`` never moves
        backwards; a ticket is done exactly when ``durable_seq`` has reached it;
      * reads see only committed data, never a batch still in flight.
    """

    def __init__(
        self,
        *,
        environment: Environment,
        durability: Durability,
        commit_mode: CommitMode,
        max_value_size: int,
        fault_hook: FaultHook | None,
    ) -> None:
        self.path = environment.path
        self.durability: Durability = durability
        self.commit_mode: CommitMode = commit_mode
        self.max_value_size = max_value_size
        self._environment = environment
        # The read path's pieces, held directly: ``get`` is on the runtime's hot path.
        self._env = environment.env
        self._dbs = environment.dbs
        self._resize_lock = environment.resize_lock
        self._closed = False
        self._writer = Writer(environment, commit_mode=commit_mode, fault_hook=fault_hook)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        commit_mode: CommitMode = "auto",
        map_size: int = 256 * 1024 * 1024,
        max_map_size: int = 1 << 40,
        max_value_size: int = 16 * 1024 * 1024,
        extra_files: Collection[str] = (),
        _fault_hook: FaultHook | None = None,
    ) -> Store:
        """Open (creating if needed) the store in directory ``path``.

        Args:
          durability: ``"fsync"`` (every commit reaches the disk: survives power loss) or
            ``"process"`` (no fsync per commit: survives a killed process, not an OS crash).
          commit_mode: ``"auto"`` (a batch submitted from an event loop is held and
            committed on the loop's own thread, with everything else the loop holds,
            at its next idle moment or after ``IDLE_WAIT`` if it stays busy; batches
            from threads without a loop go to the writer thread: ``_idle_commit``),
            ``"thread"`` (always the writer thread) or ``"inline"`` (commit in
            ``submit`` itself; for deterministic tests).
          map_size: initial LMDB map size; the map doubles by itself when full.
          max_map_size: the map never grows past this; commits that need more fail with
            ``StoreFullError`` and nothing else is affected.
          max_value_size: largest value (and batch) accepted by ``submit``.
          extra_files: names of files the layer above keeps in the directory beside the
            store's own; the directory may hold them without being foreign data.

        Raises:
          StoreLocationError: ``path`` is a file, or cannot be created or written.
          ForeignDataError: the directory holds files a virtual-actors store did not write.
          SchemaVersionError: the store was written by a newer schema version.
          StoreLockedError: another ``Store`` has the directory open.
          StoreCorruptedError: the store's file is damaged (truncated, or pages that
            do not parse); it is refused before anything reads them, and left as it is.
        """
        if durability not in ("fsync", "process"):
            raise ValueError(f"durability must be 'fsync' or 'process', not {durability!r}")
        if commit_mode not in ("auto", "thread", "inline"):
            raise ValueError(
                f"commit_mode must be 'auto', 'thread' or 'inline', not {commit_mode!r}"
            )
        environment = open_environment(
            Path(path),
            durability=durability,
            map_size=map_size,
            max_map_size=max_map_size,
            extra_files=extra_files,
        )
        return cls(
            environment=environment,
            durability=durability,
            commit_mode=commit_mode,
            max_value_size=max_value_size,
            fault_hook=_fault_hook,
        )

    # --- reading -----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """A snapshot for several reads. Keep it short: never hold it across an await."""
        self._check_open()
        with self._resize_lock, self._begin_read() as txn:
            yield ReadView(txn, self._dbs, self.path)

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The committed value of ``key`` in ``table``, or None. One read transaction."""
        self._check_open()
        if not key or len(key) > MAX_KEY_SIZE:
            return None  # no such key can have been stored
        try:
            with self._resize_lock, self._env.begin() as txn:
                value: bytes | None = txn.get(key, db=self._dbs[table])
                return value
        except lmdb.Error as exc:
            raise read_error(self.path, exc) from exc

    def scan(
        self,
        table: Table,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        limit: int | None = None,
        children: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Committed items of ``table`` under ``prefix``, in key order (see ``ReadView.scan``)."""
        # ``read()``'s work without its generator context manager (a generator and a
        # wrapper more per scan; a promise's resolution and a replay each scan).
        self._check_open()
        with self._resize_lock, self._begin_read() as txn:
            view = ReadView(txn, self._dbs, self.path)
            return view.scan(table, prefix, start=start, limit=limit, children=children)

    def _begin_read(self) -> lmdb.Transaction:
        """A read transaction (the caller holds ``_resize_lock``); LMDB's failure to
        begin one is a ``StorageError`` naming the store."""
        try:
            return self._env.begin(buffers=False)
        except lmdb.Error as exc:
            raise read_error(self.path, exc) from exc

    # --- writing -----------------------------------------------------------------------

    def submit(
        self, batch: WriteBatch, on_done: Callable[[CommitTicket], None] | None = None
    ) -> CommitTicket:
        """Queue ``batch`` for commit and return at once with its ticket.

        Must be called from a trio or asyncio task (the ticket wakes that loop).
        ``on_done(ticket)`` runs in that loop once the batch committed or failed, before
        any waiter resumes, and in submission order across batches (in inline mode,
        before ``submit`` returns). Raises ``ValueTooLargeError`` before queueing
        anything if a key or value is over the limits, and ``StoreClosedError`` after
        ``close()``.
        """
        return self._submit(batch, current_waker(), on_done)

    async def commit(self, batch: WriteBatch) -> None:
        """Submit ``batch`` and wait until it is durable. A checkpoint."""
        await self.submit(batch).wait()

    def commit_blocking(self, batch: WriteBatch) -> None:
        """Submit ``batch`` and block this thread until it is durable (sync callers)."""
        self._submit(batch, None).wait_blocking()

    @property
    def broken(self) -> StoreBrokenError | None:
        """Set once the store takes no more writes: its writer thread died, or LMDB
        refuses every write. Every queued batch failed with this error and every later
        ``submit`` raises it; reads still work. Close the store and open it again."""
        return self._writer.broken

    @property
    def durable_seq(self) -> int:
        """Every batch with a sequence number up to this one has committed or failed,
        and its ticket is done (``ticket.done`` is ``durable_seq >= ticket.seq``). It
        moves when a ticket completes, in the event loop that submitted it: for a store
        used from one loop, never between a task's awaits."""
        return self._writer.durable_seq

    def statistics(self) -> StoreStatistics:
        """Counters for benchmarks and tests. Raises ``StoreClosedError`` after ``close()``."""
        self._check_open()
        writer = self._writer
        return StoreStatistics(
            commits=writer.commits,
            batches=writer.batches,
            submitted_seq=writer.submitted_seq,
            durable_seq=writer.durable_seq,
            map_size=self._environment.map_size(),
        )

    def _submit(
        self,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> CommitTicket:
        self._check_open()
        writer = self._writer
        if writer.broken is not None:
            raise writer.broken_error()
        self._validate(batch)
        return writer.submit(batch, waker, on_done)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.path} is closed")

    def _validate(self, batch: WriteBatch) -> None:
        if batch.nbytes > self.max_value_size:
            raise ValueTooLargeError(
                f"batch of {batch.nbytes} bytes for {self.path} is over the "
                f"max_value_size limit of {self.max_value_size} bytes"
            )
        for op, table, key, _value in batch.ops:
            if len(key) > MAX_KEY_SIZE:
                raise ValueTooLargeError(
                    f"key of {len(key)} bytes in table {table.value!r} of {self.path} is over "
                    f"the {MAX_KEY_SIZE}-byte key limit"
                )
            if not key and op not in (_Op.DELETE_PREFIX, _Op.DELETE_CHILDREN):
                raise ValueTooLargeError(f"empty key in table {table.value!r}")

    # --- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Commit what was submitted, stop the writer, close LMDB and release the lock.
        Idempotent. Blocks for at most the commit in progress."""
        if self._closed:
            return
        self._writer.stop()
        self._writer.join()
        self._closed = True
        self._writer.fail_queued(StoreClosedError(f"store {self.path} is closed"))
        self._environment.close()

    async def aclose(self) -> None:
        """``close()`` without blocking the event loop while the last commit finishes."""
        if not self._closed:
            self._writer.stop()
            await anyio.to_thread.run_sync(self._writer.join)
        self.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
