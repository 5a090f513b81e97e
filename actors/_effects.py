"""Effects a handler asks for, journaled when asked (invariant 14).

A send, an awakeable or promise completion and a cancel are *effects*: they change
something outside the invocation. Their methods do all their work synchronously, when
called: validate (so a refusal is raised at the call), take the next journal index,
buffer the journal entry and the rows the effect writes, and register an ``Effect``
(``_invocation``) saying what becomes visible once that batch is durable (a callee
dispatched, a waiter woken, a cancel requested). They return an awaitable that only
waits for durability. So forgetting the ``await`` loses nothing: the entry rides in the
invocation's next batch (the next durable await, or its completion), in call order, and
the effect is delivered when that batch is durable; the output gate (invariant 6) still
holds, since nothing is delivered before.

Rejected: returning a coroutine, as ``async def`` would. A coroutine does nothing until
it is awaited, so an un-awaited ``ctx.send`` did nothing at all (only a
``RuntimeWarning``), and Restate users, for whom a send is a plain call, lose messages.
Also rejected: submitting a batch per effect at the call, which costs a commit per
effect where the next gate commits them all in one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._gate import OutputGate
    from ._invocation import Invocation

T = TypeVar("T")


@final
class Journaled(Generic[T]):
    """What an effect's method returns: the effect is already journaled; awaiting this
    (once, many times, or never) waits until the batch holding it is durable and the
    effect delivered, then gives ``value``. A commit that fails there fails the attempt
    (it is retried from the journal), as at any durable step."""

    __slots__ = ("_gate", "_inv", "_value")

    def __init__(self, gate: OutputGate | None, inv: Invocation, value: T) -> None:
        self._gate = gate  # None: replayed from the journal, durable already
        self._inv = inv
        self._value = value

    def __await__(self) -> Generator[Any, None, T]:
        if self._gate is not None and self._value is None:
            # The usual case (a completion, a cancel): the gate's own awaiter, with no
            # coroutine of ours around it (one object less per await, for the collector).
            return cast("Generator[Any, None, T]", self._gate.gate(self._inv).__await__())
        return self._durable().__await__()

    async def _durable(self) -> T:
        if self._gate is None:
            await anyio.lowlevel.checkpoint()
        else:
            await self._gate.gate(self._inv)
        return self._value

    def __repr__(self) -> str:
        return f"<journaled effect of {self._inv.invocation_id}>"
