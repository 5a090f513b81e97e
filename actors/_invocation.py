"""An invocation held in memory, and its journal cursor.

The journal is the invocation's memory across crashes: every context operation that
observes the world appends an entry, at the index it was made at. An attempt starts by
loading the durable journal; while the cursor is inside it the operations are *replayed*
(each returns its recorded value, and must be the same kind of operation with the same
name, else ``NonDeterminismError``); past its end they run *live* and append new entries.

New entries are buffered (``unflushed``) and written with the next batch the invocation
submits: before an externally visible effect (the output gate) or with its completion.
An entry lost in a crash is simply re-done live by the next attempt: that is exactly the
guarantee ``ctx.run`` gives (a body re-runs only if its result was not yet durable).

An operation takes its index when it is *created*, not when its result arrives: durable
futures (``ctx.run``, ``ctx.sleep``, promise values, ...) may complete in any order
inside ``select``/``gather``, and each writes its entry at its own index. So the journal
may have gaps (a step that had not finished when the process died); an operation at a
gap simply runs live again, while later recorded entries still replay.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from actors.storage import (
    InvocationRecord,
    InvocationStatus,
    JournalEntry,
    Outcome,
    Target,
    dumps_invocation,
)

from ._errors import NonDeterminismError
from ._lifecycle import Lifecycle
from ._limits import MAX_BATCH_BYTES, batch_too_large
from ._loop_primitives import CancelScopeLike, EventLike, checkpoint, new_event

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping

    import anyio

    from actors.mailbox import Mailbox
    from actors.storage import CommitTicket, StorageError, WriteBatch

    from ._definitions import ActorEntry, Handler

E = TypeVar("E", bound=JournalEntry)
#: Handler kinds that hold their key while they run.
HOLDS_KEY_KINDS = frozenset({"exclusive", "main"})

UNDECODED: Any = object()
#: The journal of an attempt that has none to replay (read only: shared by every call).
NO_JOURNAL: Mapping[int, JournalEntry] = MappingProxyType({})


#: Upper bounds on what one buffered item adds to a batch beyond the data counted in
#: ``Invocation.pending_bytes``: a journal entry's key and framing (its name included,
#: names being at most ``MAX_NAME_BYTES``), a state write's or a pending operation's row
#: key, and a record's fixed fields. Measured: entries 21-236 bytes, row keys <= 400.
ENTRY_OVERHEAD = 256
ROW_OVERHEAD = 512
RECORD_OVERHEAD = 1024


class Effect:
    """What becomes visible outside once the batch that journals an effect is durable
    (invariant 14, ``_effects``): ``deliver`` runs then, in call order; ``drop`` runs
    instead if that batch never lands (the attempt's buffered work was dropped, or its
    commit failed), so the attempt that does the effect again finds nothing in flight.
    ``ticket`` is the batch that carries it, once flushed."""

    __slots__ = ("deliver", "drop", "ticket")

    def __init__(self, deliver: Callable[[], None], drop: Callable[[], None] | None) -> None:
        self.deliver = deliver
        self.drop = drop
        self.ticket: CommitTicket | None = None


class Completion:
    """Where an invocation's result lands. It outlives the in-memory ``Invocation``: a
    parked invocation is dropped from memory and rebuilt when woken, and whoever waits
    for its result keeps waiting on the same ``Completion``. The event is created only
    when someone actually waits, so a parked invocation costs a few dozen bytes.

    ``waiters`` counts the registrations of tasks that will be answered by this object:
    ``wait`` and ``wait_answer`` count themselves from before their first await until
    they return, and a task that takes the object and awaits something else before
    waiting on it registers first (``waiters += 1``, undone in a ``finally``). So it is
    zero exactly when no task holds the object across an await, and a parked
    invocation keeps its ``Completion`` only while it is not (``_parked``): anyone
    later asks for it by id.

    ``paused`` is the reason while the invocation is paused: callers outside the
    runtime are answered with it (``wait_answer``), callers in handlers keep waiting."""

    __slots__ = ("_event", "error", "finished", "outcome", "paused", "waiters", "yielded")

    def __init__(self) -> None:
        self._event: EventLike | None = None
        self.outcome: Outcome | None = None
        self.error: Exception | None = None
        self.finished = False
        self.paused: str | None = None
        self.waiters = 0
        #: The run that finished it waited (a checkpoint) in its caller's task: an
        #: inline call's answer needs no checkpoint of its own (``Results.result_of``).
        self.yielded = False

    def is_set(self) -> bool:
        return self.finished

    def set(self) -> None:
        self.finished = True
        self.paused = None
        if self._event is not None:
            self._event.set()

    def pause(self, reason: str) -> None:
        """The invocation paused: wake whoever waits, so outside callers can answer."""
        self.paused = reason
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self) -> None:
        """Until the invocation finished (a pause does not end this wait)."""
        self.waiters += 1  # before any await: its checkpoint too is a wait on this
        try:
            if self.finished:
                await checkpoint()
                return
            while not self.finished:
                if self._event is None:
                    self._event = new_event()
                await self._event.wait()
        finally:
            self.waiters -= 1

    async def wait_answer(self) -> None:
        """Until the invocation finished or is paused (for callers outside the runtime)."""
        self.waiters += 1
        try:
            if self.finished or self.paused is not None:
                await checkpoint()
                return
            if self._event is None:
                self._event = new_event()
            await self._event.wait()
        finally:
            self.waiters -= 1


class Flag:
    """A one-shot flag that commit callbacks may set: they run outside any task, where
    no event can be made, so the event is made by the first waiter."""

    __slots__ = ("_event", "is_set")

    def __init__(self) -> None:
        self._event: EventLike | None = None
        self.is_set = False

    def set(self) -> None:
        self.is_set = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self.is_set:
            await checkpoint()
            return
        if self._event is None:
            self._event = new_event()
        await self._event.wait()


class PendingCompletion:
    """A completion whose commit failed, until the same batch lands (``_recommit``)."""

    __slots__ = ("batch", "error", "inv", "landed", "order", "queue")

    def __init__(self, inv: Invocation, batch: WriteBatch, queue: CommitQueue, order: int) -> None:
        self.inv = inv
        self.batch = batch
        self.queue = queue
        #: The sequence number of its first submission: its place in its key's order.
        self.order = order
        self.landed = Flag()
        #: Set when it can never land: the store broke.
        self.error: StorageError | None = None


class CommitQueue:
    """The failed completions of one key (or of one non-exclusive invocation), waiting
    to be committed again in the order they were first submitted (``_recommit``):
    ``waiting`` is kept sorted by ``PendingCompletion.order``, whenever its failures
    arrive. ``head`` is the last one submitted again."""

    __slots__ = ("activation", "changed", "drained", "driving", "head", "waiting")

    def __init__(self, activation: Activation | None) -> None:
        self.activation = activation
        self.waiting: list[PendingCompletion] = []
        self.head: CommitTicket | None = None
        self.changed = Flag()
        self.drained = Flag()
        self.driving = False


@attrs.define(eq=False)
class Activation:
    """An active key: its mailbox and the overlay of writes not yet durable."""

    mailbox: Mailbox[Invocation]
    overlay: dict[str, bytes | None] = attrs.field(factory=dict)
    overlay_cleared: bool = False
    overlay_seq: int = 0
    last_ticket: CommitTicket | None = None
    last_used: float = 0.0
    #: Its failed completions, while any waits to land (``_recommit``): the key's next
    #: attempts wait for them, and the activation is not dropped meanwhile.
    recommits: CommitQueue | None = None


@attrs.define(eq=False)
class Invocation:
    """An invocation from dispatch to completion (or eviction)."""

    invocation_id: str
    target: Target
    entry: ActorEntry
    spec: Handler[Any, Any]
    payload: bytes
    arg: Any
    accepted_at: float
    #: Whether it holds its key while it runs (an exclusive handler or a workflow's main):
    #: ``spec.kind in HOLDS_KEY_KINDS``, given by whoever builds it (asked on every step).
    exclusive: bool = False
    caller_id: str | None = None
    caller_index: int | None = None
    idempotency_key: str | None = None
    #: The headers it was called with (``ctx.request()``); None for none (the usual case).
    headers: dict[str, str] | None = None
    #: The attempt number its record holds: ``ctx.request()`` writes a higher one before
    #: telling it to the handler (``_request``), so a resumed attempt never repeats it.
    recorded_attempt: int = 0
    #: The inbox key once the acceptance was submitted; None while the invocation is
    #: known only in memory (a ``call`` not yet past its first flush).
    inbox_key: bytes | None = None
    #: Its place among its key's exclusive work, taken when it entered the key's FIFO
    #: (``actors._key_order``); None for shared and service invocations, and before.
    position: int | None = None
    #: The batch that wrote ``inbox_key`` (an acceptance, or a move to the admitted row),
    #: and the row it replaced: if that batch fails, the row is still ``moved_from``.
    acceptance_ticket: CommitTicket | None = None
    moved_from: bytes | None = None
    activation: Activation | None = None
    done: Completion = attrs.field(factory=Completion)
    #: Where it is in its life (``_lifecycle``): the only place its phase is kept.
    life: Lifecycle = attrs.field(factory=Lifecycle)
    #: When its next attempt may start (a retry's backoff), or when a delayed send is due.
    not_before: float | None = None
    # --- the current attempt ---
    #: The durable journal the attempt replays, by index (never changed in place: a
    #: call with none shares one empty mapping).
    replay: Mapping[int, JournalEntry] = NO_JOURNAL
    replay_end: int = 0  # one past the last recorded index
    index: int = 0
    unflushed: list[tuple[int, JournalEntry]] = attrs.field(factory=list)
    writes: dict[str, bytes | None] = attrs.field(factory=dict)
    cleared_all: bool = False
    #: Bytes of variable-size data (values, payloads, outcomes, long names) in what the
    #: next flush writes; keys and framing are estimated per item (``take_room``).
    pending_bytes: int = 0
    last_ticket: CommitTicket | None = None  # chain of a non-exclusive invocation
    runs_in_progress: int = 0  # ctx.run bodies of this attempt still running
    #: Cancel scopes of its ``ctx.run`` bodies running now; None until the first.
    body_scopes: set[anyio.CancelScope] | None = None
    rng: random.Random | None = None
    #: Acceptances of calls created but not yet delivered (written with the next flush).
    pending_ops: list[tuple[Any, ...]] = attrs.field(factory=list)
    pending_calls: list[Invocation] = attrs.field(factory=list)
    #: Effects journaled but not yet visible (``Effect``), in call order; None until the
    #: first, so an invocation that asks for none pays nothing.
    pending_effects: list[Effect] | None = None
    #: Ids this attempt asked to cancel (``ctx.cancel_invocation``): before it completes,
    #: each request is made durable (``HandleOps.settle_cancels``).
    requested_cancels: list[str] | None = None
    #: Rows of its sleeps' timers; None until the first (as the sets below: an empty set
    #: is a container the collector tracks, and most invocations never need one).
    timer_keys: set[bytes] | None = None
    expiry: tuple[float, bytes] | None = None  # its retention timer, once completed
    # --- the I/O handles and data its lifecycle's actions name ---
    #: Cancel scopes of the waits in progress (and of a retry's backoff), which an
    #: eviction, a cancel or a kill interrupts.
    wait_scopes: set[anyio.CancelScope] | None = None
    #: Live durable waits in progress (several at once under select/gather).
    blocked_waits: int = 0
    wake_event: anyio.Event | None = None
    #: The rows of the durable promises its waits gave up while it unwound to suspend
    #: (``SignalOps``): the parked index keeps them, so that only their resolution
    #: revives it. None when there are none (the usual case).
    promises_waited: list[bytes] | None = None
    #: The promise whose resolution revived it from parked, with the outcome that
    #: resolution made durable (its row, completed once, holds just that): its replayed
    #: wait takes it from here instead of reading it back (``SignalOps``).
    revived_by: tuple[bytes, Outcome] | None = None
    #: Callees whose answer it awaits right now (a kill propagates to them); None: none yet.
    awaiting_calls: set[str] | None = None
    #: Asked for offline (``actors kill`` on a closed data directory): killed at open.
    kill_requested: bool = False
    run_scope: CancelScopeLike | None = None
    #: Why it paused (kept in its record), and the event its task waits on meanwhile.
    paused_reason: str | None = None
    resume: anyio.Event | None = None
    #: When each retry cycle under a ``max_duration`` limit began (kept in its record):
    #: by journal index of the ``ctx.run`` step, ``INVOCATION_RETRIES`` for its own
    #: attempts. None (no dict made) until a timed policy sees a failure.
    retry_since: dict[int, float] | None = None

    @property
    def attempt(self) -> int:
        """Attempts started so far (never reset: an attempt's epoch)."""
        return self.life.attempt

    @property
    def cancel_requested(self) -> bool:
        """Whether a cancellation was asked for (and is kept in its record)."""
        return self.life.cancel_requested

    @property
    def outcome(self) -> Outcome | None:
        """The result, once completed and durable."""
        return self.done.outcome

    @outcome.setter
    def outcome(self, value: Outcome | None) -> None:
        self.done.outcome = value

    @property
    def error(self) -> Exception | None:
        """Why the result cannot be delivered (e.g. the completion failed to commit)."""
        return self.done.error

    @error.setter
    def error(self, value: Exception | None) -> None:
        self.done.error = value

    def start_attempt(self, journal: Mapping[int, JournalEntry]) -> None:
        """Reset the per-attempt state and position the cursor at the journal's start."""
        self.replay = journal
        self.replay_end = max(journal) + 1 if journal else 0
        self.index = 0
        # Fresh buffers only where the last attempt left something: the first attempt
        # keeps the empty ones made with the object (each list is a container more for
        # the collector to track; nothing else holds them).
        if self.unflushed:
            self.unflushed = []
        if self.writes:
            self.writes = {}
        self.cleared_all = False
        self.runs_in_progress = 0
        self.rng = None
        if self.pending_ops:
            self.pending_ops = []
        if self.pending_calls:
            self.pending_calls = []
        self.pending_bytes = 0
        self.requested_cancels = None
        self.promises_waited = None
        if self.pending_effects:
            self.settle_effects(unflushed_too=True)

    def has_buffered(self) -> bool:
        """Whether the next flush has work of the attempt to write."""
        return bool(self.unflushed or self.writes or self.cleared_all or self.pending_ops)

    def drop_buffered(self) -> list[Invocation]:
        """Forget the attempt's buffered work; returns the calls it made that will now
        never be delivered (their acceptances were part of it)."""
        self.unflushed = []
        self.writes = {}
        self.cleared_all = False
        self.pending_bytes = 0
        self.pending_ops = []
        if self.pending_effects:
            self.settle_effects(unflushed_too=True)
        dropped, self.pending_calls = self.pending_calls, []
        return dropped

    def add_wait_scope(self, scope: anyio.CancelScope) -> None:
        """Register the cancel scope of a wait that starts (``wait_scopes``)."""
        if self.wait_scopes is None:
            self.wait_scopes = {scope}
        else:
            self.wait_scopes.add(scope)

    def discard_wait_scope(self, scope: anyio.CancelScope) -> None:
        """Forget the cancel scope of a wait that ended."""
        if self.wait_scopes is not None:
            self.wait_scopes.discard(scope)

    def interruptible_scopes(self) -> list[anyio.CancelScope]:
        """The scopes a kill cancels besides its run scope: its step bodies' and its
        waits' (a copy: cancelling one may end its wait meanwhile)."""
        return [*(self.body_scopes or ()), *(self.wait_scopes or ())]

    def add_effect(self, effect: Effect) -> None:
        """Buffer an effect: it is delivered once the next batch is durable."""
        if self.pending_effects is None:
            self.pending_effects = [effect]
        else:
            self.pending_effects.append(effect)

    def settle_effects(self, *, unflushed_too: bool = False) -> None:
        """Deliver, in call order, the effects whose batch is durable; drop those whose
        batch failed (and, with ``unflushed_too``, those not flushed at all: their
        journal entries are being dropped). Effects still in flight stay."""
        effects = self.pending_effects
        if not effects:
            return
        self.pending_effects = None
        keep: list[Effect] = []
        for effect in effects:
            ticket = effect.ticket
            if (ticket is None and not unflushed_too) or (ticket is not None and not ticket.done):
                keep.append(effect)
            elif ticket is not None and ticket.error is None:
                effect.deliver()
            elif effect.drop is not None:
                effect.drop()
        if keep:
            self.pending_effects = (
                keep if self.pending_effects is None else keep + self.pending_effects
            )

    def take_room(self, data: int, overhead: int, operation: str, subject: str) -> None:
        """Count ``data`` more bytes of buffered data, for ``operation(subject)`` whose
        new items add at most ``overhead`` more; a 413 ``TerminalError`` naming it (and
        nothing counted) when the next flush would then pass ``MAX_BATCH_BYTES``. Call it
        before buffering. On every ``ctx.get``/``ctx.set``: a few ``len()`` and adds."""
        size = (
            self.pending_bytes
            + data
            + overhead
            + ENTRY_OVERHEAD * len(self.unflushed)
            + ROW_OVERHEAD * (len(self.writes) + len(self.pending_ops))
        )
        if self.inbox_key is None:
            size += len(self.payload) + RECORD_OVERHEAD
        if size > MAX_BATCH_BYTES:
            raise batch_too_large(size, f"{operation}({subject!r})" if subject else operation)
        self.pending_bytes += data

    def reserve(self, kind: type[E], name: str | None, what: str) -> tuple[int, E | None]:
        """Take the next index for an operation; return it with its recorded entry
        (None when the operation runs live at that index)."""
        index = self.index
        return index, self.next_replayed(kind, name, what) if self._take(index) else None

    def _take(self, index: int) -> bool:
        if index in self.replay:
            return True
        self.index += 1  # a live operation (or a gap): nothing to validate
        return False

    def record_at(self, index: int, entry: JournalEntry) -> None:
        """Record the entry of an operation created earlier at ``index``."""
        self.unflushed.append((index, entry))

    def next_replayed(self, kind: type[E], name: str | None, what: str) -> E | None:
        """The recorded entry for the operation about to run, or None when live.

        Raises ``NonDeterminismError`` when the journal recorded a different operation
        (or the same one with a different name) at this index.
        """
        entry = self.replay.get(self.index)
        if entry is None:
            return None
        if type(entry) is not kind or (name is not None and getattr(entry, "name", name) != name):
            raise NonDeterminismError(
                f"invocation {self.invocation_id} ({self.spec.qualname}) diverged from its "
                f"journal at entry {self.index}: the handler now does {what}, but the journal "
                f"recorded {_describe(entry)}"
            )
        self.index += 1
        return entry

    def append(self, entry: JournalEntry) -> int:
        """Record a live operation; returns its journal index."""
        index = self.index
        self.unflushed.append((index, entry))
        self.index += 1
        return index

    @classmethod
    def from_record(
        cls,
        record: InvocationRecord,
        entry: ActorEntry,
        spec: Handler[Any, Any],
        target: Target,
        inbox_key: bytes,
        position: int | None,
        done: Completion,
        *,
        started: bool,
    ) -> Invocation:
        """The invocation ``record`` describes, rebuilt to run again (at open, or when a
        parked one is woken). The inverse of ``record``: the two keep one mapping.
        ``started``: it had made a durable step (it must run again, even to be cancelled)."""
        # One that had started ran at least one attempt, even if its record never said
        # so (the first attempt's number is not written: ``_request``).
        attempt = record.attempt or (1 if started else 0)
        life = Lifecycle.rebuilt(
            started=started, cancel_requested=record.cancel_requested, attempt=attempt
        )
        return cls(
            invocation_id=record.invocation_id,
            target=target,
            entry=entry,
            spec=spec,
            payload=record.payload,
            arg=UNDECODED,
            accepted_at=record.accepted_at,
            exclusive=spec.kind in HOLDS_KEY_KINDS,
            caller_id=record.caller_id,
            caller_index=record.caller_index,
            idempotency_key=record.idempotency_key,
            headers=record.headers,
            recorded_attempt=record.attempt,
            inbox_key=inbox_key,
            position=position,
            done=done,
            life=life,
            kill_requested=record.kill_requested,
            paused_reason=record.pause_reason if record.status is InvocationStatus.PAUSED else None,
            retry_since=dict(record.retry_since) if record.retry_since else None,
        )

    def record(
        self, status: InvocationStatus, outcome: Outcome | None = None, now: float | None = None
    ) -> InvocationRecord:
        """The stored record of this invocation in ``status``."""
        return InvocationRecord(*self._record_fields(status, outcome, now))

    def record_bytes(
        self, status: InvocationStatus, outcome: Outcome | None = None, now: float | None = None
    ) -> bytes:
        """``dumps(self.record(...))``, without making the record (the acceptance and the
        completion write one each)."""
        return dumps_invocation(*self._record_fields(status, outcome, now))

    def _record_fields(
        self, status: InvocationStatus, outcome: Outcome | None, now: float | None
    ) -> tuple[Any, ...]:
        """``InvocationRecord``'s fields, in its order: the one mapping of both."""
        return (
            self.invocation_id,
            self.target,
            self.payload,
            status,
            self.accepted_at,
            self.attempt,
            self.caller_id,
            self.caller_index,
            self.idempotency_key,
            outcome,
            now if outcome is not None else None,  # completed_at
            self.not_before,  # next_attempt_at
            self.paused_reason,
            self.cancel_requested,
            self.kill_requested,
            self.headers,
            tuple(self.retry_since.items()) if self.retry_since else (),
        )


def _describe(entry: JournalEntry) -> str:
    name = getattr(entry, "name", None)
    kind = type(entry).__name__.removesuffix("Entry").lower()
    return f"{kind}({name!r})" if name is not None else kind
