"""The embedded runtime: accepts invocations, schedules them per key, runs handlers,
and makes their results durable before anyone sees them.

Life of an invocation
---------------------
1. *Accept.* ``send`` writes the invocation record and an ``inbox`` entry (the per-key
   FIFO of unfinished work) in one batch and returns once it is durable. ``call`` is
   lazier: nobody can observe a call before its result, so its record is written with
   its completion, in the same batch (one commit per call, not two). If the process
   dies before that commit, the caller died with it and was never answered.
2. *Schedule.* The invocation goes to its key's ``Mailbox`` (services run at once).
3. *Run.* The handler runs with a context; exclusive state writes are buffered in the
   invocation and read back by it.
4. *Complete.* State writes, the completed record and the inbox deletion go in ONE
   batch. An exclusive invocation releases its key as soon as that batch is queued, so
   the next one starts on the not-yet-durable writes through the key's overlay
   (pipelining: one key is not capped at one fsync per invocation). Its batch declares
   ``depends_on`` the previous one, so it never lands on a commit that failed.
5. *Answer.* The caller is woken only when the completion batch is durable (the output
   gate). Shared handlers read LMDB directly, so they see committed state only.

After a restart, every ``inbox`` entry is an accepted, unfinished invocation: they are
re-delivered in their original order per key.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, final, overload

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from actors.mailbox import Mailbox
from actors.storage import (
    Failure,
    InvocationRecord,
    InvocationStatus,
    Outcome,
    StorageError,
    Store,
    Success,
    Table,
    Target,
    WriteBatch,
    decode_key,
    dumps,
    encode_key,
    loads,
)

from ._context import _NO_ARG, Context, ObjectContext, ObjectSharedContext
from ._deadlock import Node, WaitForGraph
from ._definitions import Actor, ActorEntry, Handler, registration_entry
from ._errors import (
    DeadlockError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
    UnknownHandlerError,
    persistence_error,
)
from ._retry import RetryPolicy
from ._serde import check_value, decode_value, encode_value
from ._util import NoPublicConstructor, derived_invocation_id, new_invocation_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
    from os import PathLike

logger = logging.getLogger("actors")

OutT = TypeVar("OutT")
InvocationStatusName = Literal["Accepted", "PreviouslyAccepted"]

_UNDECODED: Any = object()
_DELETED = None  # overlay/write-buffer marker for a cleared state entry


@attrs.define(eq=False)
class _Invocation:
    """An invocation held in memory (from dispatch to completion)."""

    invocation_id: str
    target: Target
    entry: ActorEntry
    spec: Handler[Any, Any]
    payload: bytes
    arg: Any
    accepted_at: float
    caller_id: str | None = None
    inbox_key: bytes | None = None  # set when the acceptance was written
    activation: _Activation | None = None
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: Outcome | None = None
    error: Exception | None = None
    writes: dict[str, bytes | None] | None = None
    cleared_all: bool = False
    next_child: int = 0
    holds_slot: bool = False

    @property
    def exclusive(self) -> bool:
        return self.spec.kind == "exclusive" or self.spec.kind == "main"

    def record(
        self, status: InvocationStatus, outcome: Outcome | None, now: float
    ) -> InvocationRecord:
        return InvocationRecord(
            invocation_id=self.invocation_id,
            target=self.target,
            payload=self.payload,
            status=status,
            accepted_at=self.accepted_at,
            caller_id=self.caller_id,
            outcome=outcome,
            completed_at=now if outcome is not None else None,
        )


@attrs.define(eq=False)
class _Activation:
    """An active key: its mailbox and the overlay of writes not yet durable."""

    mailbox: Mailbox[_Invocation]
    overlay: dict[str, bytes | None] = attrs.field(factory=dict)
    overlay_cleared: bool = False
    pending_commits: int = 0
    last_seq: int = 0
    last_used: float = 0.0


@final
@attrs.frozen
class RuntimeStatistics:
    """A snapshot of the runtime's in-memory load."""

    in_flight: int  #: invocations held in memory
    activations: int  #: keys with a live mailbox
    queued_exclusive: int  #: exclusive invocations waiting for their key


