"""The LMDB store: one environment directory, its lock, reads, and the commit path.

Design
------
*One writer thread owns every write transaction.* LMDB allows one write transaction at a
time and binds it to the thread that began it, and an fsync'd commit costs ~0.3 ms no
matter how much it carries. So callers never write themselves: they ``submit`` a
``WriteBatch`` and the writer thread drains everything queued into ONE transaction and
ONE commit (group commit), then wakes all of that commit's waiters with one callback per
event loop (``TrioToken.run_sync_soon`` / ``loop.call_soon_threadsafe``), not one
``to_thread`` round trip per write. N concurrent steps cost one fsync.

*Failures are per batch.* If the grouped commit fails, the writer retries each batch of
the group in its own transaction, so one bad batch fails alone and the others land; a
failure that is not the batch's fault (a full disk) fails each of them on its own. A
failed transaction is aborted, so nothing of it is ever visible.

*Reads run inline* in short read transactions on the caller's thread (~1-5 us). They
hold ``_resize_lock`` because ``set_mapsize`` must not run while any transaction of this
process is open; the writer takes the same lock to grow the map.

*Sequence numbers are the durable watermark.* Each submitted batch gets the next
sequence number; ``durable_seq`` only moves forward, past batches that committed or
failed. Upper layers use it as the output gate (DESIGN.md section 5).

*Inline mode* (``commit_mode="inline"``) commits synchronously in ``submit`` with no
thread, for tests under ``trio.testing.MockClock(autojump_threshold=0)``, where a thread
the clock cannot see would let autojump fire timeouts early.

Rejected: one ``to_thread.run_sync`` per commit (~100 us each and no grouping);
``writemap=True`` (faster, but a stray pointer write from any thread can corrupt data);
an asyncio/trio specific writer (the writer only needs a thread-safe wake-up callable).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import anyio
import anyio.lowlevel
import attrs
import lmdb
import trio

from ._batch import Table, WriteBatch, _Op
from ._errors import (
    CommitFailedError,
    ForeignDataError,
    SchemaVersionError,
    StorageError,
    StoreClosedError,
    StoreFullError,
    StoreLocationError,
    StoreLockedError,
    ValueTooLargeError,
)
from ._keys import prefix_end, tuple_prefix_end

if TYPE_CHECKING:
    from types import TracebackType

Durability = Literal["fsync", "process"]
CommitMode = Literal["thread", "inline"]

SCHEMA_VERSION: Final = 1
FORMAT_NAME: Final = b"virtual-actors"
LOCK_FILE: Final = "actors.lock"
# ingress.json: written by a serving runtime (actors._ingress); a stale one left by a
# SIGKILL is harmless, the next server overwrites it.
_OUR_FILES: Final = frozenset({"data.mdb", "lock.mdb", LOCK_FILE, "ingress.json"})
MAX_KEY_SIZE: Final = 511  # LMDB's compiled-in limit
_MAX_GROUP_BATCHES: Final = 4096
_MAX_GROUP_BYTES: Final = 64 * 1024 * 1024

Waker = Callable[..., object]
FaultHook = Callable[[Sequence[WriteBatch]], None]


def _current_waker() -> Waker:
    """A thread-safe 'run this callback in my event loop soon' for the calling task."""
    try:
        return trio.lowlevel.current_trio_token().run_sync_soon
    except RuntimeError:
        pass
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        raise RuntimeError("Store.submit() needs a running trio or asyncio loop") from None


class CommitTicket:
    """A submitted batch. ``await ticket.wait()`` returns once it is durable, or raises
    the ``StorageError`` that failed it. Cancelling the wait does not cancel the commit."""

    __slots__ = (
        "_done",
        "_error",
        "_event",
        "_on_done",
        "_thread_event",
        "_waker",
        "batch",
        "seq",
    )

    def __init__(
        self,
        seq: int,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> None:
        self.seq = seq
        self.batch = batch
        self._waker = waker
        self._on_done = on_done
        self._done = False
        self._error: StorageError | None = None
        # Created by the first ``wait()``: many tickets complete before anyone awaits
        # them (or are never awaited), and an event costs a backend lookup to make.
        self._event: anyio.Event | None = None
        self._thread_event: threading.Event | None = None if waker else threading.Event()

    @property
    def done(self) -> bool:
        """True once the batch committed or failed."""
        return self._done

    @property
    def error(self) -> StorageError | None:
        """The error that failed the batch, if it failed."""
        return self._error

    async def wait(self) -> None:
        """Wait until the batch is durable. Always a checkpoint."""
        if self._done:
            await anyio.lowlevel.checkpoint()
        else:
            assert self._waker is not None, "a blocking ticket cannot be awaited"
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        if self._error is not None:
            raise self._error

    def wait_blocking(self) -> None:
        """Block the calling thread until the batch is durable (sync callers)."""
        if not self._done:
            assert self._thread_event is not None, "an async ticket cannot block"
            self._thread_event.wait()
        if self._error is not None:
            raise self._error


def _complete_tickets(tickets: list[CommitTicket]) -> None:
    # Runs in the tickets' event loop thread, scheduled by the writer thread, in
    # sequence order: ``on_done`` callbacks see commits in the order they were submitted.
    for ticket in tickets:
        ticket._done = True
        if ticket._event is not None:  # someone is waiting
            ticket._event.set()
        if ticket._on_done is not None:
            ticket._on_done(ticket)


@attrs.frozen
class StoreStatistics:
    """Counters since the store was opened."""

    commits: int
    batches: int
    submitted_seq: int
    durable_seq: int
    map_size: int


class ReadView:
    """Reads inside one snapshot (one read transaction). Valid only inside ``Store.read``."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[Table, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The value of ``key`` in ``table``, or None."""
        value = self._txn.get(key, db=self._dbs[table])
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
        return out

    def count(self, table: Table) -> int:
        """Number of entries in ``table``."""
        entries: int = self._txn.stat(self._dbs[table])["entries"]
        return entries


