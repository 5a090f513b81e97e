"""The contexts handed to handlers: what a handler may do, by its kind.

Capabilities are types: ``ObjectContext`` (exclusive handlers) has the writing methods;
``ObjectSharedContext`` (shared handlers) has none, so a shared handler that tries to
write is a type error and, untyped, an ``AttributeError``; ``Context`` (services) has no
key and no state. Contexts are created by the runtime only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final, overload

from ._util import NoPublicConstructor

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Callable, Coroutine
    from datetime import timedelta

    from ._definitions import Handler
    from ._invocation import Invocation
    from ._retry import RetryPolicy
    from ._runtime import InvocationHandle, Runtime

T = TypeVar("T")
OutT = TypeVar("OutT")

_NO_ARG: Any = object()


class Context(metaclass=NoPublicConstructor):
    """The context of a service handler (and the base of every context)."""

    __slots__ = ("_inv", "_rt")

    def __init__(self, runtime: Runtime, invocation: Invocation) -> None:
        self._rt = runtime
        self._inv = invocation

    @property
    def invocation_id(self) -> str:
        """The id of the running invocation."""
        invocation_id: str = self._inv.invocation_id
        return invocation_id

    @overload
    async def run(
        self,
        name: str,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: type[T] | None = None,
    ) -> T: ...
    @overload
    async def run(
        self,
        name: str,
        fn: Callable[..., T],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: type[T] | None = None,
    ) -> T: ...
    async def run(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: Any = None,
    ) -> Any:
        """Run ``fn(*args)`` as a durable step named ``name`` and return its result.

        The body runs only once everything the invocation did before is durable, and
        its result (or terminal failure) is journaled: after a crash the step returns the
        recorded value without running again. The body runs again only if the crash came
        before its result was durable, and then with the same inputs.

        An ``async def`` body runs on the event loop; a plain function runs on a worker
        thread, so it may block. A body raising ``TerminalError`` fails the step at once;
        other exceptions are retried with ``retry`` (else the handler's, else the
        runtime's policy) and, when attempts run out, raised in the handler as
        ``TerminalError``. The result is converted through ``type`` or ``fn``'s return
        annotation, and the handler gets the stored form (as a replay would). The body
        must not use the context.
        """
        return await self._rt._ctx_run(self._inv, name, fn, args, retry, type)

    async def time(self) -> float:
        """The current time (seconds since the epoch), journaled: a replay sees the same."""
        return await self._rt._ctx_time(self._inv)

    def random(self) -> random.Random:
        """A ``random.Random`` seeded from the invocation id: the same sequence on every
        attempt and replay, different per invocation."""
        return self._rt._ctx_random(self._inv)

    def uuid(self) -> uuid.UUID:
        """A version-4 UUID drawn from ``random()``: stable across replays."""
        return self._rt._ctx_uuid(self._inv)

    @overload
    async def call(self, target: Handler[Any, OutT], /, *, key: str | None = None) -> OutT: ...
    @overload
    async def call(
        self, target: Handler[Any, OutT], arg: object, /, *, key: str | None = None
    ) -> OutT: ...
    async def call(
        self, target: Handler[Any, OutT], arg: object = _NO_ARG, /, *, key: str | None = None
    ) -> OutT:
        """Call another handler and wait for its result.

        The callee's id is derived from this invocation's id and the call's position,
        so a re-executed handler does not deliver the same call twice. A callee's
        ``TerminalError`` is raised here with the same message and status code.

        Raises:
          DeadlockError: the call is to an exclusive handler and would close a cycle of
            invocations waiting on each other's keys. Raised before the callee exists.
          UnknownHandlerError, SerializationError, TypeError: bad target, input or key.
        """
        result: OutT = await self._rt._ctx_call(self._inv, target, arg, key)
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
        """Send a one-way invocation, optionally delivered after ``delay``. Returns once
        it is durably recorded; its id is derived like ``call``'s, so a re-executed
        handler does not send twice (the second handle says ``PreviouslyAccepted``)."""
        return await self._rt._ctx_send(self._inv, target, arg, key, delay)


class ObjectSharedContext(Context):
    """The context of a shared handler: reads committed state only; cannot write."""

    __slots__ = ()

    @property
    def key(self) -> str:
        """The object key (or workflow id) this invocation addresses."""
        key = self._inv.target.key
        assert key is not None
        return key

    @overload
    async def get(self, name: str, /) -> object | None: ...
    @overload
    async def get(self, name: str, type: type[T], /) -> T | None: ...
    async def get(self, name: str, type: Any = object, /) -> Any:
        """The value of state ``name`` converted to ``type``, or None when absent."""
        return await self._rt._state_get(self._inv, name, type)

    async def state_keys(self) -> list[str]:
        """The names of the state entries this key has, sorted."""
        return await self._rt._state_keys(self._inv)


@final
class ObjectContext(ObjectSharedContext):
    """The context of an exclusive handler: reads its own writes, and writes state.

    Writes become durable together with the invocation's completion (one commit), and
    are visible to shared handlers and other keys only once durable."""

    __slots__ = ()

    def set(self, name: str, value: object) -> None:
        """Set state ``name`` to ``value`` (any value the JSON converter handles)."""
        self._rt._state_set(self._inv, name, value)

    def clear(self, name: str) -> None:
        """Remove state ``name``."""
        self._rt._state_clear(self._inv, name)

    def clear_all(self) -> None:
        """Remove every state entry of this key."""
        self._rt._state_clear_all(self._inv)
