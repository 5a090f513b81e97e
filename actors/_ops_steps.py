"""``ctx.run``: a durable step.

A step's body is an effect, so it runs only once everything the invocation did before is
durable (the output gate), and its outcome is journaled: after a crash the body runs
again only if its result was not yet durable (invariant 6). The body is retried per its
retry policy (the invocation's, else the runtime's: by default until it succeeds, with
capped backoff); when attempts run out, the handler gets a ``TerminalError``.

Awaited directly by its handler (the common case), the body runs in the handler's own
task, inside the invocation's cancel scope; a plain body's first try then goes to a step
thread from the callback that publishes the gate's commit, so the task suspends once per
step (``_gated_first_try``; trio only, asyncio takes the two waits in turn). Raced in
``select`` or ``gather``, it runs as a runtime task of its own: a branch that loses is
not cancelled, runs once, and awaiting it later joins that same run. A body's result is
journaled only while its attempt is still the current one.
"""

from __future__ import annotations

import inspect
import types
import typing
import weakref
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from actors.storage import Failure, Outcome, RunEntry, Success

from ._context import context_misuse
from ._control_flow import RUN_BODY, StepFailed, check_usable
from ._errors import BadArgumentError, RuntimeClosedError, SerializationError, TerminalError
from ._failures import cut, describe, passes_through
from ._futures import DurableFuture, settled
from ._limits import MAX_VALUE_BYTES, check_blocking, check_step_name
from ._results import decode_outcome, failure, outcome_size
from ._retry import RetryPolicy
from ._retry_start import keep_retry_start, retry_start
from ._serde import encode_value

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._waits import Waits


@attrs.define(eq=False)
class RunBody:
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


_FUNCTION: Final = types.FunctionType
#: What a body returns almost always; never awaitable (an exact type, not a subclass).
_PLAIN: Final = frozenset({int, str, bytes, float, bool, type(None), dict, list, tuple})


def _is_async(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction(fn)``, cheaply for a plain function that has no
    attributes of its own: its code's flags decide (only an attribute, as set by
    ``inspect.markcoroutinefunction``, could say otherwise). Inspect's own test costs
    about 4,000 instructions, a tenth of a plain body's hand-off to a thread."""
    if type(fn) is _FUNCTION and not fn.__dict__:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


def _awaitable(value: object) -> bool:
    """``inspect.isawaitable(value)``, without its ABC check (3,500 instructions) for the
    plain values bodies return."""
    return type(value) not in _PLAIN and inspect.isawaitable(value)


