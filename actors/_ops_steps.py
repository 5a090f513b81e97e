"""``ctx.run``: a durable step.

A step's body is an effect, so it runs only once everything the invocation did before is
durable (the output gate), and its outcome is journaled: after a crash the body runs
again only if its result was not yet durable (invariant 6). The body is retried per its
retry policy (the invocation's, else the runtime's: by default until it succeeds, with
capped backoff); when attempts run out, the handler gets a ``TerminalError``.

Awaited directly by its handler (the common case), the body runs in the handler's own
task, inside the invocation's cancel scope; a plain body's first try then goes to a step
thread from the callback that publishes the gate's commit, so the task suspends once per
step (``_defer_first_try``; trio only, asyncio takes the two waits in turn). Raced in
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
import trio

from actors.storage import Failure, Outcome, RunEntry, Success

from ._context import context_misuse
from ._control_flow import RUN_BODY, StepFailed, check_usable
from ._errors import (
    ActorsError,
    BadArgumentError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
)
from ._failures import cut, describe, passes_through
from ._futures import DurableFuture, settled
from ._gate import may_start
from ._limits import MAX_VALUE_BYTES, check_blocking, check_step_name
from ._results import decode_outcome, failure, outcome_size
from ._retry import RetryPolicy
from ._retry_start import keep_retry_start, retry_start
from ._serde import encode_value

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.storage import CommitTicket

    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._step_threads import _Job
    from ._waits import Waits


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
    if not isinstance(annotation, str):
        return _converted_through(annotation)
    function = getattr(fn, "__func__", fn)  # bound methods are new objects each time
    try:
        return _resolved_annotations[function]
    except (KeyError, TypeError):
        pass
    try:
        resolved = _converted_through(typing.get_type_hints(function).get("return", object))
    except Exception:
        resolved = object
    try:
        _resolved_annotations[function] = resolved
    except TypeError:
        pass  # not weak-referenceable: resolve each time
    return resolved


def _converted_through(annotation: Any) -> Any:
    """What a return annotation converts a result through."""
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


#: ``_Step.gate_state``: the gate's commit, for a task parked on it (``produce_inline``).
_OPEN: Final = 0  # not published yet (or no task parked on it)
_GO: Final = 1  # durable, and nothing is due before the body
_NO_GO: Final = 2  # failed, or calls or effects are due first: ``gate`` does those
_WITHDRAWN: Final = 3  # the parked task was cancelled: the commit wakes nobody

_current_task = trio.lowlevel.current_task
_reschedule = trio.lowlevel.reschedule
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_trio_checkpoint = trio.lowlevel.checkpoint
_ABORT_SUCCEEDED: Final = trio.lowlevel.Abort.SUCCEEDED


class _Step:
    """One ``ctx.run`` step in flight: what it runs, and its body's run, started once
    and joined by every await. One object (and two bound producers) per step rather
    than a closure per producer and a cell per name each captures: fewer objects for
    the garbage collector to meet while 256 invocations wait on their commits."""

    __slots__ = (
        "annotation",
        "args",
        "attempt",
        "blocking",
        "done",
        "escaped",
        "finished",
        "fn",
        "gate_state",
        "index",
        "inv",
        "job",
        "name",
        "on_thread",
        "ops",
        "outcome",
        "retry",
        "started",
        "task",
        "what",
    )

    def __init__(
        self,
        ops: StepOps,
        inv: Invocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        annotation: Any,
        what: str,
        index: int,
        blocking: bool,
        on_thread: bool,
    ) -> None:
        self.ops = ops
        self.inv = inv
        self.name = name
        self.fn = fn
        self.args = args
        self.retry = retry
        self.annotation = annotation
        self.what = what
        self.index = index
        self.blocking = blocking
        self.on_thread = on_thread
        self.attempt = inv.life.attempt
        self.started = False
        self.done = False
        #: Made only when someone joins a body running in another task (select, gather).
        self.finished: anyio.Event | None = None
        self.outcome: Outcome | None = None
        self.escaped: BaseException | None = None
        self.gate_state = _OPEN
        self.task: trio.lowlevel.Task | None = None
        #: The first try of a plain body, deferred to the gate's commit (trio).
        self.job: _Job | None = None

    async def wait(self) -> None:
        if self.done:
            return
        if self.finished is None:
            self.finished = anyio.Event()
        await self.finished.wait()

    async def attempts(self, first: tuple[bool, Any] | None = None) -> Outcome:
        """Run the body per its retry policy; the outcome to journal. ``first``: the
        outcome of the first try, when ``_defer_first_try`` already ran it."""
        ops, inv, name, fn, args = self.ops, self.inv, self.name, self.fn, self.args
        policy = self.retry or inv.spec.retry or ops._retry
        # A time limit counts from the first try: read the clock only under one.
        started = ops._clock.now() if policy.max_duration is not None else 0.0
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
                    if ops._k.before_run_body is not None:
                        ops._k.before_run_body(name)
                    if self.on_thread:
                        # What the body raised comes back as a value and is raised
                        # here: under asyncio, an exception thrown into the task
                        # from a future, a GeneratorExit so, would close the whole
                        # coroutine chain instead of failing this try.
                        ok, result = await ops._threads.run(fn, args)
                        if not ok:
                            raise result
                        if _awaitable(result):
                            result = await result
                    elif self.blocking:
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
                    elapsed = await ops._retry_elapsed(inv, self.index, started, self.attempt)
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
                await ops._clock.sleep_until(ops._clock.now() + delay)
                continue
            try:
                data = encode_value(result, self.annotation, self.what)
            except SerializationError as exc:
                return Failure(str(exc), 500)
            if len(data) > MAX_VALUE_BYTES:
                # Journaled as the step's outcome: a replay raises the same 413.
                return Failure(
                    f"the {self.what} is {len(data)} bytes, over the limit of "
                    f"{MAX_VALUE_BYTES} bytes",
                    413,
                )
            return Success(data)

    def ended(self, outcome: Outcome | None) -> None:
        """The body's run is over: journal ``outcome`` (None: there is none) while its
        attempt is still the current one, and wake whoever joined it."""
        inv = self.inv
        if inv.life.attempt == self.attempt:
            inv.runs_in_progress -= 1
            if outcome is not None:
                inv.pending_bytes += len(self.name) + outcome_size(outcome)
                inv.record_at(self.index, RunEntry(self.name, outcome))
        self.outcome = outcome
        self.done = True
        if self.finished is not None:
            self.finished.set()

    async def start(self) -> None:
        await self.ops._output.gate(self.inv)  # an effect: everything before it is durable
        self.started = True
        self.inv.runs_in_progress += 1  # counted from now: no suspension until it ends

    async def run_body(self) -> None:
        # A task of the runtime, not of the handler: a select that another branch wins
        # does not cancel the step (awaiting it later joins this same run), and the
        # step's result is journaled only while its attempt is still current. It needs
        # a scope that kill() can cancel (inline, the invocation's run scope encloses it).
        RUN_BODY.set(self.name)
        inv = self.inv
        outcome: Outcome | None = None
        scope: anyio.CancelScope | None = None
        try:
            with anyio.CancelScope() as scope:
                if inv.body_scopes is None:
                    inv.body_scopes = set()
                inv.body_scopes.add(scope)
                outcome = await self.attempts()
        except BaseException as exc:  # a crash injected by actors.testing, or a bug
            self.escaped = exc
            raise
        finally:
            if scope is not None and inv.body_scopes is not None:
                inv.body_scopes.discard(scope)
            self.ended(outcome)

    def finish(self) -> Any:
        name = self.name
        if self.outcome is None:
            escaped = self.escaped
            if isinstance(escaped, anyio.get_cancelled_exc_class()):
                raise RuntimeClosedError(f"ctx.run({name!r}) was cancelled: shutting down")
            if escaped is not None and not isinstance(escaped, Exception):
                raise escaped  # e.g. actors.testing's SimulatedCrash
            cause = describe(escaped) if escaped is not None else "no outcome"
            raise StepFailed(f"ctx.run({name!r}) was interrupted: {cause}")
        # Return the stored form, so that live execution and replay see the same value.
        return decode_outcome(self.outcome, self.annotation, self.what)

    async def produce(self) -> Any:
        if not self.started:
            await self.start()
            self.ops._k.start_soon(self.run_body)
        await self.wait()
        return self.finish()

    async def produce_inline(self, future: DurableFuture[Any]) -> Any:
        """Awaited directly by the handler (the common case: no select or gather), so
        nothing else can join or outlive this step: the body runs in the handler's own
        task. That saves a task spawn and two wake-ups per step; a kill still cancels
        it (it runs inside the invocation's scope). Settles ``future`` itself, as
        ``DurableFuture._result`` does for other producers.

        Every await level between the handler and the point that suspends costs on
        each suspension and resume, so the gate, the start and the body's bookkeeping
        are in this frame, and under trio the task parks on the gate's commit itself:
        the callback that publishes it resumes the task (``OutputGate.gate_then``),
        with no event and no ``gate``/``wait`` frames in between. A body waits for the
        same commit either way; ``gate`` still does what is due when the commit failed
        or calls or effects came due (``_NO_GO``)."""
        try:
            if self.started:
                value = await self.produce()
            else:
                ops, inv = self.ops, self.inv
                first = None
                if (  # see _defer_first_try
                    self.on_thread
                    and ops._k.before_run_body is None
                    and (self.retry or inv.spec.retry or ops._retry).max_duration is None
                ):
                    job = ops._defer_first_try(self)
                    if job is not None:
                        try:
                            first = await ops._threads.wait_deferred(job)
                        except BaseException as exc:
                            if not self.started:
                                raise
                            # Queued, then withdrawn (or a signal): the tries raise it
                            # (it passes through), as they would from StepThreads.run.
                            first = (False, exc)
                if first is not None:
                    pass
                elif (  # once per step: a task that was withdrawn takes ``start``
                    ops._trio
                    and self.gate_state == _OPEN
                    and ops._output.gate_then(inv, self._published)
                ):
                    if self.gate_state == _OPEN:
                        self.task = _current_task()
                        await _wait_task_rescheduled(self._withdraw)
                    else:  # published in the flush (inline commits): a checkpoint still
                        await _trio_checkpoint()
                    if self.gate_state == _GO:
                        self.started = True
                        inv.runs_in_progress += 1  # as in start()
                    else:
                        await self.start()  # raises the failure, delivers the calls
                else:
                    await self.start()
                token = RUN_BODY.set(self.name)
                outcome: Outcome | None = None
                try:
                    outcome = await self.attempts(first)
                except Exception as exc:  # finish() raises what the handler should see
                    self.escaped = exc
                except BaseException as exc:  # a crash injected by actors.testing
                    self.escaped = exc
                    raise
                finally:
                    self.ended(outcome)
                    RUN_BODY.reset(token)
                value = self.finish()
        except ActorsError as exc:  # a result too: keep it, as a replay would
            future._settled, future._error = True, exc
            raise
        future._settled, future._value = True, value
        return value

    def _release(self, ticket: CommitTicket) -> None:
        """On the loop, as the gate's commit is published: queue the deferred body."""
        job = self.job
        if job is not None and self.ops._threads.release(job, may_start(self.inv, ticket)):
            self.started = True
            self.inv.runs_in_progress += 1  # counted from now, as in start()

    def _published(self, ticket: CommitTicket) -> None:
        """On the loop, as the gate's commit is published (``gate_then``)."""
        if self.gate_state == _WITHDRAWN:
            return
        self.gate_state = _GO if may_start(self.inv, ticket) else _NO_GO
        task = self.task
        if task is not None:
            self.task = None
            _reschedule(task)

    def _withdraw(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        """The parked task is cancelled: the body never runs from this gate."""
        self.gate_state = _WITHDRAWN
        self.task = None
        return _ABORT_SUCCEEDED


class StepOps:
    """``ctx.run`` for every kind of context."""

    __slots__ = ("_clock", "_k", "_output", "_retry", "_threads", "_trio", "_waits")

    def __init__(self, kernel: Kernel, output: OutputGate, waits: Waits) -> None:
        self._k = kernel
        self._output = output
        self._waits = waits
        self._clock = kernel.clock
        self._retry = kernel.retry
        self._threads = kernel.step_threads
        #: Under trio, a step's task parks on its gate's commit itself (``produce_inline``).
        self._trio = kernel.primitives.shielded_scope is not None

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
        index = inv.index
        if index in inv.replay:  # (``inv.reserve``, whose description is made only then)
            _, recorded = inv.reserve(RunEntry, name, f"run({name!r})")
            if recorded is not None:
                outcome = recorded.outcome
                return settled(self._waits, inv, lambda: decode_outcome(outcome, annotation, what))
        else:
            inv.index = index + 1  # a live operation: nothing to validate
        # A plain function may block: it runs on one of the runtime's step threads.
        on_thread = blocking and not _is_async(fn)
        step = _Step(self, inv, name, fn, args, retry, annotation, what, index, blocking, on_thread)
        future: DurableFuture[Any] = DurableFuture._create(self._waits, inv, step.produce)
        future._produce_inline = step.produce_inline
        return future

    def _defer_first_try(self, step: _Step) -> _Job | None:
        """The output gate and the first try of a plain body, for one suspension.

        For a plain body under the defaults (no crash injection, no time limit), the
        callback that publishes the gate's commit queues the body on a step thread
        (``StepThreads.defer``): the task suspends once, in ``wait_deferred(job)``,
        until the body's result is back, not twice (for the commit, then for the body).
        That gives the first try's outcome as ``StepThreads.run`` does, or None when
        the body was not queued, and will not be: then ``start()`` and the tries go as
        usual (the gate's commit failed, or calls or effects came due after it). The
        body is started (``step.started``, ``runs_in_progress``) once queued. Returns
        None, with nothing flushed, when nothing was deferred: calls or effects are due
        after the gate, there is nothing to flush, or, under asyncio, the pool cannot
        defer. Raises what ``start()`` raises. A cancellation before the body is queued
        means it never runs; one while it waits for a thread withdraws it, and
        ``wait_deferred`` raises it with the body started (the tries raise it, as they
        would have from ``StepThreads.run``)."""
        token = RUN_BODY.set(step.name)  # the body's context is copied now
        try:
            job = self._threads.defer(step.fn, step.args)
        finally:
            RUN_BODY.reset(token)
        if job is None:
            return None
        step.job = job
        if not self._output.gate_then(step.inv, step._release):
            return None
        return job

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
