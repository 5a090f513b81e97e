"""Completions whose commit failed: kept in memory and committed again, in key order.

A completion is one batch (``Completions.submit``). When its commit fails (a
full disk, an I/O error), the invocation stays in memory, COMPLETING: its callers wait,
``attach`` finds it, and the same batch is submitted again, with the runtime's retry
backoff and no limit, until the store takes it. Its callers are answered only then.

*Why the same batch, not another attempt.* Its key was handed on when the batch was
queued (pipelining), so the next invocation may already run on its writes; it cannot
take the key back to run again. And nothing of it is visible yet (the output gate:
callers are answered once it is durable), so committing the same batch later is exactly
as if the first commit had been slow. Its ``ctx.run`` bodies do not run again.

*Why in key order.* Every batch of an exclusive key ``depends_on`` the key's previous
one, so one failed completion fails every later batch of the key (``storage._writer``).
The later completions were computed on the failed one's writes (the key's overlay), so
they are committed again after it, in their original order, each depending on the one
before. That order is the sequence numbers of their first submissions
(``PendingCompletion.order``), and ``waiting`` is kept sorted by it. The order in which
failures *arrive* is not it: a first submission's failure (``_settled``) and a
resubmission's (``_resettled``) come in store order, and a key's later completion may
fail first time round after its earlier one was already submitted again (the writer
had not reached it yet). Appended as they came, the later one would be committed first
and the earlier one on top of it, putting the key's state back (a lost update).
So a round starts only once the previous round has settled (its ``head`` is done:
each of its batches depends on the one before, and every first submission of the key
came before the round), when every failure it leaves is in ``waiting``, in key order.
Non-exclusive invocations build on nothing but their own batches: each failed
completion is its own queue.

*What may not be committed again.* A completion is repaired only if everything it read
was read while the batches it builds on were pending or durable. So an invocation that
finishes an attempt after its key's chain failed (its reads may have missed the failed
writes, once the overlay was dropped) does not complete: the attempt is retried
(``OutputGate.chain_broken``), and every attempt on a key whose queue is not empty
waits until the queue has landed (``drained``), then reads LMDB. The invocation running
on the key meets the failure at its next output gate anyway (its batches depend on the
failed one) and retries the same way.

*When the store breaks* (its writer died, LMDB panicked) nothing can land: every
waiting completion fails with the store's ``PersistenceError`` and the runtime stops
(``Kernel.stop``).

Rejected: re-running a failed completion's attempt (it no longer holds its key; its
bodies would run again); failing its callers with ``PersistenceError`` and recovering it
at the next open (the old behaviour: ``attach`` said "not running" in between, and the
key's later invocations overtook it).
"""

from __future__ import annotations

import bisect
import functools
from typing import TYPE_CHECKING

from actors.storage import StorageError

from ._invocation import CommitQueue, Flag, PendingCompletion
from ._kernel import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.storage import CommitTicket

    from ._invocation import Activation, Invocation
    from ._kernel import Kernel


