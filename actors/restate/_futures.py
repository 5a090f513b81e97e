"""Restate's durable futures, over the runtime's (``actors.DurableFuture``).

A ``RestateDurableFuture`` has one of two sources:

* a runtime durable future (``ctx.run``, ``sleep``, calls, awakeables, promise values,
  signals, attach): it took its journal place when created, and the combinators
  (``_combinators``) wait on it through the runtime's journaled ``wait_completed``;
* a lazy operation (a state ``get``, ``time()``): an awaitable the runtime journals when
  it runs. It runs at the first await (or in a combinator, in argument order), so a
  future created and never awaited does nothing; it counts as completed at once.

Either way the decoded result (or Restate ``TerminalError``) is kept, so awaiting a
future twice gives the same answer without touching the journal again.

Lifecycle of one future (no other state exists)::

    pending --first await / combinator--> settled (value | error)   [kept for good]
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import actors

from ._plain import restate_error

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

__all__ = [
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "SendHandle",
]

T = TypeVar("T")


def _identity(value: Any) -> Any:
    return value


class RestateDurableFuture(Generic[T], abc.ABC):
    """The pending result of a durable operation; ``await`` it (as often as you like)
    or pass it to ``restate.gather``, ``select``, ``wait_completed``, ``as_completed``.
    Created by the context only."""

    __slots__ = ("_decode", "_durable", "_error", "_lazy", "_settled", "_value")

    def __init__(
        self,
        durable: actors.DurableFuture[Any] | None,
        lazy: Callable[[], Awaitable[Any]] | None = None,
        decode: Callable[[Any], Any] = _identity,
    ) -> None:
        self._durable = durable
        self._lazy = lazy
        self._decode = decode
        self._settled = False
        self._value: Any = None
        self._error: BaseException | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._result().__await__()

    def is_completed(self) -> bool:
        """Whether awaiting would not wait (the result is known, or it is a lazy
        operation, which never waits for anything outside the invocation)."""
        return self._settled or self._durable is None

    async def _result(self) -> T:
        if not self._settled:
            await self._settle()
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value

    async def _settle(self) -> None:
        """Run or await the source once and keep its decoded outcome; a terminal failure
        is kept too (raised at every await), anything else propagates (the attempt
        fails and is retried from the journal)."""
        if self._settled:
            return
        try:
            if self._durable is not None:
                raw = await self._durable
            else:
                assert self._lazy is not None
                raw = await self._lazy()
            value = self._decode(raw)
        except actors.TerminalError as exc:
            self._settled, self._error = True, restate_error(exc)
            return
        self._settled, self._value = True, value


class RestateDurableSleepFuture(RestateDurableFuture[None]):
    """The future of ``ctx.sleep``: completes when the durable timer fires."""

    __slots__ = ()


class RestateDurableCallFuture(RestateDurableFuture[T]):
    """The future of a call: its result, and the callee's invocation id."""

    __slots__ = ()

    def _call(self) -> actors.DurableCallFuture[Any]:
        # Made by the context from a runtime call future only (``generic_call``).
        return cast("actors.DurableCallFuture[Any]", self._durable)

    async def invocation_id(self) -> str:
        """The callee's invocation id (known when the call is made)."""
        return self._call().invocation_id

    async def cancel_invocation(self) -> None:
        """Cancel the callee (a 409 ``TerminalError`` in it at its next durable await);
        the call then fails with it. Journaled when called."""
        try:
            await self._call().cancel()
        except actors.TerminalError as exc:
            raise restate_error(exc) from exc


class SendHandle(abc.ABC):  # noqa: B024  (Restate's class is abstract too, without abstract methods)
    """What a ``*_send`` returns: the invocation it accepted (journaled when the send was
    called: the send is never lost, awaited or not)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: actors.InvocationHandle) -> None:
        self._handle = handle

    async def invocation_id(self) -> str:
        """The sent invocation's id."""
        return self._handle.invocation_id

    async def cancel_invocation(self) -> None:
        """Cancel the sent invocation. Journaled when called."""
        try:
            await self._handle.cancel()
        except actors.TerminalError as exc:
            raise restate_error(exc) from exc
