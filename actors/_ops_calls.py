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

An ``idempotency_key`` maps to one invocation exactly as ``rt.send``'s does
(``Admission``): the first call or send with a key accepts its callee, with the key's
row in the same batch; a later one with the same key and payload is answered by that
invocation (which may have been accepted by ``rt.send``, HTTP or another handler), one
with another payload or target is refused (409, invariant 7). Such a foreign callee
does not complete into this caller's journal (it has a caller of its own, or none): the
caller waits on its completion, registered in ``Kernel.call_watchers`` so that a
suspended caller is woken when it completes (the same holds for a workflow run that
another caller started). On replay the journal's callee id is waited on again: the
call is not re-issued.

``generic_call`` and ``generic_send`` name the callee by actor and handler and carry
its input as bytes: they are checked with the callee's input decoder at the call site
(so bad bytes fail the caller, before anything is sent) and stored as given, and the
result is the callee's output as it was stored (``raw_view``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.storage import CallEntry, InvocationStatus, SendEntry, TimerKind, WriteBatch

from ._admission import Admission
from ._control_flow import Suspended, check_usable
from ._effects import Journaled
from ._errors import DeadlockError, NonDeterminismError, PersistenceError, TerminalError
from ._futures import DurableCallFuture, settled
from ._invocation import ENTRY_OVERHEAD, RECORD_OVERHEAD, ROW_OVERHEAD, Effect
from ._limits import check_idempotency_key
from ._request import check_headers_in_handler, headers_size, request_of
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

    from ._deadlock import Node
    from ._definitions import ActorEntry, Handler
    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._request import Request
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
        #: Shared with the handle operations (``_ops_handles``), built on this family.
        self.kernel, self.output, self.resolver = kernel, output, resolver
        self._admission = admission
        self._output = output
        self._scheduler = scheduler
        self._timers = timers
        self._results = results
        self._waits = waits
        self._graph = kernel.graph
        self._invocations = kernel.invocations
        self._workflow_claims = kernel.workflow_claims
        self._watchers = kernel.call_watchers
        self.raw_view = resolver.raw_view
        #: ``ctx.cancel_invocation`` (``_ops_handles``, wired later: it is built on
        #: this module), what the handles of calls and sends cancel with.
        self.cancel_invocation: Callable[[Invocation, str], Awaitable[None]] = _not_wired

    def request(self, inv: Invocation) -> Request:
        return request_of(inv, self._output)

    def call(
        self,
        caller: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        idempotency_key: str | None = None,
        headers: object = None,
        generic: tuple[ActorEntry, Handler[Any, Any], Target] | None = None,
    ) -> DurableCallFuture[Any]:
        """``ctx.call``; with ``generic`` (from ``generic_call``), the resolved callee,
        and ``arg`` its checked ``(payload, value)``."""
        check_usable("ctx.call()")
        if generic is None:
            entry, spec, tgt = self._resolver.resolve_in_handler(target, key)
            answer = spec  # what the caller's result is decoded by
        else:
            entry, spec, tgt = generic
            answer = self.raw_view(spec)
        what = f"output of {spec.qualname}"
        foreign = False  # waits on an invocation it did not create (module docstring)
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
                    lambda: decode_outcome(outcome, answer.output_type, what),
                    DurableCallFuture,
                )
                assert isinstance(done, DurableCallFuture)
                done._callee_id = recorded.callee_id
                done._cancel_op = functools.partial(self.cancel_invocation, caller)
                return done
            callee_id = recorded.callee_id
            if idempotency_key is not None or spec.kind == "main":
                foreign = callee_id != derived_invocation_id(caller.invocation_id, index)
        else:
            if generic is None:
                payload, value = self._resolver.check_input_in_handler(spec, arg)
            else:
                payload, value = arg  # type: ignore[misc]
            if headers is not None:
                headers = check_headers_in_handler(headers)
            # The argument rides in the caller's journal entry and, for a new callee, in
            # its record: both in the caller's next batch.
            entry_bytes = len(payload) + _target_size(tgt)
            callee_id = derived_invocation_id(caller.invocation_id, index)
            existing = None
            if spec.kind == "main":
                assert tgt.key is not None
                existing = self._admission.workflow_invocation(tgt.actor, tgt.key)
            digest = None
            if idempotency_key is not None:
                digest = self._idempotency_digest(spec, tgt, payload, idempotency_key)
                existing = self._admission.idempotent_previous(idempotency_key, digest)
            if existing == caller.invocation_id:
                what_run = "workflow run" if digest is None else "invocation (by idempotency key)"
                raise DeadlockError(
                    f"deadlock: {caller.spec.qualname} on {tgt.key!r} calls its own "
                    f"{what_run}, which would wait for itself forever"
                )
            if existing is not None and existing != callee_id:
                callee_id = existing  # the workflow already ran (or runs): wait for it
                foreign = True
                waited = self.wait_node(spec, tgt, callee_id)
                cycle = self._graph.find_cycle(("inv", caller.invocation_id), waited)
                if cycle is not None:
                    run = (
                        f"workflow run {tgt.actor}/{tgt.key}"
                        if digest is None
                        else f"{spec.qualname} (invocation {callee_id})"
                    )
                    raise DeadlockError(
                        f"deadlock: call of {run} from "
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
                room = 2 * entry_bytes + headers_size(headers)
                caller.take_room(room, _ACCEPTANCE_OVERHEAD, "ctx.call", spec.qualname)
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
                    idempotency_key=idempotency_key,
                    headers=headers,
                )
                acceptance = WriteBatch()
                self._order.add_acceptance(callee, acceptance, InvocationStatus.PENDING)
                if digest is not None:
                    assert idempotency_key is not None
                    self._admission.add_idempotency(idempotency_key, digest, callee, acceptance)
                caller.pending_ops.extend(acceptance.ops)
                caller.pending_calls.append(callee)  # delivered once the acceptance is durable
                self._admission.claim_workflow(callee)
            caller.record_at(index, CallEntry(callee_id, tgt, payload))

        async def produce() -> Any:
            await self._output.gate(caller)  # delivering the call is an effect
            return await self.wait_invocation(caller, callee_id, answer, tgt, foreign)

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
        self,
        caller: Invocation,
        callee_id: str,
        spec: Handler[Any, Any],
        target: Target,
        foreign: bool = False,
    ) -> Any:
        waiter: Node = ("inv", caller.invocation_id)
        waited = self.wait_node(spec, target, callee_id)
        self._graph.wait(waiter, waited)
        if caller.awaiting_calls is None:
            caller.awaiting_calls = {callee_id}
        else:
            caller.awaiting_calls.add(callee_id)
        if foreign:  # its completion wakes this caller only if told to
            self._watchers.setdefault(callee_id, set()).add(caller.invocation_id)
        suspended = False
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
            done.waiters += 1  # from here: the callee may park while ``block`` gates
            try:
                await self._waits.block(caller, done.is_set, done.wait)
            except Suspended:
                suspended = True  # parked: the callee's completion must still wake it
                raise
            finally:
                done.waiters -= 1
            return self._results.completed_result(done, callee_id, spec)
        finally:
            self._graph.unwait(waiter, waited)
            if caller.awaiting_calls is not None:
                caller.awaiting_calls.discard(callee_id)
            if foreign and not suspended:
                watchers = self._watchers.get(callee_id)
                if watchers is not None:
                    watchers.discard(caller.invocation_id)
                    if not watchers:
                        del self._watchers[callee_id]

    def _idempotency_digest(
        self, spec: Handler[Any, Any], target: Target, payload: bytes, idempotency_key: object
    ) -> bytes:
        """The request digest of a call or send with ``idempotency_key``, checked: a
        400 ``TerminalError`` for a key that is not a str or is given to a workflow's
        ``main`` (it runs once per id already), 413 for one over its limit."""
        if not isinstance(idempotency_key, str):
            raise TerminalError(
                f"idempotency_key must be a str, not {type(idempotency_key).__name__}", 400
            )
        if not idempotency_key:
            raise TerminalError("idempotency_key must not be empty", 400)
        check_idempotency_key(idempotency_key)
        if spec.kind == "main":
            raise TerminalError(
                f"{spec.qualname} runs once per workflow id already: calling it again "
                "answers with the same run, so it takes no idempotency_key",
                400,
            )
        return Admission.request_digest(target, payload)

    def resolve_generic(
        self, actor: object, handler: object, payload: object, key: str | None
    ) -> tuple[tuple[ActorEntry, Handler[Any, Any], Target], tuple[bytes, Any]]:
        """The callee of ``generic_call``/``generic_send`` and its checked input:
        ``UnknownHandlerError`` (404) for an unknown actor or handler, a 400
        ``TerminalError`` for a key where none belongs (or missing), bytes that are not
        ``bytes`` or input given to a handler without one, and ``SerializationError``
        (400) for bytes the callee's input decoder refuses."""
        try:
            callee = self._resolver.resolve_generic(actor, handler, key)
            return callee, self._resolver.check_raw_input(callee[1], payload)
        except TypeError as exc:
            raise TerminalError(str(exc), 400) from exc

    def send(
        self,
        caller: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None = None,
        headers: object = None,
        generic: tuple[ActorEntry, Handler[Any, Any], Target] | None = None,
    ) -> InvocationHandle:
        """``ctx.send``; ``generic`` as for ``call``. The handle of a generic send
        answers the callee's output as stored (bytes)."""
        check_usable("ctx.send()")
        if generic is None:
            entry, spec, tgt = self._resolver.resolve_in_handler(target, key)
            answer = spec
        else:
            entry, spec, tgt = generic
            answer = self.raw_view(spec)
        recorded = caller.next_replayed(SendEntry, None, f"send({spec.qualname})")
        if recorded is not None:
            own = derived_invocation_id(caller.invocation_id, caller.index - 1)
            status: InvocationStatusName = (
                "Accepted" if recorded.callee_id == own else "PreviouslyAccepted"
            )
            return self._handle(caller, recorded.callee_id, status, answer, None)
        if generic is None:
            payload, value = self._resolver.check_input_in_handler(spec, arg)
        else:
            payload, value = arg  # type: ignore[misc]
        if headers is not None:
            headers = check_headers_in_handler(headers)
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
                return self._handle(caller, existing, "PreviouslyAccepted", answer, durable)
        digest = None
        if idempotency_key is not None:
            digest = self._idempotency_digest(spec, tgt, payload, idempotency_key)
            existing = self._admission.idempotent_previous(idempotency_key, digest)
            if existing is not None and existing != callee_id:
                caller.take_room(entry_bytes, ENTRY_OVERHEAD, "ctx.send", spec.qualname)
                caller.append(SendEntry(existing, tgt, payload))
                return self._handle(caller, existing, "PreviouslyAccepted", answer, durable)
        # Its journal entry and the callee's record both carry the argument, in one batch.
        room = 2 * entry_bytes + headers_size(headers)
        caller.take_room(room, _ACCEPTANCE_OVERHEAD, "ctx.send", spec.qualname)
        # One-way: no caller_id, nobody waits for it.
        callee = self._resolver.new_invocation(
            entry,
            spec,
            tgt,
            payload,
            value,
            invocation_id=callee_id,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        deliver_at = callee.accepted_at + seconds if seconds else None
        callee.not_before = deliver_at
        caller.append(SendEntry(callee_id, tgt, payload, deliver_at))
        acceptance = WriteBatch()
        self._order.add_acceptance(callee, acceptance, InvocationStatus.PENDING)
        if digest is not None:
            assert idempotency_key is not None
            self._admission.add_idempotency(idempotency_key, digest, callee, acceptance)
        caller.pending_ops.extend(acceptance.ops)
        self._admission.claim_workflow(callee)
        if deliver_at is None:
            # Delivered like a call's callee, in call order with them (``OutputGate.gate``
            # also releases its workflow claim and idempotency key).
            caller.pending_calls.append(callee)
        else:
            caller.add_effect(
                Effect(
                    functools.partial(self._deliver_later, callee, deliver_at),
                    functools.partial(self._release_claims, callee),
                )
            )
        return self._handle(caller, callee_id, "Accepted", answer, durable)

    def _handle(
        self,
        caller: Invocation,
        callee_id: str,
        status: InvocationStatusName,
        answer: Handler[Any, Any],
        durable: Journaled[None] | None,
    ) -> InvocationHandle:
        return InvocationHandle._create(
            self._results,
            callee_id,
            status,
            answer,
            durable=durable,
            cancel=functools.partial(self.cancel_invocation, caller),
        )

    def _deliver_later(self, callee: Invocation, deliver_at: float) -> None:
        """A delayed send's acceptance is durable: its timer delivers it when due."""
        self._release_claims(callee)
        self._k.log("accepted", callee)
        self._invocations[callee.invocation_id] = callee
        self._timers.schedule(deliver_at, TimerKind.DELIVER, callee.invocation_id, None)

    def _release_claims(self, callee: Invocation) -> None:
        """Its acceptance is durable, or never will be: free its workflow claim and its
        idempotency key's in-flight mark."""
        if callee.spec.kind == "main" and callee.target.key is not None:
            claim = (callee.target.actor, callee.target.key)
            if self._workflow_claims.get(claim) == callee.invocation_id:
                del self._workflow_claims[claim]
        if callee.idempotency_key is not None:
            self._admission.idempotency_inflight.pop(callee.idempotency_key, None)

    def generic_call(
        self,
        caller: Invocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        idempotency_key: str | None,
        headers: object,
    ) -> DurableCallFuture[Any]:
        check_usable("ctx.generic_call()")
        callee, checked = self.resolve_generic(actor, handler, payload, key)
        return self.call(caller, callee[1], checked, key, idempotency_key, headers, callee)

    def generic_send(
        self,
        caller: Invocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None,
        headers: object,
    ) -> InvocationHandle:
        check_usable("ctx.generic_send()")
        callee, checked = self.resolve_generic(actor, handler, payload, key)
        return self.send(caller, callee[1], checked, key, delay, idempotency_key, headers, callee)

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
