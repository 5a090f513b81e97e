"""Named signals of one invocation: ``ctx.signal(name)``, completed by whoever knows the
invocation's id (``ctx.resolve_signal``, ``rt.resolve_signal`` and their ``reject_``).

A signal is a durable promise scoped to an invocation rather than to a workflow id. Its
row lives in the ``promises`` table under ``("", invocation id, name)``: no actor has an
empty name (``_definitions`` refuses one), so a signal's row never meets a workflow's
promise, and the invocation's rows are one prefix, removed with it when its retention
ends (``_retention``). Reusing the table rather than adding one keeps the store's
schema as it is.

The rules are the promises' (invariant 8), per invocation:

* A signal completes once; a second completion is refused with 409 and changes nothing.
  It is durable before its completion returns, so one sent before the invocation waits
  for it is kept, and the waiter is woken (rebuilt by replay if it was parked).
* The waiter journals what it received (``SignalEntry``), so a replay returns the same
  value without reading the row again; waiting on the same name twice returns the same
  value twice.
* A completion addressed to an invocation that does not exist (404) or has finished
  (409) is refused: nobody would ever read it.
* A completion made by a handler is journaled in call order (``ResolveEntry``, target
  ``signal:ID/NAME``) with its refusal if it was refused, as an awakeable's is
  (``SignalOps.journaled_completion``): a replay neither sends it twice nor changes its
  answer.

A signal that lands while its invocation is completing (checked, then finished before
the signal's commit) is never read; its row goes with the invocation's retention.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from actors.storage import (
    PromiseRecord,
    SignalEntry,
    StorageError,
    Table,
    WriteBatch,
    dumps,
    loads,
)

from ._control_flow import check_usable
from ._errors import BadArgumentError, TerminalError, persistence_error
from ._futures import DurableFuture, settled
from ._invocation import ROW_OVERHEAD, Effect
from ._limits import MAX_KEY_BYTES, check_name, utf8_size
from ._ops_signals import _outcome_of
from ._results import decode_outcome, outcome_size
from ._rows import SIGNAL_SCOPE, signal_key

if TYPE_CHECKING:
    from actors.storage import Outcome

    from ._effects import Journaled
    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._ops_signals import SignalOps
    from ._scheduler import Scheduler
    from ._waits import Waits


def _check_signal_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise BadArgumentError("a signal needs a non-empty str name")
    return check_name(name, "signal name")


def _check_target(invocation_id: object, name: object) -> tuple[str, str]:
    """The invocation id and signal name of a completion, checked (400 for a wrong type
    or bad text; 404 for an id longer than any invocation id)."""
    if not isinstance(invocation_id, str):
        raise BadArgumentError(f"invocation ids are str, not {type(invocation_id).__name__}")
    if not invocation_id.isascii():
        utf8_size(invocation_id, "invocation id")
    if not invocation_id or len(invocation_id) > MAX_KEY_BYTES:
        raise TerminalError(f"no invocation {invocation_id[:MAX_KEY_BYTES]!r}", 404)
    return invocation_id, _check_signal_name(name)


class InvocationSignals:
    """``ctx.signal`` and the completion of an invocation's signals, from a handler or
    from outside (``Runtime.resolve_signal`` / ``Runtime.reject_signal``)."""

    def __init__(
        self,
        kernel: Kernel,
        output: OutputGate,
        scheduler: Scheduler,
        waits: Waits,
        signals: SignalOps,
    ) -> None:
        self._k = kernel
        self._output = output
        self._scheduler = scheduler
        self._waits = waits
        self._signals = signals
        self._store = kernel.store
        #: Rows whose completion is being committed: a second one is refused meanwhile.
        self.inflight: set[bytes] = set()

    def _stored(self, row: bytes) -> Outcome | None:
        try:
            data = self._store.get(Table.PROMISES, row)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        return None if data is None else loads(PromiseRecord, data).outcome

    def signal(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]:
        check_usable("ctx.signal()")
        _check_signal_name(name)
        what = f"value of signal {name!r} of {inv.invocation_id}"
        index, recorded = inv.reserve(SignalEntry, name, f"signal({name!r})")
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            return settled(self._waits, inv, lambda: decode_outcome(outcome, annotation, what))
        row = signal_key(inv.invocation_id, name)

        def ready() -> bool:
            return self._stored(row) is not None

        async def produce() -> Any:
            outcome = self._stored(row)
            if outcome is None:
                # Its completion wakes the invocation by id: no waiter list needed.
                await self._waits.block(inv, ready)
                outcome = self._stored(row)
                assert outcome is not None
            inv.pending_bytes += outcome_size(outcome)  # journaled with the entry
            inv.record_at(index, SignalEntry(name, outcome))
            return decode_outcome(outcome, annotation, what)

        return DurableFuture._create(self._waits, inv, produce, ready)

    def _completion(
        self, invocation_id: object, name: object, value: object, reason: str | None, code: int
    ) -> tuple[bytes, WriteBatch, str]:
        """Validate a completion; its row, its batch and the target's id. Raises
        ``TerminalError`` 400 (bad arguments), 404 (no such invocation), 409 (finished,
        or the signal was already completed)."""
        invocation_id, checked = _check_target(invocation_id, name)
        record = self._k.load_record(invocation_id)
        if record is None:
            raise TerminalError(f"no invocation {invocation_id!r}", 404)
        if record.outcome is not None:
            raise TerminalError(
                f"invocation {invocation_id} has already completed: nobody would read "
                f"its signal {checked!r}",
                409,
            )
        row = signal_key(invocation_id, checked)
        if row in self.inflight or self._stored(row) is not None:
            raise TerminalError(
                f"signal {checked!r} of invocation {invocation_id} was already completed", 409
            )
        outcome = _outcome_of(value, reason, object, f"value of signal {checked!r}", code)
        batch = WriteBatch()
        batch.put(
            Table.PROMISES, row, dumps(PromiseRecord(SIGNAL_SCOPE, invocation_id, checked, outcome))
        )
        return row, batch, invocation_id

    async def complete(
        self,
        inv: Invocation | None,
        invocation_id: str,
        name: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> None:
        """Complete a signal: durable before this returns, then the target is woken.
        ``inv``: the handler completing it (its own writes go first), None from outside."""
        row, batch, target = self._completion(invocation_id, name, value, reason, code)
        self.inflight.add(row)
        try:
            if inv is None:
                await self._k.commit(batch)
            else:
                self._output.flush(inv, batch)
                await self._output.gate(inv)
        finally:
            self.inflight.discard(row)
        self._scheduler.wake(target)

    def ctx_complete(
        self,
        inv: Invocation,
        invocation_id: str,
        name: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Journaled[None]:
        """An effect (invariant 14, ``_effects``): validated and journaled when called,
        delivered (the target woken) once the handler's batch holding it is durable,
        whether or not the result is awaited."""
        check_usable("ctx.resolve_signal()")
        _check_target(invocation_id, name)  # a wrong type fails here, unjournaled
        journal_target = f"signal:{invocation_id}/{name}"

        def complete() -> None:
            row, batch, target = self._completion(invocation_id, name, value, reason, code)
            inv.take_room(batch.nbytes, ROW_OVERHEAD, "ctx.resolve_signal", name)
            self.inflight.add(row)  # until durable: a second one is 409
            inv.pending_ops.extend(batch.ops)

            def deliver() -> None:
                self.inflight.discard(row)
                self._scheduler.wake(target)

            inv.add_effect(Effect(deliver, functools.partial(self.inflight.discard, row)))

        return self._signals.journaled_completion(inv, journal_target, complete)
