"""The data directory: its LMDB environment, its lock, and the format and schema checks.

A data directory belongs to one ``Store`` at a time, in any process. That is an
exclusive ``flock`` on ``actors.lock``, held for as long as the store is open; the file
also holds the owner's pid, which ``lock_holder`` reports to tools that want to talk to
the owner instead. Closing the descriptor releases the lock, so a killed process never
leaves a stale one behind. LMDB's own ``lock.mdb`` is not enough: it coordinates
readers and writers of one environment, and would let two runtimes write it in turn.

*Nothing is changed before it is known to be ours.* Opening checks, in this order and
before creating anything: the path is a directory (or can be made one); it holds only
files a store writes, plus the names the layer above declares (``extra_files``: the
upper layer keeps its own files beside the store, and this layer must not know their
names); an existing ``data.mdb`` is an LMDB environment with our ``meta`` table, our
format name and a schema version this release can read. A foreign or newer store stays
byte-identical: the check only reads. Only then are the tables created and, for a new
store, the format and schema version written.

*The map grows by itself.* LMDB fails a write transaction that outgrows the map; the
writer then doubles it (up to ``max_map_size``) and retries. ``set_mapsize`` must not
run while any transaction of this process is open, so every read of a ``Store`` holds
``resize_lock`` and ``grow`` takes it too. It is reentrant, so a read inside
``Store.read()`` on the same thread does not deadlock.

*A damaged file is refused before LMDB reads it* (``_check``): its size against its
meta pages before it is mapped, then every page of the snapshot about to be read, under
a read transaction. LMDB would otherwise read past the end of a truncated or damaged
file and the process would die of SIGBUS. Both openings do it.

A read-only opening (``open_read_only``, for ``StoreReader``) takes no ``flock`` and
creates nothing, but joins LMDB's reader table (``lock=True``) so the owner never reuses
pages its snapshots still read.

Rejected: ``writemap=True`` (faster, but a stray pointer write from any thread can
corrupt data); a pid file without ``flock`` (stale after a crash, and racy).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import lmdb

from ._batch import Table
from ._check import check_file_size, check_pages
from ._errors import (
    ForeignDataError,
    SchemaVersionError,
    StoreCorruptedError,
    StoreLocationError,
    StoreLockedError,
)

if TYPE_CHECKING:
    from collections.abc import Collection

Durability = Literal["fsync", "process"]

SCHEMA_VERSION: Final = 1
FORMAT_NAME: Final = b"virtual-actors"
#: Table names no other program's LMDB store plausibly holds (``meta`` is too generic).
_OUR_DATA_TABLES: Final = frozenset(
    table.value.encode() for table in Table if table is not Table.META
)
LOCK_FILE: Final = "actors.lock"
#: The files a store itself keeps in its directory.
STORE_FILES: Final = frozenset({"data.mdb", "lock.mdb", LOCK_FILE})
MAX_KEY_SIZE: Final = 511  # LMDB's compiled-in limit
_MAX_DBS: Final = len(Table) + 4
_TABLE_NAMES: Final = frozenset(table.value.encode() for table in Table)
#: What LMDB raises for a file it finds damaged while reading.
CORRUPTION_ERRORS: Final = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.BadValsizeError,
    lmdb.InvalidError,
    lmdb.PanicError,
)


class Environment:
    """An open, locked data directory: the LMDB environment and its named tables.

    ``env``, ``dbs`` and ``resize_lock`` are read by the hot paths of the store and the
    writer directly; this class only owns their lifetime and the map's growth.
    """

    __slots__ = ("dbs", "env", "lock_fd", "max_map_size", "path", "resize_lock")

    def __init__(
        self,
        path: Path,
        env: lmdb.Environment,
        dbs: dict[Table, lmdb._Database],
        lock_fd: int,
        max_map_size: int,
    ) -> None:
        self.path = path
        self.env = env
        self.dbs = dbs
        self.lock_fd = lock_fd
        self.max_map_size = max_map_size
        self.resize_lock = threading.RLock()

    def map_size(self) -> int:
        """The current size of the LMDB map, in bytes."""
        return int(self.env.info()["map_size"])

    def grow(self) -> bool:
        """Double the map (at most to ``max_map_size``). False when it cannot grow.
        Call only when no write transaction is open (the writer does, between tries)."""
        current = self.map_size()
        if current >= self.max_map_size:
            return False
        with self.resize_lock:  # no read transaction may be open during set_mapsize
            self.env.set_mapsize(min(current * 2, self.max_map_size))
        return True

    def free_bytes(self) -> int | None:
        """Bytes an unprivileged writer may still use on the filesystem holding the
        store, or None when the filesystem cannot say."""
        try:
            stats = os.statvfs(self.path)
        except OSError:
            return None
        return stats.f_bavail * stats.f_frsize

    def close(self) -> None:
        """Close LMDB, then release the directory lock. Call once."""
        self.env.close()
        os.close(self.lock_fd)  # closing the descriptor releases the flock


def open_environment(
    root: Path,
    *,
    durability: Durability,
    map_size: int,
    max_map_size: int,
    extra_files: Collection[str],
) -> Environment:
    """Check ``root``, take its lock and open (creating if needed) the store in it.
    Raises the ``StorageError`` subclasses ``Store.open`` documents."""
    _check_location(root, STORE_FILES.union(extra_files))
    lock_fd = _take_lock(root)
    try:
        env, dbs = _open_lmdb(root, durability, map_size, max_map_size)
    except BaseException:
        os.close(lock_fd)
        raise
    return Environment(root, env, dbs, lock_fd, max_map_size)


def open_read_only(root: Path) -> tuple[lmdb.Environment, dict[Table, lmdb._Database]]:
    """Open the existing store in ``root`` for reading only, beside its owner. Tables
    that were never created are left out of the mapping (they read as empty)."""
    if not (root / "data.mdb").is_file():
        raise StoreLocationError(f"no virtual-actors store in {root} (no data.mdb)")
    _check_size(root)
    try:
        # lock=True: join LMDB's reader table, so the owner never reuses pages this
        # snapshot still reads. The map size comes from the file when it is larger.
        env = lmdb.open(
            str(root), readonly=True, lock=True, max_dbs=_MAX_DBS, subdir=True, readahead=False
        )
    except lmdb.InvalidError as exc:
        raise ForeignDataError(f"{root} holds a data.mdb that is not an LMDB store: {exc}") from exc
    except lmdb.Error as exc:
        raise StoreLocationError(f"cannot open LMDB environment in {root}: {exc}") from exc
    try:
        named = _checked_table_names(env, root, "read")
        _verify_format(env, root, named, "read")
        dbs = {
            table: _open_table(env, root, table, create=False)
            for table in Table
            if table.value.encode() in named
        }
    except BaseException:
        env.close()
        raise
    return env, dbs


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid of the process whose ``Store`` has ``path`` open, or None when no one has.

    Probes the directory's ``flock`` without keeping it: the answer can be stale the
    moment it is returned, so use it to choose a path (talk to the owner, or open the
    store yourself and let ``Store.open`` decide), never as a lock.
    """
    lock_path = Path(path) / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never opened, so nobody holds it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(holder) if holder.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _check_location(root: Path, allowed: frozenset[str]) -> None:
    """Refuse paths that cannot hold a store, before touching anything."""
    if root.exists() and not root.is_dir():
        raise StoreLocationError(f"{root} is a file, not a directory; a store is a directory")
    if not root.exists():
        try:
            root.mkdir(parents=True)
        except OSError as exc:
            raise StoreLocationError(
                f"cannot create store directory {root}: {exc.strerror}"
            ) from exc
        return
    try:
        entries = set(os.listdir(root))
    except OSError as exc:
        raise StoreLocationError(f"cannot read store directory {root}: {exc.strerror}") from exc
    foreign = sorted(entries - allowed)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ForeignDataError(
            f"{root} is not a virtual-actors store: it holds other files ({shown})"
        )
    if "data.mdb" in entries and LOCK_FILE not in entries:
        raise ForeignDataError(
            f"{root} holds an LMDB environment that virtual-actors did not create"
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreLocationError(f"store directory {root} is read-only")


def _take_lock(root: Path) -> int:
    lock_path = root / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise StoreLocationError(
                f"store directory {root} is read-only: {exc.strerror}"
            ) from exc
        raise StoreLocationError(f"cannot open lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreLockedError(
            f"store {root} is already open by another runtime (pid {holder}); "
            "one process owns a data directory at a time"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _check_size(root: Path) -> None:
    try:
        check_file_size(root)
    except OSError as exc:
        raise StoreLocationError(f"cannot read {root / 'data.mdb'}: {exc.strerror}") from exc


def _checked_table_names(env: lmdb.Environment, root: Path, verb: str) -> set[bytes]:
    """Walk the pages of the current snapshot (``_check``), holding it open so that an
    owner writing beside us never reuses them; the names of its tables, all checked.

    A name that is not one of our tables leaves the store unread: another program's
    table or a newer schema's is for ``_verify_format`` to refuse (it reads only our
    ``meta``, checked), and a store of ours holding one is damaged."""
    try:
        with env.begin() as txn:
            named, odd = check_pages(root, txn.id(), _TABLE_NAMES)
    except OSError as exc:
        raise StoreLocationError(f"cannot read {root / 'data.mdb'}: {exc.strerror}") from exc
    except CORRUPTION_ERRORS as exc:
        raise StoreCorruptedError(f"store {root} is damaged: {exc}") from exc
    if odd:
        _verify_format(env, root, named, verb)
        shown = ", ".join(repr(name.decode("utf-8", "backslashreplace")) for name in sorted(odd))
        raise StoreCorruptedError(
            f"store {root} is damaged: it holds tables virtual-actors never creates ({shown}) "
            "(restore the directory from a backup)"
        )
    return named


def _open_lmdb(
    root: Path, durability: Durability, map_size: int, max_map_size: int
) -> tuple[lmdb.Environment, dict[Table, lmdb._Database]]:
    is_new = not (root / "data.mdb").exists()
    if not is_new:
        _check_size(root)
    try:
        env = lmdb.open(
            str(root),
            map_size=min(map_size, max_map_size),
            max_dbs=_MAX_DBS,
            subdir=True,
            sync=durability == "fsync",
            metasync=durability == "fsync",
            readahead=False,
            max_readers=512,
        )
    except lmdb.InvalidError as exc:
        raise ForeignDataError(f"{root} holds a data.mdb that is not an LMDB store: {exc}") from exc
    except lmdb.Error as exc:
        raise StoreLocationError(f"cannot open LMDB environment in {root}: {exc}") from exc
    try:
        dbs = _check_schema(env, root, is_new)
    except BaseException:
        env.close()
        raise
    return env, dbs


def _open_table(
    env: lmdb.Environment,
    root: Path,
    table: Table,
    *,
    create: bool = True,
    txn: lmdb.Transaction | None = None,
) -> lmdb._Database:
    """``env.open_db``, with LMDB's refusal of a damaged table record (a changed byte in
    its flags or page numbers, which the page walk cannot judge) as damage."""
    try:
        return env.open_db(table.value.encode(), txn=txn, create=create)
    except (*CORRUPTION_ERRORS, lmdb.IncompatibleError) as exc:
        raise StoreCorruptedError(
            f"store {root} is damaged: table {table.value!r}: {exc} (restore the directory "
            "from a backup)"
        ) from exc


def _verify_format(env: lmdb.Environment, root: Path, named: set[bytes], verb: str) -> None:
    """Raise unless ``env`` (whose named databases are ``named``) is a store of ours
    with a schema version this release can ``verb`` (open, read)."""
    fmt = version = None
    if Table.META.value.encode() in named:
        meta = _open_table(env, root, Table.META, create=False)
        with env.begin(db=meta) as txn:
            fmt = txn.get(b"format")
            version = txn.get(b"schema_version")
    if fmt != FORMAT_NAME or version is None or not version.isdigit():
        if named & _OUR_DATA_TABLES:
            # Tables only we create, without a readable format record: a bit flip in
            # the meta page, not another program's store. Say "backup", not "foreign".
            raise StoreCorruptedError(
                f"store {root} is damaged: its format record is missing or unreadable "
                f"(format {fmt!r}, schema version {version!r}) (restore the directory "
                "from a backup)"
            )
        raise ForeignDataError(f"{root} holds an LMDB store that virtual-actors did not write")
    if int(version) > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"store {root} has schema version {int(version)}, newer than this "
            f"release's {SCHEMA_VERSION}; upgrade virtual-actors to {verb} it"
        )


def _check_schema(env: lmdb.Environment, root: Path, is_new: bool) -> dict[Table, lmdb._Database]:
    # Look before creating anything: a newer or foreign store must stay byte-identical.
    named = _checked_table_names(env, root, "open")
    if not is_new or named:
        _verify_format(env, root, named, "open")
    with env.begin(write=True) as txn:
        dbs = {table: _open_table(env, root, table, txn=txn) for table in Table}
        if txn.get(b"format", db=dbs[Table.META]) is None:
            txn.put(b"format", FORMAT_NAME, db=dbs[Table.META])
            txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=dbs[Table.META])
    return dbs
