"""The embedded runtime: accepts invocations, schedules them per key, runs handlers
against their journals, and makes every effect durable before anyone can see it.

Life of an invocation
---------------------
1. *Accept.* ``send`` writes the invocation record and an ``inbox`` entry (the per-key
   FIFO of unfinished work) in one batch and returns once it is durable. ``call`` is
   lazier: nothing about a call is visible before its first effect, so its acceptance
   is written with its first flush (often its completion: one commit per call). If the
   process dies first, the caller died with it and was never answered.
2. *Schedule.* The invocation goes to its key's ``Mailbox`` (services run at once) and,
   if exclusive, takes its position in the key's durable order (``_key_order``).
3. *Run an attempt.* The handler runs from the start against its durable journal:
   recorded operations return their recorded values (replay), later ones run live and
   append entries (see ``_invocation``). State writes are buffered in the invocation.
4. *Flush at the output gate.* Before an externally visible effect (a ``ctx.run`` body,
   a delivered call or send) the invocation's new journal entries and state writes are
   written in ONE batch and the effect waits until that batch, and every batch before it
   on the same key, is durable.
5. *Complete.* The last entries, state writes, the completed record, the inbox deletion
   and (for a ``ctx.call``) the caller's journal entry go in one batch. An exclusive
   invocation releases its key as soon as that batch is queued, so the next one starts on
   the not-yet-durable writes through the key's overlay (pipelining: one key is not
   capped at one fsync per invocation). Every batch of a key ``depends_on`` the previous
   one, so nothing lands on top of a commit that failed.
6. *Answer.* Callers are woken only once the completion batch is durable.

Failures: a ``TerminalError`` completes the invocation with that error. Any other
exception retries the invocation from its journal with the retry policy's backoff; when
attempts run out it is *paused*: it keeps its key, stays visible, and continues with
``Runtime.resume``. A replay that diverges from the journal pauses it too.

Suspension: an invocation blocked in any durable wait (a call, a sleep, a promise, an
awakeable, a select or gather of them) for longer than ``suspend_after`` is unwound
(``Suspended``) and its coroutine dropped; what it waits for resumes it by replay.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import heapq
import inspect
import logging
import math
import random
import typing
import uuid
import weakref
from collections import deque
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final, overload

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from actors.mailbox import HOLD, Mailbox
from actors.storage import (
    AwakeableEntry,
    CallEntry,
    CancelledEntry,
    ClearStateEntry,
    CommitTicket,
    Failure,
    GetStateEntry,
    IdempotencyRecord,
    InvocationRecord,
    InvocationStatus,
    JournalEntry,
    Outcome,
    PromiseEntry,
    PromisePeekEntry,
    PromiseRecord,
    ResolveEntry,
    RunEntry,
    SelectEntry,
    SendEntry,
    SetStateEntry,
    SleepEntry,
    StateKeysEntry,
    StorageError,
    Store,
    Success,
    Table,
    Target,
    TimeEntry,
    TimerKind,
    TimerRecord,
    WorkflowRecord,
    WriteBatch,
    decode_key,
    dumps,
    dumps_entry,
    encode_key,
    loads,
    loads_entry,
)

from ._clock import Clock, SystemClock, loop_time_function
from ._context import (
    _NO_ARG,
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from ._deadlock import Node, WaitForGraph
from ._definitions import Actor, ActorEntry, Handler, registration_entry
from ._errors import (
    ActorsError,
    DeadlockError,
    NonDeterminismError,
    NotReadyError,
    PersistenceError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
    UnknownHandlerError,
    persistence_error,
)
from ._files import DATA_DIR_FILES
from ._futures import DurableFuture
from ._invocation import UNDECODED, Completion, Invocation, Suspended
from ._key_order import accepted_row, admitted_row, parse_row
from ._retry import RetryPolicy
from ._serde import check_value, decode_value, encode_value
from ._util import NoPublicConstructor, derived_invocation_id, new_invocation_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
    from os import PathLike
    from pathlib import Path

logger = logging.getLogger("actors")

T = TypeVar("T")
OutT = TypeVar("OutT")
InvocationStatusName = Literal["Accepted", "PreviouslyAccepted"]


# The runtime's own control-flow signals are BaseExceptions (invariant 14): they pass
# through a handler's ``except Exception`` like trio's Cancelled does.


class _StepFailed(BaseException):
    """A batch of the invocation failed to commit: retry the attempt from the journal."""


class _HandlerFailed(BaseException):
    """The handler raised a non-terminal exception: retry the attempt."""


#: The name of the ``ctx.run`` step whose body the current task runs (None outside).
_RUN_BODY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "actors_run_body", default=None
)


@attrs.define(eq=False)
class _RunBody:
    """One ``ctx.run`` body in flight: started once, joined by every await."""

    started: bool = False
    done: bool = False
    #: Made only when someone joins a body running in another task (select, gather).
    finished: anyio.Event | None = None
    outcome: Outcome | None = None
    escaped: BaseException | None = None

    async def wait(self) -> None:
        if self.done:
            return
        if self.finished is None:
            self.finished = anyio.Event()
        await self.finished.wait()


class _CancelRequested(BaseException):
    """A durable wait was interrupted by ``cancel``: the await that started it raises
    the cancellation (a 409 ``TerminalError``) at its own journal position."""


def _always_ready() -> bool:
    return True


@attrs.define(eq=False)
class _Activation:
    """An active key: its mailbox and the overlay of writes not yet durable."""

    mailbox: Mailbox[Invocation]
    overlay: dict[str, bytes | None] = attrs.field(factory=dict)
    overlay_cleared: bool = False
    overlay_seq: int = 0
    last_ticket: CommitTicket | None = None
    last_used: float = 0.0


@attrs.define(eq=False)
class _Parked:
    """A suspended invocation dropped from memory: all that stays is where its result
    lands (callers may be waiting on it) and its inbox key. Any of its wake-ups (timer,
    promise, awakeable, callee completion, cancel) rebuilds it from storage by replay."""

    done: Completion
    inbox_key: bytes


#: Timers the runtime keeps in its heap: (due, sequence, kind, invocation id, row key).
_HeapTimer = tuple[float, int, TimerKind, str, bytes | None]

_MAX_SLEEP_SECONDS = 100 * 365 * 86400.0
_TIMER_WINDOW = 600.0  # seconds of durable timers held in memory ahead of time
_AWAKEABLE_PREFIX = "awk_"


def _timer_key(due: float, invocation_id: str, kind: TimerKind, index: int) -> bytes:
    return encode_key((round(due * 1_000_000), invocation_id, kind.value, index))


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


@final
@attrs.frozen
class RuntimeStatistics:
    """A snapshot of the runtime's in-memory load."""

    in_flight: int  #: invocations held in memory
    activations: int  #: keys with a live mailbox
    queued_exclusive: int  #: exclusive invocations waiting for their key
    suspended: int  #: invocations whose coroutine was dropped while waiting
    paused: int  #: invocations waiting for ``resume``
    parked: int = 0  #: suspended invocations dropped from memory entirely
    timers: int = 0  #: timers scheduled (sleeps, delayed sends, retention expiry)


@final
class InvocationHandle(metaclass=NoPublicConstructor):
    """A durably accepted invocation. ``status`` is ``"Accepted"`` for a new invocation
    and ``"PreviouslyAccepted"`` when the same id (or idempotency key) was accepted
    before."""

    __slots__ = ("_rt", "_spec", "invocation_id", "status")

    def __init__(
        self,
        runtime: Runtime,
        invocation_id: str,
        status: InvocationStatusName,
        spec: Handler[Any, Any],
    ) -> None:
        self._rt = runtime
        self._spec = spec
        self.invocation_id = invocation_id
        self.status: InvocationStatusName = status

    async def result(self) -> Any:
        """Wait for the invocation's result. A ``TerminalError`` of the handler is
        raised here with its message and status code."""
        return await self._rt._await_result(self.invocation_id, self._spec)

    def __repr__(self) -> str:
        return f"<InvocationHandle {self.invocation_id} {self.status}>"


def _state_key(actor: str, key: str, name: str) -> bytes:
    return encode_key((actor, key, name))


def _journal_key(invocation_id: str, index: int) -> bytes:
    return encode_key((invocation_id, index))


def _delay_seconds(delay: timedelta | float | None) -> float:
    if delay is None:
        return 0.0
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"delay must be a finite, non-negative duration, not {delay!r}")
    return seconds


_resolved_annotations: weakref.WeakKeyDictionary[Callable[..., Any], Any] = (
    weakref.WeakKeyDictionary()
)


def _result_annotation(fn: Callable[..., Any], explicit: Any) -> Any:
    """The type a ``ctx.run`` result converts through: ``explicit``, else ``fn``'s
    return annotation (resolved once per function: string annotations, as under
    ``from __future__ import annotations``, cost a ``get_type_hints`` call)."""
    if explicit is not None:
        return explicit
    annotation = getattr(fn, "__annotations__", {}).get("return", object)
    if isinstance(annotation, str):
        function = getattr(fn, "__func__", fn)  # bound methods are new objects each time
        try:
            annotation = _resolved_annotations[function]
        except (KeyError, TypeError):
            try:
                annotation = typing.get_type_hints(function).get("return", object)
            except Exception:
                annotation = object
            try:
                _resolved_annotations[function] = annotation
            except TypeError:
                pass  # not weak-referenceable: resolve each time
    if annotation is None:
        return type(None)
    if typing.get_origin(annotation) in (typing.Awaitable, typing.Coroutine):
        return object
    return annotation


