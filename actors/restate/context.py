"""Restate's ``restate.context``: the contexts Restate handlers get, over the runtime's.

Each Restate context wraps the runtime context of the running invocation
(``actors.Context`` and its kinds) and keeps Restate's names, signatures and return
types: ``key()`` is a method, ``get`` returns a ``RestateDurableFuture`` (usable in
``restate.gather``), the ``*_send`` methods and the awakeable and promise completions
are plain calls that take effect when called (journaled at once: invariant 14), values
go through Restate's serdes. The runtime's guarantees hold underneath: replay, the output
gate, deadlock detection on exclusive calls, the idempotency payload check.

The class tree is Restate's: ``ObjectContext`` (exclusive) is not an
``ObjectSharedContext``; both workflow contexts add ``promise``. Which one a handler
gets follows its kind: a service handler ``Context``, an object's exclusive handler
``ObjectContext``, its shared handler ``ObjectSharedContext``, a workflow's ``main``
``WorkflowContext``, its other handlers ``WorkflowSharedContext``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ._futures import (
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from ._handlers import handler_info
from ._plain import PLAIN, from_plain, raising_restate_errors, to_plain, translated
from ._request import AttemptFinishedEvent, Request, RunOptions, request_of
from ._scoped import ScopedContext
from ._steps import durable_step, no_scope, policy_for
from .serde import BytesSerde, DefaultSerde, Serde, with_hint

if TYPE_CHECKING:
    import random
    import uuid
    from datetime import timedelta

__all__ = [
    "AttemptFinishedEvent",
    "Context",
    "DurablePromise",
    "HandlerType",
    "KeyValueStore",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunAction",
    "RunOptions",
    "ScopedContext",
    "SendHandle",
    "WorkflowContext",
    "WorkflowSharedContext",
]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

#: What Restate's signatures call a handler target (a decorated handler function) and a
#: step's action: aliases for annotations, as in Restate.
HandlerType = Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]]
RunAction = Callable[..., Coroutine[Any, Any, T]] | Callable[..., T]

_SERDE: Any = DefaultSerde()
_RAW = BytesSerde()


class Context:
    """The context of a Restate handler; what every kind can do. Made by the runtime."""

    __slots__ = ("_actx", "_attempt", "_info")

    def __init__(self, actx: Any, info: Any, attempt: AttemptFinishedEvent) -> None:
        self._actx = actx
        self._info = info
        self._attempt = attempt

    # --- the invocation --------------------------------------------------------------

    def request(self) -> Request:
        """What this invocation was called with: id, headers, body, idempotency key,
        and the event set when this attempt finishes."""
        return request_of(self._actx.request(), self._attempt)

    def scope(self, scope: str) -> ScopedContext:
        """Not available embedded: scopes are a Restate server feature."""
        no_scope(scope, None)
        raise AssertionError("unreachable")

    def random(self) -> random.Random:
        """A ``random.Random`` seeded from the invocation: the same on every replay."""
        rng: random.Random = self._actx.random()
        return rng

    def uuid(self) -> uuid.UUID:
        """A version-4 UUID, stable across replays."""
        value: uuid.UUID = self._actx.uuid()
        return value

    def time(self) -> RestateDurableFuture[float]:
        """The current time in seconds since the epoch, journaled."""
        return RestateDurableFuture(None, self._actx.time)

    # --- steps and timers --------------------------------------------------------------

    # Two overloads, so that a type checker takes T from an ``async def`` action's
    # result (the union of Restate's one signature leaves it unsolvable).
    @overload
    def run(
        self,
        name: str,
        action: Callable[..., Coroutine[Any, Any, T]],
        serde: Serde[T] = ...,
        max_attempts: int | None = ...,
        max_retry_duration: timedelta | None = ...,
        type_hint: type[T] | None = ...,
        args: tuple[Any, ...] | None = ...,
    ) -> RestateDurableFuture[T]: ...
    @overload
    def run(
        self,
        name: str,
        action: Callable[..., T],
        serde: Serde[T] = ...,
        max_attempts: int | None = ...,
        max_retry_duration: timedelta | None = ...,
        type_hint: type[T] | None = ...,
        args: tuple[Any, ...] | None = ...,
    ) -> RestateDurableFuture[T]: ...
    def run(
        self,
        name: str,
        action: Callable[..., Coroutine[Any, Any, T]] | Callable[..., T],
        serde: Serde[T] = _SERDE,
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> RestateDurableFuture[T]:
        """Run ``action(*args)`` as a durable step (``actors.Context.run``): its result
        is journaled through ``serde``, so a replay returns it without running it again.
        ``max_attempts`` / ``max_retry_duration`` bound its retries; then it raises
        ``TerminalError`` here. A plain function runs on a worker thread."""
        return durable_step(
            self._actx,
            name,
            action,
            serde,
            type_hint,
            args or (),
            {},
            policy_for(max_attempts, max_retry_duration),
        )

    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[..., Coroutine[Any, Any, T]],
        options: RunOptions[T] = ...,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[T]: ...
    @overload
    def run_typed(
        self,
        name: str,
        action: Callable[..., T],
        options: RunOptions[T] = ...,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[T]: ...
    def run_typed(
        self,
        name: str,
        action: Callable[..., Coroutine[Any, Any, T]] | Callable[..., T],
        options: RunOptions[T] = RunOptions(),  # noqa: B008  (Restate's default)
        /,
        *args: Any,
        **kwargs: Any,
    ) -> RestateDurableFuture[T]:
        """``run`` with its options in one ``RunOptions`` and the action's arguments
        passed through."""
        policy = policy_for(
            options.max_attempts,
            options.max_duration or options.max_retry_duration,
            options.initial_retry_interval,
            options.max_retry_interval,
            options.retry_interval_factor,
        )
        return durable_step(
            self._actx, name, action, options.serde, options.type_hint, args, kwargs, policy
        )

    def sleep(self, delta: timedelta, name: str | None = None) -> RestateDurableSleepFuture:
        """A durable timer of ``delta`` (``name`` only labels it in Restate's UI)."""
        return RestateDurableSleepFuture(self._actx.sleep(delta))

    # --- calls and sends ---------------------------------------------------------------

    def _call(
        self,
        tpe: Any,
        key: str | None,
        arg: Any,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateDurableCallFuture[Any]:
        info = handler_info(tpe)
        payload = info.input_serde.serialize(arg) if info.has_input else b""
        durable = self._actx.generic_call(
            info.service.name,
            info.name,
            payload,
            key=key,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return RestateDurableCallFuture(durable, None, info.output_serde.deserialize)

    def _send(
        self,
        tpe: Any,
        key: str | None,
        arg: Any,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> SendHandle:
        info = handler_info(tpe)
        payload = info.input_serde.serialize(arg) if info.has_input else b""
        handle = self._actx.generic_send(
            info.service.name,
            info.name,
            payload,
            key=key,
            delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return SendHandle(handle)

    def service_call(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a service handler (the decorated function) with ``arg``."""
        return self._call(tpe, None, arg, idempotency_key, headers)

    def service_send(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send to a service handler, optionally after ``send_delay``; journaled now."""
        return self._send(tpe, None, arg, send_delay, idempotency_key, headers)

    def object_call(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a virtual object's handler on ``key`` (exclusive calls that would close
        a wait-for cycle fail at once with a 409 ``TerminalError``)."""
        return self._call(tpe, key, arg, idempotency_key, headers)

    def object_send(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send to a virtual object's handler on ``key``; journaled now."""
        return self._send(tpe, key, arg, send_delay, idempotency_key, headers)

    def workflow_call(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateDurableCallFuture[O]:
        """Call a workflow's handler (``main`` runs once per id) on workflow id ``key``."""
        return self._call(tpe, key, arg, idempotency_key, headers)

    def workflow_send(
        self,
        tpe: Callable[[Any, I], Awaitable[O]] | Callable[[Any], Awaitable[O]],
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        """Send to a workflow's handler on workflow id ``key``; journaled now."""
        return self._send(tpe, key, arg, send_delay, idempotency_key, headers)

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateDurableCallFuture[bytes]:
        """Call by service and handler name with the input as bytes; the result is the
        callee's output bytes."""
        no_scope(scope, limit_key)
        durable = self._actx.generic_call(
            service, handler, arg, key=key, idempotency_key=idempotency_key, headers=headers
        )
        return RestateDurableCallFuture(durable)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> SendHandle:
        """Send by service and handler name with the input as bytes; journaled now."""
        no_scope(scope, limit_key)
        handle = self._actx.generic_send(
            service,
            handler,
            arg,
            key=key,
            delay=send_delay,
            idempotency_key=idempotency_key,
            headers=headers,
        )
        return SendHandle(handle)

    def cancel_invocation(self, invocation_id: str) -> None:
        """Cancel another invocation (journaled now; it gets a 409 ``TerminalError`` at
        its next durable await)."""
        self._actx.cancel_invocation(invocation_id)

    def attach_invocation(
        self, invocation_id: str, serde: Serde[T] = _SERDE, type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T]:
        """A future of another invocation's result, decoded with ``serde``."""
        chosen = with_hint(serde, type_hint)

        def decode(raw: object) -> T | None:
            return chosen.deserialize(raw) if isinstance(raw, bytes) else from_plain(chosen, raw)

        return RestateDurableFuture(self._actx.attach_invocation(invocation_id), None, decode)

    # --- awakeables and signals ----------------------------------------------------------

    def awakeable(
        self, serde: Serde[T] = _SERDE, type_hint: type[T] | None = None
    ) -> tuple[str, RestateDurableFuture[T]]:
        """A future completed from outside: ``(id, future)``. Complete it with
        ``ctx.resolve_awakeable``, ``rt.resolve_awakeable`` or over HTTP
        (``POST /restate/awakeables/{id}/resolve`` with a JSON body)."""
        chosen = with_hint(serde, type_hint)
        awakeable_id, durable = self._actx.awakeable(PLAIN)
        return awakeable_id, RestateDurableFuture(
            durable, None, functools.partial(from_plain, chosen)
        )

    def resolve_awakeable(self, name: str, value: I, serde: Serde[I] = _SERDE) -> None:
        """Complete the awakeable ``name`` with ``value``; journaled now."""
        self._actx.resolve_awakeable(name, to_plain(serde, value))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        """Fail the awakeable ``name``: its waiter gets ``TerminalError``; journaled now."""
        self._actx.reject_awakeable(name, failure_message, failure_code)

    def signal(
        self, name: str, serde: Serde[T] = _SERDE, type_hint: type[T] | None = None
    ) -> RestateDurableFuture[T]:
        """A future of this invocation's signal ``name``."""
        chosen = with_hint(serde, type_hint)
        durable = self._actx.signal(name, PLAIN)
        return RestateDurableFuture(durable, None, functools.partial(from_plain, chosen))

    def resolve_signal(
        self, invocation_id: str, name: str, value: I, serde: Serde[I] = _SERDE
    ) -> None:
        """Complete the signal ``name`` of ``invocation_id``; journaled now."""
        self._actx.resolve_signal(invocation_id, name, to_plain(serde, value))

    def reject_signal(
        self, invocation_id: str, name: str, failure_message: str, failure_code: int = 500
    ) -> None:
        """Fail the signal ``name`` of ``invocation_id``; journaled now."""
        self._actx.reject_signal(invocation_id, name, failure_message, failure_code)


class _Reads(Context):
    """Reading state and the key, for every keyed kind."""

    __slots__ = ()

    def key(self) -> str:
        """The object key or workflow id."""
        key: str = self._actx.key
        return key

    def get(
        self,
        name: str,
        serde: Serde[T] = _SERDE,
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> RestateDurableFuture[T | None]:
        """State ``name`` decoded with ``serde`` (None when absent); a future, so it
        composes in ``restate.gather``. Read when first awaited (journaled)."""
        chosen = with_hint(serde, type_hint)

        def decode(value: object) -> T | None:
            return None if value is None else from_plain(chosen, value)

        return RestateDurableFuture(None, functools.partial(self._actx.get, name, PLAIN), decode)

    def state_keys(self, entry_name: str | None = None) -> Awaitable[list[str]]:
        """The names of this key's state entries."""
        return translated(self._actx.state_keys())


class KeyValueStore(_Reads):
    """Reading and writing state (exclusive handlers and a workflow's ``main``)."""

    __slots__ = ()

    def set(
        self, name: str, value: T, serde: Serde[T] = _SERDE, entry_name: str | None = None
    ) -> None:
        """Set state ``name``, encoded with ``serde`` (written with the invocation's next
        batch; shared handlers see it once durable)."""
        self._actx.set(name, to_plain(serde, value))

    def clear(self, name: str, entry_name: str | None = None) -> None:
        """Remove state ``name``."""
        self._actx.clear(name)

    def clear_all(self, entry_name: str | None = None) -> None:
        """Remove every state entry of this key."""
        self._actx.clear_all()


class ObjectSharedContext(_Reads):
    """A virtual object's shared handler: reads committed state, writes none."""

    __slots__ = ()


class ObjectContext(KeyValueStore):
    """A virtual object's exclusive handler: reads and writes this key's state."""

    __slots__ = ()


class DurablePromise(Generic[T]):
    """A workflow's durable promise (``ctx.promise(name)``): completed once; every
    waiter, in ``main`` or a shared handler, gets its value."""

    __slots__ = ("_promise", "name", "serde")

    def __init__(self, name: str, serde: Serde[T] = _SERDE) -> None:
        self.name = name
        self.serde = serde
        self._promise: Any = None  # the runtime's promise, set by the context

    def resolve(self, value: T) -> Awaitable[None]:
        """Complete it with ``value`` (journaled now; a second completion fails with a
        409 ``TerminalError``)."""
        return translated(self._promise.resolve(to_plain(self.serde, value)))

    def reject(self, message: str, code: int = 500) -> Awaitable[None]:
        """Fail it: waiters get ``TerminalError(message, code)``."""
        return translated(self._promise.reject(message, code))

    async def _peek(self) -> T | None:
        value = await translated(self._promise.peek())
        return None if value is None else from_plain(self.serde, value)

    def peek(self) -> Awaitable[T | None]:
        """Its value if completed, else None (journaled)."""
        return self._peek()

    def value(self) -> RestateDurableFuture[T]:
        """A future of its value (a rejection raises ``TerminalError``)."""
        durable = self._promise.value()
        return RestateDurableFuture(durable, None, functools.partial(from_plain, self.serde))


def _promise(ctx: Context, name: str, serde: Serde[Any], type_hint: Any) -> DurablePromise[Any]:
    promise: DurablePromise[Any] = DurablePromise(name, with_hint(serde, type_hint))
    promise._promise = ctx._actx.promise(name, PLAIN)
    return promise


class WorkflowSharedContext(ObjectSharedContext):
    """A workflow's shared handler: reads the state ``main`` made durable and uses the
    workflow's promises."""

    __slots__ = ()

    def promise(
        self, name: str, serde: Serde[T] = _SERDE, type_hint: type[T] | None = None
    ) -> DurablePromise[T]:
        """The durable promise ``name`` of this workflow id."""
        return _promise(self, name, serde, type_hint)


class WorkflowContext(ObjectContext):
    """A workflow's ``main`` handler: writes state and uses the workflow's promises."""

    __slots__ = ()

    def promise(
        self, name: str, serde: Serde[T] = _SERDE, type_hint: type[T] | None = None
    ) -> DurablePromise[T]:
        """The durable promise ``name`` of this workflow id."""
        return _promise(self, name, serde, type_hint)


# Runtime refusals raised at the call (a deadlock, a bad argument, an unknown id) reach
# Restate code as Restate's TerminalError: wrap the methods that ask the runtime at once.
for _cls, _names in (
    (
        Context,
        (
            "run",
            "run_typed",
            "sleep",
            "service_call",
            "service_send",
            "object_call",
            "object_send",
            "workflow_call",
            "workflow_send",
            "generic_call",
            "generic_send",
            "cancel_invocation",
            "attach_invocation",
            "awakeable",
            "resolve_awakeable",
            "reject_awakeable",
            "signal",
            "resolve_signal",
            "reject_signal",
        ),
    ),
    (KeyValueStore, ("set", "clear", "clear_all")),
    (DurablePromise, ("resolve", "reject", "value")),
):
    for _name in _names:
        setattr(_cls, _name, raising_restate_errors(vars(_cls)[_name]))
del _cls, _names, _name
