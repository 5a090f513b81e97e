"""Admission: how an invocation comes to exist, durably and once.

``send`` (and everything that sends: HTTP, delayed sends, idempotent calls, a workflow's
``main``) writes the invocation's record and its inbox row in one batch and returns once
that is durable (invariant 4). Delivery to the key happens in the commit's completion
callback, in commit order, through one dispatcher task: so invocations reach their keys
in the order they were accepted, and a sender cancelled while waiting cannot strand an
accepted invocation.

Run-once rules live here too. A workflow id maps to one ``main`` invocation (the
``workflows`` table, and ``Kernel.workflow_claims`` for a claim not yet durable); an
idempotency key maps to one invocation and one request digest, so the same key with a
different request is refused (409) instead of silently answered with the old result.
"""

from __future__ import annotations

import hashlib
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from actors.storage import (
    IdempotencyRecord,
    InvocationStatus,
    RecordDecodeError,
    StorageError,
    Table,
    TimerKind,
    WorkflowRecord,
    WriteBatch,
    dumps,
    encode_key,
    loads,
)

from ._definitions import Actor
from ._errors import TerminalError, UnknownHandlerError, damaged_record_error, persistence_error
from ._limits import check_idempotency_key, check_key
from ._request import check_headers
from ._resolution import delay_seconds
from ._results import InvocationHandle
from ._util import NO_ARG, new_invocation_id

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from actors.storage import CommitTicket, Target

    from ._definitions import ActorEntry, Handler
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._resolution import Resolver
    from ._results import Results
    from ._scheduler import Scheduler
    from ._timers import Timers