@final
class Runtime(metaclass=NoPublicConstructor):
    """An open runtime; created by ``open_runtime``.

    Guarantees:
      * ``send`` returns only once the invocation is durably recorded; it then completes
        exactly once, resuming from its journal after a crash or restart.
      * ``call`` waits for the result, which is returned only once the invocation's
        completion (its state writes included) is durable.
      * Per key, exclusive handlers run one at a time, in the order they reach the key
        (a delayed send when it is due); after a crash the key resumes in the order its
        work had started (``actors._key_order``). Shared handlers start at once and
        read committed state only.
      * A ``ctx.run`` body runs again only if the crash came before its result was
        durable; journaled operations replay their recorded values.
    """

    def __init__(
        self,
        store: Store,
        entries: Sequence[ActorEntry],
        task_group: anyio.abc.TaskGroup,
        *,
        idle_timeout: float,
        max_in_flight: int,
        retry: RetryPolicy,
        clock: Clock,
        suspend_after: float,
        retention: float,
    ) -> None:
        self._store = store
        self._entries = {entry.name: entry for entry in entries}
        self._tg = task_group
        self._idle_timeout = idle_timeout
        self._retry = retry
        self._clock = clock
        self._suspend_after = suspend_after
        self._slots = anyio.Semaphore(max_in_flight)
        # Coroutines blocked in durable waits cost ~10 kB each: beyond this many, they
        # are suspended early (a parked invocation costs a few hundred bytes).
        self._max_waiting = max(100, max_in_flight // 10)
        self._invocations: dict[str, Invocation] = {}
        self._activations: dict[tuple[str, str], _Activation] = {}
        self._graph = WaitForGraph()
        self._next_inbox_seq = 1
        self._closed = False
        self._retention = retention
        self._timers_changed = anyio.Event()
        self._timers: list[_HeapTimer] = []
        self._timer_seq = 0
        # Durable timers (the ``timers`` table) are loaded into the heap a window at a
        # time, so a million retention timers cost no memory until they are nearly due.
        self._timers_loaded_until = -math.inf
        # Suspended invocations dropped from memory, and what can wake them.
        self._parked: dict[str, _Parked] = {}
        self._promise_waiters: dict[bytes, dict[str, None]] = {}  # ordered sets of ids
        self._promise_inflight: dict[bytes, Outcome] = {}
        self._awakeable_inflight: set[str] = set()
        # Invocations blocked in a durable wait: the ones to suspend under memory pressure.
        self._waiting: dict[str, Invocation] = {}
        # Workflow ids whose main was accepted but is not durable yet: (actor, id) -> inv.
        self._workflow_claims: dict[tuple[str, str], str] = {}
        self._idempotency_inflight: dict[str, tuple[bytes, str]] = {}
        self._loop_time = loop_time_function()  # usable in commit callbacks too
        # Accepted invocations waiting for the dispatcher task, in acceptance order.
        # Commit callbacks run outside any task, where anyio cannot spawn one.
        self._accepted: deque[Invocation] = deque()
        self._accepted_ready = anyio.Event()
        self._inline_scopes: set[anyio.CancelScope] = set()
        #: Test hook (actors.testing): called with a ``ctx.run`` name before its body.
        self._before_run_body: Callable[[str], None] | None = None

    # --- public API ------------------------------------------------------------------------

    @overload
    async def call(
        self,
        target: Handler[Any, OutT],
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> OutT: ...
    @overload
    async def call(
        self,
        target: Handler[Any, OutT],
        arg: object,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> OutT: ...
    async def call(
        self,
        target: Handler[Any, OutT],
        arg: object = _NO_ARG,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
    ) -> OutT:
        """Invoke ``target`` (e.g. ``Counter.add``) with ``arg`` on ``key`` and wait for
        its result.

        Waits for a free slot when ``max_in_flight`` invocations are held in memory
        (backpressure). With ``idempotency_key``, a second call with the same key and the
        same request returns the first one's result instead of running again.

        Raises:
          UnknownHandlerError: the actor is not registered or has no such handler.
          TypeError: a key given to a service, missing for an object, or an input given
            to a handler that takes none (or missing).
          SerializationError: ``arg`` does not convert to the handler's input type.
          TerminalError: the handler failed terminally; same message and status code.
            Also raised (409) when ``idempotency_key`` was used for a different request.
          PersistenceError: the data directory failed.
        """
        if idempotency_key is not None or (isinstance(target, Handler) and target.kind == "main"):
            # Durably accepted first: the same key, or the same workflow id, maps to one
            # invocation, whose result (maybe an earlier run's) is returned.
            handle = await self.send(target, arg, key=key, idempotency_key=idempotency_key)
            result: OutT = await handle.result()
            return result
        self._check_open()
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        await self._acquire_slot()
        inv = self._new_invocation(entry, spec, tgt, payload, value, holds_slot=True)
        await self._run_call(inv)
        result = await self._result_of(inv)
        return result

    async def send(
        self,
        target: Handler[Any, Any],
        arg: object = _NO_ARG,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
    ) -> InvocationHandle:
        """Accept an invocation without waiting for it; ``delay`` postpones its start.

        Returns once the invocation is durably recorded, with a handle whose
        ``result()`` waits for the outcome. With ``idempotency_key``, a repeated request
        returns the first invocation's handle with status ``"PreviouslyAccepted"``.
        Raises like ``call`` for bad input, and ``ValueError`` for a negative delay;
        nothing is stored for rejected input.
        """
        self._check_open()
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        seconds = _delay_seconds(delay)
        if spec.kind == "main":
            if idempotency_key is not None:
                raise TypeError(
                    f"{spec.qualname} runs once per workflow id already: submitting it "
                    "again answers PreviouslyAccepted, so it takes no idempotency_key"
                )
            assert tgt.key is not None
            existing = self._workflow_invocation(tgt.actor, tgt.key)
            if existing is not None:
                await anyio.lowlevel.checkpoint()
                return InvocationHandle._create(self, existing, "PreviouslyAccepted", spec)
            invocation_id = new_invocation_id()
            claim: tuple[str, str] | None = (tgt.actor, tgt.key)
            self._workflow_claims[(tgt.actor, tgt.key)] = invocation_id  # before any await
        else:
            invocation_id = None
            claim = None
        try:
            return await self._send_new(
                entry, spec, tgt, payload, value, seconds, idempotency_key, invocation_id
            )
        finally:
            if claim is not None:
                self._workflow_claims.pop(claim, None)  # durable by now, or never accepted

    async def _send_new(
        self,
        entry: ActorEntry,
        spec: Handler[Any, Any],
        tgt: Target,
        payload: bytes,
        value: Any,
        seconds: float,
        idempotency_key: str | None,
        invocation_id: str | None,
    ) -> InvocationHandle:
        digest = b""
        if idempotency_key is not None:
            digest = self._request_digest(tgt, payload)
            previous = self._idempotent_previous(idempotency_key, digest)
            if previous is not None:
                await anyio.lowlevel.checkpoint()
                return InvocationHandle._create(self, previous, "PreviouslyAccepted", spec)
        await self._acquire_slot()
        inv = self._new_invocation(
            entry,
            spec,
            tgt,
            payload,
            value,
            invocation_id=invocation_id,
            idempotency_key=idempotency_key,
            holds_slot=True,
        )
        batch = WriteBatch()
        if idempotency_key is not None:
            record = IdempotencyRecord(inv.invocation_id, digest)
            batch.put(Table.IDEMPOTENCY, encode_key((idempotency_key,)), dumps(record))
            self._idempotency_inflight[idempotency_key] = (digest, inv.invocation_id)
        try:
            await self._accept(inv, seconds, batch)
        except BaseException:
            self._slots.release()
            raise
        finally:
            if idempotency_key is not None:
                self._idempotency_inflight.pop(idempotency_key, None)
        return InvocationHandle._create(self, inv.invocation_id, "Accepted", spec)

    async def attach(self, invocation_id: str) -> Any:
        """Wait for the result of the invocation ``invocation_id``.

        Raises ``UnknownHandlerError`` for an id this data directory never accepted."""
        self._check_open()
        inv = self._invocations.get(invocation_id)
        spec = inv.spec if inv is not None else self._stored_spec(invocation_id)
        return await self._await_result(invocation_id, spec)

    async def attach_workflow(self, workflow: type[Actor], workflow_id: str) -> Any:
        """Wait for the result of ``workflow``'s run on ``workflow_id``.

        Raises ``UnknownHandlerError`` when no run was submitted for that id (or it
        expired after its retention)."""
        self._check_open()
        return await self.attach(self._workflow_run_id(workflow, workflow_id))

    async def output(self, invocation_id: str) -> Any:
        """The result of a finished invocation, without waiting: raises
        ``NotReadyError`` (470) while it runs, ``UnknownHandlerError`` for an unknown id,
        and the invocation's ``TerminalError`` if it failed."""
        self._check_open()
        inv = self._invocations.get(invocation_id)
        done = inv.done if inv is not None else None
        parked = self._parked.get(invocation_id)
        if parked is not None:
            done = parked.done
        if done is not None and not done.finished:
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        record = self._load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        if record.outcome is None:
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        spec = self._spec_of(record)
        return self._decode_outcome(record.outcome, spec.output_type, f"output of {spec.qualname}")

    async def workflow_output(self, workflow: type[Actor], workflow_id: str) -> Any:
        """``output`` of ``workflow``'s run on ``workflow_id``: the result if it finished,
        else ``NotReadyError``."""
        self._check_open()
        return await self.output(self._workflow_run_id(workflow, workflow_id))

    async def resolve_awakeable(self, awakeable_id: str, value: object) -> None:
        """Complete the awakeable ``awakeable_id`` with ``value``; durable before this
        returns, and the waiting handler is woken (rebuilt by replay if it was parked).

        Raises ``TerminalError`` with 400 for a malformed id, 404 for an id no
        invocation created, and 409 if it was already completed (its value is kept)."""
        self._check_open()
        await self._complete_awakeable(None, awakeable_id, value, None)

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Fail the awakeable: its waiter gets ``TerminalError(reason)``. Errors as
        ``resolve_awakeable``."""
        self._check_open()
        await self._complete_awakeable(None, awakeable_id, None, reason)

    async def cancel(self, invocation_id: str) -> None:
        """Cancel an invocation. Durable before this returns.

        The handler gets a ``TerminalError`` with status 409 at its next durable await
        (``ctx.run``, ``sleep``, a call, a promise, ``select``...), so its ``try/except``
        compensations run; the invocations it is waiting on are cancelled too; its
        callers receive the cancellation (or whatever the handler made of it). An
        invocation that has not started completes at once as cancelled.

        Raises ``UnknownHandlerError`` for an unknown id and ``TerminalError`` (409) if
        it has already completed."""
        self._check_open()
        await self._cancel(invocation_id, kill=False)

    async def kill(self, invocation_id: str) -> None:
        """End an invocation at once, without compensation, and wait until that is
        durable. Its callers get a ``TerminalError`` (409) saying it was killed; the
        invocations it was waiting on are killed too; an object key it held is handed
        to the next queued invocation. A ``ctx.run`` body running on a thread finishes
        first (threads cannot be interrupted), but its result is discarded.

        Raises like ``cancel``."""
        self._check_open()
        await self._cancel(invocation_id, kill=True)

    async def resume(self, invocation_id: str) -> None:
        """Resume a paused invocation: its attempts start again from its journal.

        Raises ``UnknownHandlerError`` for an unknown id and ``ValueError`` when the
        invocation is not paused."""
        self._check_open()
        inv = self._invocations.get(invocation_id)
        if inv is None:
            self._stored_spec(invocation_id)  # raises for an unknown id
            raise ValueError(f"invocation {invocation_id} is not paused (it is not running)")
        if inv.paused_reason is None:
            raise ValueError(f"invocation {invocation_id} is not paused")
        inv.paused_reason = None
        inv.attempt = 0
        batch = WriteBatch()
        batch.put(
            Table.INVOCATIONS,
            inv.invocation_id.encode(),
            dumps(inv.record(InvocationStatus.RUNNING)),
        )
        await self._commit(batch)
        if inv.resume is not None:  # else its task has not reached the wait yet
            inv.resume.set()
        self._log("resumed", inv)

    @property
    def path(self) -> Path:
        """The data directory this runtime owns."""
        return self._store.path

    async def serve_http(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None = None,
        max_body: int = 16 * 1024 * 1024,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve Restate's HTTP ingress for this runtime until cancelled.

        Start it in a task group, which hands back the bound port (``port=0`` picks a
        free one)::

            async with anyio.create_task_group() as tg:    # or a trio nursery
                port = await tg.start(rt.serve_http, "127.0.0.1", 0)
                ...
                tg.cancel_scope.cancel()                    # stops the server

        Runs hypercorn's trio worker under trio and its asyncio worker under asyncio.
        The socket listens before the port is handed back, so requests made from then
        on are served. While serving, ``<data dir>/ingress.json`` holds
        ``{"url", "pid", "token_required"}``; it is removed on stop. On cancellation
        requests still waiting (a call, an attach) are answered 503. Paths and status
        codes: README "HTTP ingress" and ``actors._ingress``.

        Args:
          host: the address to bind; loopback unless told otherwise.
          port: the TCP port; 0 for any free one.
          token: when given, every request needs ``Authorization: Bearer <token>``
            (else 401).
          max_body: largest request body accepted, in bytes (else 413).

        Raises:
          OSError: the address cannot be bound.
          RuntimeClosedError: the runtime is closed.
        """
        self._check_open()
        from ._ingress import serve  # lazily: hypercorn is only needed when serving

        await serve(self, host, port, token=token, max_body=max_body, task_status=task_status)

    def statistics(self) -> RuntimeStatistics:
        """In-memory load: invocations held, active keys, queued exclusive work."""
        invocations = self._invocations.values()
        return RuntimeStatistics(
            parked=len(self._parked),
            timers=len(self._timers),
            in_flight=len(self._invocations),
            activations=len(self._activations),
            queued_exclusive=sum(
                a.mailbox.statistics().queued_exclusive for a in self._activations.values()
            )
            + sum(1 for inv in self._accepted if inv.exclusive and inv.not_before is None),
            suspended=sum(1 for inv in invocations if inv.suspended) + len(self._parked),
            paused=sum(1 for inv in invocations if inv.paused_reason is not None),
        )

    # --- resolution and input ----------------------------------------------------------------

    def _spawn(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._tg.start_soon(task)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosedError("the runtime is closed")

    def _resolve(
        self, target: Handler[Any, Any], key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        if not isinstance(target, Handler):
            raise TypeError(f"call target must be a handler such as Counter.add, not {target!r}")
        owner = target.owner
        actor_name = owner.actor_name if owner is not None and issubclass(owner, Actor) else "?"
        entry = self._entries.get(actor_name)
        if entry is None or owner is None:
            raise UnknownHandlerError(f"actor {actor_name!r} is not registered with this runtime")
        if not issubclass(entry.cls, owner):
            raise UnknownHandlerError(
                f"{target.qualname} belongs to {owner.__qualname__}, but the actor named "
                f"{actor_name!r} in this runtime is {entry.cls.__qualname__}"
            )
        spec = entry.cls.handlers.get(target.name)
        if spec is None:
            raise UnknownHandlerError(f"actor {actor_name!r} has no handler {target.name!r}")
        return entry, spec, self._target(entry, spec, key)

    def resolve_name(
        self, actor: str, handler: str, key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        """Resolve a target by names (HTTP ingress, CLI, recovery)."""
        entry = self._entries.get(actor)
        if entry is None:
            raise UnknownHandlerError(f"actor {actor!r} is not registered with this runtime")
        spec = entry.cls.handlers.get(handler)
        if spec is None:
            raise UnknownHandlerError(f"actor {actor!r} has no handler {handler!r}")
        return entry, spec, self._target(entry, spec, key)

    @staticmethod
    def _target(entry: ActorEntry, spec: Handler[Any, Any], key: str | None) -> Target:
        if entry.cls.actor_kind == "service":
            if key is not None:
                raise TypeError(
                    f"{entry.name} is a service: its handlers take no key (got key={key!r})"
                )
            return Target(entry.name, spec.name, None)
        if key is None:
            what = "object" if entry.cls.actor_kind == "object" else "workflow"
            raise TypeError(f"{entry.name} is a keyed {what}: {entry.name}.{spec.name} needs key=")
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        return Target(entry.name, spec.name, key)

    def _new_invocation(
        self,
        entry: ActorEntry,
        spec: Handler[Any, Any],
        target: Target,
        payload: bytes,
        value: Any,
        *,
        invocation_id: str | None = None,
        caller_id: str | None = None,
        caller_index: int | None = None,
        idempotency_key: str | None = None,
        holds_slot: bool = False,
    ) -> Invocation:
        """A new invocation accepted now (a fresh id unless a derived one is given)."""
        return Invocation(
            invocation_id=invocation_id or new_invocation_id(),
            target=target,
            entry=entry,
            spec=spec,
            payload=payload,
            arg=value,
            accepted_at=self._clock.now(),
            caller_id=caller_id,
            caller_index=caller_index,
            idempotency_key=idempotency_key,
            holds_slot=holds_slot,
        )

    @staticmethod
    def _check_input(spec: Handler[Any, Any], arg: object) -> tuple[bytes, Any]:
        if not spec.has_input:
            if arg is not _NO_ARG:
                raise TypeError(f"{spec.qualname} takes no input, but one was given")
            return b"null", _NO_ARG
        if arg is _NO_ARG:
            raise TypeError(
                f"{spec.qualname} takes an input of type {spec.input_type!r}; none was given"
            )
        return check_value(arg, spec.input_type, f"input of {spec.qualname}")

    def _resolve_in_handler(
        self, target: Handler[Any, Any], key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        # Inside a handler a malformed call is deterministic: fail it, do not retry it.
        try:
            return self._resolve(target, key)
        except TypeError as exc:
            raise TerminalError(str(exc), 400) from exc

    def _check_input_in_handler(self, spec: Handler[Any, Any], arg: object) -> tuple[bytes, Any]:
        try:
            return self._check_input(spec, arg)
        except TypeError as exc:
            raise TerminalError(str(exc), 400) from exc

    @staticmethod
    def _request_digest(target: Target, payload: bytes) -> bytes:
        parts = (target.actor, target.handler, target.key or "")
        return hashlib.blake2b(repr(parts).encode() + b"\0" + payload, digest_size=16).digest()

    def _idempotent_previous(self, idempotency_key: str, digest: bytes) -> str | None:
        inflight = self._idempotency_inflight.get(idempotency_key)
        if inflight is not None:
            stored_digest, invocation_id = inflight
        else:
            try:
                data = self._store.get(Table.IDEMPOTENCY, encode_key((idempotency_key,)))
            except StorageError as exc:
                raise persistence_error(exc) from exc
            if data is None:
                return None
            record = loads(IdempotencyRecord, data)
            stored_digest, invocation_id = record.request_digest, record.invocation_id
        if stored_digest != digest:
            raise TerminalError(
                f"idempotency key {idempotency_key!r} was already used for a different "
                f"request (invocation {invocation_id}); use a new key for a new request",
                409,
            )
        return invocation_id

    # --- workflows ------------------------------------------------------------------------------

    def _workflow_invocation(self, actor: str, workflow_id: str) -> str | None:
        """The invocation id of the run of ``actor`` on ``workflow_id``, if submitted."""
        claimed = self._workflow_claims.get((actor, workflow_id))
        if claimed is not None:
            return claimed
        try:
            data = self._store.get(Table.WORKFLOWS, encode_key((actor, workflow_id)))
        except StorageError as exc:
            raise persistence_error(exc) from exc
        return None if data is None else loads(WorkflowRecord, data).invocation_id

    def _claim_workflow(self, inv: Invocation) -> tuple[str, str] | None:
        """Reserve the workflow id of a new ``main`` invocation until its acceptance is
        durable, so a concurrent submission answers PreviouslyAccepted."""
        if inv.spec.kind != "main":
            return None
        assert inv.target.key is not None
        claim = (inv.target.actor, inv.target.key)
        self._workflow_claims[claim] = inv.invocation_id
        return claim

    def _workflow_run_id(self, workflow: type[Actor], workflow_id: str) -> str:
        if not (isinstance(workflow, type) and issubclass(workflow, Actor)):
            raise TypeError(f"expected a Workflow class, not {workflow!r}")
        entry = self._entries.get(workflow.actor_name)
        if entry is None or entry.cls.actor_kind != "workflow":
            raise UnknownHandlerError(
                f"workflow {workflow.actor_name!r} is not registered with this runtime"
            )
        if not isinstance(workflow_id, str):
            raise TypeError(f"workflow ids are str, not {type(workflow_id).__name__}")
        invocation_id = self._workflow_invocation(entry.name, workflow_id)
        if invocation_id is None:
            raise UnknownHandlerError(f"no run of workflow {entry.name!r} with id {workflow_id!r}")
        return invocation_id

    def _spec_of(self, record: InvocationRecord) -> Handler[Any, Any]:
        _, spec, _ = self.resolve_name(
            record.target.actor, record.target.handler, record.target.key
        )
        return spec

    # --- acceptance and dispatch ---------------------------------------------------------------

    async def _accept(self, inv: Invocation, delay: float, batch: WriteBatch) -> None:
        """Durably record ``inv`` (record + inbox, plus ``batch``'s own operations), then
        deliver it now or after ``delay``.

        Delivery happens in the commit's completion callback, not in the waiting task:
        so invocations reach their mailboxes in acceptance order (the order a restart
        uses), and a cancelled sender cannot strand an accepted invocation."""
        if delay:
            inv.not_before = inv.accepted_at + delay
        self._add_acceptance(inv, batch, InvocationStatus.PENDING)

        def deliver(ticket: CommitTicket) -> None:
            if ticket.error is None and not self._closed:
                self._invocations[inv.invocation_id] = inv  # attachable from now on
                self._accepted.append(inv)
                self._accepted_ready.set()

        try:
            ticket = self._store.submit(batch, deliver)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        try:
            await ticket.wait()
        except StorageError as exc:
            raise persistence_error(exc) from exc

    async def _dispatch_accepted(self) -> None:
        """Deliver accepted invocations in the order their acceptances committed."""
        while True:
            await self._accepted_ready.wait()
            self._accepted_ready = anyio.Event()
            while self._accepted:
                inv = self._accepted.popleft()
                if inv.dispatched:  # cancelled or killed before it got here
                    continue
                self._log("accepted", inv)
                if inv.not_before is not None:
                    self._invocations[inv.invocation_id] = inv
                    self._schedule_timer(inv.not_before, TimerKind.DELIVER, inv.invocation_id, None)
                else:
                    self._dispatch(inv)

    async def _commit(self, batch: WriteBatch) -> None:
        try:
            await self._store.commit(batch)
        except StorageError as exc:
            raise persistence_error(exc) from exc

    def _next_seq(self) -> int:
        seq = self._next_inbox_seq
        self._next_inbox_seq += 1
        return seq

    def _add_acceptance(self, inv: Invocation, batch: WriteBatch, status: InvocationStatus) -> None:
        """Write ``inv``'s record and inbox row: at its admitted position when it already
        holds one (a ``call`` recorded at its first flush), else in acceptance order."""
        if inv.position is not None:
            inv.inbox_key = admitted_row(inv.target, inv.position)
        else:
            inv.inbox_key = accepted_row(inv.target, self._next_seq())
        batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(inv.record(status)))
        batch.put(Table.INBOX, inv.inbox_key, inv.invocation_id.encode())
        if inv.spec.kind == "main" and inv.target.key is not None:
            batch.put(
                Table.WORKFLOWS,
                encode_key((inv.target.actor, inv.target.key)),
                dumps(WorkflowRecord(inv.invocation_id)),
            )

    def _dispatch(self, inv: Invocation) -> None:
        inv.dispatched = True
        self._invocations[inv.invocation_id] = inv
        key = inv.target.key
        if key is None:
            self._tg.start_soon(self._run, inv, _noop)
            return
        activation = self._activation(inv.target.actor, key)
        inv.activation = activation
        self._admit(inv)
        activation.mailbox.deliver(inv)

    def _admit(self, inv: Invocation) -> None:
        """Give an exclusive invocation its place among its key's work, at the moment it
        enters the key's FIFO (see ``_key_order``): mailbox order and durable order are
        then the same order. One that had started keeps the place it had."""
        if inv.exclusive and inv.position is None:
            inv.position = self._next_seq()

    async def _run_call(self, inv: Invocation) -> None:
        """Run a ``call`` in the caller's own task when it may start at once (no task
        to spawn, no extra switch); otherwise queue it like any invocation."""
        inv.dispatched = True
        self._invocations[inv.invocation_id] = inv
        key = inv.target.key
        release: Callable[[], None] = _noop
        if key is not None and inv.exclusive:
            activation = self._activation(inv.target.actor, key)
            inv.activation = activation
            self._admit(inv)
            claimed = activation.mailbox.try_claim(inv)
            if claimed is None:
                return  # queued behind the key's current work
            release = claimed
        # The handler runs in the caller's task, but belongs to the runtime: closing the
        # runtime cancels it, as it cancels the handlers in the runtime's task group.
        scope = anyio.CancelScope()
        self._inline_scopes.add(scope)
        try:
            with scope:
                outcome = await self._run(inv, release)
        except BaseException:
            if (
                inv.inbox_key is not None
                and inv.outcome is None
                and not inv.completing
                and not self._closed
            ):
                # The caller went away mid-run, but the invocation was recorded: it
                # must still complete. Continue it in the background from its journal,
                # still holding its key: work queued behind it must not overtake it.
                successor = attrs.evolve(inv, done=Completion(), holds_slot=False)
                self._invocations[inv.invocation_id] = successor
                holding = inv.activation
                if holding is not None and holding.mailbox.running_exclusive is inv:
                    successor.dispatched = True
                    holding.mailbox.hand_over(inv, successor)
                else:
                    release()
                    self._dispatch(successor)
            else:
                release()
            raise
        finally:
            self._inline_scopes.discard(scope)
        if scope.cancelled_caught or outcome != HOLD:
            release()

    def _activation(self, actor: str, key: str) -> _Activation:
        activation = self._activations.get((actor, key))
        if activation is None:
            mailbox: Mailbox[Invocation] = Mailbox(f"{actor}/{key}", self._run, self._spawn)
            activation = _Activation(mailbox)
            self._activations[(actor, key)] = activation
        activation.last_used = self._loop_time()
        return activation

    def _resume_suspended(self, inv: Invocation) -> None:
        inv.suspended = False
        self._log("resumed", inv)
        if inv.target.key is None:
            self._tg.start_soon(self._run, inv, _noop)
            return
        activation = inv.activation or self._activation(inv.target.actor, inv.target.key)
        inv.activation = activation
        activation.last_used = self._loop_time()
        activation.mailbox.resume(inv)

    # --- flushing and the output gate -------------------------------------------------------------

    def _chain(self, inv: Invocation) -> CommitTicket | None:
        activation = inv.activation
        if inv.exclusive and activation is not None:
            return activation.last_ticket
        return inv.last_ticket

    def _flush(
        self, inv: Invocation, batch: WriteBatch | None = None, *, accept: bool = True
    ) -> CommitTicket | None:
        """Submit the invocation's acceptance (if not yet written and ``accept``), new
        journal entries and state writes, followed by ``batch``'s operations, as one
        batch. Returns its ticket, or None when there was nothing to write."""
        if batch is None:
            nothing_new = (
                not inv.unflushed and not inv.writes and not inv.cleared_all and not inv.pending_ops
            )
            if inv.inbox_key is not None and nothing_new:
                return None
            batch = WriteBatch()
        head = WriteBatch()
        accepting = accept and inv.inbox_key is None
        moving_from: bytes | None = None
        if accepting:
            self._add_acceptance(inv, head, InvocationStatus.RUNNING)
        elif accept and inv.position is not None and inv.inbox_key is not None:
            started = admitted_row(inv.target, inv.position)
            if inv.inbox_key != started:
                # Its first durable step: from now on it resumes at its admitted place.
                moving_from = inv.inbox_key
                head.delete(Table.INBOX, moving_from)
                head.put(Table.INBOX, started, inv.invocation_id.encode())
                inv.inbox_key = started
        for index, entry in inv.unflushed:
            head.put(Table.JOURNAL, _journal_key(inv.invocation_id, index), dumps_entry(entry))
        if inv.pending_ops:
            head.ops.extend(inv.pending_ops)
            head.nbytes += sum(len(op[2]) + len(op[3] or b"") for op in inv.pending_ops)
            inv.pending_ops = []
        if inv.exclusive:
            self._add_state_writes(inv, head)
        head.ops.extend(batch.ops)
        head.nbytes += batch.nbytes
        chain = self._chain(inv)
        head.depends_on = chain.seq if chain is not None else 0
        try:
            ticket = self._store.submit(head)
        except StorageError as exc:
            if accepting:
                inv.inbox_key = None
            elif moving_from is not None:
                inv.inbox_key = moving_from
            raise TerminalError(f"cannot store the invocation's data: {exc}", 413) from exc
        inv.unflushed = []
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

    def _forget_failed_chain(self, inv: Invocation) -> None:
        """At the start of an attempt: if the last batch this invocation's writes would
        build on has already failed, nothing pending is left to build on (every batch
        after it failed too), so start a fresh chain and read storage, not the overlay.
        A batch still in flight stays a dependency: the attempt may read its writes."""
        ticket = self._chain(inv)
        if ticket is None or not ticket.done or ticket.error is None:
            return
        activation = inv.activation
        if inv.exclusive and activation is not None:
            activation.last_ticket = None
            activation.overlay.clear()
            activation.overlay_cleared = False
            activation.overlay_seq = 0
        else:
            inv.last_ticket = None

    async def _gate(self, inv: Invocation) -> None:
        """The output gate: flush, then wait until everything the invocation's next
        effect depends on is durable. A failed commit fails the attempt (retried)."""
        self._flush(inv)
        ticket = self._chain(inv)
        if ticket is None:
            await anyio.lowlevel.checkpoint()
        else:
            try:
                await ticket.wait()
            except StorageError as exc:
                raise _StepFailed(str(exc)) from exc
        if inv.pending_calls:  # their acceptances are durable now: deliver them
            pending, inv.pending_calls = inv.pending_calls, []
            for callee in pending:
                self._dispatch(callee)
                self._log("accepted", callee)
                if callee.spec.kind == "main" and callee.target.key is not None:
                    self._workflow_claims.pop((callee.target.actor, callee.target.key), None)

    # --- running ------------------------------------------------------------------------------------

    async def _run(self, inv: Invocation, release: Callable[[], None]) -> object:
        # A call made from a step's body runs a handler of its own, in the same task.
        token = _RUN_BODY.set(None)
        try:
            return await self._run_handler(inv, release)
        finally:
            _RUN_BODY.reset(token)

    async def _run_handler(self, inv: Invocation, release: Callable[[], None]) -> object:
        key_node: Node | None = None
        if inv.exclusive and not inv.killed and not inv.keyless:
            key_node = ("key", f"{inv.target.actor}/{inv.target.key}")
            self._graph.hold(key_node, ("inv", inv.invocation_id))
        inv.running = True
        finished = False
        parked = False
        status = InvocationStatus.COMPLETED
        try:
            with anyio.CancelScope() as scope:  # kill() cancels it
                inv.run_scope = scope
                outcome = await self._attempts(inv)
            inv.run_scope = None
            if inv.killed:
                outcome = Failure(f"invocation {inv.invocation_id} was killed", 409)
                status = InvocationStatus.KILLED
                inv.suspended = False
                self._log("killed", inv)
            if outcome is None:  # suspended: the coroutine is gone
                if inv.holds_slot:  # it no longer costs a coroutine: let new work in
                    inv.holds_slot = False
                    self._slots.release()
                if inv.spec.kind == "exclusive":
                    return HOLD  # an object keeps its key while it waits
                parked = True
                if key_node is not None:
                    self._graph.release(key_node)
                    key_node = None
                release()  # a parked main holds no key: nothing else may run on it anyway
                self._park(inv)
                return None
            if self._is_pure_read(inv):
                # Nothing to record: the answer depends only on state that is committed
                # (shared, service) or on the key's queued commits (exclusive).
                ticket = self._chain(inv)
                if key_node is not None:
                    self._graph.release(key_node)
                    key_node = None
                release()
                finished = True
                if ticket is not None and not ticket.done:
                    try:
                        await ticket.wait()
                    except StorageError as exc:
                        inv.error = persistence_error(exc)
                        return None
                elif ticket is not None and ticket.error is not None:
                    inv.error = persistence_error(ticket.error)
                    return None
                inv.outcome = outcome
                self._log("completed", inv)
                return None
            inv.completing = True
            ticket = self._submit_completion(inv, outcome, status)
            if key_node is not None:
                self._graph.release(key_node)
                key_node = None
            release()  # the next exclusive invocation may start on our queued writes
            finished = True
            try:
                await ticket.wait()
            except StorageError as exc:
                inv.error = persistence_error(exc)
                logger.error("completion of invocation %s failed: %s", inv.invocation_id, exc)
            else:
                inv.outcome = outcome
                if status is not InvocationStatus.KILLED:
                    self._log("completed", inv)
                self._after_completion(inv)
            return None
        finally:
            inv.running = False
            inv.run_scope = None
            if key_node is not None and not inv.suspended:
                self._graph.release(key_node)
            if parked:
                pass
            elif finished or not inv.suspended:
                self._finish(inv)

    async def _attempts(self, inv: Invocation) -> Outcome | None:
        """Run attempts until one completes (its outcome) or the invocation suspends
        (None). Retries and pauses happen here, with the key held."""
        policy = inv.spec.retry or self._retry
        while True:
            if inv.killed:
                return None
            if inv.paused_reason is not None:
                await self._wait_resumed(inv)
            if inv.not_before is not None and not inv.cancel_requested:
                await self._clock.sleep_until(inv.not_before)
            inv.not_before = None
            self._forget_failed_chain(inv)
            journal = self._load_journal(inv)
            if inv.cancel_requested and not journal:
                # Cancelled before it did anything: nothing to compensate, do not start.
                return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
            inv.start_attempt(journal)
            inv.attempt += 1
            try:
                return await self._attempt(inv)
            except Suspended:
                if inv.wake_pending:  # what it waited for completed while unwinding
                    inv.wake_pending = False
                    inv.suspended = False
                    continue
                self._log("suspended", inv)
                return None
            except NonDeterminismError as exc:
                if inv.cancel_requested:  # cancelled: it is not retried or paused again
                    return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
                await self._pause(inv, str(exc))
            except (_HandlerFailed, _StepFailed) as exc:
                if inv.cancel_requested and isinstance(exc, _HandlerFailed):
                    return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
                reason = str(exc)
                if isinstance(exc, _HandlerFailed) and any(
                    isinstance(entry, RunEntry) for _, entry in inv.unflushed
                ):
                    # Keep the step results the attempt produced, so their bodies do
                    # not run again (their state writes come along, as in a journal).
                    try:
                        self._flush(inv)
                    except TerminalError:
                        pass
                # Otherwise the failed attempt's tail is dropped: state stays unchanged.
                inv.unflushed = []
                inv.writes = {}
                inv.cleared_all = False
                if inv.acceptance_ticket is not None and inv.acceptance_ticket.error is not None:
                    # The acceptance (or the move to its admitted row) never landed: the
                    # row is where it was before, and the next flush writes it again.
                    inv.inbox_key = inv.moved_from
                    inv.moved_from = None
                    inv.acceptance_ticket = None
                if policy.exhausted(inv.attempt):
                    await self._pause(inv, f"gave up after {inv.attempt} attempts: {reason}")
                else:
                    inv.not_before = self._clock.now() + policy.delay(inv.attempt + 1)
                    logger.info(
                        "invocation %s (%s) attempt %d failed, retrying in %.3fs: %s",
                        inv.invocation_id,
                        inv.spec.qualname,
                        inv.attempt,
                        inv.not_before - self._clock.now(),
                        reason,
                    )

    async def _attempt(self, inv: Invocation) -> Outcome:
        spec = inv.spec
        try:
            if spec.has_input and inv.arg is UNDECODED:
                inv.arg = decode_value(inv.payload, spec.input_type, f"input of {spec.qualname}")
        except SerializationError as exc:
            return Failure(str(exc), exc.status_code)
        ctx = self._context_for(inv)
        instance = inv.entry.instance
        try:
            result = await (
                spec.fn(instance, ctx, inv.arg) if spec.has_input else spec.fn(instance, ctx)
            )
            return Success(encode_value(result, spec.output_type, f"output of {spec.qualname}"))
        except TerminalError as exc:
            # Restate semantics: a terminal failure keeps the state written before it.
            return _failure(exc)
        except (NonDeterminismError, _StepFailed):
            raise
        except SerializationError as exc:
            return Failure(str(exc), 500)
        except UnknownHandlerError as exc:
            # A call to a handler that does not exist: retrying cannot help.
            return Failure(str(exc), exc.status_code)
        except Exception as exc:
            logger.warning(
                "handler %s of invocation %s raised %s: %s",
                spec.qualname,
                inv.invocation_id,
                type(exc).__name__,
                exc,
            )
            raise _HandlerFailed(f"{type(exc).__name__}: {exc}") from exc
        except BaseExceptionGroup as group:
            # A task group of the handler's own carried one of our signals out of a
            # child task: act on the signal, not on its wrapper.
            signals = group.subgroup(lambda exc: isinstance(exc, _StepFailed | Suspended))
            if signals is not None:
                raise _first_leaf(signals) from group
            raise

    async def _pause(self, inv: Invocation, reason: str) -> None:
        inv.paused_reason = reason
        logger.error("invocation %s (%s) paused: %s", inv.invocation_id, inv.spec.qualname, reason)
        batch = WriteBatch()
        batch.put(
            Table.INVOCATIONS,
            inv.invocation_id.encode(),
            dumps(inv.record(InvocationStatus.PAUSED)),
        )
        try:
            # The acceptance (if any) goes first in the batch, so the PAUSED record wins.
            ticket = self._flush(inv, batch)
            if ticket is not None:
                await ticket.wait()
        except (StorageError, TerminalError) as exc:
            logger.error("could not record the pause of %s: %s", inv.invocation_id, exc)
        await self._wait_resumed(inv)

    async def _wait_resumed(self, inv: Invocation) -> None:
        if inv.paused_reason is None:
            return
        inv.resume = anyio.Event()
        await inv.resume.wait()
        inv.resume = None

    def _context_for(self, inv: Invocation) -> Context:
        kind = inv.spec.kind
        if kind == "exclusive":
            return ObjectContext._create(self, inv)
        if kind == "service":
            return Context._create(self, inv)
        if kind == "main":
            return WorkflowContext._create(self, inv)
        if inv.entry.cls.actor_kind == "workflow":
            return WorkflowSharedContext._create(self, inv)
        return ObjectSharedContext._create(self, inv)

    def _load_journal(self, inv: Invocation) -> dict[int, JournalEntry]:
        if inv.inbox_key is None:
            return {}
        try:
            items = self._store.scan(Table.JOURNAL, encode_key((inv.invocation_id,)), children=True)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        journal: dict[int, JournalEntry] = {}
        for key, value in items:
            index = decode_key(key)[-1]
            assert isinstance(index, int)
            journal[index] = loads_entry(value)
        return journal

    @staticmethod
    def _is_ephemeral(inv: Invocation) -> bool:
        """A ``call`` that never recorded anything: nobody can attach to it and no
        journal refers to it, so its completion needs no record."""
        return inv.inbox_key is None and inv.caller_id is None and inv.idempotency_key is None

    def _is_pure_read(self, inv: Invocation) -> bool:
        """An ephemeral call that wrote nothing: completing it needs no commit at all."""
        return self._is_ephemeral(inv) and not inv.writes and not inv.cleared_all

    def _submit_completion(
        self, inv: Invocation, outcome: Outcome, status: InvocationStatus
    ) -> CommitTicket:
        """Queue the completion: remaining entries and writes, the completed record (which
        is also the acceptance of a call never flushed before), the inbox deletion and
        the caller's journal entry, in one batch."""
        # A plain ``call`` that recorded nothing before completing leaves no history
        # (as in Restate, completed invocations are kept only when someone can refer to
        # them: sends, idempotent requests, calls between actors). Its journal is moot.
        ephemeral = self._is_ephemeral(inv)
        if ephemeral:
            inv.unflushed = []
        while True:
            batch = WriteBatch()
            if not ephemeral:
                now = self._clock.now()
                record = inv.record(status, outcome, now)
                batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(record))
                expire_at = now + self._retention
                expiry = _timer_key(expire_at, inv.invocation_id, TimerKind.EXPIRE, 0)
                batch.put(
                    Table.TIMERS,
                    expiry,
                    dumps(TimerRecord(TimerKind.EXPIRE, inv.invocation_id, expire_at)),
                )
                inv.expiry = (expire_at, expiry)
            for timer_key in inv.timer_keys:  # sleeps that never fired (a lost select)
                batch.delete(Table.TIMERS, timer_key)
            if inv.inbox_key is not None:
                batch.delete(Table.INBOX, inv.inbox_key)
            if inv.caller_id is not None and inv.caller_index is not None:
                entry = CallEntry(inv.invocation_id, inv.target, inv.payload, outcome)
                batch.put(
                    Table.JOURNAL, _journal_key(inv.caller_id, inv.caller_index), dumps_entry(entry)
                )
            try:
                ticket = self._flush(inv, batch, accept=False)
            except TerminalError as exc:
                # Too large to store (state or result): complete with that error instead.
                inv.unflushed = []
                inv.writes = {}
                inv.cleared_all = False
                outcome = _failure(exc)
                continue
            assert ticket is not None
            return ticket

    def _after_completion(self, inv: Invocation) -> None:
        """The completion is durable: deliver calls it left undelivered, schedule its
        expiry and wake its caller."""
        for callee in inv.pending_calls:
            self._dispatch(callee)
        inv.pending_calls = []
        if inv.expiry is not None and inv.expiry[0] <= self._timers_loaded_until:
            # Later expiries are loaded from the timers table when their window comes.
            self._schedule_timer(inv.expiry[0], TimerKind.EXPIRE, inv.invocation_id, inv.expiry[1])
        if inv.caller_id is not None:
            self._wake(inv.caller_id)

    def _finish(self, inv: Invocation) -> None:
        self._invocations.pop(inv.invocation_id, None)
        activation = inv.activation
        if (
            inv.spec.kind == "main"
            and activation is not None
            and inv.target.key is not None
            and activation.mailbox.idle
            and (activation.last_ticket is None or activation.last_ticket.done)
        ):
            # A finished workflow run leaves nothing to schedule on its id: free it now.
            self._activations.pop((inv.target.actor, inv.target.key), None)
        if inv.holds_slot:
            inv.holds_slot = False
            self._slots.release()
        inv.done.set()

    # --- suspension, parking and waking -------------------------------------------------------

    def _park(self, inv: Invocation) -> None:
        """Drop a suspended invocation from memory; ``_wake`` rebuilds it by replay."""
        assert inv.inbox_key is not None  # _block made its acceptance durable first
        self._invocations.pop(inv.invocation_id, None)
        self._parked[inv.invocation_id] = _Parked(inv.done, inv.inbox_key)
        self._log("parked", inv)
        activation = inv.activation
        if activation is not None and inv.target.key is not None:
            # A workflow id whose main is parked has nothing else queued: drop it now
            # rather than at the next idle sweep, so parked workflows cost no mailbox.
            inv.activation = None
            last = activation.last_ticket
            if activation.mailbox.idle and (last is None or last.done):
                self._activations.pop((inv.target.actor, inv.target.key), None)

    def _completion_of(self, invocation_id: str) -> Completion | None:
        inv = self._invocations.get(invocation_id)
        if inv is not None:
            return inv.done
        parked = self._parked.get(invocation_id)
        return parked.done if parked is not None else None

    def _wake(self, invocation_id: str) -> None:
        """Something a suspended invocation may be waiting for happened: run it again.
        A no-op for an invocation that is not suspended (a live waiter has its own
        event) or that finished."""
        inv = self._invocations.get(invocation_id)
        if inv is not None:
            if not inv.suspended:
                if inv.wake_event is not None:
                    inv.wake_event.set()  # a live waiter re-checks what it waits for
                return
            if inv.running:
                inv.wake_pending = True  # still unwinding: it re-runs at once
            else:
                self._resume_suspended(inv)
            return
        if invocation_id in self._parked and not self._closed:
            self._revive(invocation_id)

    def _revive(self, invocation_id: str) -> Invocation | None:
        parked = self._parked.pop(invocation_id)
        record = self._load_record(invocation_id)
        if record is None or record.outcome is not None:
            parked.done.set()  # finished meanwhile (killed); its record has the outcome
            return None
        inv = self._invocation_from_record(record, parked.inbox_key, parked.done)
        if inv is None:
            return None
        inv.revived = True
        self._log("revived", inv)
        self._dispatch(inv)
        return inv

    def _invocation_from_record(
        self, record: InvocationRecord, inbox_key: bytes, done: Completion | None = None
    ) -> Invocation | None:
        try:
            entry, spec, tgt = self.resolve_name(
                record.target.actor, record.target.handler, record.target.key
            )
        except (UnknownHandlerError, TypeError) as exc:
            logger.error("cannot resume invocation %s: %s", record.invocation_id, exc)
            return None
        return Invocation.from_record(
            record, entry, spec, tgt, inbox_key, parse_row(inbox_key)[1], done or Completion()
        )

    async def _acquire_slot(self) -> None:
        # The common case takes a free slot without yielding: the call checkpoints later
        # anyway (its result is always delivered through one), and a yield here costs a
        # whole scheduler round per call.
        try:
            self._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        self._evict_waiters()
        await self._slots.acquire()

    def _evict_waiters(self) -> None:
        """Memory pressure (``max_in_flight`` reached, someone waits for a slot): make
        every invocation blocked in a durable wait suspend now instead of at
        ``suspend_after``."""
        waiting, self._waiting = self._waiting, {}
        for inv in waiting.values():
            inv.evicting = True
            for scope in list(inv.wait_scopes):
                scope.cancel()

    # --- results ---------------------------------------------------------------------------------

    async def _result_of(self, inv: Invocation) -> Any:
        await inv.done.wait()
        return self._completed_result(inv.done, inv.invocation_id, inv.spec)

    def _completed_result(
        self, done: Completion, invocation_id: str, spec: Handler[Any, Any]
    ) -> Any:
        if done.error is not None:
            raise done.error
        if done.outcome is None:
            record = self._load_record(invocation_id) if not self._closed else None
            if record is None or record.outcome is None:
                raise RuntimeClosedError(
                    f"invocation {invocation_id} did not finish: the runtime is shutting down"
                )
            done.outcome = record.outcome  # finished by kill while parked
        return self._decode_outcome(done.outcome, spec.output_type, f"output of {spec.qualname}")

    async def _await_result(self, invocation_id: str, spec: Handler[Any, Any]) -> Any:
        self._check_open()
        done = self._completion_of(invocation_id)
        if done is not None:
            await done.wait()
            return self._completed_result(done, invocation_id, spec)
        await anyio.lowlevel.checkpoint()
        record = self._load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        if record.outcome is None:
            raise RuntimeClosedError(f"invocation {invocation_id} is not running in this runtime")
        return self._decode_outcome(record.outcome, spec.output_type, f"output of {spec.qualname}")

    @staticmethod
    def _decode_outcome(outcome: Outcome, annotation: Any, what: str) -> Any:
        if isinstance(outcome, Failure):
            if outcome.deadlock:
                raise DeadlockError(outcome.message, outcome.status_code)
            raise TerminalError(outcome.message, outcome.status_code)
        return decode_value(outcome.value, annotation, what)

    def _load_record(self, invocation_id: str) -> InvocationRecord | None:
        try:
            data = self._store.get(Table.INVOCATIONS, invocation_id.encode())
        except StorageError as exc:
            raise persistence_error(exc) from exc
        return None if data is None else loads(InvocationRecord, data)

    def _stored_spec(self, invocation_id: str) -> Handler[Any, Any]:
        record = self._load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        return self._spec_of(record)

    # --- context operations --------------------------------------------------------------------

    @staticmethod
    def _check_usable(inv: Invocation, operation: str) -> None:
        in_run = _RUN_BODY.get()
        if in_run is not None:
            raise TerminalError(
                f"{operation} cannot be used inside the body of ctx.run({in_run!r}): a "
                "run body must not touch the context; return a value and use it after the run",
                500,
            )

    async def _state_get(self, inv: Invocation, name: str, annotation: Any) -> Any:
        self._check_usable(inv, "ctx.get()")
        recorded = inv.next_replayed(GetStateEntry, name, f"get({name!r})")
        if recorded is not None:
            data = recorded.value
        else:
            data = self._read_state(inv, name)
            inv.append(GetStateEntry(name, data))
        await anyio.lowlevel.checkpoint()
        if data is None:
            return None
        where = f"state {name!r} of {inv.target.actor}/{inv.target.key}"
        return decode_value(data, annotation, where)

    def _read_state(self, inv: Invocation, name: str) -> bytes | None:
        if inv.exclusive:
            if name in inv.writes:
                return inv.writes[name]
            if inv.cleared_all:
                return None
            activation = inv.activation
            if activation is not None and activation.overlay_seq:
                if self._store.durable_seq >= activation.overlay_seq:
                    activation.overlay.clear()  # durable now (or failed): LMDB is the truth
                    activation.overlay_cleared = False
                    activation.overlay_seq = 0
                elif name in activation.overlay:
                    return activation.overlay[name]
                elif activation.overlay_cleared:
                    return None
        assert inv.target.key is not None
        try:
            return self._store.get(Table.STATE, _state_key(inv.target.actor, inv.target.key, name))
        except StorageError as exc:
            raise persistence_error(exc) from exc

    async def _state_keys(self, inv: Invocation) -> list[str]:
        self._check_usable(inv, "ctx.state_keys()")
        recorded = inv.next_replayed(StateKeysEntry, None, "state_keys()")
        if recorded is not None:
            await anyio.lowlevel.checkpoint()
            return list(recorded.names)
        assert inv.target.key is not None
        prefix = encode_key((inv.target.actor, inv.target.key))
        # Read the watermark BEFORE scanning: the writer thread may make the overlay's
        # batch durable at any moment, and a scan that ran before that moment does not
        # hold the overlay's writes even if the watermark has passed them by the time we
        # look. Applying an overlay the scan already holds is harmless; skipping one it
        # does not hold loses writes.
        durable_before_scan = self._store.durable_seq
        try:
            names = {
                str(decode_key(k)[2])
                for k, _ in self._store.scan(Table.STATE, prefix, children=True)
            }
        except StorageError as exc:
            raise persistence_error(exc) from exc
        if inv.exclusive:
            activation = inv.activation
            layers: list[tuple[bool, dict[str, bytes | None]]] = []
            if activation is not None and durable_before_scan < activation.overlay_seq:
                layers.append((activation.overlay_cleared, activation.overlay))
            layers.append((inv.cleared_all, inv.writes))
            for cleared, writes in layers:
                if cleared:
                    names = set()
                for name, value in writes.items():
                    if value is None:
                        names.discard(name)
                    else:
                        names.add(name)
        result = sorted(names)
        inv.append(StateKeysEntry(tuple(result)))
        await anyio.lowlevel.checkpoint()
        return result

    def _state_set(self, inv: Invocation, name: str, value: object) -> None:
        self._check_usable(inv, "ctx.set()")
        if not isinstance(name, str):
            raise TypeError(f"state names are str, not {type(name).__name__}")
        if inv.next_replayed(SetStateEntry, name, f"set({name!r})") is not None:
            return  # written with the journal entry that recorded it
        annotation = type(value) if value is not None else object
        inv.writes[name] = encode_value(value, annotation, f"state {name!r}")
        inv.append(SetStateEntry(name))

    def _state_clear(self, inv: Invocation, name: str) -> None:
        self._check_usable(inv, "ctx.clear()")
        if inv.next_replayed(ClearStateEntry, name, f"clear({name!r})") is not None:
            return
        inv.writes[name] = None
        inv.append(ClearStateEntry(name))

    def _state_clear_all(self, inv: Invocation) -> None:
        self._check_usable(inv, "ctx.clear_all()")
        if inv.next_replayed(ClearStateEntry, None, "clear_all()") is not None:
            return
        inv.writes = {}
        inv.cleared_all = True
        inv.append(ClearStateEntry(None))

    def _add_state_writes(self, inv: Invocation, batch: WriteBatch) -> None:
        if not inv.writes and not inv.cleared_all:
            return
        actor, key = inv.target.actor, inv.target.key
        assert key is not None
        if inv.cleared_all:
            batch.delete_children(Table.STATE, encode_key((actor, key)))
        for name, data in inv.writes.items():
            if data is None:
                batch.delete(Table.STATE, _state_key(actor, key, name))
            else:
                batch.put(Table.STATE, _state_key(actor, key, name), data)

    async def _ctx_time(self, inv: Invocation) -> float:
        self._check_usable(inv, "ctx.time()")
        recorded = inv.next_replayed(TimeEntry, None, "time()")
        if recorded is not None:
            now = recorded.now
        else:
            now = self._clock.now()
            inv.append(TimeEntry(now))
        await anyio.lowlevel.checkpoint()
        return now

    def _ctx_random(self, inv: Invocation) -> random.Random:
        self._check_usable(inv, "ctx.random()")
        if inv.rng is None:
            seed = hashlib.blake2b(inv.invocation_id.encode(), digest_size=16).digest()
            inv.rng = random.Random(int.from_bytes(seed, "big"))
        return inv.rng

    def _ctx_uuid(self, inv: Invocation) -> uuid.UUID:
        return uuid.UUID(int=self._ctx_random(inv).getrandbits(128), version=4)

    def _settled(self, inv: Invocation, value: Callable[[], Any]) -> DurableFuture[Any]:
        """A future whose result is already journaled."""

        async def produce() -> Any:
            await anyio.lowlevel.checkpoint()
            return value()

        future = DurableFuture._create(self, inv, produce, _always_ready)
        future._journaled = True
        return future

    def _ctx_run(
        self,
        inv: Invocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        result_type: Any,
    ) -> DurableFuture[Any]:
        self._check_usable(inv, "ctx.run()")
        if not isinstance(name, str) or not name:
            raise TypeError("ctx.run() needs a non-empty name for its step")
        if not callable(fn):
            raise TypeError(f"ctx.run({name!r}) needs a function, not {fn!r}")
        annotation = _result_annotation(fn, result_type)
        what = f"result of ctx.run({name!r})"
        index, recorded = inv.reserve(RunEntry, name, f"run({name!r})")
        if recorded is not None:
            outcome = recorded.outcome
            return self._settled(inv, lambda: self._decode_outcome(outcome, annotation, what))

        body = _RunBody()
        attempt = inv.attempt

        async def attempts() -> Outcome:
            """Run the body per its retry policy; the outcome to journal."""
            policy = retry or inv.spec.retry or self._retry
            tries = 0
            while True:
                tries += 1
                try:
                    if self._before_run_body is not None:
                        self._before_run_body(name)
                    result = await self._call_body(fn, args)
                except TerminalError as exc:
                    return _failure(exc)
                except Exception as exc:
                    if policy.exhausted(tries):
                        return Failure(
                            f"ctx.run({name!r}) failed after {tries} attempts: "
                            f"{type(exc).__name__}: {exc}",
                            500,
                        )
                    delay = policy.delay(tries + 1)
                    await self._clock.sleep_until(self._clock.now() + delay)
                    continue
                try:
                    return Success(encode_value(result, annotation, what))
                except SerializationError as exc:
                    return Failure(str(exc), 500)

        async def execute(*, own_scope: bool) -> None:
            # In a task of its own, the body needs a scope that kill() can cancel; inline,
            # the invocation's run scope already encloses it.
            outcome: Outcome | None = None
            scope: anyio.CancelScope | None = None
            try:
                if own_scope:
                    with anyio.CancelScope() as scope:
                        inv.body_scopes.add(scope)
                        outcome = await attempts()
                else:
                    outcome = await attempts()
            except BaseException as exc:  # a crash injected by actors.testing, or a bug
                body.escaped = exc
                raise
            finally:
                if scope is not None:
                    inv.body_scopes.discard(scope)
                if inv.attempt == attempt:
                    inv.runs_in_progress -= 1
                    if outcome is not None:
                        inv.record_at(index, RunEntry(name, outcome))
                body.outcome = outcome
                body.done = True
                if body.finished is not None:
                    body.finished.set()

        async def start() -> None:
            await self._gate(inv)  # the body is an effect: everything before it is durable
            body.started = True
            inv.runs_in_progress += 1  # counted from now: no suspension until it ends

        async def run_body() -> None:
            # A task of the runtime, not of the handler: a select that another branch
            # wins does not cancel the step (awaiting it later joins this same run), and
            # the step's result is journaled only while its attempt is still current.
            _RUN_BODY.set(name)
            await execute(own_scope=True)

        def finish() -> Any:
            if body.outcome is None:
                escaped = body.escaped
                if isinstance(escaped, anyio.get_cancelled_exc_class()):
                    raise RuntimeClosedError(f"ctx.run({name!r}) was cancelled: shutting down")
                if escaped is not None and not isinstance(escaped, Exception):
                    raise escaped  # e.g. actors.testing's SimulatedCrash
                raise _StepFailed(f"ctx.run({name!r}) was interrupted: {body.escaped!r}")
            # Return the stored form, so that live execution and replay see the same value.
            return self._decode_outcome(body.outcome, annotation, what)

        async def produce() -> Any:
            if not body.started:
                await start()
                self._tg.start_soon(run_body)
            await body.wait()
            return finish()

        async def produce_inline() -> Any:
            # Awaited directly by the handler (the common case: no select or gather), so
            # nothing else can join or outlive this step: run the body in the handler's
            # own task. That saves a task spawn and two wake-ups per step; a kill still
            # cancels it (it runs inside the invocation's scope).
            if body.started:
                return await produce()
            await start()
            token = _RUN_BODY.set(name)
            try:
                await execute(own_scope=False)
            except Exception:
                pass  # recorded in ``body``; finish() raises what the handler should see
            finally:
                _RUN_BODY.reset(token)
            return finish()

        future: DurableFuture[Any] = DurableFuture._create(self, inv, produce)
        future._produce_inline = produce_inline
        return future

    @staticmethod
    async def _call_body(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        # A plain function may block: run it on a worker thread, off the event loop.
        result = await anyio.to_thread.run_sync(functools.partial(fn, *args))
        if inspect.isawaitable(result):
            return await result
        return result

    def _ctx_call(
        self, caller: Invocation, target: Handler[Any, Any], arg: object, key: str | None
    ) -> DurableFuture[Any]:
        self._check_usable(caller, "ctx.call()")
        entry, spec, tgt = self._resolve_in_handler(target, key)
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
                return self._settled(
                    caller, lambda: self._decode_outcome(outcome, spec.output_type, what)
                )
            callee_id = recorded.callee_id
        else:
            payload, value = self._check_input_in_handler(spec, arg)
            callee_id = derived_invocation_id(caller.invocation_id, index)
            existing = None
            if spec.kind == "main":
                assert tgt.key is not None
                existing = self._workflow_invocation(tgt.actor, tgt.key)
            if existing == caller.invocation_id:
                raise DeadlockError(
                    f"deadlock: {caller.spec.qualname} on {tgt.key!r} calls its own workflow "
                    "run, which would wait for itself forever"
                )
            if existing is not None and existing != callee_id:
                callee_id = existing  # the workflow already ran (or runs): wait for it
                waited = self._wait_node(spec, tgt, callee_id)
                cycle = self._graph.find_cycle(("inv", caller.invocation_id), waited)
                if cycle is not None:
                    raise DeadlockError(
                        f"deadlock: call of workflow run {tgt.actor}/{tgt.key} from "
                        f"{caller.spec.qualname} would wait forever: {self._describe_cycle(cycle)}"
                    )
            else:
                waited = self._wait_node(spec, tgt, callee_id)
                cycle = self._graph.find_cycle(("inv", caller.invocation_id), waited)
                if cycle is not None:
                    raise DeadlockError(
                        f"deadlock: exclusive call {spec.qualname} on key {tgt.key!r} from "
                        f"{caller.spec.qualname} would wait forever: {self._describe_cycle(cycle)}"
                    )
                # The edge counts from now on, so a call created meanwhile sees the cycle.
                self._graph.wait(("inv", caller.invocation_id), waited)
                callee = self._new_invocation(
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
                self._add_acceptance(callee, acceptance, InvocationStatus.PENDING)
                caller.pending_ops.extend(acceptance.ops)
                caller.pending_calls.append(callee)  # delivered once the acceptance is durable
                self._claim_workflow(callee)
            caller.record_at(index, CallEntry(callee_id, tgt, payload))

        async def produce() -> Any:
            await self._gate(caller)  # delivering the call is an effect
            return await self._wait_invocation(caller, callee_id, spec, tgt)

        def ready() -> bool:
            done = self._completion_of(callee_id)
            return done is not None and done.finished

        future = DurableFuture._create(self, caller, produce, ready)
        future._callee_id = callee_id
        return future

    @staticmethod
    def _wait_node(spec: Handler[Any, Any], target: Target, callee_id: str) -> Node:
        if spec.kind in ("exclusive", "main"):
            return ("key", f"{target.actor}/{target.key}")
        return ("inv", callee_id)

    async def _wait_invocation(
        self, caller: Invocation, callee_id: str, spec: Handler[Any, Any], target: Target
    ) -> Any:
        waiter: Node = ("inv", caller.invocation_id)
        waited = self._wait_node(spec, target, callee_id)
        self._graph.wait(waiter, waited)
        caller.awaiting_calls.add(callee_id)
        try:
            done = self._completion_of(callee_id)
            if done is None:
                record = self._load_record(callee_id)
                if record is not None and record.outcome is not None:
                    await anyio.lowlevel.checkpoint()
                    what = f"output of {spec.qualname}"
                    return self._decode_outcome(record.outcome, spec.output_type, what)
                raise PersistenceError(
                    f"invocation {caller.invocation_id} waits on call {callee_id}, "
                    "which is neither running nor completed"
                )
            await self._block(caller, done.is_set, done.wait)
            return self._completed_result(done, callee_id, spec)
        finally:
            self._graph.unwait(waiter, waited)
            caller.awaiting_calls.discard(callee_id)

    async def _ctx_send(
        self,
        caller: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
    ) -> InvocationHandle:
        self._check_usable(caller, "ctx.send()")
        entry, spec, tgt = self._resolve_in_handler(target, key)
        recorded = caller.next_replayed(SendEntry, None, f"send({spec.qualname})")
        if recorded is not None:
            await anyio.lowlevel.checkpoint()
            own = derived_invocation_id(caller.invocation_id, caller.index - 1)
            status: InvocationStatusName = (
                "Accepted" if recorded.callee_id == own else "PreviouslyAccepted"
            )
            return InvocationHandle._create(self, recorded.callee_id, status, spec)
        payload, value = self._check_input_in_handler(spec, arg)
        try:
            seconds = _delay_seconds(delay)
        except ValueError as exc:
            raise TerminalError(str(exc), 400) from exc
        index = caller.index
        callee_id = derived_invocation_id(caller.invocation_id, index)
        if spec.kind == "main":
            assert tgt.key is not None
            existing = self._workflow_invocation(tgt.actor, tgt.key)
            if existing is not None and existing != callee_id:
                caller.append(SendEntry(existing, tgt, payload))
                await anyio.lowlevel.checkpoint()
                return InvocationHandle._create(self, existing, "PreviouslyAccepted", spec)
        # One-way: no caller_id, nobody waits for it.
        callee = self._new_invocation(entry, spec, tgt, payload, value, invocation_id=callee_id)
        deliver_at = callee.accepted_at + seconds if seconds else None
        callee.not_before = deliver_at
        caller.append(SendEntry(callee_id, tgt, payload, deliver_at))
        acceptance = WriteBatch()
        self._add_acceptance(callee, acceptance, InvocationStatus.PENDING)
        claim = self._claim_workflow(callee)
        try:
            self._flush(caller, acceptance)
            await self._gate(caller)  # a delivered send is an effect
        finally:
            if claim is not None:
                self._workflow_claims.pop(claim, None)
        self._log("accepted", callee)
        if deliver_at is not None:
            self._invocations[callee_id] = callee
            self._schedule_timer(deliver_at, TimerKind.DELIVER, callee_id, None)
        else:
            self._dispatch(callee)
        return InvocationHandle._create(self, callee_id, "Accepted", spec)

    # --- durable waits, cancellation and combinators ---------------------------------------------

    async def _await_future(self, future: DurableFuture[T]) -> T:
        """``await future`` in a handler: a durable await, where cancellation lands."""
        inv = future._inv
        if future._settled or future._journaled:  # no wait: no cancellation lands here
            return await future._result()
        self._check_cancel(inv, [future])
        while True:
            try:
                return await future._result(inline=True)
            except _CancelRequested:
                self._check_cancel(inv, [future])

    def _cancel_deliverable(self, inv: Invocation) -> bool:
        # Never in the middle of a replay: the original run did not see it there.
        return inv.cancel_requested and not inv.cancel_raised and inv.index >= inv.replay_end

    def _check_cancel(self, inv: Invocation, futures: Sequence[DurableFuture[Any]]) -> None:
        """At a durable await: raise the cancellation if it is due here (recorded here
        in the journal, or requested and not yet delivered)."""
        recorded = inv.replay.get(inv.index)
        message = f"invocation {inv.invocation_id} was cancelled"
        if isinstance(recorded, CancelledEntry):
            inv.index += 1
            inv.cancel_raised = True
            message = recorded.message
        elif self._cancel_deliverable(inv):
            inv.append(CancelledEntry(message))
            inv.cancel_raised = True
            self._log("cancelled", inv)
            for future in futures:  # what it was waiting on is cancelled too
                callee_id = future._callee_id
                if callee_id is not None and not future._is_ready():
                    self._spawn(functools.partial(self._cancel_quietly, callee_id))
        else:
            return
        raise TerminalError(message, 409)

    async def _block(
        self,
        inv: Invocation,
        ready: Callable[[], bool],
        wait: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Wait until ``ready()``: on ``wait()`` if given, else until ``_wake`` is called
        for the invocation. Everything the invocation did so far is made durable first.
        After ``suspend_after`` (at once for a rebuilt invocation, or under memory
        pressure) the invocation suspends: ``Suspended`` unwinds the handler."""
        if ready():
            await anyio.lowlevel.checkpoint()
            return
        await self._gate(inv)
        suspend = inv.revived or inv.evicting
        while not ready():
            if self._cancel_deliverable(inv):
                raise _CancelRequested
            if suspend and not inv.runs_in_progress:  # a running step keeps the coroutine
                # Keep what it did meanwhile (steps that finished in a gather), then
                # drop the coroutine, unless what it waits for arrived in between.
                await self._gate(inv)
                if ready():
                    break
                inv.suspended = True
                raise Suspended
            waiting = wait
            if waiting is None:  # woken by _wake: one event per round, shared by branches
                if inv.wake_event is None or inv.wake_event.is_set():
                    inv.wake_event = anyio.Event()
                waiting = inv.wake_event.wait
            scope = anyio.CancelScope(deadline=anyio.current_time() + self._suspend_after)
            inv.wait_scopes.add(scope)
            self._waiting[inv.invocation_id] = inv
            if len(self._waiting) > self._max_waiting:
                self._evict_waiters()  # including this one: park them all, amortized
            try:
                with scope:
                    await waiting()
            finally:
                inv.wait_scopes.discard(scope)
                if not inv.wait_scopes:
                    self._waiting.pop(inv.invocation_id, None)
            # Timed out, or evicted under memory pressure (a cancel shows up above).
            suspend = scope.cancelled_caught or inv.evicting

    async def _race(
        self, futures: Sequence[tuple[str, DurableFuture[Any]]], *, first: bool
    ) -> list[tuple[str, bool, Any]]:
        """Await ``futures`` concurrently; with ``first``, only until one finishes.
        Returns ``(name, ok, value or error)`` per finished future. Errors that are not
        results (suspension, a failed commit, a divergence, a cancellation) escape."""
        finished: list[tuple[str, bool, Any]] = []
        escapes: list[BaseException] = []
        if first:
            for name, future in futures:
                if future._is_ready():
                    try:
                        return [(name, True, await future._result())]
                    except ActorsError as exc:
                        if isinstance(exc, NonDeterminismError):
                            raise
                        return [(name, False, exc)]

        async with anyio.create_task_group() as group:

            async def branch(name: str, future: DurableFuture[Any]) -> None:
                try:
                    value = await future._result()
                except (NonDeterminismError, _StepFailed, _CancelRequested, Suspended) as exc:
                    escapes.append(exc)
                    group.cancel_scope.cancel()
                    return
                except ActorsError as exc:
                    finished.append((name, False, exc))
                else:
                    finished.append((name, True, value))
                if first:
                    group.cancel_scope.cancel()

            for name, future in futures:
                group.start_soon(branch, name, future)
        if first and finished:
            inv = futures[0][1]._inv
            inv.suspended = False  # another branch may have begun to suspend meanwhile
            return finished[:1]
        if escapes:
            real = [error for error in escapes if not isinstance(error, Suspended)]
            raise (real or escapes)[0]
        return finished

    async def _select(
        self, inv: Invocation, futures: dict[str, DurableFuture[Any]]
    ) -> tuple[str, Any]:
        self._check_usable(inv, "select()")
        index, recorded = inv.reserve(SelectEntry, None, "select()")
        if recorded is not None:
            if recorded.winner not in futures:
                raise NonDeterminismError(
                    f"invocation {inv.invocation_id} diverged from its journal at entry "
                    f"{index}: select() recorded winner {recorded.winner!r}, which is not "
                    f"among {sorted(futures)}"
                )
            return recorded.winner, await futures[recorded.winner]._result()
        items = list(futures.items())
        self._check_cancel(inv, list(futures.values()))
        while True:
            try:
                ((winner, ok, value),) = await self._race(items, first=True)
                break
            except _CancelRequested:
                self._check_cancel(inv, list(futures.values()))
        inv.record_at(index, SelectEntry(winner))
        if not ok:
            raise value
        return winner, value

    async def _gather(self, inv: Invocation, futures: list[DurableFuture[Any]]) -> list[Any]:
        self._check_usable(inv, "gather()")
        if not all(future._settled or future._journaled for future in futures):
            self._check_cancel(inv, futures)
        items = [(str(position), future) for position, future in enumerate(futures)]
        while True:
            try:
                finished = await self._race(items, first=False)
                break
            except _CancelRequested:
                self._check_cancel(inv, futures)
        by_position = {int(name): (ok, value) for name, ok, value in finished}
        results: list[Any] = []
        for position in range(len(futures)):
            ok, value = by_position[position]
            if not ok:
                raise value
            results.append(value)
        return results

    def _ctx_sleep(self, inv: Invocation, duration: timedelta | float) -> DurableFuture[Any]:
        self._check_usable(inv, "ctx.sleep()")
        try:
            seconds = _delay_seconds(duration)
        except (ValueError, TypeError) as exc:
            raise TerminalError(f"ctx.sleep(): {exc}", 400) from exc
        if seconds > _MAX_SLEEP_SECONDS:
            raise TerminalError(
                f"ctx.sleep(): {seconds:.0f} s is beyond 100 years; store a date and "
                "check it instead",
                400,
            )
        index, recorded = inv.reserve(SleepEntry, None, "sleep()")
        invocation_id = inv.invocation_id
        row = None
        if recorded is not None:
            wake_at = recorded.wake_at
        else:
            wake_at = self._clock.now() + seconds
            inv.record_at(index, SleepEntry(wake_at))
        row = _timer_key(wake_at, invocation_id, TimerKind.WAKE, index)
        inv.timer_keys.add(row)
        if recorded is None:
            timer = WriteBatch()
            timer.put(
                Table.TIMERS, row, dumps(TimerRecord(TimerKind.WAKE, invocation_id, wake_at, index))
            )
            inv.pending_ops.extend(timer.ops)

        def ready() -> bool:
            return self._clock.now() >= wake_at

        async def produce() -> None:
            if not ready():
                # The runtime's timer wakes it (rebuilding it if it was parked).
                self._schedule_timer(wake_at, TimerKind.WAKE, invocation_id, None)
                await self._block(inv, ready)

        return DurableFuture._create(self, inv, produce, ready)

    # --- awakeables --------------------------------------------------------------------------

    def _ctx_awakeable(self, inv: Invocation, annotation: Any) -> tuple[str, DurableFuture[Any]]:
        self._check_usable(inv, "ctx.awakeable()")
        index, recorded = inv.reserve(AwakeableEntry, None, "awakeable()")
        awakeable_id = _awakeable_id(inv.invocation_id, index)
        what = f"value of awakeable {awakeable_id}"
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            return awakeable_id, self._settled(
                inv, lambda: self._decode_outcome(outcome, annotation, what)
            )
        if recorded is None:
            inv.record_at(index, AwakeableEntry(awakeable_id))
        row = _journal_key(inv.invocation_id, index)

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
            await self._block(inv, ready)
            outcome = stored()
            assert outcome is not None
            return self._decode_outcome(outcome, annotation, what)

        return awakeable_id, DurableFuture._create(self, inv, produce, ready)

    def _awakeable_completion(
        self, awakeable_id: str, value: object, reason: str | None
    ) -> tuple[WriteBatch, str]:
        """Validate a completion of ``awakeable_id``; the batch that records it in its
        owner's journal, and the owner's id. Raises ``TerminalError`` 400/404/409."""
        try:
            owner_id, index = _parse_awakeable_id(awakeable_id)
        except ValueError as exc:
            raise TerminalError(str(exc), 400) from None
        row = _journal_key(owner_id, index)
        try:
            data = self._store.get(Table.JOURNAL, row)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        entry = loads_entry(data) if data is not None else None
        if not isinstance(entry, AwakeableEntry) or entry.awakeable_id != awakeable_id:
            raise TerminalError(f"no awakeable {awakeable_id!r}", 404)
        if entry.outcome is not None or awakeable_id in self._awakeable_inflight:
            raise TerminalError(f"awakeable {awakeable_id!r} was already completed", 409)
        outcome: Outcome
        if reason is not None:
            if not isinstance(reason, str):
                raise TypeError(f"a rejection reason is a str, not {type(reason).__name__}")
            outcome = Failure(reason, 500)
        else:
            annotation = type(value) if value is not None else object
            outcome = Success(encode_value(value, annotation, f"value of {awakeable_id}"))
        batch = WriteBatch()
        batch.put(Table.JOURNAL, row, dumps_entry(AwakeableEntry(awakeable_id, outcome)))
        return batch, owner_id

    async def _complete_awakeable(
        self, inv: Invocation | None, awakeable_id: str, value: object, reason: str | None
    ) -> None:
        batch, owner_id = self._awakeable_completion(awakeable_id, value, reason)
        self._awakeable_inflight.add(awakeable_id)
        try:
            if inv is None:
                await self._commit(batch)
            else:
                self._flush(inv, batch)
                await self._gate(inv)
        finally:
            self._awakeable_inflight.discard(awakeable_id)
        self._wake(owner_id)

    async def _ctx_complete_awakeable(
        self, inv: Invocation, awakeable_id: str, value: object, reason: str | None
    ) -> None:
        self._check_usable(inv, "ctx.resolve_awakeable()")
        target = f"awakeable:{awakeable_id}"
        await self._journaled_completion(
            inv, target, lambda: self._complete_awakeable(inv, awakeable_id, value, reason)
        )

    async def _journaled_completion(
        self, inv: Invocation, target: str, complete: Callable[[], Awaitable[None]]
    ) -> None:
        """Complete a promise or awakeable from a handler, journaling how it went, so a
        replay neither completes it twice nor changes its answer."""
        index, recorded = inv.reserve(ResolveEntry, None, f"complete({target!r})")
        if recorded is not None:
            if recorded.target != target:
                raise NonDeterminismError(
                    f"invocation {inv.invocation_id} diverged from its journal at entry "
                    f"{index}: it now completes {target}, but the journal recorded "
                    f"{recorded.target}"
                )
            await anyio.lowlevel.checkpoint()
            if recorded.failure is not None:
                raise TerminalError(recorded.failure.message, recorded.failure.status_code)
            return
        inv.record_at(index, ResolveEntry(target))
        try:
            await complete()
        except TerminalError as exc:
            if exc.status_code not in (400, 404, 409):
                raise
            # Deterministic refusals are answers: journal them (their batch never ran).
            inv.record_at(index, ResolveEntry(target, _failure(exc)))
            raise

    # --- durable promises --------------------------------------------------------------------

    def _promise_row(self, inv: Invocation, name: str) -> tuple[bytes, str]:
        key = inv.target.key
        assert key is not None
        return _promise_key(inv.target.actor, key, name), f"{inv.target.actor}/{key}"

    def _stored_promise(self, row: bytes) -> Outcome | None:
        try:
            data = self._store.get(Table.PROMISES, row)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        return None if data is None else loads(PromiseRecord, data).outcome

    def _promise_value(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]:
        self._check_usable(inv, "promise.value()")
        row, where = self._promise_row(inv, name)
        what = f"value of promise {name!r} of {where}"
        index, recorded = inv.reserve(PromiseEntry, name, f"promise({name!r}).value()")
        if recorded is not None and recorded.outcome is not None:
            outcome = recorded.outcome
            return self._settled(inv, lambda: self._decode_outcome(outcome, annotation, what))

        def ready() -> bool:
            return self._stored_promise(row) is not None

        async def produce() -> Any:
            outcome = self._stored_promise(row)
            if outcome is None:
                self._promise_waiters.setdefault(row, {})[inv.invocation_id] = None
                await self._block(inv, ready)
                outcome = self._stored_promise(row)
                assert outcome is not None
            inv.record_at(index, PromiseEntry(name, outcome))
            return self._decode_outcome(outcome, annotation, what)

        return DurableFuture._create(self, inv, produce, ready)

    async def _promise_peek(self, inv: Invocation, name: str, annotation: Any) -> Any:
        self._check_usable(inv, "promise.peek()")
        row, where = self._promise_row(inv, name)
        recorded = inv.next_replayed(PromisePeekEntry, name, f"promise({name!r}).peek()")
        if recorded is not None:
            outcome = recorded.outcome
        else:
            outcome = self._stored_promise(row)
            inv.append(PromisePeekEntry(name, outcome))
        await anyio.lowlevel.checkpoint()
        if outcome is None:
            return None
        return self._decode_outcome(outcome, annotation, f"value of promise {name!r} of {where}")

    async def _promise_complete(
        self, inv: Invocation, name: str, annotation: Any, value: object, reason: str | None
    ) -> None:
        self._check_usable(inv, "promise.resolve()")
        row, where = self._promise_row(inv, name)

        async def complete() -> None:
            if self._promise_inflight.get(row) is not None or self._stored_promise(row):
                raise TerminalError(f"promise {name!r} of {where} was already completed", 409)
            outcome: Outcome
            if reason is not None:
                if not isinstance(reason, str):
                    raise TypeError(f"a rejection reason is a str, not {type(reason).__name__}")
                outcome = Failure(reason, 500)
            else:
                kind = annotation if annotation is not object else type(value)
                outcome = Success(encode_value(value, kind, f"value of promise {name!r}"))
            assert inv.target.key is not None
            batch = WriteBatch()
            record = PromiseRecord(inv.target.actor, inv.target.key, name, outcome)
            batch.put(Table.PROMISES, row, dumps(record))
            self._promise_inflight[row] = outcome
            try:
                self._flush(inv, batch)
                await self._gate(inv)
            finally:
                self._promise_inflight.pop(row, None)  # durable now, or failed
            for waiter in self._promise_waiters.pop(row, {}):
                self._wake(waiter)

        await self._journaled_completion(inv, f"promise:{name}", complete)

    # --- cancel and kill -----------------------------------------------------------------------

    async def _cancel_quietly(self, invocation_id: str, kill: bool = False) -> None:
        try:
            await self._cancel(invocation_id, kill=kill)
        except (ActorsError, RuntimeClosedError) as exc:
            logger.debug("propagating the cancellation to %s: %s", invocation_id, exc)

    async def _cancel(self, invocation_id: str, *, kill: bool) -> None:
        inv = self._invocations.get(invocation_id)
        if inv is None and invocation_id in self._parked:
            inv = self._revive(invocation_id)
        if inv is None:
            record = self._load_record(invocation_id)
            if record is None:
                raise UnknownHandlerError(f"no invocation {invocation_id!r}")
            if record.outcome is not None:
                raise TerminalError(f"invocation {invocation_id} has already completed", 409)
            raise TerminalError(f"invocation {invocation_id} is not running in this runtime", 409)
        if inv.completing or inv.done.finished:
            raise TerminalError(f"invocation {invocation_id} has already completed", 409)
        callees = list(inv.awaiting_calls)
        if kill:
            inv.killed = True
        elif inv.cancel_requested:
            return  # asked before; it is on its way
        else:
            inv.cancel_requested = True
            if inv.inbox_key is not None:  # make the request survive a restart
                status = InvocationStatus.RUNNING if inv.attempt else InvocationStatus.PENDING
                batch = WriteBatch()
                batch.put(Table.INVOCATIONS, invocation_id.encode(), dumps(inv.record(status)))
                await self._commit(batch)
        self._log("kill requested" if kill else "cancel requested", inv)
        if inv.running:
            if kill and inv.run_scope is not None:
                inv.run_scope.cancel()
                for scope in list(inv.body_scopes):
                    scope.cancel()
            elif inv.paused_reason is not None and inv.resume is not None:
                inv.paused_reason = None  # run it again, to deliver the cancellation
                inv.resume.set()
            for scope in list(inv.wait_scopes):
                scope.cancel()
        elif inv.suspended:
            self._resume_suspended(inv)
        elif not inv.dispatched:  # accepted but not delivered yet, or delayed
            inv.not_before = None
            if kill or inv.attempt == 0:  # never started: it ends without taking its key
                inv.dispatched = True
                inv.keyless = True
                self._invocations[invocation_id] = inv
                self._tg.start_soon(self._run, inv, _noop)
            else:
                self._dispatch(inv)
        elif (
            inv.activation is not None
            and (kill or inv.attempt == 0)
            and inv.activation.mailbox.cancel_queued(inv)
        ):
            # It was queued behind the key's current work: it finishes without the key.
            inv.keyless = True
            self._tg.start_soon(self._run, inv, _noop)
        for callee_id in callees:
            self._spawn(functools.partial(self._cancel_quietly, callee_id, kill))
        if kill:
            await inv.done.wait()

    def _describe_cycle(self, cycle: list[Node]) -> str:
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

    # --- timers --------------------------------------------------------------------------------

    def _schedule_timer(
        self, due: float, kind: TimerKind, invocation_id: str, row: bytes | None
    ) -> None:
        """Fire ``kind`` for ``invocation_id`` at ``due``. ``row`` is the timer's row in
        the ``timers`` table, deleted when it fires (None: the timer lives elsewhere,
        e.g. a delayed send's due time is in its invocation record)."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (due, self._timer_seq, kind, invocation_id, row))
        if self._timers[0][1] == self._timer_seq:
            self._timers_changed.set()  # a new earliest timer

    def _fire(
        self, kind: TimerKind, invocation_id: str, row: bytes | None, done: WriteBatch
    ) -> None:
        if kind is TimerKind.DELIVER:
            inv = self._invocations.get(invocation_id)
            if inv is not None and not inv.dispatched:
                inv.not_before = None
                self._dispatch(inv)
        elif kind is TimerKind.WAKE:
            self._wake(invocation_id)
        elif kind is TimerKind.EXPIRE:
            self._expire(invocation_id, done)
        if row is not None:
            done.delete(Table.TIMERS, row)

    def _expire(self, invocation_id: str, batch: WriteBatch) -> None:
        """Retention is over: remove a completed invocation's record and journal, its
        idempotency key and, for a workflow run, the workflow's state and promises."""
        record = self._load_record(invocation_id)
        if record is None or record.outcome is None or invocation_id in self._invocations:
            return
        batch.delete(Table.INVOCATIONS, invocation_id.encode())
        batch.delete_children(Table.JOURNAL, encode_key((invocation_id,)))
        try:
            if record.idempotency_key is not None:
                row = encode_key((record.idempotency_key,))
                data = self._store.get(Table.IDEMPOTENCY, row)
                if (
                    data is not None
                    and loads(IdempotencyRecord, data).invocation_id == invocation_id
                ):
                    batch.delete(Table.IDEMPOTENCY, row)
            target = record.target
            entry = self._entries.get(target.actor)
            if target.key is not None and entry is not None and entry.cls.actor_kind == "workflow":
                row = encode_key((target.actor, target.key))
                data = self._store.get(Table.WORKFLOWS, row)
                if data is not None and loads(WorkflowRecord, data).invocation_id == invocation_id:
                    batch.delete(Table.WORKFLOWS, row)
                    batch.delete_children(Table.STATE, row)
                    batch.delete_children(Table.PROMISES, row)
        except StorageError as exc:
            logger.error("cannot expire invocation %s: %s", invocation_id, exc)
        self._log_id("expired", invocation_id)

    def _load_timers(self, until: float) -> None:
        """Push the durable timers due up to ``until`` (not loaded yet) into the heap."""
        if until <= self._timers_loaded_until:
            return
        if self._timers_loaded_until == -math.inf:
            start = b""
        else:
            start = encode_key((round(self._timers_loaded_until * 1_000_000) + 1,))
        until_us = round(until * 1_000_000)
        try:
            while True:
                rows = self._store.scan(Table.TIMERS, start=start, limit=1000)
                for row, data in rows:
                    due_us = decode_key(row)[0]
                    assert isinstance(due_us, int)
                    if due_us > until_us:
                        break
                    timer = loads(TimerRecord, data)
                    self._schedule_timer(timer.due, timer.kind, timer.invocation_id, row)
                else:
                    if len(rows) == 1000:
                        start = rows[-1][0] + b"\x00"  # the smallest key after the last
                        continue
                break
        except StorageError as exc:
            raise persistence_error(exc) from exc
        self._timers_loaded_until = until

    async def _timer_loop(self) -> None:
        while True:
            self._timers_changed = anyio.Event()
            now = self._clock.now()
            if now + _TIMER_WINDOW / 2 >= self._timers_loaded_until:
                self._load_timers(now + _TIMER_WINDOW)
            done = WriteBatch()
            while self._timers and self._timers[0][0] <= now:
                _, _, kind, invocation_id, row = heapq.heappop(self._timers)
                self._fire(kind, invocation_id, row, done)
            if done.ops:
                try:
                    self._store.submit(done, _log_failed_timer_batch)
                except StorageError as exc:
                    logger.error("cannot remove fired timers: %s", exc)
            # Wake for the earliest timer, or to load the next window of durable ones.
            deadline = self._timers_loaded_until - _TIMER_WINDOW / 2
            if self._timers:
                deadline = min(deadline, self._timers[0][0])
            async with anyio.create_task_group() as waiters:

                async def sleep(deadline: float, scope: anyio.CancelScope) -> None:
                    await self._clock.sleep_until(deadline)
                    scope.cancel()

                async def changed(scope: anyio.CancelScope) -> None:
                    await self._timers_changed.wait()
                    scope.cancel()

                waiters.start_soon(sleep, deadline, waiters.cancel_scope)
                waiters.start_soon(changed, waiters.cancel_scope)

    # --- recovery and housekeeping ---------------------------------------------------------------

    def _recover(self) -> int:
        """Re-deliver every accepted, unfinished invocation, in order per key, and load
        the durable timers."""
        try:
            entries = self._store.scan(Table.INBOX)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        self._load_timers(self._clock.now() + _TIMER_WINDOW)
        recovered = 0
        # Scan order is recovery order: per key, the invocations that had started (in
        # the order they were admitted), then the others (see ``_key_order``).
        for inbox_key, raw_id in entries:
            seq, position = parse_row(inbox_key)
            self._next_inbox_seq = max(self._next_inbox_seq, seq + 1)
            record = self._load_record(raw_id.decode())
            if record is None or record.outcome is not None:
                continue
            inv = self._invocation_from_record(record, inbox_key)
            if inv is None:
                continue
            inv.revived = True  # it may have waited long already: park if it blocks
            recovered += 1
            due = record.next_attempt_at
            if (
                position is None
                and record.status is InvocationStatus.PENDING
                and due is not None
                and due > self._clock.now()
                and not record.cancel_requested
                and not record.kill_requested
            ):
                self._invocations[inv.invocation_id] = inv
                self._schedule_timer(due, TimerKind.DELIVER, inv.invocation_id, None)
            else:
                self._dispatch(inv)
            if record.kill_requested:  # recorded by ``actors kill`` while nobody served
                self._spawn(functools.partial(self._cancel_quietly, inv.invocation_id, True))
        return recovered

    async def _reap_idle(self) -> None:
        """Drop activations idle for ``idle_timeout``: a key costs memory only while used."""
        interval = max(self._idle_timeout / 2, 0.001)
        while True:
            await anyio.sleep(interval)
            cutoff = self._loop_time() - self._idle_timeout
            durable = self._store.durable_seq
            for key, activation in list(self._activations.items()):
                last = activation.last_ticket
                if (
                    activation.mailbox.idle
                    and (last is None or last.seq <= durable)
                    and activation.last_used <= cutoff
                ):
                    del self._activations[key]

    def _log_id(self, event: str, invocation_id: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("invocation %s %s", invocation_id, event)

    def _log(self, event: str, inv: Invocation) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "invocation %s %s: actor=%s key=%s handler=%s",
                inv.invocation_id,
                event,
                inv.target.actor,
                inv.target.key,
                inv.target.handler,
            )


def _noop() -> None:
    pass


def _failure(exc: TerminalError) -> Failure:
    """The stored form of a terminal error: its kind is a field, never read from text."""
    return Failure(exc.message, exc.status_code, deadlock=isinstance(exc, DeadlockError))


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _log_failed_timer_batch(ticket: CommitTicket) -> None:
    if ticket.error is not None:
        logger.error("cannot remove fired timers: %s", ticket.error)


@asynccontextmanager
async def open_runtime(
    path: str | PathLike[str],
    actors: Sequence[type[Actor] | Actor],
    *,
    durability: Literal["fsync", "process"] = "fsync",
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    idle_timeout: float = 60.0,
    suspend_after: float = 60.0,
    max_in_flight: int = 10_000,
    retention: timedelta | float = timedelta(days=1),
    commit_mode: Literal["thread", "inline"] = "thread",
    _fault_hook: Callable[[Sequence[WriteBatch]], None] | None = None,
    _before_run_body: Callable[[str], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the data directory ``path`` and run ``actors`` in it, inside the calling
    trio or asyncio program.

    Args:
      actors: actor classes (created with no arguments) or instances; one instance
        serves every key of its class.
      durability: ``"fsync"`` (survives power loss) or ``"process"`` (survives a killed
        process, not an OS crash).
      clock: where durable time comes from (``actors.testing`` has one that follows
        ``trio.testing.MockClock``); the system clock by default.
      retry: the default retry policy of invocations and ``ctx.run`` steps.
      idle_timeout: seconds after which an idle key's activation is dropped.
      suspend_after: seconds an invocation blocks in any durable wait (a call, sleep,
        promise, awakeable, or a select/gather of them) before its coroutine is dropped;
        it resumes by replay when what it waits for completes.
      max_in_flight: invocations held in memory at most; ``call``/``send`` wait beyond
        (and invocations blocked in durable waits are suspended to make room). Once a
        tenth of it (at least 100) are blocked in durable waits, they are suspended
        before ``suspend_after``.
      retention: how long a completed invocation's result and journal, a workflow's
        state, promises and result, and an idempotency key are kept (default one day);
        a background task removes them afterwards.
      commit_mode: ``"inline"`` commits without the writer thread, for tests under
        ``trio.testing.MockClock(autojump_threshold=0)``.

    On exit, running handlers are cancelled; accepted invocations resume at the next
    open. Raises ``PersistenceError`` when the directory cannot be opened and
    ``TypeError`` for a malformed actor definition or duplicate actor names.
    """
    entries = [registration_entry(item) for item in actors]
    names = [entry.name for entry in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TypeError(f"actor names registered twice: {', '.join(duplicates)}")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    if idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive")
    if suspend_after <= 0:
        raise ValueError("suspend_after must be positive")
    retention_seconds = _delay_seconds(retention)
    try:
        store = Store.open(
            path,
            durability=durability,
            commit_mode=commit_mode,
            extra_files=DATA_DIR_FILES,
            _fault_hook=_fault_hook,
        )
    except StorageError as exc:
        raise persistence_error(exc) from exc
    body_error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            runtime = Runtime._create(
                store,
                entries,
                tg,
                idle_timeout=idle_timeout,
                max_in_flight=max_in_flight,
                retry=retry or RetryPolicy(),
                clock=clock or SystemClock(),
                suspend_after=suspend_after,
                retention=retention_seconds,
            )
            runtime._before_run_body = _before_run_body
            runtime._recover()
            tg.start_soon(runtime._reap_idle)
            tg.start_soon(runtime._timer_loop)
            tg.start_soon(runtime._dispatch_accepted)
            try:
                yield runtime
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                runtime._closed = True
                tg.cancel_scope.cancel()
                for scope in runtime._inline_scopes:
                    scope.cancel()
    except BaseExceptionGroup as group:
        # The runtime's own tasks never fail, so a group holding only the body's error
        # is an artifact of the task group: give the caller back their own exception.
        if body_error is not None and group.exceptions == (body_error,):
            raise body_error from None
        raise
    finally:
        with anyio.CancelScope(shield=True):  # release the directory even when cancelled
            await store.aclose()
