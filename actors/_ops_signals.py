"""Awakeables and durable promises: values that arrive from outside the invocation.

An awakeable is a journal entry of its owner, with an id that names the entry; whoever
completes it writes the outcome into that entry. A durable promise is a row of its
workflow id (``promises``), completed once (invariant 8): a second completion fails
with 409 and leaves the value unchanged. Completions are durable before they return and
wake the waiters (rebuilding parked ones by replay). A completion made by a handler is
journaled (``ResolveEntry``) in call order, whether or not it is awaited (invariant 14),
with its refusal if it was refused, so a replay neither completes twice nor changes its
answer.
"""

from __future__ import annotations

import base64
import functools
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.storage import (
    AwakeableEntry,
    Failure,
    PromiseEntry,
    PromisePeekEntry,
    PromiseRecord,
    ResolveEntry,
    StorageError,
    Success,
    Table,
    WriteBatch,
    dumps,
    dumps_entry,
    encode_key,
    loads,
    loads_entry,
)

from ._control_flow import Suspended, check_usable
from ._effects import Journaled
from ._errors import BadArgumentError, NonDeterminismError, TerminalError, persistence_error
from ._futures import DurableFuture, settled
from ._invocation import ROW_OVERHEAD, Effect
from ._kernel import logger
from ._limits import MAX_VALUE_BYTES, check_text, check_value
from ._results import decode_outcome, failure, outcome_size
from ._rows import journal_key
from ._serde import encode_value

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.storage import Outcome

    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._scheduler import Scheduler
    from ._waits import Waits

_AWAKEABLE_PREFIX = "awk_"


def _promise_key(actor: str, key: str, name: str) -> bytes:
    return encode_key((actor, key, name))