class Store:
    """An open data directory. Create with ``Store.open``; close with ``close()``.

    Guarantees:
      * one ``Store`` per directory across all processes (an exclusive ``flock``);
      * a batch is applied atomically, and is durable when its ticket completes: with
        ``durability="fsync"`` against power loss, with ``"process"`` against a killed
        process (LMDB's ``sync=False``: the OS holds the pages, not the disk);
      * batches become durable in submission order, and ``durable_seq`` never moves
        backwards;
      * reads see only committed data, never a batch still in flight.
    """

    def __init__(
        self,
        *,
        path: Path,
        env: lmdb.Environment,
        dbs: dict[Table, lmdb._Database],
        lock_fd: int,
        durability: Durability,
        commit_mode: CommitMode,
        max_map_size: int,
        max_value_size: int,
        fault_hook: FaultHook | None,
    ) -> None:
        self.path = path
        self.durability: Durability = durability
        self.commit_mode: CommitMode = commit_mode
        self.max_value_size = max_value_size
        self._env = env
        self._dbs = dbs
        self._lock_fd = lock_fd
        self._max_map_size = max_map_size
        self._fault_hook = fault_hook
        # Reentrant: a read inside ``with store.read()`` on the same thread must not block.
        self._resize_lock = threading.RLock()
        self._seq_lock = threading.Lock()
        self._submitted_seq = 0
        self._durable_seq = 0
        self._commits = 0
        self._batches = 0
        self._closed = False
        self._broken: StorageError | None = None
        self._failed_seqs: set[int] = set()  # failures are rare; kept for depends_on
        self._queue: queue.SimpleQueue[CommitTicket | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if commit_mode == "thread":
            self._thread = threading.Thread(
                target=self._writer_main, name=f"actors-writer:{path.name}", daemon=True
            )
            self._thread.start()

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        commit_mode: CommitMode = "thread",
        map_size: int = 256 * 1024 * 1024,
        max_map_size: int = 1 << 40,
        max_value_size: int = 16 * 1024 * 1024,
        _fault_hook: FaultHook | None = None,
    ) -> Store:
        """Open (creating if needed) the store in directory ``path``.

        Args:
          durability: ``"fsync"`` (every commit reaches the disk: survives power loss) or
            ``"process"`` (no fsync per commit: survives a killed process, not an OS crash).
          commit_mode: ``"thread"`` (group commit on a writer thread) or ``"inline"``
            (commit in ``submit`` itself; for deterministic tests).
          map_size: initial LMDB map size; the map doubles by itself when full.
          max_map_size: the map never grows past this; commits that need more fail with
            ``StoreFullError`` and nothing else is affected.
          max_value_size: largest value (and batch) accepted by ``submit``.

        Raises:
          StoreLocationError: ``path`` is a file, or cannot be created or written.
          ForeignDataError: the directory holds files a virtual-actors store did not write.
          SchemaVersionError: the store was written by a newer schema version.
          StoreLockedError: another ``Store`` has the directory open.
        """
        if durability not in ("fsync", "process"):
            raise ValueError(f"durability must be 'fsync' or 'process', not {durability!r}")
        if commit_mode not in ("thread", "inline"):
            raise ValueError(f"commit_mode must be 'thread' or 'inline', not {commit_mode!r}")
        root = Path(path)
        _check_location(root)
        lock_fd = _take_lock(root)
        try:
            env, dbs = _open_environment(root, durability, map_size, max_map_size)
        except BaseException:
            os.close(lock_fd)  # closing the descriptor releases the flock
            raise
        return cls(
            path=root,
            env=env,
            dbs=dbs,
            lock_fd=lock_fd,
            durability=durability,
            commit_mode=commit_mode,
            max_map_size=max_map_size,
            max_value_size=max_value_size,
            fault_hook=_fault_hook,
        )

    # --- reading -----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """A snapshot for several reads. Keep it short: never hold it across an await."""
        self._check_open()
        with self._resize_lock, self._env.begin(buffers=False) as txn:
            yield ReadView(txn, self._dbs)

    def get(self, table: Table, key: bytes) -> bytes | None:
        """The committed value of ``key`` in ``table``, or None. One read transaction."""
        self._check_open()
        if not key or len(key) > MAX_KEY_SIZE:
            return None  # no such key can have been stored
        with self._resize_lock, self._env.begin() as txn:
            value: bytes | None = txn.get(key, db=self._dbs[table])
            return value

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
        with self.read() as view:
            return view.scan(table, prefix, start=start, limit=limit, children=children)

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
        return self._submit(batch, _current_waker(), on_done)

    async def commit(self, batch: WriteBatch) -> None:
        """Submit ``batch`` and wait until it is durable. A checkpoint."""
        await self.submit(batch).wait()

    def commit_blocking(self, batch: WriteBatch) -> None:
        """Submit ``batch`` and block this thread until it is durable (sync callers)."""
        self._submit(batch, None).wait_blocking()

    @property
    def durable_seq(self) -> int:
        """Every batch with a sequence number up to this one has committed or failed."""
        return self._durable_seq

    def statistics(self) -> StoreStatistics:
        """Counters for benchmarks and tests."""
        self._check_open()
        return StoreStatistics(
            commits=self._commits,
            batches=self._batches,
            submitted_seq=self._submitted_seq,
            durable_seq=self._durable_seq,
            map_size=int(self._env.info()["map_size"]),
        )

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

    def _submit(
        self,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> CommitTicket:
        self._check_open()
        if self._broken is not None:
            raise self._broken
        self._validate(batch)
        with self._seq_lock:
            self._submitted_seq += 1
            ticket = CommitTicket(self._submitted_seq, batch, waker, on_done)
        if self._thread is None:
            # Inline mode: the caller's thread owns the (short) write transaction.
            if self._fail_dependents([ticket]):
                ticket._error = self._apply([batch])
                if ticket._error is None:
                    self._count_commit(1)
                else:
                    self._failed_seqs.add(ticket.seq)
            self._durable_seq = ticket.seq
            ticket._done = True
            if ticket._thread_event is not None:
                ticket._thread_event.set()
            if on_done is not None:
                on_done(ticket)
        else:
            self._queue.put(ticket)
        return ticket

    def _count_commit(self, batches: int) -> None:
        self._commits += 1
        self._batches += batches

    # --- the writer thread ---------------------------------------------------------------

    def _writer_main(self) -> None:
        try:
            self._writer_loop()
        except BaseException as exc:  # a bug in the writer: fail loudly, never hang waiters
            self._broken = CommitFailedError(f"the writer of {self.path} died: {exc!r}")
            self._fail_queued(self._broken)
            raise

    def _writer_loop(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            first = get()
            if first is None:
                return
            group = [first]
            nbytes = first.batch.nbytes
            stop = False
            while len(group) < _MAX_GROUP_BATCHES and nbytes < _MAX_GROUP_BYTES:
                try:
                    nxt = get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                nbytes += nxt.batch.nbytes
            self._commit_group(group)
            self._notify(group)
            if stop:
                return

    def _commit_group(self, group: list[CommitTicket]) -> None:
        if self._failed_seqs:
            group = self._fail_dependents(group)
            if not group:
                return
        error = self._apply([ticket.batch for ticket in group])
        if error is None:
            self._count_commit(len(group))
            return
        if len(group) == 1:
            group[0]._error = error
            self._failed_seqs.add(group[0].seq)
            return
        # Find out which batches fail on their own; the rest still land, in order.
        for ticket in group:
            if self._fail_dependents([ticket]):
                ticket._error = self._apply([ticket.batch])
                if ticket._error is None:
                    self._count_commit(1)
                else:
                    self._failed_seqs.add(ticket.seq)

    def _fail_dependents(self, group: list[CommitTicket]) -> list[CommitTicket]:
        """Fail the tickets whose batch depends on a failed one; return the others."""
        keep: list[CommitTicket] = []
        for ticket in group:
            depends_on = ticket.batch.depends_on
            if depends_on and depends_on in self._failed_seqs:
                ticket._error = CommitFailedError(
                    f"batch #{ticket.seq} for {self.path} was not committed: it depends on "
                    f"batch #{depends_on}, which failed"
                )
                self._failed_seqs.add(ticket.seq)
            else:
                keep.append(ticket)
        return keep

    def _notify(self, group: list[CommitTicket]) -> None:
        self._durable_seq = group[-1].seq
        by_loop: dict[Waker, list[CommitTicket]] = {}
        for ticket in group:
            if ticket._waker is None:
                ticket._done = True
                assert ticket._thread_event is not None
                ticket._thread_event.set()
            else:
                by_loop.setdefault(ticket._waker, []).append(ticket)
        for waker, tickets in by_loop.items():
            try:
                waker(_complete_tickets, tickets)
            except RuntimeError:
                pass  # that event loop has finished; nobody is left to wake

    def _fail_queued(self, error: StorageError) -> None:
        pending: list[CommitTicket] = []
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                break
            if ticket is not None:
                ticket._error = error
                pending.append(ticket)
        if pending:
            self._notify(pending)

    def _apply(self, batches: Sequence[WriteBatch]) -> StorageError | None:
        """Apply ``batches`` in one write transaction and commit. Returns the error
        instead of raising, so the writer can hand it to exactly the right tickets."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for batch in batches:
                        _apply_ops(txn, self._dbs, batch)
                    if self._fault_hook is not None:
                        self._fault_hook(batches)
                return None
            except lmdb.MapFullError:
                if not self._grow():
                    return StoreFullError(
                        f"store {self.path} is full: the commit needs more than the "
                        f"max_map_size of {self._max_map_size} bytes"
                    )
            except lmdb.Error as exc:
                return CommitFailedError(f"commit to {self.path} failed: {exc}")
            except StorageError as exc:
                return exc
            except Exception as exc:
                return CommitFailedError(f"commit to {self.path} failed: {exc!r}")

    def _grow(self) -> bool:
        current = int(self._env.info()["map_size"])
        if current >= self._max_map_size:
            return False
        with self._resize_lock:  # no read transaction may be open during set_mapsize
            self._env.set_mapsize(min(current * 2, self._max_map_size))
        return True

    # --- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Commit what was submitted, stop the writer, close LMDB and release the lock.
        Idempotent. Blocks for at most the commit in progress."""
        if self._closed:
            return
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self._closed = True
        self._fail_queued(StoreClosedError(f"store {self.path} is closed"))
        self._env.close()
        os.close(self._lock_fd)

    async def aclose(self) -> None:
        """``close()`` without blocking the event loop while the last commit finishes."""
        if self._thread is not None and not self._closed:
            self._queue.put(None)
            await anyio.to_thread.run_sync(self._thread.join)
            self._thread = None
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


def _apply_ops(txn: lmdb.Transaction, dbs: dict[Table, lmdb._Database], batch: WriteBatch) -> None:
    for op, table, key, value in batch.ops:
        db = dbs[table]
        if op is _Op.PUT:
            assert value is not None
            txn.put(key, value, db=db)
        elif op is _Op.DELETE:
            txn.delete(key, db=db)
        elif op is _Op.DELETE_PREFIX:
            cursor = txn.cursor(db=db)
            if cursor.set_range(key):
                while bytes(cursor.key()).startswith(key):
                    if not cursor.delete():
                        break
        else:
            cursor = txn.cursor(db=db)
            end = tuple_prefix_end(key)
            if cursor.set_range(key):
                while bytes(cursor.key()) < end:
                    if not cursor.delete():
                        break


# --- opening helpers ---------------------------------------------------------------------


def _check_location(root: Path) -> None:
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
    foreign = sorted(entries - _OUR_FILES)
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


def _open_environment(
    root: Path, durability: Durability, map_size: int, max_map_size: int
) -> tuple[lmdb.Environment, dict[Table, lmdb._Database]]:
    is_new = not (root / "data.mdb").exists()
    try:
        env = lmdb.open(
            str(root),
            map_size=min(map_size, max_map_size),
            max_dbs=len(Table) + 4,
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


def _verify_format(env: lmdb.Environment, root: Path, named: set[bytes], verb: str) -> None:
    """Raise unless ``env`` (whose named databases are ``named``) is a store of ours
    with a schema version this release can ``verb`` (open, read)."""
    if Table.META.value.encode() not in named:
        raise ForeignDataError(f"{root} holds an LMDB store that virtual-actors did not write")
    meta = env.open_db(Table.META.value.encode(), create=False)
    with env.begin(db=meta) as txn:
        fmt = txn.get(b"format")
        version = txn.get(b"schema_version")
    if fmt != FORMAT_NAME or version is None or not version.isdigit():
        raise ForeignDataError(f"{root} holds an LMDB store that virtual-actors did not write")
    if int(version) > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"store {root} has schema version {int(version)}, newer than this "
            f"release's {SCHEMA_VERSION}; upgrade virtual-actors to {verb} it"
        )


def _check_schema(env: lmdb.Environment, root: Path, is_new: bool) -> dict[Table, lmdb._Database]:
    # Look before creating anything: a newer or foreign store must stay byte-identical.
    with env.begin() as txn:
        named = {key for key, _ in txn.cursor()}
    if not is_new or named:
        _verify_format(env, root, named, "open")
    with env.begin(write=True) as txn:
        dbs = {table: env.open_db(table.value.encode(), txn=txn) for table in Table}
        if txn.get(b"format", db=dbs[Table.META]) is None:
            txn.put(b"format", FORMAT_NAME, db=dbs[Table.META])
            txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=dbs[Table.META])
    return dbs


# --- read-only access --------------------------------------------------------------------


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
        """
        root = Path(path)
        if not (root / "data.mdb").is_file():
            raise StoreLocationError(f"no virtual-actors store in {root} (no data.mdb)")
        try:
            # lock=True: join LMDB's reader table, so the owner never reuses pages this
            # snapshot still reads. The map size comes from the file when it is larger.
            env = lmdb.open(
                str(root),
                readonly=True,
                lock=True,
                max_dbs=len(Table) + 4,
                subdir=True,
                readahead=False,
            )
        except lmdb.InvalidError as exc:
            raise ForeignDataError(
                f"{root} holds a data.mdb that is not an LMDB store: {exc}"
            ) from exc
        except lmdb.Error as exc:
            raise StoreLocationError(f"cannot open LMDB environment in {root}: {exc}") from exc
        try:
            with env.begin() as txn:
                named = {bytes(key) for key, _ in txn.cursor()}
            _verify_format(env, root, named, "read")
            dbs = {
                table: env.open_db(table.value.encode(), create=False)
                for table in Table
                if table.value.encode() in named
            }
        except BaseException:
            env.close()
            raise
        return cls(root, env, dbs)

    @contextmanager
    def read(self) -> Iterator[ReadView]:
        """One snapshot of committed data for several reads."""
        if self._closed:
            raise StoreClosedError(f"store reader for {self.path} is closed")
        with self._env.begin(buffers=False) as txn:
            yield _ReaderView(txn, self._dbs)

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
