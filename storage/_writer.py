"""The commit path: one writer thread, group commit, and publishing what is durable.

*One writer thread owns every write transaction.* LMDB allows one write transaction at a
time and binds it to the thread that began it, and an fsync'd commit costs ~0.3 ms no
matter how much it carries. So callers never write themselves: ``submit`` queues a
``WriteBatch`` and the writer drains everything queued (up to a cap) into ONE
transaction and ONE commit, group commit: N concurrent steps cost one fsync.

*Failures are per batch.* If the grouped commit fails, the writer retries each batch of
the group in its own transaction, so one bad batch fails alone and the others land, in
order; a failure that is not the batch's fault (a full disk) fails each of them on its
own. A failed transaction is aborted, so nothing of it is ever visible. A batch that
``depends_on`` a failed one fails without being tried: it was computed from state that
never existed.

*A full disk says so.* LMDB returns ``ENOSPC`` when a write finds no room at all, and
``EIO`` when a write was cut short; the second is a full disk too when the filesystem
has less room left than the commit needed, so the writer looks (``statvfs``) and fails
the batches with ``DiskFullError``. A map that reached ``max_map_size`` is
``StoreFullError``. Both fail only the commit that met them: the same batch commits
once there is room.

*A broken store fails everyone, at once and later.* When the writer thread dies (any
``BaseException``: a bug, ``MemoryError``, a test's simulated crash), or LMDB refuses
every write after a failed meta-page update (``MDB_PANIC``), the writer is ``broken``:
the batches it held and everything queued fail with ``StoreBrokenError``, and every
later ``submit`` raises it. ``broken`` is set under the lock that numbers and queues
batches, so no batch can slip into a queue nobody drains. Batches the dying writer had
already committed (a group retried batch by batch) are published as committed. The
store still reads and closes cleanly; reopening it is the remedy.

*One notion of durable: ``durable_seq``.* Every submitted batch gets the next sequence
number, in queue order (the number is taken and the batch queued under one lock). A
ticket is *done* exactly when ``durable_seq >= ticket.seq``; ``CommitTicket.done`` is
computed from it, so the two can never disagree. The rule that makes this safe:

    ``durable_seq`` moves only when a ticket is *published*: in submission order, one
    ticket at a time, on the thread of the event loop that submitted it (a blocking
    caller's ticket: on whichever thread publishes). Publishing a ticket sets
    ``durable_seq`` to its number, wakes its waiters and runs its ``on_done``, with no
    await in between. A ticket is published only after LMDB holds its batch, or after
    its error is set.

So, seen from the loop, "LMDB holds the batch" happens-before "``durable_seq >= seq``".
And when every batch comes from one loop (the runtime's case), ``durable_seq`` never
changes under a running task between two of its awaits: a task that reads it, then
reads LMDB, sees LMDB at least as new as the watermark it read. The runtime relies on this to drop its overlay of not-yet-durable
writes and read LMDB instead; a watermark ahead of LMDB would lose writes. Failed
batches are published too (their ticket holds the error): ``durable_seq`` means "every
batch up to here is settled", and whoever cares whether one landed looks at its ticket.

*Publishing is a baton.* Committed tickets go to a backlog in sequence order; one thread
at a time (``_publishing``) takes them from its head. The writer thread starts it and
hands it, with one ``TrioToken.run_sync_soon`` / ``loop.call_soon_threadsafe`` call, to
the loop that owns the head; that loop publishes every ticket of its own it finds there,
including those the writer adds meanwhile, and puts the baton down when the backlog is
empty. So one commit wakes its loop once, and a busy loop takes several commits in one
wake-up. Tickets of ``commit_blocking`` callers (no loop) are published wherever the
baton is; their caller waits only for LMDB (a thread event set by the writer), never
for a loop, since it may be blocking that very loop's thread. With several loops on one
store, the baton passes between them in sequence order; a loop that has finished is
skipped (nobody is left to wake) and its tickets published where the baton is.

*Auto mode* (``commit_mode="auto"``, the default): a batch submitted from an event loop
commits on that loop's thread, at its next idle moment (or after 0.2 ms if it stays
busy), with everything else the loop submitted meanwhile; this saves the thread round
trip, and a busy loop no longer starves the writer of the GIL (``_idle_commit``). The
writer thread commits for callers without a loop, and everything in thread mode.

*Inline mode* (``commit_mode="inline"``) commits synchronously in ``submit`` with no
thread, for tests under ``trio.testing.MockClock(autojump_threshold=0)``, where a thread
the clock cannot see would let autojump fire timeouts early. Numbering, commit and the
move of ``durable_seq`` then happen under one lock on the caller's thread; ``on_done``
runs right after, outside it (it may submit again).

Rejected: one ``to_thread.run_sync`` per commit (~100 us each and no grouping);
advancing ``durable_seq`` on the writer thread (a task could see the watermark pass a
ticket that is not yet done, or the other way round); an asyncio/trio specific writer
(the writer only needs a thread-safe wake-up callable).
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal, cast

import lmdb

from ._batch import Table, WriteBatch, _Op
from ._errors import (
    CommitFailedError,
    DiskFullError,
    StorageError,
    StoreBrokenError,
    StoreFullError,
)
from ._idle_commit import IdleCommitter, idle_committer
from ._keys import tuple_prefix_end
from ._ticket import CommitTicket, Waker

if TYPE_CHECKING:
    from ._environment import Environment

logger = logging.getLogger("actors.storage")

CommitMode = Literal["auto", "thread", "inline"]
FaultHook = Callable[[Sequence[WriteBatch]], None]

_MAX_GROUP_BATCHES: Final = 4096
_UNKNOWN: Final = cast("IdleCommitter", object())  # no committer looked up for that loop yet
_MAX_GROUP_BYTES: Final = 64 * 1024 * 1024
#: The errno values that mean "no room": out of space, out of quota.
_NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
#: LMDB reports a short write as EIO. It is a full disk when the filesystem has less room
#: than the commit needed, give or take this much (LMDB writes whole pages, and meta).
_NO_ROOM_SLACK: Final = 1024 * 1024


class Writer:
    """Numbers, commits and publishes the batches of one store (see the module essay)."""

    def __init__(
        self, environment: Environment, *, commit_mode: CommitMode, fault_hook: FaultHook | None
    ) -> None:
        self._environment = environment
        self._path = environment.path
        self._fault_hook = fault_hook
        # Reentrant: an inline commit holds it while ``_apply`` may ``_break`` the store.
        self._seq_lock = threading.RLock()
        self.submitted_seq = 0
        self._durable_seq = 0
        self.commits = 0
        self.batches = 0
        #: Set when the store takes no more writes (the writer thread died, or LMDB
        #: panicked): every batch still queued and every later submit fails with it.
        self.broken: StoreBrokenError | None = None
        self._failed_seqs: set[int] = set()  # failures are rare; kept for depends_on
        self._queue: queue.SimpleQueue[CommitTicket | None] = queue.SimpleQueue()
        self._in_flight: list[CommitTicket] | None = None  # taken, not yet published
        # The tickets of the group being committed from ``_unsettled_from`` on have not
        # been committed or failed yet: what a writer that dies must fail, and only that.
        self._unsettled: list[CommitTicket] = []
        self._unsettled_from = 0
        # Publishing (the baton): tickets settled but not yet published, in seq order.
        self._publish_lock = threading.Lock()
        self._backlog: list[CommitTicket] = []
        self._publishing = False
        self._stopping = False
        # Committing at idle on the submitting loop (``_idle_commit``): the batches held
        # there, by whom, and each loop's committer (None: that loop cannot tell).
        self._held: list[CommitTicket] = []
        self._held_by: IdleCommitter | None = None
        self._committers: dict[Waker, IdleCommitter | None] = {}
        #: The last commit on a loop left a streak (``IdleCommitter.committed``): a task
        #: about to wait may commit its own (``commit_before_wait``). Read by every wait,
        #: so that the others pay one attribute read.
        self.sole_waiters = False
        #: Tickets queued to the writer thread and not yet settled by it.
        self._thread_pending = 0
        self._thread: threading.Thread | None = None
        #: ``"auto"``: batches from a loop may commit on its thread when it is idle.
        self._idle_commits = commit_mode == "auto"
        if commit_mode != "inline":
            self._thread = threading.Thread(
                target=self._writer_main, name=f"actors-writer:{self._path.name}", daemon=True
            )
            self._thread.start()

    @property
    def durable_seq(self) -> int:
        """Every batch up to this sequence number is settled and its ticket published."""
        return self._durable_seq

    def submit(
        self,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> CommitTicket:
        """Number ``batch`` and queue it (or, inline, commit and publish it now). The
        caller has checked it. Raises ``StoreBrokenError`` once the writer is ``broken``."""
        if self._thread is None:
            return self._commit_inline(batch, waker, on_done)
        with self._seq_lock:  # numbered and queued together: the queue is in seq order
            if self.broken is not None:  # checked under the lock: see the module essay
                raise self.broken_error()
            self.submitted_seq += 1
            ticket = CommitTicket(self, self.submitted_seq, batch, waker, on_done)
            committer = None
            if waker is not None and self._idle_commits and not self._stopping:
                committer = self._committers.get(waker, _UNKNOWN)
                if committer is _UNKNOWN:
                    committer = self._committers[waker] = idle_committer(self, waker)
            if committer is not None and self._held_by in (None, committer):
                self._held.append(ticket)
                self._held_by = committer
                committer.arm()
            else:
                self._queue_held()
                self._thread_pending += 1
                self._queue.put(ticket)
        return ticket

    def _queue_held(self) -> None:
        """Give the writer thread what a loop holds (under ``_seq_lock``)."""
        if self._held:
            held, self._held, self._held_by = self._held, [], None
            self._thread_pending += len(held)
            for ticket in held:
                self._queue.put(ticket)

    def commit_held(self, committer: IdleCommitter) -> None:
        """Called by ``committer`` on its loop's thread: commit what it holds right here,
        unless the writer thread still has batches in flight (they must land first: what
        is held then queues behind them) (``_idle_commit``)."""
        with self._seq_lock:
            if self._held_by is not committer:
                return
            if self._thread_pending or self._stopping or self.broken is not None:
                self._queue_held()
                return
            group, self._held, self._held_by = self._held, [], None
            self.sole_waiters = committer.committed(len(group))
            # Under the lock, so no batch can be queued and committed around this one.
            try:
                self._commit_group(group)
            except BaseException as exc:  # as if the writer thread died (``_writer_main``)
                broken = self._died_committing(
                    f"a commit on the event loop's thread died of {exc!r}"
                )
                logger.critical("%s", broken, exc_info=exc)
        self._settled(group, here=committer.waker)
        if self.broken is not None:
            self.fail_queued(self.broken)

    def commit_before_wait(self, ticket: CommitTicket) -> None:
        """A task of ``ticket``'s loop is about to wait for it: if that loop holds it and
        its committer says the task waits alone (``IdleCommitter.sole_waiter``), commit
        what the loop holds here, in this task, as the committer would at the loop's
        next idle moment. (Read without the lock: ``commit_held`` checks again. A held
        ticket is one of the loop's that holds them: a submit from anywhere else first
        queues what is held, so a later ticket of another loop never finds it held.)"""
        held = self._held
        if held and held[0].seq <= ticket.seq:
            committer = self._held_by
            if committer is not None and committer.sole_waiter():
                self.commit_held(committer)

    def _died_committing(self, reason: str) -> StoreBrokenError:
        """A commit died mid-group: break the store and fail the group's tickets it had
        not settled. What it committed before dying is in LMDB: those stay committed."""
        broken = self._break(reason)
        for ticket in self._unsettled[self._unsettled_from :]:
            if ticket.error is None:
                ticket.error = broken
        return broken

    def retire(self, committer: IdleCommitter) -> None:
        """``committer``'s loop is ending: the thread takes what it holds."""
        with self._seq_lock:
            if self._held_by is committer:
                self._queue_held()
            if self._committers.get(committer.waker) is committer:
                self._committers[committer.waker] = None

    def _commit_inline(
        self,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None,
    ) -> CommitTicket:
        # The caller's thread owns the (short) write transaction.
        with self._seq_lock:
            if self.broken is not None:
                raise self.broken_error()
            self.submitted_seq += 1
            ticket = CommitTicket(self, self.submitted_seq, batch, waker, on_done)
            if self._fail_dependents([ticket]):
                ticket.error = self._apply([batch])
                if ticket.error is None:
                    self._count_commit(1)
                else:
                    self._failed_seqs.add(ticket.seq)
            self._durable_seq = ticket.seq  # published: nobody can be waiting on it yet
        if ticket._thread_event is not None:
            ticket._thread_event.set()
        if on_done is not None:
            ticket._on_done = None  # as when published: see ``_publish``
            on_done(ticket)  # outside the lock: it may submit again
        return ticket

    def broken_error(self) -> StoreBrokenError:
        """A fresh copy of ``broken`` to raise (raising one instance again and again
        would grow its traceback without end)."""
        assert self.broken is not None
        return StoreBrokenError(str(self.broken))

    def _break(self, reason: str) -> StoreBrokenError:
        """From now on the store takes no more writes; the error that says why."""
        with self._seq_lock:
            if self.broken is None:
                self.broken = StoreBrokenError(
                    f"store {self._path} takes no more writes: {reason}; close it and "
                    "open it again (everything committed before is intact)"
                )
            return self.broken

    def stop(self) -> None:
        """Ask the writer thread to commit what is queued and exit. Idempotent."""
        if self._thread is not None and not self._stopping:
            with self._seq_lock:
                self._stopping = True
                self._queue_held()
                self._queue.put(None)

    def join(self) -> None:
        """Wait for the writer thread to exit (after ``stop``)."""
        if self._thread is not None:
            self._thread.join()

    def fail_queued(self, error: StorageError) -> None:
        """Settle every batch still queued with ``error`` (at close, or when the writer died)."""
        pending: list[CommitTicket] = []
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                break
            if ticket is not None:
                ticket.error = error
                pending.append(ticket)
        if pending:
            self._settled(pending)

    def _count_commit(self, batches: int) -> None:
        self.commits += 1
        self.batches += batches

    # --- the writer thread -------------------------------------------------------------

    def _writer_main(self) -> None:
        try:
            self._writer_loop()
        except BaseException as exc:  # a bug in the writer: fail loudly, never hang waiters
            broken = self._died_committing(f"its writer thread died of {exc!r}")
            group, self._in_flight = self._in_flight, None
            if group:
                self._settled(group)
            self.fail_queued(broken)
            # Not re-raised: the thread's end is reported here, with its traceback, and
            # every waiter has its error; an unhandled thread exception would only say it
            # again, to stderr.
            logger.critical("%s", broken, exc_info=exc)

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
            self._in_flight = group
            self._commit_group(group)
            self._in_flight = None
            self._settled(group)
            with self._seq_lock:
                self._thread_pending -= len(group)
            if self.broken is not None:  # LMDB panicked: nothing queued can commit
                self.fail_queued(self.broken)
                return
            if stop:
                return

    def _commit_group(self, group: list[CommitTicket]) -> None:
        self._unsettled, self._unsettled_from = group, 0
        if self._failed_seqs:
            group = self._fail_dependents(group)
            self._unsettled = group
            if not group:
                return
        error = self._apply([ticket.batch for ticket in group])
        if error is None:
            self._count_commit(len(group))
            self._unsettled_from = len(group)
            return
        if len(group) == 1 or self.broken is not None:
            for ticket in group:
                ticket.error = error
                self._failed_seqs.add(ticket.seq)
            self._unsettled_from = len(group)
            return
        # Find out which batches fail on their own; the rest still land, in order.
        for index, ticket in enumerate(group):
            self._unsettled_from = index
            if self._fail_dependents([ticket]):
                ticket.error = self._apply([ticket.batch])
                if ticket.error is None:
                    self._count_commit(1)
                else:
                    self._failed_seqs.add(ticket.seq)
        self._unsettled_from = len(group)

    def _fail_dependents(self, group: list[CommitTicket]) -> list[CommitTicket]:
        """Fail the tickets whose batch depends on a failed one; return the others."""
        keep: list[CommitTicket] = []
        for ticket in group:
            depends_on = ticket.batch.depends_on
            if depends_on and depends_on in self._failed_seqs:
                ticket.error = CommitFailedError(
                    f"batch #{ticket.seq} for {self._path} was not committed: it depends on "
                    f"batch #{depends_on}, which failed"
                )
                self._failed_seqs.add(ticket.seq)
            else:
                keep.append(ticket)
        return keep

    def _apply(self, batches: Sequence[WriteBatch]) -> StorageError | None:
        """Apply ``batches`` in one write transaction and commit. Returns the error
        instead of raising, so the writer can hand it to exactly the right tickets."""
        environment = self._environment
        env, dbs = environment.env, environment.dbs
        while True:
            try:
                with env.begin(write=True) as txn:
                    for batch in batches:
                        _apply_ops(txn, dbs, batch)
                    if self._fault_hook is not None:
                        self._fault_hook(batches)
                return None
            except lmdb.MapFullError:
                if not environment.grow():
                    return StoreFullError(
                        f"store {self._path} is full: the commit needs more than the map "
                        f"size limit of {environment.max_map_size} bytes (max_map_size)"
                    )
            except lmdb.PanicError as exc:
                return self._break(f"LMDB refuses every write after a failed commit ({exc})")
            except lmdb.Error as exc:
                code = errno.ENOSPC if isinstance(exc, lmdb.DiskError) else getattr(exc, "code", 0)
                return self._commit_error(batches, code, str(exc))
            except StorageError as exc:
                return exc
            except OSError as exc:
                return self._commit_error(batches, exc.errno or 0, repr(exc))
            except Exception as exc:
                return CommitFailedError(f"commit to {self._path} failed: {exc!r}")

    def _commit_error(self, batches: Sequence[WriteBatch], code: int, what: str) -> StorageError:
        """The error of a commit that failed with ``errno`` ``code``: ``DiskFullError``
        when it is the filesystem that has no room left (see the module essay)."""
        free = self._environment.free_bytes()
        if code in _NO_ROOM or (
            code == errno.EIO
            and free is not None
            and free < sum(batch.nbytes for batch in batches) + _NO_ROOM_SLACK
        ):
            left = "" if free is None else f", {free} bytes left on its filesystem"
            return DiskFullError(f"commit to {self._path} failed: disk full{left} ({what})")
        return CommitFailedError(f"commit to {self._path} failed: {what}")

    # --- publishing --------------------------------------------------------------------

    def _settled(self, tickets: list[CommitTicket], here: Waker | None = None) -> None:
        """Hand over tickets whose batches LMDB now holds, or whose error is set; on the
        thread of loop ``here``, if given (None: no loop's)."""
        with self._publish_lock:
            self._backlog += tickets
            start = not self._publishing  # else whoever holds the baton takes these too
            self._publishing = True
        try:
            if start:
                self._publish(here)
        finally:
            # After the attempt to publish (so a blocking caller usually finds its ticket
            # done), never after a loop: the caller may be blocking that very loop.
            for ticket in tickets:
                if ticket._thread_event is not None:
                    ticket._thread_event.set()

    def _publish(self, here: Waker | None) -> None:
        """Holding the baton on the thread of loop ``here`` (None: no loop), publish the
        backlog from its head while the head may be published here; then hand the baton
        to the loop owning the head, or put it down when the backlog is empty."""
        lock = self._publish_lock
        while True:
            with lock:
                tickets = self._backlog
                if not tickets:
                    self._publishing = False
                    return
                owner = tickets[0]._waker
                mine = owner is None or owner == here
                if mine:
                    self._backlog = []
            if owner is not None and not mine:
                self._hand_off(owner, here)
                return
            try:
                for ticket in tickets:
                    waker = ticket._waker
                    if waker is not None and waker != here:
                        break  # the rest wait for their own loop's turn
                    self._durable_seq = ticket.seq
                    if ticket._event is not None:  # someone is waiting
                        ticket._event.set()
                    on_done = ticket._on_done
                    if on_done is not None:
                        # Dropped first: it often holds what holds the ticket (a cycle
                        # the garbage collector would have to find).
                        ticket._on_done = None
                        on_done(ticket)
                else:
                    continue
            except BaseException:
                # ``on_done`` raised: its ticket is published; carry on with the rest in
                # a later callback, and let the error propagate as it would have.
                self._requeue(tickets[tickets.index(ticket) + 1 :])
                if here is None:
                    self._publish(None)
                else:
                    self._hand_off(here, here)
                raise
            self._requeue(tickets[tickets.index(ticket) :])

    def _requeue(self, tickets: list[CommitTicket]) -> None:
        if tickets:
            with self._publish_lock:
                self._backlog[:0] = tickets

    def _hand_off(self, owner: Waker, here: Waker | None) -> None:
        """Pass the baton to ``owner``'s loop, or past it if that loop has finished."""
        try:
            owner(self._publish, owner)
            return
        except RuntimeError:
            pass  # that event loop has finished: nobody is left to wake
        with self._publish_lock:
            for ticket in self._backlog:
                if ticket._waker == owner:
                    ticket._waker = None
                    ticket._event = None
                    ticket._on_done = None
        self._publish(here)


# Bound once: ``_apply_ops`` compares every operation with them, and in Python 3.11
# ``Enum.MEMBER`` is a lookup through the enum's metaclass (~0.25 us a read).
_PUT: Final = _Op.PUT
_DELETE: Final = _Op.DELETE
_DELETE_PREFIX: Final = _Op.DELETE_PREFIX


def _apply_ops(txn: lmdb.Transaction, dbs: dict[Table, lmdb._Database], batch: WriteBatch) -> None:
    for op, table, key, value in batch.ops:
        db = dbs[table]
        if op is _PUT:
            assert value is not None
            txn.put(key, value, db=db)
        elif op is _DELETE:
            txn.delete(key, db=db)
        elif op is _DELETE_PREFIX:
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