@final
class InvocationHandle(metaclass=NoPublicConstructor):
    """A durably accepted invocation. ``status`` is ``"Accepted"`` for a new invocation
    and ``"PreviouslyAccepted"`` when the same id was accepted before."""

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


def _delay_seconds(delay: timedelta | float | None) -> float:
    if delay is None:
        return 0.0
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"delay must be a non-negative duration, not {delay!r}")
    return seconds


@final
class Runtime(metaclass=NoPublicConstructor):
    """An open runtime; created by ``open_runtime``.

    Guarantees:
      * ``send`` returns only once the invocation is durably recorded; it then completes
        exactly once, resuming after a crash or restart from its recorded input.
      * ``call`` waits for the result, which is returned only once the invocation's
        completion (its state writes included) is durable.
      * Per key, exclusive handlers run one at a time, in acceptance order; shared
        handlers start at once and read committed state only.
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
    ) -> None:
        self._store = store
        self._entries = {entry.name: entry for entry in entries}
        self._tg = task_group
        self._idle_timeout = idle_timeout
        self._retry = retry
        self._slots = anyio.Semaphore(max_in_flight)
        self._invocations: dict[str, _Invocation] = {}
        self._activations: dict[tuple[str, str], _Activation] = {}
        self._graph = WaitForGraph()
        self._next_inbox_seq = 1
        self._closed = False
        self._timers_changed = anyio.Event()
        self._timers: list[tuple[float, str]] = []

    # --- public API ------------------------------------------------------------------------

    @overload
    async def call(self, target: Handler[Any, OutT], /, *, key: str | None = None) -> OutT: ...
    @overload
    async def call(
        self, target: Handler[Any, OutT], arg: object, /, *, key: str | None = None
    ) -> OutT: ...
    async def call(
        self, target: Handler[Any, OutT], arg: object = _NO_ARG, /, *, key: str | None = None
    ) -> OutT:
        """Invoke ``target`` (e.g. ``Counter.add``) with ``arg`` on ``key`` and wait for
        its result.

        Waits for a free slot when ``max_in_flight`` invocations are held in memory
        (backpressure).

        Raises:
          UnknownHandlerError: the actor is not registered or has no such handler.
          TypeError: a key given to a service, missing for an object, or an input given
            to a handler that takes none (or missing).
          SerializationError: ``arg`` does not convert to the handler's input type.
          TerminalError: the handler failed; same message and status code.
          PersistenceError: the result could not be made durable.
        """
        self._check_open()
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        await self._slots.acquire()
        inv = _Invocation(
            invocation_id=new_invocation_id(),
            target=tgt,
            entry=entry,
            spec=spec,
            payload=payload,
            arg=value,
            accepted_at=time.time(),
            holds_slot=True,
        )
        self._dispatch(inv)
        result: OutT = await self._result_of(inv)
        return result

    async def send(
        self,
        target: Handler[Any, Any],
        arg: object = _NO_ARG,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
    ) -> InvocationHandle:
        """Accept an invocation without waiting for it; ``delay`` postpones its start.

        Returns once the invocation is durably recorded, with a handle whose
        ``result()`` waits for the outcome. Raises like ``call`` for bad input, and
        ``ValueError`` for a negative delay; nothing is stored for rejected input.
        """
        self._check_open()
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        seconds = _delay_seconds(delay)
        await self._slots.acquire()
        inv = _Invocation(
            invocation_id=new_invocation_id(),
            target=tgt,
            entry=entry,
            spec=spec,
            payload=payload,
            arg=value,
            accepted_at=time.time(),
            holds_slot=True,
        )
        try:
            await self._accept(inv, seconds, depends_on=0)
        except BaseException:
            self._slots.release()
            raise
        return InvocationHandle._create(self, inv.invocation_id, "Accepted", spec)

    async def attach(self, invocation_id: str) -> Any:
        """Wait for the result of the invocation ``invocation_id``."""
        self._check_open()
        inv = self._invocations.get(invocation_id)
        spec = inv.spec if inv is not None else self._stored_spec(invocation_id)
        return await self._await_result(invocation_id, spec)

    def statistics(self) -> RuntimeStatistics:
        """In-memory load: invocations held, active keys, queued exclusive work."""
        return RuntimeStatistics(
            in_flight=len(self._invocations),
            activations=len(self._activations),
            queued_exclusive=sum(
                a.mailbox.statistics().queued_exclusive for a in self._activations.values()
            ),
        )

    # --- resolution and input -------------------------------------------------------------

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
        if entry is None or not issubclass(entry.cls, owner):  # type: ignore[arg-type]
            raise UnknownHandlerError(f"actor {actor_name!r} is not registered with this runtime")
        spec = entry.cls.handlers.get(target.name)
        if spec is None:
            raise UnknownHandlerError(f"actor {actor_name!r} has no handler {target.name!r}")
        return entry, spec, self._target(entry, spec, key)

    def resolve_name(
        self, actor: str, handler: str, key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        """Resolve a target by names (HTTP ingress, CLI)."""
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

    # --- acceptance and dispatch -------------------------------------------------------------

    async def _accept(self, inv: _Invocation, delay: float, depends_on: int) -> None:
        """Durably record ``inv`` (record + inbox), then deliver it (now or after delay)."""
        batch = WriteBatch(depends_on=depends_on)
        self._add_acceptance(inv, batch, not_before=inv.accepted_at + delay if delay else None)
        try:
            await self._store.commit(batch)
        except StorageError as exc:
            inv.inbox_key = None
            raise persistence_error(exc) from exc
        self._log("accepted", inv)
        if delay:
            self._invocations[inv.invocation_id] = inv
            self._schedule_timer(inv.accepted_at + delay, inv.invocation_id)
        else:
            self._dispatch(inv)

    def _add_acceptance(
        self, inv: _Invocation, batch: WriteBatch, not_before: float | None
    ) -> None:
        seq = self._next_inbox_seq
        self._next_inbox_seq += 1
        key_part: str | bytes = inv.target.key if inv.target.key is not None else b""
        inv.inbox_key = encode_key((inv.target.actor, key_part, seq))
        record = attrs.evolve(
            inv.record(InvocationStatus.PENDING, None, 0.0), next_attempt_at=not_before
        )
        batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(record))
        batch.put(Table.INBOX, inv.inbox_key, inv.invocation_id.encode())

    def _dispatch(self, inv: _Invocation) -> None:
        self._invocations[inv.invocation_id] = inv
        key = inv.target.key
        if key is None:
            self._tg.start_soon(self._run, inv, _noop)
            return
        activation = self._activation(inv.target.actor, key)
        inv.activation = activation
        activation.mailbox.deliver(inv)

    def _activation(self, actor: str, key: str) -> _Activation:
        activation = self._activations.get((actor, key))
        if activation is None:
            mailbox: Mailbox[_Invocation] = Mailbox(f"{actor}/{key}", self._run, self._spawn)
            activation = _Activation(mailbox)
            self._activations[(actor, key)] = activation
        activation.last_used = anyio.current_time()
        return activation

    # --- running -----------------------------------------------------------------------------

    async def _run(self, inv: _Invocation, release: Any) -> None:
        key_node: Node | None = None
        if inv.exclusive:
            key_node = ("key", f"{inv.target.actor}/{inv.target.key}")
            self._graph.hold(key_node, ("inv", inv.invocation_id))
        self._log("started", inv)
        try:
            outcome, keep_writes = await self._invoke_handler(inv)
            ticket = self._submit_completion(inv, outcome, keep_writes)
            activation = inv.activation
            if inv.exclusive and activation is not None:
                if keep_writes:
                    self._install_overlay(activation, inv)
                activation.pending_commits += 1
                activation.last_seq = ticket.seq
            if key_node is not None:
                self._graph.release(key_node)
                key_node = None
            release()  # the next exclusive invocation may start on our queued writes
            try:
                await ticket.wait()
            except StorageError as exc:
                inv.error = persistence_error(exc)
                logger.error("completion of %s failed: %s", inv.invocation_id, exc)
            else:
                inv.outcome = outcome
                self._log("completed", inv)
            finally:
                if inv.exclusive and activation is not None:
                    activation.pending_commits -= 1
                    if activation.pending_commits == 0:
                        activation.overlay.clear()
                        activation.overlay_cleared = False
        finally:
            if key_node is not None:
                self._graph.release(key_node)
            self._finish(inv)

    async def _invoke_handler(self, inv: _Invocation) -> tuple[Outcome, bool]:
        spec = inv.spec
        try:
            if spec.has_input and inv.arg is _UNDECODED:
                inv.arg = decode_value(inv.payload, spec.input_type, f"input of {spec.qualname}")
            ctx = self._context_for(inv)
            instance = inv.entry.instance
            result = await (
                spec.fn(instance, ctx, inv.arg) if spec.has_input else spec.fn(instance, ctx)
            )
            value = encode_value(result, spec.output_type, f"output of {spec.qualname}")
            return Success(value), True
        except TerminalError as exc:
            # Restate semantics: a terminal failure keeps the state written before it.
            return Failure(exc.message, exc.status_code), True
        except SerializationError as exc:
            return Failure(str(exc), exc.status_code), False
        except Exception as exc:
            logger.warning(
                "handler %s of invocation %s raised %s: %s",
                spec.qualname,
                inv.invocation_id,
                type(exc).__name__,
                exc,
            )
            return Failure(f"{type(exc).__name__}: {exc}", 500), False

    def _context_for(self, inv: _Invocation) -> Context:
        kind = inv.spec.kind
        if kind == "exclusive":
            return ObjectContext._create(self, inv)
        if kind == "shared":
            return ObjectSharedContext._create(self, inv)
        if kind == "service":
            return Context._create(self, inv)
        raise TypeError(f"workflow handlers ({inv.spec.qualname}) are not supported yet")

    def _submit_completion(self, inv: _Invocation, outcome: Outcome, keep_writes: bool) -> Any:
        while True:
            batch = WriteBatch()
            if inv.exclusive and inv.activation is not None:
                batch.depends_on = inv.activation.last_seq
            if keep_writes:
                self._add_state_writes(inv, batch)
            record = inv.record(InvocationStatus.COMPLETED, outcome, time.time())
            batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(record))
            if inv.inbox_key is not None:
                batch.delete(Table.INBOX, inv.inbox_key)
            try:
                return self._store.submit(batch)
            except StorageError as exc:
                if not keep_writes and isinstance(outcome, Failure):
                    raise persistence_error(exc) from exc
                # Too large to store (state or result): fail the invocation instead.
                outcome, keep_writes = Failure(f"cannot store the result: {exc}", 413), False

    def _finish(self, inv: _Invocation) -> None:
        self._invocations.pop(inv.invocation_id, None)
        if inv.holds_slot:
            inv.holds_slot = False
            self._slots.release()
        inv.done.set()

    # --- results -----------------------------------------------------------------------------

    async def _result_of(self, inv: _Invocation) -> Any:
        await inv.done.wait()
        if inv.error is not None:
            raise inv.error
        if inv.outcome is None:
            raise RuntimeClosedError(
                f"invocation {inv.invocation_id} did not finish: the runtime is shutting down"
            )
        return self._decode_outcome(inv.outcome, inv.spec)

    async def _await_result(self, invocation_id: str, spec: Handler[Any, Any]) -> Any:
        inv = self._invocations.get(invocation_id)
        if inv is not None:
            return await self._result_of(inv)
        await anyio.lowlevel.checkpoint()
        record = self._load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        if record.outcome is None:
            # Accepted but not in memory: it is resumed by recovery; wait for it.
            raise RuntimeClosedError(f"invocation {invocation_id} is not running in this runtime")
        return self._decode_outcome(record.outcome, spec)

    @staticmethod
    def _decode_outcome(outcome: Outcome, spec: Handler[Any, Any]) -> Any:
        if isinstance(outcome, Failure):
            if outcome.status_code == 409 and outcome.message.startswith("deadlock:"):
                raise DeadlockError(outcome.message)
            raise TerminalError(outcome.message, outcome.status_code)
        return decode_value(outcome.value, spec.output_type, f"output of {spec.qualname}")

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
        _, spec, _ = self.resolve_name(
            record.target.actor, record.target.handler, record.target.key
        )
        return spec

    # --- state ----------------------------------------------------------------------------------

    async def _state_get(self, inv: _Invocation, name: str, annotation: Any) -> Any:
        data = self._read_state(inv, name)
        await anyio.lowlevel.checkpoint()
        if data is None:
            return None
        return decode_value(
            data, annotation, f"state {name!r} of {inv.target.actor}/{inv.target.key}"
        )

    def _read_state(self, inv: _Invocation, name: str) -> bytes | None:
        if inv.exclusive:
            if inv.writes is not None and name in inv.writes:
                return inv.writes[name]
            if inv.cleared_all:
                return None
            activation = inv.activation
            if activation is not None and activation.pending_commits:
                if name in activation.overlay:
                    return activation.overlay[name]
                if activation.overlay_cleared:
                    return None
        assert inv.target.key is not None
        try:
            return self._store.get(Table.STATE, _state_key(inv.target.actor, inv.target.key, name))
        except StorageError as exc:
            raise persistence_error(exc) from exc

    async def _state_keys(self, inv: _Invocation) -> list[str]:
        assert inv.target.key is not None
        prefix = encode_key((inv.target.actor, inv.target.key))
        try:
            names = {str(decode_key(k)[2]) for k, _ in self._store.scan(Table.STATE, prefix)}
        except StorageError as exc:
            raise persistence_error(exc) from exc
        if inv.exclusive:
            activation = inv.activation
            layers: list[tuple[bool, dict[str, bytes | None]]] = []
            if activation is not None and activation.pending_commits:
                layers.append((activation.overlay_cleared, activation.overlay))
            layers.append((inv.cleared_all, inv.writes or {}))
            for cleared, writes in layers:
                if cleared:
                    names = set()
                for name, value in writes.items():
                    if value is None:
                        names.discard(name)
                    else:
                        names.add(name)
        await anyio.lowlevel.checkpoint()
        return sorted(names)

    def _state_set(self, inv: _Invocation, name: str, value: object) -> None:
        if not isinstance(name, str):
            raise TypeError(f"state names are str, not {type(name).__name__}")
        data = encode_value(value, type(value) if value is not None else object, f"state {name!r}")
        if inv.writes is None:
            inv.writes = {}
        inv.writes[name] = data

    def _state_clear(self, inv: _Invocation, name: str) -> None:
        if inv.writes is None:
            inv.writes = {}
        inv.writes[name] = _DELETED

    def _state_clear_all(self, inv: _Invocation) -> None:
        inv.writes = {}
        inv.cleared_all = True

    def _add_state_writes(self, inv: _Invocation, batch: WriteBatch) -> None:
        if inv.writes is None and not inv.cleared_all:
            return
        actor, key = inv.target.actor, inv.target.key
        assert key is not None
        if inv.cleared_all:
            batch.delete_prefix(Table.STATE, encode_key((actor, key)))
        for name, data in (inv.writes or {}).items():
            if data is None:
                batch.delete(Table.STATE, _state_key(actor, key, name))
            else:
                batch.put(Table.STATE, _state_key(actor, key, name), data)

    @staticmethod
    def _install_overlay(activation: _Activation, inv: _Invocation) -> None:
        if inv.cleared_all:
            activation.overlay = dict(inv.writes or {})
            activation.overlay_cleared = True
        elif inv.writes:
            activation.overlay.update(inv.writes)

    # --- calls between actors -------------------------------------------------------------------

    async def _ctx_call(
        self, caller: _Invocation, target: Handler[Any, Any], arg: object, key: str | None
    ) -> Any:
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        callee_id = derived_invocation_id(caller.invocation_id, caller.next_child)
        caller.next_child += 1
        callee = self._invocations.get(callee_id)
        if callee is None:
            record = self._load_record(callee_id)
            if record is not None and record.outcome is not None:
                await anyio.lowlevel.checkpoint()
                return self._decode_outcome(record.outcome, spec)
        waiter: Node = ("inv", caller.invocation_id)
        waited: Node = (
            ("key", f"{tgt.actor}/{tgt.key}")
            if spec.kind in ("exclusive", "main")
            else ("inv", callee_id)
        )
        cycle = self._graph.find_cycle(waiter, waited)
        if cycle is not None:
            raise DeadlockError(
                f"deadlock: exclusive call {spec.qualname} on key {tgt.key!r} from "
                f"{caller.spec.qualname} would wait forever: {self._describe_cycle(cycle)}"
            )
        if callee is None:
            callee = _Invocation(
                invocation_id=callee_id,
                target=tgt,
                entry=entry,
                spec=spec,
                payload=payload,
                arg=value,
                accepted_at=time.time(),
                caller_id=caller.invocation_id,
            )
            self._dispatch(callee)
        self._graph.wait(waiter, waited)
        try:
            return await self._result_of(callee)
        finally:
            self._graph.unwait(waiter, waited)

    async def _ctx_send(
        self,
        caller: _Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
    ) -> InvocationHandle:
        entry, spec, tgt = self._resolve(target, key)
        payload, value = self._check_input(spec, arg)
        seconds = _delay_seconds(delay)
        callee_id = derived_invocation_id(caller.invocation_id, caller.next_child)
        caller.next_child += 1
        if callee_id in self._invocations or self._load_record(callee_id) is not None:
            await anyio.lowlevel.checkpoint()
            return InvocationHandle._create(self, callee_id, "PreviouslyAccepted", spec)
        callee = _Invocation(
            invocation_id=callee_id,
            target=tgt,
            entry=entry,
            spec=spec,
            payload=payload,
            arg=value,
            accepted_at=time.time(),
            caller_id=caller.invocation_id,
        )
        activation = caller.activation
        depends_on = activation.last_seq if activation is not None and caller.exclusive else 0
        await self._accept(callee, seconds, depends_on=depends_on)
        return InvocationHandle._create(self, callee_id, "Accepted", spec)

    def _describe_cycle(self, cycle: list[Node]) -> str:
        def name(node: Node) -> str:
            if node[0] == "key":
                return node[1]
            inv = self._invocations.get(node[1])
            if inv is None:
                return node[1]
            where = (
                f"{inv.target.actor}/{inv.target.key}"
                if inv.target.key is not None
                else inv.target.actor
            )
            return f"{where}.{inv.spec.name}"

        return self._graph.describe(cycle, name)

    # --- timers (delayed sends) ------------------------------------------------------------------

    def _schedule_timer(self, due: float, invocation_id: str) -> None:
        import heapq

        heapq.heappush(self._timers, (due, invocation_id))
        self._timers_changed.set()

    async def _timer_loop(self) -> None:
        import heapq

        while True:
            self._timers_changed = anyio.Event()
            now = time.time()
            while self._timers and self._timers[0][0] <= now:
                _, invocation_id = heapq.heappop(self._timers)
                inv = self._invocations.get(invocation_id)
                if inv is not None:
                    self._dispatch(inv)
            wait = self._timers[0][0] - now if self._timers else math.inf
            with anyio.move_on_after(wait):
                await self._timers_changed.wait()

    # --- recovery and housekeeping -----------------------------------------------------------------

    def _recover(self) -> int:
        """Re-deliver every accepted, unfinished invocation, in order per key."""
        try:
            entries = self._store.scan(Table.INBOX)
        except StorageError as exc:
            raise persistence_error(exc) from exc
        now = time.time()
        recovered = 0
        for inbox_key, raw_id in entries:
            seq = decode_key(inbox_key)[-1]
            assert isinstance(seq, int)
            self._next_inbox_seq = max(self._next_inbox_seq, seq + 1)
            record = self._load_record(raw_id.decode())
            if record is None or record.outcome is not None:
                continue
            try:
                entry, spec, tgt = self.resolve_name(
                    record.target.actor, record.target.handler, record.target.key
                )
            except (UnknownHandlerError, TypeError) as exc:
                logger.error("cannot resume invocation %s: %s", record.invocation_id, exc)
                continue
            inv = _Invocation(
                invocation_id=record.invocation_id,
                target=tgt,
                entry=entry,
                spec=spec,
                payload=record.payload,
                arg=_UNDECODED,
                accepted_at=record.accepted_at,
                caller_id=record.caller_id,
                inbox_key=inbox_key,
            )
            recovered += 1
            if record.next_attempt_at is not None and record.next_attempt_at > now:
                self._invocations[inv.invocation_id] = inv
                self._schedule_timer(record.next_attempt_at, inv.invocation_id)
            else:
                self._dispatch(inv)
        return recovered

    async def _reap_idle(self) -> None:
        """Drop activations idle for ``idle_timeout``: a key costs memory only while used."""
        interval = max(self._idle_timeout / 2, 0.001)
        while True:
            await anyio.sleep(interval)
            cutoff = anyio.current_time() - self._idle_timeout
            for key, activation in list(self._activations.items()):
                if (
                    activation.mailbox.idle
                    and not activation.pending_commits
                    and activation.last_used <= cutoff
                ):
                    del self._activations[key]

    def _log(self, event: str, inv: _Invocation) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "invocation %s %s: %s key=%s handler=%s",
                inv.invocation_id,
                event,
                inv.target.actor,
                inv.target.key,
                inv.target.handler,
            )


def _noop() -> None:
    pass


@asynccontextmanager
async def open_runtime(
    path: str | PathLike[str],
    actors: Sequence[type[Actor] | Actor],
    *,
    durability: Literal["fsync", "process"] = "fsync",
    retry: RetryPolicy | None = None,
    idle_timeout: float = 60.0,
    max_in_flight: int = 10_000,
    commit_mode: Literal["thread", "inline"] = "thread",
) -> AsyncIterator[Runtime]:
    """Open the data directory ``path`` and run ``actors`` in it, inside the calling
    trio or asyncio program.

    Args:
      actors: actor classes (created with no arguments) or instances; one instance
        serves every key of its class.
      durability: ``"fsync"`` (survives power loss) or ``"process"`` (survives a killed
        process, not an OS crash).
      idle_timeout: seconds after which an idle key's activation is dropped.
      max_in_flight: invocations held in memory at most; ``call``/``send`` wait beyond.
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
    try:
        store = Store.open(path, durability=durability, commit_mode=commit_mode)
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
            )
            runtime._recover()
            tg.start_soon(runtime._reap_idle)
            tg.start_soon(runtime._timer_loop)
            try:
                yield runtime
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                runtime._closed = True
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The runtime's own tasks never fail, so a group holding only the body's error
        # is an artifact of the task group: give the caller back their own exception.
        if body_error is not None and group.exceptions == (body_error,):
            raise body_error from None
        raise
    finally:
        await store.aclose()
