"""``ctx.call`` and ``ctx.send``: invocations made by invocations.

A callee's id is derived from the caller's id and the journal index of the call, so a
re-executed handler never delivers the same call twice (a replayed ``send`` answers
``PreviouslyAccepted``). A call's acceptance rides in the caller's next batch and the
callee is delivered once that batch is durable (a delivered call is an effect: the
output gate). A callee's completion is written into the caller's journal in the same
transaction that completes the callee (``Completions.submit``).

Deadlocks: the wait-for graph (``_deadlock``) has an edge from every invocation to the
key (exclusive callee) or invocation (shared or service callee) it waits on, and from
every key to the invocation holding it. A call that would close a cycle fails at once
with ``DeadlockError`` (invariant 12), before the callee exists.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.storage import CallEntry, InvocationStatus, SendEntry, TimerKind, WriteBatch

from ._control_flow import check_usable
from ._effects import Journaled
from ._errors import DeadlockError, NonDeterminismError, PersistenceError, TerminalError
from ._futures import DurableCallFuture, settled
from ._invocation import ENTRY_OVERHEAD, RECORD_OVERHEAD, ROW_OVERHEAD, Effect
from ._resolution import delay_seconds
from ._results import InvocationHandle, decode_outcome
from ._util import derived_invocation_id

#: A call's acceptance in its caller's batch: the callee's record, inbox row and (for a
#: workflow run) its workflow row, besides the caller's journal entry.
_ACCEPTANCE_OVERHEAD = ENTRY_OVERHEAD + RECORD_OVERHEAD + 3 * ROW_OVERHEAD

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import timedelta

    from actors.storage import Target

    from ._admission import Admission
    from ._deadlock import Node
    from ._definitions import Handler
    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._resolution import Resolver
    from ._results import InvocationStatusName, Results
    from ._scheduler import Scheduler
    from ._timers import Timers
    from ._waits import Waits


def _not_wired(caller: Invocation, invocation_id: str) -> Awaitable[None]:
    raise AssertionError("CallOps.cancel_invocation was not wired")  # pragma: no cover


class CallOps:
    """``ctx.call`` and ``ctx.send`` for every kind of context."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        order: KeyOrder,
        resolver: Resolver,
        admission: Admission,
        output: OutputGate,
        scheduler: Scheduler,
        timers: Timers,
        results: Results,
        waits: Waits,
    ) -> None:
        self._k = kernel
        self._order = order
        self._resolver = resolver
        self._admission = admission
        self._output = output
        self._scheduler = scheduler
        self._timers = timers
        self._results = results
        self._waits = waits
        self._graph = kernel.graph
        self._invocations = kernel.invocations
        self._workflow_claims = kernel.workflow_claims
        #: ``ctx.cancel_invocation`` (``_ops_handles``, wired later: it is built on
        #: this module), what the handles of calls and sends cancel with.
        self.cancel_invocation: Callable[[Invocation, str], Awaitable[None]] = _not_wired

    def call(
        self, caller: Invocation, target: Handler[Any, Any], arg: object, key: str | None
    ) -> DurableCallFuture[Any]:
        check_usable("ctx.call()")
        entry, spec, tgt = self._resolver.resolve_in_handler(target, key)
        what = f"output of {spec.qualname}"
        index, recorded = caller.reserve(CallEntry, None, f"call({spec.qualname})")
        if recorded is not None:
            if recorded.target != tgt:
                raise NonDeterminismError(
                    f"invocation {caller.invocation_id} diverged from its journal at entry "
                    f"{index}: it now calls {spec.qualname} on {tgt.key!r}, but "
                    f"the journal recorded a call to {recorded.target.actor}."
                    f"{recorded.target.handler} on {recorded.target.key!r}"
                )
            if recorded.outcome is not None:
                outcome = recorded.outcome
                done = settled(
                    self._waits,
                    caller,
                    lambda: decode_outcome(outcome, spec.output_type, what),
                    DurableCallFuture,
                )
                assert isinstance(done, DurableCallFuture)
                done._callee_id = recorded.callee_id
                done._cancel_op = functools.partial(self.cancel_invocation, caller)
                return done
            callee_id = recorded.callee_id
        else:
            payload, value = self._resolver.check_input_in_handler(spec, arg)
            # The argument rides in the caller's journal entry and, for a new callee, in
            # its record: both in the caller's next batch.
            entry_bytes = len(payload) + _target_size(tgt)
            callee_id = derived_invocation_id(caller.invocation_id, index)
            existing = None
            if spec.kind == "main":
                assert tgt.key is not None
                existing = self._admission.workflow_invocation(tgt.actor, tgt.key)
            if existing == caller.invocation_id:
                raise DeadlockError(
                    f"deadlock: {caller.spec.qualname} on {tgt.key!r} calls its own workflow "
                    "run, which would wait for itself forever"
                )
            if existing is not None and existing != callee_id:
                callee_id = existing  # the workflow already ran (or runs): wait for it
                waited = self.wait_node(spec, tgt, callee_id)
                cycle = self._graph.find_cycle(("inv", caller.invocation_id), waited)
                if cycle is not None:
                    raise DeadlockError(
                        f"deadlock: call of workflow run {tgt.actor}/{tgt.key} from "
                        f"{caller.spec.qualname} would wait forever: {self.describe_cycle(cycle)}"
                    )
                caller.take_room(entry_bytes, ENTRY_OVERHEAD, "ctx.call", spec.qualname)
            else:
                waited = self.wait_node(spec, tgt, callee_id)
                cycle = self._graph.find_cycle(("inv", caller.invocation_id), waited)
                if cycle is not None:
                    raise DeadlockError(
                        f"deadlock: exclusive call {spec.qualname} on key {tgt.key!r} from "
                        f"{caller.spec.qualname} would wait forever: {self.describe_cycle(cycle)}"
                    )
                caller.take_room(2 * entry_bytes, _ACCEPTANCE_OVERHEAD, "ctx.call", spec.qualname)
                # The edge counts from now on, so a call created meanwhile sees the cycle.
                self._graph.wait(("inv", caller.invocation_id), waited)
                callee = self._resolver.new_invocation(
                    entry,
                    spec,
                    tgt,
                    payload,
                    value,
                    invocation_id=callee_id,
                    caller_id=caller.invocation_id,
                    caller_index=index,
                )
                acceptance = WriteBatch()
                self._order.add_acceptance(callee, acceptance, InvocationStatus.PENDING)
                caller.pending_ops.extend(acceptance.ops)
                caller.pending_calls.append(callee)  # delivered once the acceptance is durable
                self._admission.claim_workflow(callee)
            caller.record_at(index, CallEntry(callee_id, tgt, payload))

        async def produce() -> Any:
            await self._output.gate(caller)  # delivering the call is an effect
            return await self.wait_invocation(caller, callee_id, spec, tgt)

        def ready() -> bool:
            done = self._k.completion_of(callee_id)
            return done is not None and done.finished

        future: DurableCallFuture[Any] = DurableCallFuture._create(
            self._waits, caller, produce, ready
        )
        future._callee_id = callee_id
        future._cancel_op = functools.partial(self.cancel_invocation, caller)
        return future

    @staticmethod
    def wait_node(spec: Handler[Any, Any], target: Target, callee_id: str) -> Node:
        if spec.kind in ("exclusive", "main"):
            return ("key", f"{target.actor}/{target.key}")
        return ("inv", callee_id)

    async def wait_invocation(
        self, caller: Invocation, callee_id: str, spec: Handler[Any, Any], target: Target
    ) -> Any:
        waiter: Node = ("inv", caller.invocation_id)
        waited = self.wait_node(spec, target, callee_id)
        self._graph.wait(waiter, waited)
        caller.awaiting_calls.add(callee_id)
        try:
            done = self._k.completion_of(callee_id)
            if done is None:
                record = self._k.load_record(callee_id)
                if record is not None and record.outcome is not None:
                    await anyio.lowlevel.checkpoint()
                    what = f"output of {spec.qualname}"
                    return decode_outcome(record.outcome, spec.output_type, what)
                raise PersistenceError(
                    f"invocation {caller.invocation_id} waits on call {callee_id}, "
                    "which is neither running nor completed"
                )
            await self._waits.block(caller, done.is_set, done.wait)
            return self._results.completed_result(done, callee_id, spec)
        finally:
            self._graph.unwait(waiter, waited)
            caller.awaiting_calls.discard(callee_id)

    def send(
        self,
        caller: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
    ) -> InvocationHandle:
        """Journal a send at once (invariant 14, ``_effects``): the callee's acceptance
        rides in the caller's next batch and it is delivered once that is durable,
        whether or not the handle is awaited. Every refusal is raised here."""
        check_usable("ctx.send()")
        entry, spec, tgt = self._resolver.resolve_in_handler(target, key)
        recorded = caller.next_replayed(SendEntry, None, f"send({spec.qualname})")
        if recorded is not None:
            own = derived_invocation_id(caller.invocation_id, caller.index - 1)
            status: InvocationStatusName = (
                "Accepted" if recorded.callee_id == own else "PreviouslyAccepted"
            )
            return self._handle(caller, recorded.callee_id, status, spec, None)
        payload, value = self._resolver.check_input_in_handler(spec, arg)
        entry_bytes = len(payload) + _target_size(tgt)
        try:
            seconds = delay_seconds(delay)
        except (ValueError, TypeError) as exc:
            raise TerminalError(str(exc), 400) from exc
        index = caller.index
        callee_id = derived_invocation_id(caller.invocation_id, index)
        durable = Journaled(self._output, caller, None)
        if spec.kind == "main":
            assert tgt.key is not None
            existing = self._admission.workflow_invocation(tgt.actor, tgt.key)
            if existing is not None and existing != callee_id:
                caller.take_room(entry_bytes, ENTRY_OVERHEAD, "ctx.send", spec.qualname)
                caller.append(SendEntry(existing, tgt, payload))
                return self._handle(caller, existing, "PreviouslyAccepted", spec, durable)
        # Its journal entry and the callee's record both carry the argument, in one batch.
        caller.take_room(2 * entry_bytes, _ACCEPTANCE_OVERHEAD, "ctx.send", spec.qualname)
        # One-way: no caller_id, nobody waits for it.
        callee = self._resolver.new_invocation(
            entry, spec, tgt, payload, value, invocation_id=callee_id
        )
        deliver_at = callee.accepted_at + seconds if seconds else None
        callee.not_before = deliver_at
        caller.append(SendEntry(callee_id, tgt, payload, deliver_at))
        acceptance = WriteBatch()
        self._order.add_acceptance(callee, acceptance, InvocationStatus.PENDING)
        caller.pending_ops.extend(acceptance.ops)
        self._admission.claim_workflow(callee)
        if deliver_at is None:
            # Delivered like a call's callee, in call order with them (``OutputGate.gate``).
            caller.pending_calls.append(callee)
        else:
            caller.add_effect(
                Effect(
                    functools.partial(self._deliver_later, callee, deliver_at),
                    functools.partial(self._release_claim, callee),
                )
            )
        return self._handle(caller, callee_id, "Accepted", spec, durable)

    def _handle(
        self,
        caller: Invocation,
        callee_id: str,
        status: InvocationStatusName,
        spec: Handler[Any, Any],
        durable: Journaled[None] | None,
    ) -> InvocationHandle:
        return InvocationHandle._create(
            self._results,
            callee_id,
            status,
            spec,
            durable=durable,
            cancel=functools.partial(self.cancel_invocation, caller),
        )

    def _deliver_later(self, callee: Invocation, deliver_at: float) -> None:
        """A delayed send's acceptance is durable: its timer delivers it when due."""
        self._release_claim(callee)
        self._k.log("accepted", callee)
        self._invocations[callee.invocation_id] = callee
        self._timers.schedule(deliver_at, TimerKind.DELIVER, callee.invocation_id, None)

    def _release_claim(self, callee: Invocation) -> None:
        if callee.spec.kind == "main" and callee.target.key is not None:
            claim = (callee.target.actor, callee.target.key)
            if self._workflow_claims.get(claim) == callee.invocation_id:
                del self._workflow_claims[claim]

    def describe_cycle(self, cycle: list[Node]) -> str:
        def name(node: Node) -> str:
            if node[0] == "key":
                return node[1]
            inv = self._invocations.get(node[1])
            if inv is None:
                return node[1]
            target = inv.target
            where = f"{target.actor}/{target.key}" if target.key is not None else target.actor
            return f"{where}.{inv.spec.name}"

        return self._graph.describe(cycle, name)


def _target_size(target: Target) -> int:
    """The variable-size bytes a target adds to a record or journal entry."""
    return len(target.actor) + len(target.handler) + len(target.key or "")
