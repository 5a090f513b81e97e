"""Completing an invocation: the completion batch, and the outcome callers are told.

Completion is one batch: the last entries and writes, the completed record, its
retention timer, the inbox deletion and, for a ``ctx.call``, the caller's journal entry.
Only when that would pass ``MAX_BATCH_BYTES`` do the last entries and writes go first, in
a batch of their own (exactly what a ``ctx.run`` gate would have written), and an outcome
that even then does not fit its record is recorded as a 413 failure: whatever is queued
is what callers are told.
An exclusive invocation releases its key as soon as that batch is queued (pipelining);
callers are answered only once it is durable. A plain ``rt.call`` that recorded nothing
before completing leaves no history (as in Restate, completed invocations are kept only
when someone can refer to them), so it costs one commit, or none for a pure read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import (
    CallEntry,
    InvocationStatus,
    Table,
    TimerKind,
    TimerRecord,
    WriteBatch,
    dumps,
    dumps_entry,
)

from ._errors import PersistenceError, TerminalError
from ._kernel import logger
from ._results import failure
from ._rows import journal_key, timer_key

if TYPE_CHECKING:
    from actors.storage import CommitTicket, Outcome

    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._recommit import Recommits
    from ._scheduler import Scheduler
    from ._timers import Timers


class Completions:
    """Builds and queues completion batches; delivers what a durable one leaves to do."""

    def __init__(
        self,
        kernel: Kernel,
        output: OutputGate,
        recommits: Recommits,
        scheduler: Scheduler,
        timers: Timers,
    ) -> None:
        self._k = kernel
        self._output = output
        self._recommits = recommits
        self._scheduler = scheduler
        self._watchers = kernel.call_watchers
        self._timers = timers
        self._clock = kernel.clock
        self._retention = kernel.retention

    @staticmethod
    def is_ephemeral(inv: Invocation) -> bool:
        """A ``call`` that never recorded anything: nobody can attach to it and no
        journal refers to it, so its completion needs no record."""
        return inv.inbox_key is None and inv.caller_id is None and inv.idempotency_key is None

    def is_pure_read(self, inv: Invocation) -> bool:
        """An ephemeral call that wrote nothing and asked for no effect (a call, a send,
        a completion, a cancel left un-awaited: invariant 14): completing it needs no
        commit at all."""
        return (  # (is_ephemeral's test, without its call: asked on every call)
            inv.inbox_key is None
            and inv.caller_id is None
            and inv.idempotency_key is None
            and not inv.writes
            and not inv.cleared_all
            and not inv.pending_ops
            and not inv.pending_effects
        )

    def submit(
        self, inv: Invocation, outcome: Outcome, status: InvocationStatus
    ) -> tuple[CommitTicket | None, Outcome]:
        """Queue the completion: remaining entries and writes, the completed record (which
        is also the acceptance of a call never flushed before), the inbox deletion and
        the caller's journal entry, in one batch.

        Returns its ticket and the outcome it records, which is the one every caller is
        told. When the step's buffered work and the completion do not fit one batch, the
        buffered work goes first, on its own (a durable step, as at a ``ctx.run``); an
        outcome that does not fit the record even then is recorded as a 413 failure
        instead, and buffered work that fits no batch is dropped with it. The ticket is
        None (and ``inv.error`` says why) when not even that could be queued."""
        for _ in range(3):
            try:
                return self._queue_completion(inv, outcome, status), outcome
            except TerminalError as exc:
                too_large = exc
            if inv.has_buffered():
                try:
                    self._output.flush(inv)  # the step's own work first: then try again
                    continue
                except TerminalError as exc:
                    too_large = exc
                    self._drop_buffered(inv)
            outcome = failure(too_large)
        try:
            return self._queue_completion(inv, outcome, status), outcome
        except TerminalError as exc:
            inv.error = PersistenceError(f"cannot complete invocation {inv.invocation_id}: {exc}")
            logger.error("%s", inv.error)
            return None, outcome

    def _drop_buffered(self, inv: Invocation) -> None:
        """Forget the attempt's buffered work (no batch can hold it), with the calls it
        made but had not delivered, and their workflow claims."""
        for callee in inv.drop_buffered():
            if callee.spec.kind == "main" and callee.target.key is not None:
                claim = (callee.target.actor, callee.target.key)
                if self._k.workflow_claims.get(claim) == callee.invocation_id:
                    del self._k.workflow_claims[claim]
            elif callee.idempotency_key is not None:
                inflight = self._k.idempotency_inflight.get(callee.idempotency_key)
                if inflight is not None and inflight[1] == callee.invocation_id:
                    del self._k.idempotency_inflight[callee.idempotency_key]

    def _queue_completion(
        self, inv: Invocation, outcome: Outcome, status: InvocationStatus
    ) -> CommitTicket:
        """Submit the completion batch for ``outcome``; ``TerminalError`` (413) when it
        cannot be stored, with nothing queued."""
        # A plain ``call`` that recorded nothing before completing leaves no history
        # (as in Restate, completed invocations are kept only when someone can refer to
        # them: sends, idempotent requests, calls between actors). Its journal is moot.
        ephemeral = self.is_ephemeral(inv)
        if ephemeral or (status is InvocationStatus.KILLED and self._output.chain_broken(inv)):
            # Ephemeral: its journal is moot. Killed on a chain that failed: what it did
            # may rest on writes that were lost, and its record must be safe to commit
            # again (``_recommit``): it ends with nothing of its last attempt.
            if inv.unflushed:
                inv.unflushed = []
            if not ephemeral:
                inv.writes = {}
                inv.cleared_all = False
        batch = WriteBatch()
        if not ephemeral:
            now = self._clock.now()
            record = inv.record_bytes(status, outcome, now)
            batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), record)
            # The handler's own retention (decorator or class keyword), else the runtime's.
            retention = inv.spec.retention
            expire_at = now + (self._retention if retention is None else retention)
            expiry = timer_key(expire_at, inv.invocation_id, TimerKind.EXPIRE, 0)
            batch.put(
                Table.TIMERS,
                expiry,
                dumps(TimerRecord(TimerKind.EXPIRE, inv.invocation_id, expire_at)),
            )
            inv.expiry = (expire_at, expiry)
        for row in inv.timer_keys or ():  # sleeps that never fired (a lost select)
            batch.delete(Table.TIMERS, row)
        if inv.inbox_key is not None:
            batch.delete(Table.INBOX, inv.inbox_key)
        if inv.caller_id is not None and inv.caller_index is not None:
            entry = CallEntry(inv.invocation_id, inv.target, inv.payload, outcome)
            batch.put(
                Table.JOURNAL, journal_key(inv.caller_id, inv.caller_index), dumps_entry(entry)
            )
        on_done = self._recommits.on_done(inv)  # a failure joins its key's queue
        ticket = self._output.flush(inv, batch, accept=False, completion=True, on_done=on_done)
        assert ticket is not None
        return ticket

    def after(self, inv: Invocation) -> None:
        """The completion is durable: deliver calls it left undelivered, schedule its
        expiry and wake its caller."""
        if inv.pending_calls:
            for callee in inv.pending_calls:
                self._scheduler.dispatch(callee)
                if callee.idempotency_key is not None:  # its key's row is durable now
                    self._k.idempotency_inflight.pop(callee.idempotency_key, None)
            inv.pending_calls = []
        if inv.pending_effects:  # journaled effects (invariant 14): durable now
            inv.settle_effects()
        if inv.expiry is not None and inv.expiry[0] <= self._timers.loaded_until:
            # Later expiries are loaded from the timers table when their window comes.
            self._timers.schedule(inv.expiry[0], TimerKind.EXPIRE, inv.invocation_id, inv.expiry[1])
        if inv.caller_id is not None:
            self._scheduler.wake(inv.caller_id)
        if self._watchers:  # callers waiting on it that it does not complete into
            for waiter in self._watchers.pop(inv.invocation_id, ()):
                self._scheduler.wake(waiter)