class StepOps:
    """``ctx.run`` for every kind of context."""

    __slots__ = ("_clock", "_k", "_output", "_retry", "_threads", "_waits")

    def __init__(self, kernel: Kernel, output: OutputGate, waits: Waits) -> None:
        self._k = kernel
        self._output = output
        self._waits = waits
        self._clock = kernel.clock
        self._retry = kernel.retry
        self._threads = kernel.step_threads

    def run(
        self,
        inv: Invocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        result_type: Any,
        blocking: bool = True,
    ) -> DurableFuture[Any]:
        check_usable("ctx.run()")
        # A malformed step is the handler's bug: no retry fixes it (400, at once).
        if not isinstance(name, str) or not name:
            raise BadArgumentError(
                f"ctx.run() needs a non-empty str name for its step, not {name!r}"
            )
        check_step_name(name)
        if not callable(fn):
            raise BadArgumentError(
                f"ctx.run({name!r}) needs a function to run, not {type(fn).__name__}"
            )
        if retry is not None:
            if not isinstance(retry, RetryPolicy):
                raise BadArgumentError(
                    f"ctx.run({name!r}, retry=...) takes an actors.RetryPolicy, not "
                    f"{type(retry).__name__}"
                )
            if retry.on_max_attempts != "pause":
                raise BadArgumentError(
                    f"ctx.run({name!r}, retry=...): on_max_attempts="
                    f"{retry.on_max_attempts!r} is for invocations; a step that runs out "
                    "of attempts raises TerminalError in its handler (leave it at 'pause')"
                )
        check_blocking(name, blocking)
        annotation = _result_annotation(fn, result_type)
        what = f"result of ctx.run({name!r})"
        index, recorded = inv.reserve(RunEntry, name, f"run({name!r})")
        if recorded is not None:
            outcome = recorded.outcome
            return settled(self._waits, inv, lambda: decode_outcome(outcome, annotation, what))

        body = RunBody()
        attempt = inv.life.attempt
        # A plain function may block: it runs on one of the runtime's step threads.
        on_thread = blocking and not _is_async(fn)

        async def attempts(first: tuple[bool, Any] | None = None) -> Outcome:
            """Run the body per its retry policy; the outcome to journal. ``first``: the
            outcome of the first try, when ``produce_inline`` already ran it."""
            policy = retry or inv.spec.retry or self._retry
            # A time limit counts from the first try: read the clock only under one.
            started = self._clock.now() if policy.max_duration is not None else 0.0
            tries = 0
            while True:
                tries += 1
                try:
                    if first is not None:  # run already: its outcome, as below
                        ok, result = first
                        first = None
                        if not ok:
                            raise result
                        if _awaitable(result):
                            result = await result
                    else:
                        if self._k.before_run_body is not None:
                            self._k.before_run_body(name)
                        if on_thread:
                            # What the body raised comes back as a value and is raised
                            # here: under asyncio, an exception thrown into the task
                            # from a future, a GeneratorExit so, would close the whole
                            # coroutine chain instead of failing this try.
                            ok, result = await self._threads.run(fn, args)
                            if not ok:
                                raise result
                            if _awaitable(result):
                                result = await result
                        elif blocking:
                            result = await fn(*args)
                        else:
                            # Declared non-blocking: on the loop, in this task, as an
                            # async body (a coroutine function's call returns its
                            # coroutine).
                            result = fn(*args)
                            if _awaitable(result):
                                result = await result
                except TerminalError as exc:
                    return failure(exc)
                except BaseException as exc:
                    # Anything the body raised, BaseException included, is a failure of
                    # this try (``_failures``); the runtime's signals and a cancellation
                    # from outside unwind.
                    if passes_through(exc):
                        raise
                    misuse = context_misuse(exc)
                    if misuse is not None:  # a body that touched its context: no retry fixes it
                        return failure(misuse)
                    elapsed = 0.0
                    if policy.max_duration is not None:
                        elapsed = await self._retry_elapsed(inv, index, started, attempt)
                    if policy.exhausted(tries, elapsed):
                        return Failure(
                            cut(
                                f"ctx.run({name!r}) failed after {tries} attempt"
                                + ("s" if tries != 1 else "")
                                + (f" in {elapsed:.3g}s" if policy.max_duration else "")
                                + f": {describe(exc)}"
                            ),
                            500,
                        )
                    delay = policy.delay(tries + 1)
                    await self._clock.sleep_until(self._clock.now() + delay)
                    continue
                try:
                    data = encode_value(result, annotation, what)
                except SerializationError as exc:
                    return Failure(str(exc), 500)
                if len(data) > MAX_VALUE_BYTES:
                    # Journaled as the step's outcome: a replay raises the same 413.
                    return Failure(
                        f"the {what} is {len(data)} bytes, over the limit of "
                        f"{MAX_VALUE_BYTES} bytes",
                        413,
                    )
                return Success(data)

        async def execute(*, own_scope: bool, first: tuple[bool, Any] | None = None) -> None:
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
                    outcome = await attempts(first)
            except BaseException as exc:  # a crash injected by actors.testing, or a bug
                body.escaped = exc
                raise
            finally:
                if scope is not None:
                    inv.body_scopes.discard(scope)
                if inv.life.attempt == attempt:
                    inv.runs_in_progress -= 1
                    if outcome is not None:
                        inv.pending_bytes += len(name) + outcome_size(outcome)
                        inv.record_at(index, RunEntry(name, outcome))
                body.outcome = outcome
                body.done = True
                if body.finished is not None:
                    body.finished.set()

        async def start() -> None:
            await self._output.gate(inv)  # the body is an effect: everything before it is durable
            body.started = True
            inv.runs_in_progress += 1  # counted from now: no suspension until it ends

        async def run_body() -> None:
            # A task of the runtime, not of the handler: a select that another branch
            # wins does not cancel the step (awaiting it later joins this same run), and
            # the step's result is journaled only while its attempt is still current.
            RUN_BODY.set(name)
            await execute(own_scope=True)

        def finish() -> Any:
            if body.outcome is None:
                escaped = body.escaped
                if isinstance(escaped, anyio.get_cancelled_exc_class()):
                    raise RuntimeClosedError(f"ctx.run({name!r}) was cancelled: shutting down")
                if escaped is not None and not isinstance(escaped, Exception):
                    raise escaped  # e.g. actors.testing's SimulatedCrash
                cause = describe(escaped) if escaped is not None else "no outcome"
                raise StepFailed(f"ctx.run({name!r}) was interrupted: {cause}")
            # Return the stored form, so that live execution and replay see the same value.
            return decode_outcome(body.outcome, annotation, what)

        async def produce() -> Any:
            if not body.started:
                await start()
                self._k.start_soon(run_body)
            await body.wait()
            return finish()

        async def produce_inline() -> Any:
            # Awaited directly by the handler (the common case: no select or gather), so
            # nothing else can join or outlive this step: run the body in the handler's
            # own task. That saves a task spawn and two wake-ups per step; a kill still
            # cancels it (it runs inside the invocation's scope).
            if body.started:
                return await produce()
            first = None
            if (  # see _gated_first_try
                on_thread
                and self._k.before_run_body is None
                and (retry or inv.spec.retry or self._retry).max_duration is None
            ):
                first = await self._gated_first_try(inv, body, name, fn, args)
            if first is None:
                await start()
            token = RUN_BODY.set(name)
            try:
                await execute(own_scope=False, first=first)
            except Exception:
                pass  # recorded in ``body``; finish() raises what the handler should see
            finally:
                RUN_BODY.reset(token)
            return finish()

        future: DurableFuture[Any] = DurableFuture._create(self._waits, inv, produce)
        future._produce_inline = produce_inline
        return future

    async def _gated_first_try(
        self,
        inv: Invocation,
        body: RunBody,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> tuple[bool, Any] | None:
        """The output gate and the first try of a plain body, with one suspension.

        For a plain body under the defaults (no crash injection, no time limit), the
        callback that publishes the gate's commit queues the body on a step thread
        (``StepThreads.defer``): the task suspends once, until the body's result is back,
        not twice (for the commit, then for the body). Returns the first try's outcome
        as ``StepThreads.run`` gives it, with the body started (``body.started``,
        ``runs_in_progress``); or None when no body was queued, and none will be: then
        ``start()`` and the tries go as usual (the gate's commit failed, calls or
        effects are due after it, there was nothing to flush, or, under asyncio, the
        pool cannot defer). Raises what ``start()`` raises. A cancellation before the
        body is queued means it never runs; one while it waits for a thread withdraws
        it, and is returned as the try's outcome ``(False, exc)``, which the tries raise
        (it passes through) as they would have from ``StepThreads.run``."""
        token = RUN_BODY.set(name)  # the body's context is copied now
        try:
            job = self._threads.defer(fn, args)
        finally:
            RUN_BODY.reset(token)
        if job is None:
            return None
        threads = self._threads

        def then(go: bool) -> None:  # on the loop, as the gate's commit is published
            if threads.release(job, go):
                body.started = True
                inv.runs_in_progress += 1  # counted from now, as in start()

        if not self._output.gate_then(inv, then):
            return None
        try:
            return await threads.wait_deferred(job)
        except BaseException as exc:
            if body.started:  # queued, then withdrawn (or a signal): raised by the tries
                return (False, exc)
            raise

    async def _retry_elapsed(
        self, inv: Invocation, index: int, started: float, attempt: int
    ) -> float:
        """Seconds since the first try of the step at ``index`` began: ``started`` in
        this life, or the start its record kept (before a crash, or in an earlier
        attempt of the invocation), which the first failure makes durable."""
        since = retry_start(inv, index)
        if since is None:
            since = started
            if inv.life.attempt == attempt and inv.life.may_run:  # not a stale body's write
                await keep_retry_start(self._output, inv, index, started)
        return self._clock.now() - since
