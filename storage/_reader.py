"""Reading: snapshots of committed data, for the store itself and for tools beside it.

*A read is one LMDB read transaction, and a snapshot.* ``ReadView`` wraps one; every
``get`` and ``scan`` through it sees the same committed state, never a batch in flight
(the writer's transaction is invisible until it commits). Values are copied out as
``bytes`` before the transaction ends, so nothing returned points into the map after
the snapshot is gone. A view lives only inside the ``with`` that made it: LMDB read
transactions are cheap (~1-5 us) but pin pages, and one held across an await would
stop the writer reusing them and let the file grow (and, in a ``Store``, would hold
``resize_lock`` and so stall a map growth).

*A reader never takes the directory lock.* ``StoreReader`` is for inspection tools (the
``actors`` command line) that run beside the process owning the directory: it opens
the environment read-only (``_environment.open_read_only``), never writes, and reads
tables that an older store never created as empty instead of failing.

*A read that LMDB refuses is a ``StorageError`` naming the directory* (``read_error``):
damage LMDB detects (a page of the wrong type, a page number past the end) is
``StoreCorruptedError``, anything else ``ReadFailedError``; no ``lmdb`` error leaves
this layer. The opening checks have already walked every page, so such damage is
damage done to the file after it was opened.

Rejected: ``buffers=True`` views (zero-copy, but a buffer used after its transaction
ends reads freed pages); a long-lived read transaction for the reader (it would pin
every page the owner frees while the tool runs).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import lmdb

from ._environment import CORRUPTION_ERRORS, open_read_only
from ._errors import ReadFailedError, StorageError, StoreClosedError, StoreCorruptedError
from ._keys import prefix_end, tuple_prefix_end

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator
    from types import TracebackType

    from ._batch import Table


def read_error(path: Path, exc: lmdb.Error) -> StorageError:
    """The storage error for an LMDB error met while reading the store in ``path``."""
    if isinstance(exc, CORRUPTION_ERRORS):
        return StoreCorruptedError(
            f"store {path} is damaged: {exc} (restore the directory from a backup)"
        )
    return ReadFailedError(f"cannot read store {path}: {exc}")


class ReadView:
    """Reads inside one snapshot (one read transaction). Valid only inside ``Store.read``."""

    __slots__ = ("_dbs", "_path", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[Table, lmdb._Database], path: Path) -> None:
        self._txn = txn
        self._dbs = dbs
        self._path = path

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The value of ``key`` in ``table``, or None."""
        try:
            value = self._txn.get(key, db=self._dbs[table])
        except lmdb.Error as exc:
            raise read_error(self._path, exc) from exc
        return None if value is None else bytes(value)

    def scan(
        self,
        table: Table,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        limit: int | None = None,
        children: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        """Items of ``table`` whose key starts with ``prefix``, in key order, from
        ``start`` (inclusive) when given, at most ``limit`` of them. With ``children``,
        only the keys of tuples extending the tuple encoded as ``prefix`` (see
        ``tuple_prefix_end``)."""
        out: list[tuple[bytes, bytes]] = []
        if limit is not None and limit <= 0:
            return out
        try:
            cursor = self._txn.cursor(db=self._dbs[table])
            first = prefix if start is None or start < prefix else start
            if not cursor.set_range(first):
                return out
            if children:
                end: bytes | None = tuple_prefix_end(prefix)
            else:
                end = prefix_end(prefix) if prefix else None
            for key, value in cursor.iternext():
                if end is not None and bytes(key) >= end:
                    break
                out.append((bytes(key), bytes(value)))
                if limit is not None and len(out) >= limit:
                    break
        except lmdb.Error as exc:
            raise read_error(self._path, exc) from exc
        return out

    def count(self, table: Table) -> int:
        """Number of entries in ``table``."""
        try:
            entries: int = self._txn.stat(self._dbs[table])["entries"]
        except lmdb.Error as exc:
            raise read_error(self._path, exc) from exc
        return entries


class StoreReader:
    """Read-only access to a data directory, also while a runtime has it open.

    For inspection tools (the ``actors`` command line): it takes no ``flock`` and
    never writes, so it can sit beside the process that owns the directory. Each
    ``read()`` is one LMDB snapshot of committed data. Open with ``StoreReader.open``.
    """

    def __init__(self, path: Path, env: lmdb.Environment, dbs: dict[Table, lmdb._Database]):
        self.path = path
        self._env = env
        self._dbs = dbs
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StoreReader:
        """Open the store in ``path`` for reading.

        Raises:
          StoreLocationError: there is no store in ``path``.
          ForeignDataError: ``path`` holds an LMDB environment virtual-actors did not write.
          SchemaVersionError: the store was written by a newer schema version.
          StoreCorruptedError: the store's file is damaged (truncated, or pages that
            do not parse); it is refused before anything reads them.
        """
        root = Path(path)
        env, dbs = open_read_only(root)
        return cls(root, env, dbs)

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """One snapshot of committed data for several reads."""
        if self._closed:
            raise StoreClosedError(f"store reader for {self.path} is closed")
        try:
            txn = self._env.begin(buffers=False)
        except lmdb.Error as exc:
            raise read_error(self.path, exc) from exc
        with txn:
            yield _ReaderView(txn, self._dbs, self.path)

    def close(self) -> None:
        """Release the environment. Idempotent."""
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ReaderView(ReadView):
    """A ``ReadView`` over a store some of whose tables were never created (a store
    written by an older release, or one that never used a table): those read as empty."""

    __slots__ = ()

    def get(self, table: Table, key: bytes) -> bytes | None:
        if table not in self._dbs:
            return None
        return super().get(table, key)

    def scan(
        self,
        table: Table,
        prefix: bytes = b"",
        *,
        start: bytes | None = None,
        limit: int | None = None,
        children: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        if table not in self._dbs:
            return []
        return super().scan(table, prefix, start=start, limit=limit, children=children)

    def count(self, table: Table) -> int:
        return super().count(table) if table in self._dbs else 0
