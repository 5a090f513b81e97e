"""``ctx.cancel_invocation`` and ``ctx.attach_invocation``: acting on another invocation
by its id, from a handler.

A cancel is an effect (invariant 14): validated and journaled (a ``ResolveEntry``
``cancel:ID``) when called, and requested once the batch holding that entry is durable
(the output gate), whether or not it is awaited. A refusal (no such invocation: 404; it
already completed: 409) is journaled too and raised at the call, so a replay gives the
same answer. A cancel request is idempotent (``_control``: asking again changes
nothing), so a replay that finds the cancel journaled asks again, quietly: a crash
between the durable entry and the request then loses nothing.

An attach waits, as a durable await, for another invocation's result and journals it
(``AttachEntry``), so a replay returns the recorded result without waiting again, even
after the attached invocation expired. Waiting edges go into the wait-for graph like a
call's (an exclusive or workflow target waits on its key), so an attach that would wait
for itself, or for an invocation that waits on it (directly or by its key), fails at once
with ``DeadlockError`` (invariant 12). Whoever completes the attached invocation wakes
the attachers that gave up their coroutine (``Kernel.call_watchers``, as for a call
answered by an invocation it did not start).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.storage import AttachEntry, CallEntry, SendEntry

from ._control_flow import Suspended, check_usable
from ._errors import (
    BadArgumentError,
    DeadlockError,
    NonDeterminismError,
    PersistenceError,
    TerminalError,
)
from ._futures import DurableFuture, settled
from ._invocation import Effect
from ._ops_calls import CallOps
from ._results import decode_outcome, outcome_size

if TYPE_CHECKING:
    from actors.storage import Outcome, Target

    from ._definitions import Handler
    from ._effects import Journaled
    from ._invocation import Invocation
    from ._ops_signals import SignalOps
    from ._waits import Waits


def _check_id(invocation_id: object, operation: str) -> str:
    if not isinstance(invocation_id, str):
        raise BadArgumentError(
            f"{operation} takes an invocation id (a str), not {type(invocation_id).__name__}"
        )
    if not invocation_id.startswith("inv_"):
        raise TerminalError(f"{invocation_id!r} is not an invocation id", 400)
    return invocation_id


class HandleOps:
    """Cancel and attach another invocation by id, from a handler."""

    def __init__(self, calls: CallOps, waits: Waits, signals: SignalOps) -> None:
        # An extension of the call family (``Operations`` builds it): it shares its parts,
        # and gives call futures and send handles their ``cancel``.
        kernel = calls.kernel
        self._k = kernel
        self._output = calls.output
        self._waits = waits
        self._signals = signals
        self._calls = calls
        self._resolver = calls.resolver
        calls.cancel_invocation = self.cancel_invocation
        self._graph = kernel.graph
        self._invocations = kernel.invocations
        self._parked = kernel.parked
        self._watchers = kernel.call_watchers

    # --- cancel --------------------------------------------------------------------

    def cancel_invocation(self, inv: Invocation, invocation_id: str) -> Journaled[None]:
        check_usable("ctx.cancel_invocation()")
        invocation_id = _check_id(invocation_id, "ctx.cancel_invocation()")

        def request() -> None:
            self._waits.cancel_later(invocation_id)

        def remember() -> None:
            if inv.requested_cancels is None:
                inv.requested_cancels = [invocation_id]
            else:
                inv.requested_cancels.append(invocation_id)

        def complete() -> None:
            self._check_cancellable(inv, invocation_id)
            remember()
            inv.add_effect(Effect(request, None))  # asked for once the entry is durable

        def replayed() -> None:  # journaled before: ask again, it may have been lost
            remember()
            request()

        return self._signals.journaled_completion(
            inv, f"cancel:{invocation_id}", complete, replayed=replayed
        )

    def _check_cancellable(self, inv: Invocation, invocation_id: str) -> None:
        """Refuse, with the answer ``rt.cancel`` would give, a cancel that cannot be
        done: 404 for an id nobody accepted, 409 for one that already completed."""
        target = self._invocations.get(invocation_id)
        if target is not None:
            if target.done.finished:
                raise TerminalError(f"invocation {invocation_id} has already completed", 409)
            return
        if invocation_id in self._parked or self._own_callee(inv, invocation_id):
            return
        record = self._k.load_record(invocation_id)
        if record is None:
            raise TerminalError(f"no invocation {invocation_id!r}", 404)
        if record.outcome is not None:
            raise TerminalError(f"invocation {invocation_id} has already completed", 409)

    async def settle_cancels(self, inv: Invocation) -> None:
        """Before ``inv`` completes: make its cancel requests durable. Its journal says
        they were asked for, but a completed invocation is never replayed, so a crash
        between its completion and a request would lose the request; asking again is
        a no-op for a request already made (or an invocation already finished)."""
        await self._output.gate(inv)  # its entries first (the output gate), then ask
        cancels, inv.requested_cancels = inv.requested_cancels, None
        for invocation_id in cancels or ():
            await self._k.cancel_quietly(invocation_id)

    @staticmethod
    def _own_callee(inv: Invocation, invocation_id: str) -> bool:
        """Whether ``inv`` itself called or sent ``invocation_id`` in this attempt (it
        may not be delivered yet: the batch accepting it is still buffered)."""
        entries = [entry for _, entry in inv.unflushed]
        return any(
            isinstance(entry, (CallEntry, SendEntry)) and entry.callee_id == invocation_id
            for entry in entries
        )

    # --- attach --------------------------------------------------------------------

    def attach_invocation(
        self, inv: Invocation, invocation_id: str, annotation: Any
    ) -> DurableFuture[Any]:
        check_usable("ctx.attach_invocation()")
        invocation_id = _check_id(invocation_id, "ctx.attach_invocation()")
        what = f"output of invocation {invocation_id}"
        index, recorded = inv.reserve(AttachEntry, None, f"attach_invocation({invocation_id!r})")
        if recorded is not None and recorded.invocation_id != invocation_id:
            raise NonDeterminismError(
                f"invocation {inv.invocation_id} diverged from its journal at entry {index}: "
                f"it now attaches to {invocation_id}, but the journal recorded an attach "
                f"to {recorded.invocation_id}"
            )
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            if annotation is None:
                annotation = self._output_type(inv, invocation_id)
            return settled(
                self._waits, inv, functools.partial(decode_outcome, outcome, annotation, what)
            )
        spec, target = self._spec_and_target(inv, invocation_id)
        if annotation is None:
            annotation = spec.output_type
        waited = CallOps.wait_node(spec, target, invocation_id)
        if invocation_id == inv.invocation_id:
            raise DeadlockError(
                f"deadlock: invocation {invocation_id} ({inv.spec.qualname}) attaches to "
                "itself, which would wait forever"
            )
        cycle = self._graph.find_cycle(("inv", inv.invocation_id), waited)
        if cycle is not None:
            raise DeadlockError(
                f"deadlock: attaching invocation {invocation_id} ({spec.qualname}) from "
                f"{inv.spec.qualname} would wait forever: {self._calls.describe_cycle(cycle)}"
            )
        if recorded is None:
            inv.record_at(index, AttachEntry(invocation_id))

        async def produce() -> Any:
            await self._output.gate(inv)  # what it sent before is delivered first
            outcome = await self._wait_outcome(inv, invocation_id, waited)
            inv.pending_bytes += outcome_size(outcome)  # journaled with the entry
            inv.record_at(index, AttachEntry(invocation_id, outcome))
            return decode_outcome(outcome, annotation, what)

        def ready() -> bool:
            done = self._k.completion_of(invocation_id)
            return done is not None and done.finished

        return DurableFuture._create(self._waits, inv, produce, ready)

    def _spec_and_target(
        self, inv: Invocation, invocation_id: str
    ) -> tuple[Handler[Any, Any], Target]:
        """The handler and target of the invocation to attach; a 404 ``TerminalError``
        for an id nobody accepted (or that expired)."""
        held = self._invocations.get(invocation_id)
        if held is not None:
            return held.spec, held.target
        for _, entry in inv.unflushed:  # called or sent, not delivered yet
            if isinstance(entry, (CallEntry, SendEntry)) and entry.callee_id == invocation_id:
                target = entry.target
                _, spec, _ = self._resolver.resolve_name(target.actor, target.handler, target.key)
                return spec, target
        record = self._k.load_record(invocation_id)
        if record is None:
            raise TerminalError(f"no invocation {invocation_id!r}", 404)
        return self._resolver.spec_of(record), record.target

    def _output_type(self, inv: Invocation, invocation_id: str) -> Any:
        """The output type of the attached handler, to decode a journaled result; the
        stored form (``object``) if its record expired since."""
        try:
            spec, _ = self._spec_and_target(inv, invocation_id)
        except TerminalError:
            return object
        return spec.output_type

    async def _wait_outcome(self, inv: Invocation, invocation_id: str, waited: Any) -> Outcome:
        waiter = ("inv", inv.invocation_id)
        self._graph.wait(waiter, waited)
        watchers = self._watchers.setdefault(invocation_id, set())
        watchers.add(inv.invocation_id)
        suspended = False
        try:
            done = self._k.completion_of(invocation_id)
            if done is not None:
                done.waiters += 1  # from here: the target may park while ``block`` gates
                try:
                    await self._waits.block(inv, done.is_set, done.wait)
                finally:
                    done.waiters -= 1
                if done.error is not None:
                    raise done.error
                if done.outcome is not None:
                    return done.outcome
            else:
                await anyio.lowlevel.checkpoint()
            record = self._k.load_record(invocation_id)
            if record is None:
                raise TerminalError(f"no invocation {invocation_id!r} (it expired)", 404)
            if record.outcome is None:
                raise PersistenceError(
                    f"invocation {inv.invocation_id} attaches to {invocation_id}, which "
                    "is neither running nor completed"
                )
            return record.outcome
        except Suspended:
            suspended = True  # it stays an attacher: the completion wakes it
            raise
        finally:
            self._graph.unwait(waiter, waited)
            if not suspended:
                watchers.discard(inv.invocation_id)
                if not watchers and self._watchers.get(invocation_id) is watchers:
                    del self._watchers[invocation_id]
