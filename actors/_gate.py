"""The output gate: how an invocation's work becomes durable, and when others may see it.

An invocation buffers what it does (journal entries, state writes, acceptances of calls
it makes) and submits it as ONE batch at its next externally visible effect (a
``ctx.run`` body, a delivered call or send, a durable wait) or with its completion.
The effect waits until that batch, and every batch before it on the same key, is
durable: each batch of an exclusive invocation ``depends_on`` the key's previous one,
so nothing lands on top of a commit that failed.

The key's *overlay* holds exclusive writes submitted but not yet durable, so the next
exclusive invocation on the key can start on them at once (pipelining) while shared
handlers, which read LMDB only, never see them. The overlay is dropped as soon as the
store's durable watermark passes its batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio.lowlevel

from actors.storage import (
    InvocationStatus,
    StorageError,
    Table,
    ValueTooLargeError,
    WriteBatch,
    dumps_entry,
    encode_key,
)

from ._control_flow import StepFailed
from ._errors import TerminalError
from ._limits import batch_too_large
from ._rows import journal_key, state_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.storage import CommitTicket

    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._scheduler import Scheduler

#: Bound once: every flush writes journal entries, and in Python 3.11 ``Enum.MEMBER`` is
#: a lookup through the enum's metaclass (~0.25 us a read).
_JOURNAL: Final = Table.JOURNAL


def may_start(inv: Invocation, ticket: CommitTicket) -> bool:
    """Whether the effect that ``OutputGate.gate_then`` gated may start, now that the
    batch of ``ticket`` is published."""
    return ticket.error is None and not inv.pending_calls and not inv.pending_effects


class OutputGate:
    """Flushing an invocation's buffered work, and waiting for it to be durable."""

    __slots__ = ("_k", "_order", "_scheduler", "_store", "_workflow_claims")

    def __init__(self, kernel: Kernel, order: KeyOrder, scheduler: Scheduler) -> None:
        self._k = kernel
        self._order = order
        self._scheduler = scheduler
        self._store = kernel.store
        self._workflow_claims = kernel.workflow_claims

    def chain(self, inv: Invocation) -> CommitTicket | None:
        activation = inv.activation
        if inv.exclusive and activation is not None:
            return activation.last_ticket
        return inv.last_ticket

    def flush(
        self,
        inv: Invocation,
        batch: WriteBatch | None = None,
        *,
        accept: bool = True,
        completion: bool = False,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> CommitTicket | None:
        """Submit the invocation's acceptance (if not yet written and ``accept``), new
        journal entries and state writes, followed by ``batch``'s operations, as one
        batch. Returns its ticket, or None when there was nothing to write.

        Raises ``TerminalError`` (413, nothing queued, the invocation's buffers as they
        were) when the batch cannot be stored; ``completion`` says that ``batch`` is the
        invocation's completion, for the message. A store that takes no more writes
        raises ``StepFailed`` (the attempt cannot go on)."""
        if batch is None:
            nothing_new = (
                not inv.unflushed and not inv.writes and not inv.cleared_all and not inv.pending_ops
            )
            if inv.inbox_key is not None and nothing_new:
                return None
        head = WriteBatch()
        accepting = accept and inv.inbox_key is None
        moving_from: bytes | None = None
        if accepting:
            self._order.add_acceptance(inv, head, InvocationStatus.RUNNING)
        elif accept and inv.position is not None:
            # Its first durable step: from now on it resumes at its admitted place.
            moving_from = self._order.move_to_admitted(inv, head)
        for index, entry in inv.unflushed:
            head.put(_JOURNAL, journal_key(inv.invocation_id, index), dumps_entry(entry))
        pending_ops = inv.pending_ops
        if pending_ops:
            head.ops.extend(pending_ops)
            head.nbytes += sum(len(op[2]) + len(op[3] or b"") for op in pending_ops)
        if inv.exclusive:
            self.add_state_writes(inv, head)
        if batch is not None:
            head.ops.extend(batch.ops)
            head.nbytes += batch.nbytes
        chain = self.chain(inv)
        head.depends_on = chain.seq if chain is not None else 0
        try:
            if head.nbytes > self._store.max_value_size:
                # Checked here too, not only by the store: its message names the data
                # directory, which is no business of whoever reads the failure.
                if completion:
                    raise batch_too_large(
                        head.nbytes,
                        f"the completion of invocation {inv.invocation_id} (its record "
                        "holds its argument and its result, and a ctx.call's caller "
                        "journals them again)",
                        "return a smaller result, or keep large data in state",
                    )
                raise batch_too_large(head.nbytes, f"what invocation {inv.invocation_id} wrote")
            ticket = self._store.submit(head, on_done)
        except (StorageError, TerminalError) as exc:
            # Nothing was queued: the invocation's buffers are as they were.
            if accepting:
                inv.inbox_key = None
            elif moving_from is not None:
                inv.inbox_key = moving_from
            if isinstance(exc, TerminalError):
                raise
            if isinstance(exc, ValueTooLargeError):
                # The store's messages name the data directory: not the caller's business.
                reason = str(exc).replace(str(self._store.path), "the data directory")
                raise TerminalError(f"cannot store the invocation's data: {reason}", 413) from exc
            raise StepFailed(str(self._k.write_failed(exc))) from exc  # broken or closed
        if inv.unflushed:  # (an empty one is kept: a list less to allocate and collect)
            inv.unflushed = []
        if pending_ops:
            inv.pending_ops = []
        inv.pending_bytes = 0
        effects = inv.pending_effects
        if effects:  # they become visible when this batch is durable (``settle_effects``)
            for effect in effects:
                if effect.ticket is None:
                    effect.ticket = ticket
        if accepting:
            inv.acceptance_ticket = ticket
        elif moving_from is not None:
            inv.acceptance_ticket = ticket
            inv.moved_from = moving_from
        activation = inv.activation
        if inv.exclusive and activation is not None:
            if inv.cleared_all:
                activation.overlay = dict(inv.writes)
                activation.overlay_cleared = True
            elif inv.writes:
                activation.overlay.update(inv.writes)
            if inv.writes or inv.cleared_all:
                activation.overlay_seq = ticket.seq
                inv.writes = {}
            inv.cleared_all = False
            activation.last_ticket = ticket
        else:
            inv.last_ticket = ticket
        return ticket

    def chain_broken(self, inv: Invocation) -> bool:
        """Whether a batch the invocation's writes build on failed (or its key has
        completions waiting to be committed again): then what it read may miss writes
        that will land, and its attempt must not complete (``_recommit``)."""
        activation = inv.activation
        if inv.exclusive and activation is not None:
            if activation.recommits is not None:
                return True
            ticket = activation.last_ticket
        else:
            ticket = inv.last_ticket
        return ticket is not None and ticket.error is not None and ticket.done

    def forget_failed_chain(self, inv: Invocation) -> None:
        """At the start of an attempt: if the last batch this invocation's writes would
        build on has already failed, nothing pending is left to build on (every batch
        after it failed too), so start a fresh chain and read storage, not the overlay.
        A batch still in flight stays a dependency: the attempt may read its writes."""
        ticket = self.chain(inv)
        if ticket is None or ticket.error is None or not ticket.done:
            return
        activation = inv.activation
        if inv.exclusive and activation is not None:
            activation.last_ticket = None
            activation.overlay.clear()
            activation.overlay_cleared = False
            activation.overlay_seq = 0
        else:
            inv.last_ticket = None

    async def gate(self, inv: Invocation) -> None:
        """The output gate: flush, then wait until everything the invocation's next
        effect depends on is durable. A failed commit fails the attempt (retried)."""
        self.flush(inv)
        ticket = self.chain(inv)
        if ticket is None:
            await anyio.lowlevel.checkpoint()
        else:
            try:
                await ticket.wait()
            except StorageError as exc:
                raise StepFailed(str(exc)) from exc
        if inv.pending_calls:  # their acceptances are durable now: deliver them
            pending, inv.pending_calls = inv.pending_calls, []
            for callee in pending:
                self._scheduler.dispatch(callee)
                self._k.log("accepted", callee)
                if callee.spec.kind == "main" and callee.target.key is not None:
                    self._workflow_claims.pop((callee.target.actor, callee.target.key), None)
                elif callee.idempotency_key is not None:  # its key's row is durable now
                    self._k.idempotency_inflight.pop(callee.idempotency_key, None)
        if inv.pending_effects:  # journaled effects (invariant 14): durable now
            inv.settle_effects()

    def gate_then(self, inv: Invocation, then: Callable[[CommitTicket], None]) -> bool:
        """The output gate without a wait, for an effect that a loop callback can start:
        flush, and once the batch is published call ``then(ticket)`` on the loop (the
        batch's ticket, the ``on_done`` of ``Store.submit``). The effect may start then
        if ``may_start(inv, ticket)``: the batch is durable, with everything before it
        (it depends on them), and nothing else is due before the effect; otherwise
        (the batch failed, or calls to deliver or effects to settle appeared) ``gate``
        does those, and raises the failure. Returns False, with nothing flushed and
        ``then`` never called, when this cannot apply: calls or effects are due once
        the batch is durable, or there is nothing to flush (the effect waits on an
        earlier batch); then use ``gate``. Raises what ``flush`` raises. (``then`` is
        the submit's own callback: no closure per effect.) The caller is about to wait
        for the effect: a sequential caller commits the batch here, in its own task
        (``CommitTicket.expedite``), and ``then`` runs before this returns."""
        if inv.pending_calls or inv.pending_effects:
            return False
        ticket = self.flush(inv, on_done=then)
        if ticket is None:
            return False
        ticket.expedite()
        return True

    def add_state_writes(self, inv: Invocation, batch: WriteBatch) -> None:
        if not inv.writes and not inv.cleared_all:
            return
        actor, key = inv.target.actor, inv.target.key
        assert key is not None
        if inv.cleared_all:
            batch.delete_children(Table.STATE, encode_key((actor, key)))
        for name, data in inv.writes.items():
            if data is None:
                batch.delete(Table.STATE, state_key(actor, key, name))
            else:
                batch.put(Table.STATE, state_key(actor, key, name), data)
