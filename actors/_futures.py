"""Durable futures and the combinators that compose them.

A durable future is what ``ctx.run``, ``ctx.sleep``, ``ctx.call``, a promise's
``value()`` and an awakeable hand back. Creating one takes its place in the journal at
once (so its entry has the same index however the futures finish), and awaiting it
waits for the result, which the journal records. ``select`` records which future won, so
a replay picks the same branch even when, this time, another one is ready first;
``wait_completed`` (and ``as_completed``, built on it) records which futures had
finished, for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

import anyio.lowlevel

from ._errors import ActorsError, BadArgumentError
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator

    from ._invocation import Invocation

T = TypeVar("T")


class FutureDriver(Protocol):
    """What a durable future needs from the runtime: its awaits are durable awaits
    (``_waits.Waits``), and so are ``select`` and ``gather`` over it."""

    async def await_future(self, future: DurableFuture[T]) -> T: ...

    async def select(
        self, inv: Invocation, futures: dict[str, DurableFuture[Any]]
    ) -> tuple[str, Any]: ...

    async def gather(self, inv: Invocation, futures: list[DurableFuture[Any]]) -> list[Any]: ...

    async def wait_completed(
        self, inv: Invocation, futures: list[DurableFuture[Any]]
    ) -> list[int]: ...


def _never_ready() -> bool:
    return False


def always_ready() -> bool:
    return True


class DurableFuture(Generic[T], metaclass=NoPublicConstructor):
    """The pending result of a durable operation. Await it (once or many times: the
    result is kept), or pass it to ``actors.select`` / ``actors.gather``.

    Awaiting is a *durable await*: if the invocation was cancelled, the cancellation is
    raised here as a ``TerminalError`` with status 409.
    """

    __slots__ = (
        "_callee_id",
        "_driver",
        "_error",
        "_inv",
        "_journaled",
        "_produce",
        "_produce_inline",
        "_ready",
        "_settled",
        "_value",
    )

    def __init__(
        self,
        driver: FutureDriver,
        invocation: Invocation,
        produce: Callable[[], Awaitable[T]],
        ready: Callable[[], bool] = _never_ready,
    ) -> None:
        self._driver = driver
        self._inv = invocation
        self._produce = produce
        #: A cheaper producer for a plain ``await`` of the future by its own handler
        #: (``ctx.run`` runs its body in the handler's task then), called with the
        #: future, which it settles as ``_produced`` would; None: use ``produce``.
        self._produce_inline: Callable[[DurableFuture[T]], Coroutine[Any, Any, T]] | None = None
        self._ready = ready
        self._settled = False
        self._value: Any = None
        self._error: ActorsError | None = None
        self._callee_id: str | None = None  # a call's callee, cancelled along with it
        self._journaled = False  # its result was replayed from the journal

    def __await__(self) -> Generator[Any, None, T]:
        return self._driver.await_future(self).__await__()

    def _is_ready(self) -> bool:
        """Whether awaiting would not block (the result is already known)."""
        return self._settled or self._ready()

    def _result(self, *, inline: bool = False) -> Coroutine[Any, Any, T]:
        """The result, awaited: ``inline`` takes the cheaper producer if there is one
        (a plain ``await`` by the future's own handler). That producer settles the
        future itself, so its coroutine is returned as it is: one await level less
        between a handler and a step's suspension, which costs on every suspend and
        resume."""
        if inline and not self._settled:
            produce_inline = self._produce_inline
            if produce_inline is not None:
                return produce_inline(self)
        return self._produced()

    async def _produced(self) -> T:
        if self._settled:
            if self._error is not None:
                raise self._error
            value: T = self._value
            return value
        try:
            value = await self._produce()
        except ActorsError as exc:  # a result too: keep it, as a replay would
            self._settled, self._error = True, exc
            raise
        self._settled, self._value = True, value
        return value

    def __repr__(self) -> str:
        state = "settled" if self._settled else "pending"
        return f"<DurableFuture of {self._inv.invocation_id} {state}>"


@final
class DurableCallFuture(DurableFuture[T]):
    """The pending result of a ``ctx.call``: a durable future that also knows its
    callee. The callee's id is known as soon as the call is journaled, that is when
    ``ctx.call`` returns."""

    __slots__ = ("_cancel_op",)
    _cancel_op: Callable[[str], Awaitable[None]]

    @property
    def invocation_id(self) -> str:
        """The callee's invocation id (for ``ctx.attach_invocation``, ``rt.attach``,
        ``ctx.cancel_invocation``)."""
        callee_id = self._callee_id
        assert callee_id is not None
        return callee_id

    def cancel(self) -> Awaitable[None]:
        """Cancel the callee: ``ctx.cancel_invocation(self.invocation_id)``, journaled
        when called, whether or not awaited. Awaiting this future then raises the
        callee's answer to it (a 409 ``TerminalError`` unless its handler absorbs the
        cancellation). A callee that already completed is refused with a 409
        ``TerminalError``, raised here."""
        return self._cancel_op(self.invocation_id)


def settled(
    driver: FutureDriver,
    inv: Invocation,
    value: Callable[[], Any],
    kind: type[DurableFuture[Any]] = DurableFuture,
) -> DurableFuture[Any]:
    """A future (of ``kind``) whose result is already journaled (``value`` decodes it)."""

    async def produce() -> Any:
        await anyio.lowlevel.checkpoint()
        return value()

    future = kind._create(driver, inv, produce, always_ready)
    future._journaled = True
    return future


def _check_futures(futures: list[Any], what: str) -> tuple[FutureDriver, Invocation]:
    # Misuse in a handler that no retry can fix: a 400 TerminalError, at once.
    if not futures:
        raise BadArgumentError(f"{what} needs at least one durable future")
    for future in futures:
        if not isinstance(future, DurableFuture):
            raise BadArgumentError(
                f"{what} takes durable futures (from ctx.run, ctx.sleep, ctx.call, "
                f"promise.value(), ctx.awakeable), not {type(future).__name__}"
            )
    first = futures[0]
    if any(future._inv is not first._inv for future in futures):
        raise BadArgumentError(f"{what}: every future must belong to the same invocation")
    return first._driver, first._inv


async def select(**futures: DurableFuture[Any]) -> tuple[str, Any]:
    """Wait for the first of ``futures`` to finish; return ``(name, result)``.

    If the winner failed, its ``TerminalError`` is raised. The winner is journaled: on
    replay the same name wins, whatever is ready first this time. The others are left
    pending (awaiting one later still works).
    """
    driver, invocation = _check_futures(list(futures.values()), "select()")
    return await driver.select(invocation, futures)


async def gather(*futures: DurableFuture[Any]) -> list[Any]:
    """Wait for every future (concurrently) and return their results in order. The
    first failure is raised once every future has finished or been cancelled."""
    driver, invocation = _check_futures(list(futures), "gather()")
    return await driver.gather(invocation, list(futures))


async def wait_completed(
    *futures: DurableFuture[Any],
) -> tuple[list[DurableFuture[Any]], list[DurableFuture[Any]]]:
    """Wait until at least one of ``futures`` has finished; return ``(done, pending)``,
    each in argument order. A future that failed is done too: awaiting it raises its
    ``TerminalError``. Returns at once if some future has already finished.

    Which futures were done is journaled: on replay the same partition comes back,
    whatever is ready this time. Awaiting a done future never blocks; the pending ones
    keep running and can be awaited or waited on again later.

    Raises:
      TerminalError (400): no futures, something that is not a durable future, or
        futures of different invocations.
      TerminalError (409): the invocation was cancelled while waiting.
    """
    listed = list(futures)
    driver, invocation = _check_futures(listed, "wait_completed()")
    positions = await driver.wait_completed(invocation, listed)
    finished = set(positions)
    done = [listed[position] for position in positions]
    pending = [future for position, future in enumerate(listed) if position not in finished]
    return done, pending


async def as_completed(*futures: DurableFuture[Any]) -> AsyncIterator[DurableFuture[Any]]:
    """Yield ``futures`` as they finish, in the order they finish (futures that finish
    together come in argument order). Each step is a ``wait_completed``, journaled, so a
    replay yields the same order. Await each yielded future for its result (it does not
    block)::

        async for future in actors.as_completed(a, b, c):
            try:
                print(await future)
            except actors.TerminalError as exc:
                print("failed:", exc.message)

    Raises as ``wait_completed``; the argument checks happen at the first iteration.
    """
    remaining = list(futures)
    _check_futures(remaining, "as_completed()")
    while remaining:
        done, remaining = await wait_completed(*remaining)
        for future in done:
            yield future
