"""Errors raised by the storage layer.

The tree::

    StorageError                     root; never raised itself
    ├─ StoreLockedError              another opener holds the data directory
    ├─ StoreLocationError            the path is a file, unreadable or read-only
    ├─ ForeignDataError              the directory holds something that is not ours
    ├─ SchemaVersionError            written by a newer (or unknown) schema version
    ├─ StoreCorruptedError           the file is damaged (truncated, pages that do not parse)
    ├─ ValueTooLargeError            a key or value over the configured limit
    ├─ StoreFullError                the map reached its configured maximum size
    ├─ CommitFailedError             LMDB refused a commit (an I/O error)
    │  ├─ DiskFullError              ... because the disk (the filesystem) is full
    │  └─ StoreBrokenError           the store takes no more writes (its writer died)
    ├─ ReadFailedError               LMDB refused a read for another reason
    ├─ StoreClosedError              used after close()
    └─ RecordDecodeError             stored bytes that do not decode as the record type

Every message names the data directory it concerns. The ``actors`` layer translates
these into ``actors.PersistenceError`` at its boundary, keeping this error as the
``__cause__``; users of the public API never see a storage type.
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of the storage errors. Never raised itself."""


class StoreLockedError(StorageError):
    """Raised by ``Store.open`` when another ``Store``, in this process or another,
    already has the data directory open. The first opener is not disturbed."""


class StoreLocationError(StorageError):
    """Raised by ``Store.open`` when the path cannot hold a store: it is a file, its
    parent does not exist, or it is not writable."""


class ForeignDataError(StorageError):
    """Raised by ``Store.open`` when the directory holds files that a virtual-actors
    store did not write. Nothing in the directory is changed."""


class SchemaVersionError(StorageError):
    """Raised by ``Store.open`` when the store was written with a schema version this
    code does not know (typically a newer release). Nothing is changed."""


class StoreCorruptedError(StorageError):
    """Raised by ``Store.open`` and ``StoreReader.open`` when ``data.mdb`` is damaged:
    shorter than its meta pages say (truncated), or pages that LMDB could not read
    safely; and by a read that meets damage LMDB itself detects. The file is checked
    before LMDB reads it, so a damaged store is refused instead of crashing the
    process, and nothing in the directory is changed."""


class ReadFailedError(StorageError):
    """Raised by a read that LMDB refused for a reason other than damage (its reader
    table full, say). Nothing is changed; the read may succeed when tried again."""


class ValueTooLargeError(StorageError, ValueError):
    """Raised when a batch is submitted with a key or value over the limits. Raised at
    submission, before anything is queued, so no other batch is affected."""


class StoreFullError(StorageError):
    """Raised for the batches of a commit that would grow the map past ``max_map_size``.
    Committed data is intact and smaller commits keep working."""


class CommitFailedError(StorageError):
    """Raised for the batches of a commit that LMDB refused (an I/O error, a full disk).
    Nothing of the failed commit is visible; earlier commits are intact."""


class DiskFullError(CommitFailedError):
    """Raised for the batches of a commit that failed because the filesystem holding the
    store is full (``ENOSPC``, or LMDB's short write on a filesystem with no room left).
    Nothing of the failed commit is visible; the same batch commits once there is room."""


class StoreBrokenError(CommitFailedError):
    """Raised for every batch, queued or submitted later, once the store can take no
    more writes: its writer thread died (of any ``BaseException``), or LMDB refuses every
    write after a failed meta-page update (``MDB_PANIC``). Reads still work; close the
    store and reopen it. Everything committed before is intact."""


class StoreClosedError(StorageError):
    """Raised when a closed ``Store`` or writer is used."""


class RecordDecodeError(StorageError):
    """Raised when stored bytes do not decode as the expected record type."""
