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
    from datetime import timedelta

    from ._definitions import Handler
    from ._runtime import InvocationHandle, Runtime, _Invocation

T = TypeVar("T")
OutT = TypeVar("OutT")

_NO_ARG: Any = object()


class Context(metaclass=NoPublicConstructor):
    """The context of a service handler (and the base of every context)."""

    __slots__ = ("_inv", "_rt")

    def __init__(self, runtime: Runtime, invocation: _Invocation) -> None:
        self._rt = runtime
        self._inv = invocation

    @property
    def invocation_id(self) -> str:
        """The id of the running invocation."""
        return self._inv.invocation_id

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