class Admission:
    """Accepting invocations: durable records, run-once rules, delivery in order."""

    def __init__(
        self,
        kernel: Kernel,
        order: KeyOrder,
        resolver: Resolver,
        scheduler: Scheduler,
        timers: Timers,
        results: Results,
    ) -> None:
        self._k = kernel
        self._order = order
        self._resolver = resolver
        self._scheduler = scheduler
        self._timers = timers
        self._results = results
        self._store = kernel.store
        self._entries = kernel.entries
        self._invocations = kernel.invocations
        self._workflow_claims = kernel.workflow_claims
        self.idempotency_inflight = kernel.idempotency_inflight
        # Accepted invocations waiting for the dispatcher task, in acceptance order.
        # Commit callbacks run outside any task, where anyio cannot spawn one.
        self.accepted: deque[Invocation] = deque()
        self.accepted_ready = anyio.Event()

    async def send(
        self,
        target: Handler[Any, Any],
        arg: object = NO_ARG,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        generic: tuple[ActorEntry, Handler[Any, Any], Target] | None = None,
    ) -> InvocationHandle:
        """``Runtime.send``: accept an invocation, durably, without waiting for it. With
        ``generic`` (``Runtime.generic_send``), the resolved callee, and ``arg`` its
        checked ``(payload, value)``; the handle then answers the output's bytes."""
        if generic is None:
            entry, spec, tgt = self._resolver.resolve(target, key)
            answer = spec
        else:
            entry, spec, tgt = generic
            answer = self._resolver.raw_view(spec)
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str):
                raise TypeError(
                    f"idempotency_key must be a str, not {type(idempotency_key).__name__}"
                )
            check_idempotency_key(idempotency_key)
        checked_headers = check_headers(headers) if headers is not None else None
        if generic is None:
            payload, value = self._resolver.check_input(spec, arg)
        else:
            payload, value = arg  # type: ignore[misc]
        seconds = delay_seconds(delay)
        if spec.kind == "main":
            if idempotency_key is not None:
                raise TypeError(
                    f"{spec.qualname} runs once per workflow id already: submitting it "
                    "again answers PreviouslyAccepted, so it takes no idempotency_key"
                )
            assert tgt.key is not None
            existing = self.workflow_invocation(tgt.actor, tgt.key)
            if existing is not None:
                await anyio.lowlevel.checkpoint()
                return InvocationHandle._create(
                    self._results, existing, "PreviouslyAccepted", answer
                )
            invocation_id = new_invocation_id()
            claim: tuple[str, str] | None = (tgt.actor, tgt.key)
            self._workflow_claims[(tgt.actor, tgt.key)] = invocation_id  # before any await
        else:
            invocation_id = None
            claim = None
        try:
            return await self.send_new(
                entry,
                spec,
                tgt,
                payload,
                value,
                seconds,
                idempotency_key,
                invocation_id,
                headers=checked_headers,
                answer=answer,
            )
        finally:
            if claim is not None:
                self._workflow_claims.pop(claim, None)  # durable by now, or never accepted

    async def send_new(
        self,
        entry: ActorEntry,
        spec: Handler[Any, Any],
        tgt: Target,
        payload: bytes,
        value: Any,
        seconds: float,
        idempotency_key: str | None,
        invocation_id: str | None,
        *,
        headers: dict[str, str] | None = None,
        answer: Handler[Any, Any] | None = None,
    ) -> InvocationHandle:
        answer = spec if answer is None else answer  # what the handle decodes with
        digest = b""
        if idempotency_key is not None:
            digest = self.request_digest(tgt, payload)
            previous = self.idempotent_previous(idempotency_key, digest)
            if previous is not None:
                await anyio.lowlevel.checkpoint()
                return InvocationHandle._create(
                    self._results, previous, "PreviouslyAccepted", answer
                )
        await self._scheduler.acquire_slot()
        inv = self._resolver.new_invocation(
            entry,
            spec,
            tgt,
            payload,
            value,
            invocation_id=invocation_id,
            idempotency_key=idempotency_key,
            holds_slot=True,
            headers=headers,
        )
        batch = WriteBatch()
        if idempotency_key is not None:
            record = IdempotencyRecord(inv.invocation_id, digest)
            batch.put(Table.IDEMPOTENCY, encode_key((idempotency_key,)), dumps(record))
            self.idempotency_inflight[idempotency_key] = (digest, inv.invocation_id)
        try:
            await self.accept(inv, seconds, batch)
        except BaseException:
            self._scheduler.slots.release()
            raise
        finally:
            if idempotency_key is not None:
                self.idempotency_inflight.pop(idempotency_key, None)
        # From the acceptance, not inv.not_before: a due timer may have cleared that.
        due = datetime.fromtimestamp(inv.accepted_at + seconds, UTC) if seconds else None
        return InvocationHandle._create(self._results, inv.invocation_id, "Accepted", answer, due)

    def add_idempotency(
        self, idempotency_key: str, digest: bytes, inv: Invocation, batch: WriteBatch
    ) -> None:
        """Map ``idempotency_key`` to ``inv`` in ``batch`` (its acceptance), and in memory
        until that is durable (``forget_idempotency``), so a concurrent request with the
        same key finds it."""
        record = IdempotencyRecord(inv.invocation_id, digest)
        batch.put(Table.IDEMPOTENCY, encode_key((idempotency_key,)), dumps(record))
        self.idempotency_inflight[idempotency_key] = (digest, inv.invocation_id)

    @staticmethod
    def request_digest(target: Target, payload: bytes) -> bytes:
        parts = (target.actor, target.handler, target.key or "")
        return hashlib.blake2b(repr(parts).encode() + b"\0" + payload, digest_size=16).digest()

    def idempotent_previous(self, idempotency_key: str, digest: bytes) -> str | None:
        inflight = self.idempotency_inflight.get(idempotency_key)
        if inflight is not None:
            stored_digest, invocation_id = inflight
        else:
            try:
                data = self._store.get(Table.IDEMPOTENCY, encode_key((idempotency_key,)))
            except StorageError as exc:
                raise persistence_error(exc) from exc
            if data is None:
                return None
            try:
                record = loads(IdempotencyRecord, data)
            except RecordDecodeError as exc:
                raise damaged_record_error(self._store.path, exc) from exc
            stored_digest, invocation_id = record.request_digest, record.invocation_id
        if stored_digest != digest:
            raise TerminalError(
                f"idempotency key {idempotency_key!r} was already used for a different "
                f"request (invocation {invocation_id}); use a new key for a new request",
                409,
            )
        return invocation_id

    def idempotent_invocation(
        self, target: Handler[Any, Any], idempotency_key: str, key: str | None
    ) -> str:
        """The id of the invocation of ``target`` (on ``key``) that ``idempotency_key``
        was accepted for (``Runtime.attach_idempotent``). A key names one target, as in
        Restate: the same key on another handler or object key finds nothing. Only
        durable acceptances count: one still committing is not accepted yet."""
        _entry, spec, tgt = self._resolver.resolve(target, key)
        if spec.kind == "main":
            raise TypeError(
                f"{spec.qualname} runs once per workflow id and takes no idempotency key: "
                "use attach_workflow / workflow_output"
            )
        if not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, not {type(idempotency_key).__name__}")
        check_idempotency_key(idempotency_key)
        try:
            data = self._store.get(Table.IDEMPOTENCY, encode_key((idempotency_key,)))
        except StorageError as exc:
            raise persistence_error(exc) from exc
        if data is not None:
            invocation_id = loads(IdempotencyRecord, data).invocation_id
            record = self._k.load_record(invocation_id)
            if record is not None and record.target == tgt:
                return invocation_id
        on = f" on {tgt.key!r}" if tgt.key is not None else ""
        raise UnknownHandlerError(
            f"no invocation of {spec.qualname}{on} with idempotency key {idempotency_key!r} "
            "(never accepted, or expired after its retention)"
        )

    def workflow_invocation(self, actor: str, workflow_id: str) -> str | None:
        """The invocation id of the run of ``actor`` on ``workflow_id``, if submitted."""
        claimed = self._workflow_claims.get((actor, workflow_id))
        if claimed is not None:
            return claimed
        try:
            data = self._store.get(Table.WORKFLOWS, encode_key((actor, workflow_id)))
        except StorageError as exc:
            raise persistence_error(exc) from exc
        try:
            return None if data is None else loads(WorkflowRecord, data).invocation_id
        except RecordDecodeError as exc:
            raise damaged_record_error(self._store.path, exc) from exc

    def claim_workflow(self, inv: Invocation) -> tuple[str, str] | None:
        """Reserve the workflow id of a new ``main`` invocation until its acceptance is
        durable, so a concurrent submission answers PreviouslyAccepted."""
        if inv.spec.kind != "main":
            return None
        assert inv.target.key is not None
        claim = (inv.target.actor, inv.target.key)
        self._workflow_claims[claim] = inv.invocation_id
        return claim

    def workflow_run_id(self, workflow: type[Actor], workflow_id: str) -> str:
        if not (isinstance(workflow, type) and issubclass(workflow, Actor)):
            raise TypeError(f"expected a Workflow class, not {workflow!r}")
        entry = self._entries.get(workflow.actor_name)
        if entry is None or entry.cls.actor_kind != "workflow":
            raise UnknownHandlerError(
                f"workflow {workflow.actor_name!r} is not registered with this runtime"
            )
        if not isinstance(workflow_id, str):
            raise TypeError(f"workflow ids are str, not {type(workflow_id).__name__}")
        check_key(workflow_id)
        invocation_id = self.workflow_invocation(entry.name, workflow_id)
        if invocation_id is None:
            raise UnknownHandlerError(f"no run of workflow {entry.name!r} with id {workflow_id!r}")
        return invocation_id

    async def accept(self, inv: Invocation, delay: float, batch: WriteBatch) -> None:
        """Durably record ``inv`` (record + inbox, plus ``batch``'s own operations), then
        deliver it now or after ``delay``.

        Delivery happens in the commit's completion callback, not in the waiting task:
        so invocations reach their mailboxes in acceptance order (the order a restart
        uses), and a cancelled sender cannot strand an accepted invocation."""
        if delay:
            inv.not_before = inv.accepted_at + delay
        self._order.add_acceptance(inv, batch, InvocationStatus.PENDING)

        def deliver(ticket: CommitTicket) -> None:
            if ticket.error is None and not self._k.closed:
                self._invocations[inv.invocation_id] = inv  # attachable from now on
                self.accepted.append(inv)
                self.accepted_ready.set()

        # A failed acceptance is the sender's error: nothing was accepted.
        try:
            ticket = self._store.submit(batch, deliver)
        except StorageError as exc:
            raise self._k.write_failed(exc) from exc
        try:
            await ticket.wait()
        except StorageError as exc:
            raise self._k.write_failed(exc) from exc

    async def dispatch_accepted(self) -> None:
        """Deliver accepted invocations in the order their acceptances committed."""
        while True:
            await self.accepted_ready.wait()
            self.accepted_ready = anyio.Event()
            while self.accepted:
                inv = self.accepted.popleft()
                if not inv.life.awaits_delivery:  # cancelled or killed before it got here
                    continue
                self._k.log("accepted", inv)
                if inv.not_before is not None:
                    self._invocations[inv.invocation_id] = inv
                    self._timers.schedule(
                        inv.not_before, TimerKind.DELIVER, inv.invocation_id, None
                    )
                else:
                    self._scheduler.dispatch(inv)
