"""The endpoint's invocations and durable futures: our ``DurableFuture`` over Restate's.

``EndpointInvocation`` is what our contexts and futures see of an invocation served by
the endpoint (``invocation_id``, ``spec``, ``target.key``), and the ``FutureDriver`` of
its futures (``actors._futures``): ``actors.gather``/``select``/``wait_completed``
dispatch on a future's driver, so over the endpoint's futures they become
``restate.gather``/``wait_completed`` over the Restate futures behind them, which
Restate journals. Errors cross here both ways (``restate.TerminalError`` <->
``actors.TerminalError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, cast

import restate
from restate.serde import BytesSerde

from actors import DurableFuture, TerminalError
from actors._errors import ActorsError, BadArgumentError, SerializationError, UnknownHandlerError
from actors._futures import DurableCallFuture
from actors._results import InvocationHandle

from ._serde import ConverterSerde

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator

    from actors import Handler

_BYTES: Any = BytesSerde()


def to_actors_error(exc: restate.TerminalError) -> TerminalError:
    """Restate's terminal failure as ours: same message, code and metadata."""
    return TerminalError(exc.message, exc.status_code, exc.metadata or None)


def to_restate_error(exc: BaseException) -> restate.TerminalError | None:
    """Ours as Restate's, for the errors that end an invocation without retry (a
    ``TerminalError``, a value that does not convert, an unknown handler); None for
    any other exception, which Restate retries."""
    if isinstance(exc, TerminalError):
        return restate.TerminalError(exc.message, exc.status_code, dict(exc.metadata) or None)
    if isinstance(exc, SerializationError | UnknownHandlerError):
        return restate.TerminalError(str(exc), exc.status_code)
    return None


class _Target:
    __slots__ = ("key",)

    def __init__(self, key: str | None) -> None:
        self.key = key


class EndpointInvocation:
    """One invocation on the endpoint: what our contexts read (``invocation_id``,
    ``spec``, ``target.key``) and the driver of its durable futures."""

    __slots__ = ("_backing", "restate", "spec", "target")

    def __init__(self, ctx: restate.Context, spec: Handler[Any, Any], key: str | None) -> None:
        self.restate = ctx
        self.spec = spec
        self.target = _Target(key)
        #: id(DurableFuture) -> (the future, the Restate future behind it). The future
        #: is kept so its id is not reused while the invocation runs.
        self._backing: dict[int, tuple[DurableFuture[Any], Any]] = {}

    @property
    def invocation_id(self) -> str:
        # Asked for when used: Restate builds a whole Request (headers copied) for it.
        invocation_id: str = self.restate.request().id
        return invocation_id

    # --- making futures ------------------------------------------------------------------

    def future(
        self,
        backing: Any,
        convert: Callable[[Any], Any] | None = None,
        kind: type[DurableFuture[Any]] = DurableFuture,
    ) -> DurableFuture[Any]:
        """Our durable future (of ``kind``) over the Restate future ``backing``;
        ``convert`` maps its value (bytes, mostly) to what the handler gets."""

        async def produce() -> Any:
            try:
                value = await backing
            except restate.TerminalError as exc:
                raise to_actors_error(exc) from None
            return value if convert is None else convert(value)

        future: DurableFuture[Any] = kind._create(self, cast("Any", self), produce)
        self._backing[id(future)] = (future, backing)
        return future

    def _restate_futures(self, futures: list[DurableFuture[Any]]) -> list[Any]:
        try:
            return [self._backing[id(future)][1] for future in futures]
        except KeyError:
            raise BadArgumentError(
                "a durable future of another invocation was passed to gather/select"
            ) from None

    # --- the FutureDriver protocol (actors._futures) ---------------------------------------

    def await_future(self, future: DurableFuture[Any]) -> Coroutine[Any, Any, Any]:
        # The future's own coroutine, without one more layer around it.
        return future._result()

    async def select(self, inv: object, futures: dict[str, DurableFuture[Any]]) -> tuple[str, Any]:
        names = list(futures)
        backing = self._restate_futures(list(futures.values()))
        done, _ = await restate.wait_completed(*backing)
        first = next(i for i, f in enumerate(backing) if any(f is d for d in done))
        return names[first], await futures[names[first]]

    async def gather(self, inv: object, futures: list[DurableFuture[Any]]) -> list[Any]:
        await restate.gather(*self._restate_futures(futures))
        results = []
        for future in futures:  # all finished: the first failure, in argument order
            results.append(await future)
        return results

    async def wait_completed(self, inv: object, futures: list[DurableFuture[Any]]) -> list[int]:
        backing = self._restate_futures(futures)
        done, _ = await restate.wait_completed(*backing)
        return [i for i, f in enumerate(backing) if any(f is d for d in done)]


class Done:
    """What an effect that Restate journaled at the call returns: awaiting it is a no-op
    (and not awaiting it loses nothing, unlike a coroutine)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that finishes at once


DONE: Final = Done()


class Later:
    """An awaitable that starts ``fn()`` when awaited (never: nothing runs, no warning)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._fn = fn

    def __await__(self) -> Generator[Any, None, Any]:
        return self._fn().__await__()


def call_future(inv: EndpointInvocation, backing: Any, convert: Callable[[Any], Any]) -> Any:
    """A ``DurableCallFuture``: Restate tells the callee's id asynchronously, so
    ``invocation_id`` is empty until the call was awaited; ``cancel()`` works at once."""
    future: Any = inv.future(backing, convert, DurableCallFuture)
    future._callee_id = ""

    async def cancel() -> None:
        callee = await backing.invocation_id()
        future._callee_id = callee
        inv.restate.cancel_invocation(callee)

    future._cancel_op = lambda _id: Later(cancel)
    original = future._produce

    async def known() -> None:
        if not future._callee_id:
            future._callee_id = await backing.invocation_id()

    async def produce() -> Any:
        # Only once the call has an answer (a value or a terminal failure): never while
        # Restate unwinds the handler (a suspension), which must not await anything.
        try:
            value = await original()
        except ActorsError:
            await known()
            raise
        await known()
        return value

    future._produce = produce
    return future


def send_handle(
    inv: EndpointInvocation, handle: Any, spec: Handler[Any, Any] | None, *, raw: bool = False
) -> InvocationHandle:
    """The ``InvocationHandle`` of a Restate send: its ``invocation_id`` is filled in
    when it is awaited (Restate tells it asynchronously; empty until then)."""
    ours: InvocationHandle

    async def durable() -> None:
        if not ours.invocation_id:
            ours.invocation_id = await handle.invocation_id()

    async def cancel() -> None:
        await durable()
        await handle.cancel_invocation()

    results = cast("Any", Results(inv, raw=raw))
    ours = InvocationHandle._create(
        results,
        "",
        "Accepted",
        cast("Any", spec),
        durable=Later(durable),
        cancel=lambda _id: Later(cancel),
    )
    return ours


class Results:
    """What an ``InvocationHandle`` from ``ctx.send`` awaits: Restate's attach."""

    __slots__ = ("_inv", "_raw")

    def __init__(self, inv: EndpointInvocation, *, raw: bool = False) -> None:
        self._inv = inv
        self._raw = raw  # generic_send: the output bytes as they are

    async def await_result(self, invocation_id: str, spec: Handler[Any, Any] | None) -> Any:
        try:
            data = await self._inv.restate.attach_invocation(invocation_id, serde=_BYTES)
        except restate.TerminalError as exc:
            raise to_actors_error(exc) from None
        if self._raw or spec is None:
            return bytes(data)
        return ConverterSerde[Any](spec.output_type, f"output of {spec.qualname}").deserialize(data)