def _awakeable_id(invocation_id: str, index: int) -> str:
    raw = f"{invocation_id}/{index}".encode()
    return _AWAKEABLE_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _parse_awakeable_id(awakeable_id: object) -> tuple[str, int]:
    """(invocation id, journal index) of an awakeable id; ``ValueError`` if malformed."""
    if not isinstance(awakeable_id, str) or not awakeable_id.startswith(_AWAKEABLE_PREFIX):
        raise ValueError(f"{awakeable_id!r} is not an awakeable id (they start with 'awk_')")
    body = awakeable_id[len(_AWAKEABLE_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        invocation_id, _, index = raw.rpartition("/")
        if not invocation_id.startswith("inv_") or not index.isdigit():
            raise ValueError(raw)
        return invocation_id, int(index)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{awakeable_id!r} is not a well-formed awakeable id") from None


def check_failure_code(code: object) -> int:
    """A rejection's status code: an int from 100 to 999 (what a stored failure holds),
    else ``BadArgumentError`` (400)."""
    if type(code) is not int or not 100 <= code <= 999:
        shown = repr(code) if type(code) is int else type(code).__name__
        raise BadArgumentError(f"a rejection code is an int from 100 to 999, not {shown}")
    return code


def _outcome_of(
    value: object, reason: str | None, annotation: Any, what: str, code: int = 500
) -> Outcome:
    """What completing with ``value`` (or rejecting with ``reason`` and status ``code``)
    stores. An untyped completion converts the value by its own type."""
    if reason is not None:
        if not isinstance(reason, str):
            raise BadArgumentError(f"a rejection reason is a str, not {type(reason).__name__}")
        check_text(reason, "rejection reason", MAX_VALUE_BYTES)
        return Failure(reason, check_failure_code(code))
    if annotation is object and value is not None:
        annotation = type(value)
    data = encode_value(value, annotation, what)
    if len(data) > MAX_VALUE_BYTES:
        check_value(len(data), what)
    return Success(data)


class SignalOps:
    """Awakeables (every context; and ``Runtime.resolve_awakeable``) and durable
    promises (workflow contexts)."""

    def __init__(
        self, kernel: Kernel, output: OutputGate, scheduler: Scheduler, waits: Waits
    ) -> None:
        self._k = kernel
        self._output = output
        self._scheduler = scheduler
        self._waits = waits
        self._store = kernel.store
        self._invocations = kernel.invocations
        self._parked = kernel.parked
        self.promise_waiters: dict[bytes, dict[str, None]] = {}  # ordered sets of ids
        self.promise_inflight: dict[bytes, Outcome] = {}
        self.awakeable_inflight: set[str] = set()

    def awakeable(self, inv: Invocation, annotation: Any) -> tuple[str, DurableFuture[Any]]:
        check_usable("ctx.awakeable()")
        index, recorded = inv.reserve(AwakeableEntry, None, "awakeable()")
        awakeable_id = _awakeable_id(inv.invocation_id, index)
        what = f"value of awakeable {awakeable_id}"
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            return awakeable_id, settled(
                self._waits, inv, lambda: decode_outcome(outcome, annotation, what)
            )
        if recorded is None:
            inv.record_at(index, AwakeableEntry(awakeable_id))
        row = journal_key(inv.invocation_id, index)

        def stored() -> Outcome | None:
            try:
                data = self._store.get(Table.JOURNAL, row)
            except StorageError as exc:
                raise persistence_error(exc) from exc
            entry = loads_entry(data) if data is not None else None
            return entry.outcome if isinstance(entry, AwakeableEntry) else None

        def ready() -> bool:
            return stored() is not None

        async def produce() -> Any:
            await self._waits.block(inv, ready)
            outcome = stored()
            assert outcome is not None
            return decode_outcome(outcome, annotation, what)

        return awakeable_id, DurableFuture._create(self._waits, inv, produce, ready)

    def awakeable_completion(
        self, awakeable_id: str, value: object, reason: str | None, code: int = 500
    ) -> tuple[WriteBatch, str]:
        """Validate a completion of ``awakeable_id``; the batch that records it in its
        owner's journal, and the owner's id. Raises ``TerminalError`` 400/404/409."""
        try:
            owner_id, index = _parse_awakeable_id(awakeable_id)
        except ValueError as exc:
            raise TerminalError(str(exc), 400) from None
        row = journal_key(owner_id, index)
        try:
            data = self._store.get(Table.JOURNAL, row)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        entry = loads_entry(data) if data is not None else None
        if not isinstance(entry, AwakeableEntry) or entry.awakeable_id != awakeable_id:
            raise TerminalError(f"no awakeable {awakeable_id!r}", 404)
        if entry.outcome is not None or awakeable_id in self.awakeable_inflight:
            raise TerminalError(f"awakeable {awakeable_id!r} was already completed", 409)
        outcome = _outcome_of(value, reason, object, f"value of {awakeable_id}", code)
        batch = WriteBatch()
        batch.put(Table.JOURNAL, row, dumps_entry(AwakeableEntry(awakeable_id, outcome)))
        return batch, owner_id

    async def complete_awakeable(
        self,
        inv: None,
        awakeable_id: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> None:
        """``rt.resolve_awakeable`` / ``rt.reject_awakeable`` (``inv`` is None: from
        outside any invocation; handlers use ``ctx_complete_awakeable``): durable before
        it returns."""
        batch, owner_id = self.awakeable_completion(awakeable_id, value, reason, code)
        self.awakeable_inflight.add(awakeable_id)
        try:
            await self._k.commit(batch)
        finally:
            self.awakeable_inflight.discard(awakeable_id)
        self._scheduler.wake(owner_id)

    def ctx_complete_awakeable(
        self,
        inv: Invocation,
        awakeable_id: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Journaled[None]:
        check_usable("ctx.resolve_awakeable()")

        def complete() -> None:
            batch, owner_id = self.awakeable_completion(awakeable_id, value, reason, code)
            inv.take_room(batch.nbytes, ROW_OVERHEAD, "ctx.resolve_awakeable", "")
            self.awakeable_inflight.add(awakeable_id)  # until durable: a second one is 409
            inv.pending_ops.extend(batch.ops)

            def deliver() -> None:
                self.awakeable_inflight.discard(awakeable_id)
                self._scheduler.wake(owner_id)

            inv.add_effect(
                Effect(deliver, functools.partial(self.awakeable_inflight.discard, awakeable_id))
            )

        return self.journaled_completion(inv, f"awakeable:{awakeable_id}", complete)

    def journaled_completion(
        self,
        inv: Invocation,
        target: str,
        complete: Callable[[], None],
        replayed: Callable[[], None] | None = None,
    ) -> Journaled[None]:
        """Complete a promise or awakeable (or cancel an invocation) from a handler, at
        once (invariant 14): ``complete`` validates and buffers the effect. How it went
        is journaled, so a replay neither does it twice nor changes its answer: a
        refusal is raised here, at the call, on every attempt. ``replayed`` runs when
        the journal says it was done (for an effect that is safe to ask for again)."""
        index, recorded = inv.reserve(ResolveEntry, None, f"complete({target!r})")
        if recorded is not None:
            if recorded.target != target:
                raise NonDeterminismError(
                    f"invocation {inv.invocation_id} diverged from its journal at entry "
                    f"{index}: it now completes {target}, but the journal recorded "
                    f"{recorded.target}"
                )
            if recorded.failure is not None:
                failed = recorded.failure
                raise TerminalError(failed.message, failed.status_code, dict(failed.metadata))
            if replayed is not None:
                replayed()
            return Journaled(None, inv, None)
        inv.record_at(index, ResolveEntry(target))
        try:
            complete()
        except TerminalError as exc:
            if exc.status_code not in (400, 404, 409, 413):
                raise
            # Deterministic refusals are answers: journal them (nothing was buffered).
            inv.pending_bytes += len(exc.message)
            inv.record_at(index, ResolveEntry(target, failure(exc)))
            raise
        return Journaled(self._output, inv, None)

    def wake_promise_waiters(
        self, row: bytes, actor: str, key: str, outcome: Outcome | None = None
    ) -> None:
        """The promise ``row`` of workflow ``actor``/``key`` is durably completed (with
        ``outcome``, if the caller has it): wake each of its waiters once, and nothing
        else.

        Live waiters are registered in memory (``promise_waiters``). A suspended one
        left that registry while it unwound, and once parked the parked index records
        the promises it waits on (``ParkedInvocations.waits_on``). Every waiter is an
        unfinished invocation of that workflow id, so it has an inbox row under
        ``(actor, key)``: of those, a parked one is revived only if it waits on
        ``row``, and one still in memory (unwinding to park right now) is told, as any
        wake-up, so that it runs again instead of parking on a promise now complete."""
        woken = self.promise_waiters.pop(row, {})
        for waiter in woken:
            self._scheduler.wake(waiter)
        try:
            rows = self._store.scan(Table.INBOX, encode_key((actor, key)), children=True)
        except StorageError as exc:
            # The completion is durable; only the waking failed (the store broke). A
            # parked waiter is woken by the next open's recovery, which replays them all.
            logger.error("cannot list the waiters of a completed promise: %s", exc)
            return
        parked = self._parked
        # A revived waiter replays its wait: hand it the outcome rather than have it
        # read the row back (completed once: it holds just this).
        promise = None if outcome is None else (row, outcome)
        for inbox_key, raw_id in rows:
            waiter = raw_id.decode()
            if waiter in woken:
                continue
            if waiter in self._invocations or parked.waits_on(waiter, row):
                self._scheduler.wake(waiter, inbox_key, promise)  # a revive reads no other row

    def promise_row(self, inv: Invocation, name: str) -> tuple[bytes, str]:
        key = inv.target.key
        assert key is not None
        return _promise_key(inv.target.actor, key, name), f"{inv.target.actor}/{key}"

    def stored_promise(self, row: bytes) -> Outcome | None:
        try:
            data = self._store.get(Table.PROMISES, row)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        return None if data is None else loads(PromiseRecord, data).outcome

    def promise_value(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]:
        check_usable("promise.value()")
        row, where = self.promise_row(inv, name)
        what = f"value of promise {name!r} of {where}"
        index, recorded = inv.reserve(PromiseEntry, name, f"promise({name!r}).value()")
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            return settled(self._waits, inv, lambda: decode_outcome(outcome, annotation, what))
        # Partials, not closures: a revived waiter asks once per resolution, and a
        # closure's cells, tuple and function are each a container for the collector.
        return DurableFuture._create(
            self._waits,
            inv,
            functools.partial(self._produce_value, inv, row, index, name, annotation, what),
            functools.partial(self._promise_ready, row),
        )

    def _promise_ready(self, row: bytes) -> bool:
        return self.stored_promise(row) is not None

    async def _produce_value(
        self, inv: Invocation, row: bytes, index: int, name: str, annotation: Any, what: str
    ) -> Any:
        """``promise_value``'s wait: the stored outcome, once there, journaled."""
        revived_by = inv.revived_by
        if revived_by is not None and revived_by[0] == row:
            outcome: Outcome | None = revived_by[1]  # durable: what revived it
        else:
            outcome = self.stored_promise(row)
        if outcome is None:
            waiters = self.promise_waiters.setdefault(row, {})
            waiters[inv.invocation_id] = None
            try:
                await self._waits.block(inv, functools.partial(self._promise_ready, row))
            except Suspended:
                # Parked from now on: the parked index keeps what it waits on, and
                # the resolution finds it there (``wake_promise_waiters``).
                waiters.pop(inv.invocation_id, None)
                if not waiters and self.promise_waiters.get(row) is waiters:
                    del self.promise_waiters[row]
                if inv.promises_waited is None:
                    inv.promises_waited = [row]
                else:
                    inv.promises_waited.append(row)
                raise
            outcome = self.stored_promise(row)
            assert outcome is not None
        inv.pending_bytes += outcome_size(outcome)  # journaled with the entry
        inv.record_at(index, PromiseEntry(name, outcome))
        return decode_outcome(outcome, annotation, what)

    async def promise_peek(self, inv: Invocation, name: str, annotation: Any) -> Any:
        check_usable("promise.peek()")
        row, where = self.promise_row(inv, name)
        recorded = inv.next_replayed(PromisePeekEntry, name, f"promise({name!r}).peek()")
        if recorded is not None:
            outcome = recorded.outcome
        else:
            outcome = self.stored_promise(row)
            if outcome is not None:
                inv.pending_bytes += outcome_size(outcome)  # journaled with the entry
            inv.append(PromisePeekEntry(name, outcome))
        await anyio.lowlevel.checkpoint()
        if outcome is None:
            return None
        return decode_outcome(outcome, annotation, f"value of promise {name!r} of {where}")

    def promise_complete(
        self,
        inv: Invocation,
        name: str,
        annotation: Any,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Journaled[None]:
        check_usable("promise.resolve()")
        row, where = self.promise_row(inv, name)
        complete = functools.partial(
            self._complete_promise, inv, row, where, name, annotation, value, reason, code
        )
        return self.journaled_completion(inv, f"promise:{name}", complete)

    def _complete_promise(
        self,
        inv: Invocation,
        row: bytes,
        where: str,
        name: str,
        annotation: Any,
        value: object,
        reason: str | None,
        code: int,
    ) -> None:
        """``promise_complete``'s effect: validated and buffered, delivered once durable."""
        if self.promise_inflight.get(row) is not None or self.stored_promise(row):
            raise TerminalError(f"promise {name!r} of {where} was already completed", 409)
        outcome = _outcome_of(value, reason, annotation, f"value of promise {name!r}", code)
        actor, key = inv.target.actor, inv.target.key
        assert key is not None
        batch = WriteBatch()
        record = PromiseRecord(actor, key, name, outcome)
        batch.put(Table.PROMISES, row, dumps(record))
        inv.take_room(batch.nbytes, ROW_OVERHEAD, "promise.resolve", name)
        self.promise_inflight[row] = outcome  # until durable: a second one is 409
        inv.pending_ops.extend(batch.ops)
        inv.add_effect(
            Effect(
                functools.partial(self._promise_delivered, row, actor, key),
                functools.partial(self._promise_dropped, row),
            )
        )

    def _promise_delivered(self, row: bytes, actor: str, key: str) -> None:
        outcome = self.promise_inflight.pop(row, None)
        self.wake_promise_waiters(row, actor, key, outcome)

    def _promise_dropped(self, row: bytes) -> None:
        self.promise_inflight.pop(row, None)