class Recommits:
    """Committing failed completions again, per key, in order (see the module essay)."""

    __slots__ = ("_clock", "_k", "_pending", "_store")

    def __init__(self, kernel: Kernel) -> None:
        self._k = kernel
        self._store = kernel.store
        self._clock = kernel.clock
        #: Failed completions not landed yet, by invocation id (their tasks look here).
        self._pending: dict[str, PendingCompletion] = {}

    def on_done(self, inv: Invocation) -> Callable[[CommitTicket], None]:
        """The ``on_done`` of a completion's first submission."""
        return functools.partial(self._settled, inv)

    def _settled(self, inv: Invocation, ticket: CommitTicket) -> None:
        # In the loop, in submission order, before any waiter resumes (storage._writer).
        if ticket.error is None or self._store.broken is not None:
            return  # landed; or nothing will ever land (the waiter stops the runtime)
        activation = inv.activation if inv.exclusive else None
        if activation is None:
            queue = CommitQueue(None)
        elif activation.recommits is None:
            queue = activation.recommits = CommitQueue(activation)
        else:
            queue = activation.recommits
        pending = PendingCompletion(inv, ticket.batch, queue, ticket.seq)
        _rejoin(queue, pending)
        self._pending[inv.invocation_id] = pending

    async def recommitted(self, inv: Invocation, error: StorageError) -> StorageError | None:
        """Called by the task of ``inv`` whose completion failed with ``error``: wait
        until the same batch landed (None), or return why it never will."""
        pending = self._pending.get(inv.invocation_id)
        if pending is None:
            return self._store.broken or error
        queue = pending.queue
        if not queue.driving:
            queue.driving = True
            self._k.spawn(functools.partial(self._drive, queue))
        await pending.landed.wait()
        return pending.error

    async def drained(self, activation: Activation) -> None:
        """Wait until every failed completion of ``activation``'s key has landed: what
        an attempt on the key reads must include them."""
        while activation.recommits is not None:
            await activation.recommits.drained.wait()

    async def _drive(self, queue: CommitQueue) -> None:
        """Submit the queue's completions again, round after round, with backoff."""
        policy = self._k.retry
        rounds = 0
        try:
            while True:
                head = queue.head
                if head is not None and not head.done:
                    # The last round is in flight: what of it fails rejoins ``waiting``
                    # in key order, and the next round must include it (module essay).
                    queue.changed = Flag()
                    await queue.changed.wait()
                    continue
                if not queue.waiting:
                    # Landed (then so did all before it: it depends on them), or failed
                    # without rejoining ``waiting`` (the store broke): either way, done.
                    break
                rounds += 1
                delay = policy.delay(rounds + 1)
                await self._clock.sleep_until(self._clock.now() + delay)
                if self._store.broken is not None:
                    break
                # Nothing of the key is in flight (the last round settled, and so did
                # the first submissions before it): ``waiting`` is all of it, in order.
                submitting, queue.waiting = queue.waiting, []
                queue.head = None
                for pending in submitting:
                    self._submit(queue, pending)
                    if self._store.broken is not None:
                        break
        finally:
            queue.driving = False
            broken = self._store.broken
            if broken is not None:
                self._fail_all(queue, broken)
            if not queue.waiting:  # else cancelled (closing): a later failure drives it
                activation = queue.activation
                if activation is not None and activation.recommits is queue:
                    activation.recommits = None
                queue.drained.set()

    def _submit(self, queue: CommitQueue, pending: PendingCompletion) -> None:
        head = queue.head
        batch = pending.batch
        # After the one submitted before it, unless that one has landed already (if it
        # failed, this one fails too, and both are submitted again next round).
        if head is None or (head.done and head.error is None):
            batch.depends_on = 0
        else:
            batch.depends_on = head.seq
        try:
            queue.head = self._store.submit(batch, functools.partial(self._resettled, pending))
        except StorageError as exc:  # the store broke (or closed): nothing lands now
            pending.error = exc
            pending.landed.set()
            self._pending.pop(pending.inv.invocation_id, None)
            return
        logger.info("invocation %s: committing its completion again", pending.inv.invocation_id)

    def _resettled(self, pending: PendingCompletion, ticket: CommitTicket) -> None:
        queue = pending.queue
        error = ticket.error
        if error is None:
            self._pending.pop(pending.inv.invocation_id, None)
            pending.landed.set()
        elif self._store.broken is None:
            _rejoin(queue, pending)
        queue.changed.set()

    def _fail_all(self, queue: CommitQueue, broken: StorageError) -> None:
        pendings = [*queue.waiting, *(p for p in self._pending.values() if p.queue is queue)]
        queue.waiting = []
        for pending in pendings:
            if not pending.landed.is_set:
                pending.error = broken
                pending.landed.set()
            self._pending.pop(pending.inv.invocation_id, None)


def _rejoin(queue: CommitQueue, pending: PendingCompletion) -> None:
    """Put a failed completion in ``queue.waiting`` at its place in its key's order,
    which need not be the order its failure came in (see the module essay)."""
    bisect.insort(queue.waiting, pending, key=_order)


def _order(pending: PendingCompletion) -> int:
    return pending.order
