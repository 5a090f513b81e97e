"""Results: how a stored outcome reaches whoever waits for it.

An outcome is stored once, with the completion, as bytes; it is decoded with the type of
the handler that produced it each time someone reads it, so a ``TerminalError`` reaches
every caller with the same message and status code, and a ``DeadlockError`` stays one
because the stored failure says so (``Failure.deadlock``), not because of its text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, final

import anyio.lowlevel
import msgspec

from actors.storage import Failure, Success

from ._errors import (
    DeadlockError,
    InvocationPausedError,
    NotReadyError,
    PersistenceError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
    UnknownHandlerError,
    check_metadata,
    damaged_record_error,
)
from ._failures import safe_text, type_name
from ._serde import decode_value
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator
    from datetime import datetime

    from actors.storage import Outcome

    from ._definitions import Handler
    from ._invocation import Completion, Invocation
    from ._kernel import Kernel
    from ._resolution import Resolver


InvocationStatusName = Literal["Accepted", "PreviouslyAccepted"]


def decode_outcome(outcome: Outcome, annotation: Any, what: str) -> Any:
    """The value of a successful outcome, or its failure raised."""
    if isinstance(outcome, Failure):
        error_type = DeadlockError if outcome.deadlock else TerminalError
        error = error_type(outcome.message, outcome.status_code)
        if outcome.metadata:
            error.metadata = dict(outcome.metadata)
        error._outcome = True
        raise error
    return decode_value(outcome.value, annotation, what)


def outcome_size(outcome: Outcome) -> int:
    """The variable-size bytes of a stored outcome: its value, or its message (and
    metadata)."""
    if isinstance(outcome, Failure):
        size = len(outcome.message)
        for name, value in outcome.metadata:
            size += len(name) + len(value)
        return size
    return len(outcome.value)


def failure(exc: TerminalError) -> Failure:
    """The stored form of a terminal error: its kind is a field, never read from text.
    Whatever handler code put in it, it is stored as text that renders (cut to
    ``MAX_FAILURE_MESSAGE_CHARS``) and a status code of three digits at most (500 if it
    was not one: a bigger int cannot even be encoded), and its metadata if it is still
    what the constructor accepts (handler code may have replaced the attribute since:
    anything else is left out, not allowed to fail the recording)."""
    try:
        message, code = exc.message, exc.status_code
    except BaseException:  # a subclass's property that raises
        message, code = None, 500
    message = safe_text(message, type_name(exc))
    if type(code) is not int or not 0 <= code <= 999:
        code = 500
    return Failure(
        message, code, deadlock=isinstance(exc, DeadlockError), metadata=_stored_metadata(exc)
    )


def _stored_metadata(exc: TerminalError) -> tuple[tuple[str, str], ...]:
    try:
        metadata = getattr(exc, "metadata", None)
        if not metadata:
            return ()
        return tuple(check_metadata(metadata).items())
    except BaseException:  # not a mapping of str, or one whose methods raise
        return ()


def _cancel_not_wired(invocation_id: str) -> Awaitable[None]:
    raise AssertionError("Results.cancel was not wired")  # pragma: no cover


class Results:
    """Waiting for and reading invocation results."""

    __slots__ = ("_k", "_resolver", "cancel")

    def __init__(self, kernel: Kernel, resolver: Resolver) -> None:
        self._k = kernel
        self._resolver = resolver
        #: ``Runtime.cancel`` (wired later: control is built above this module), what
        #: ``InvocationHandle.cancel`` does for a handle from outside a handler.
        self.cancel: Callable[[str], Awaitable[None]] = _cancel_not_wired

    async def result_of(self, inv: Invocation, spec: Handler[Any, Any] | None = None) -> Any:
        """The result of ``inv``, which ran (or began to run) in the caller's task."""
        done = inv.done
        spec = inv.spec if spec is None else spec
        if not done.finished:
            if self._k.invocations.get(inv.invocation_id) is not inv:
                # It parked in the caller's task, and a parked invocation keeps no
                # ``Completion`` (``_parked``): wait for it by id, as an attach does.
                return await self.await_result(inv.invocation_id, spec)
            return await self.answer(done, inv.invocation_id, spec)
        if not done.yielded:  # the common case, a call that ran inline, often yielded
            await self._k.primitives.checkpoint()
        outcome = done.outcome
        if outcome is not None and done.error is None:  # (completed_result's common case)
            return self._stored_output(outcome, spec)
        return self.completed_result(done, inv.invocation_id, spec)

    async def answer(self, done: Completion, invocation_id: str, spec: Handler[Any, Any]) -> Any:
        """The result for a caller outside the runtime: the outcome once it finished, or
        ``InvocationPausedError`` as soon as it is paused (it stays paused)."""
        # ``wait_answer`` counts this task as a waiter; between two of them it awaits
        # nothing, so the invocation cannot park uncounted.
        while True:
            await done.wait_answer()
            if done.finished:
                return self.completed_result(done, invocation_id, spec)
            reason = done.paused
            if reason is not None:
                raise InvocationPausedError(invocation_id, reason)
            # Resumed before this task ran: wait for what comes next.

    def completed_result(
        self, done: Completion, invocation_id: str, spec: Handler[Any, Any]
    ) -> Any:
        if done.error is not None:
            raise done.error
        if done.outcome is None:
            record = None
            if not self._k.closed or self._k.fatal is not None:
                try:
                    record = self._k.load_record(invocation_id)  # it may have landed
                except PersistenceError:
                    pass  # the runtime stopped and closed its store meanwhile
            if record is None or record.outcome is None:
                if self._k.fatal is not None:
                    raise self._k.fatal_error()
                raise RuntimeClosedError(
                    f"invocation {invocation_id} did not finish: the runtime is shutting down"
                )
            done.outcome = record.outcome  # finished by kill while parked
        return self._stored_output(done.outcome, spec)

    async def await_result(self, invocation_id: str, spec: Handler[Any, Any] | None) -> Any:
        """Wait for the result of ``invocation_id`` (held in memory, parked, or stored),
        decoded as ``spec``'s output; None: as its record's handler's."""
        if self._k.closed:
            if self._k.fatal is not None:
                raise self._k.fatal_error()
            raise RuntimeClosedError("the runtime is closed")
        done = self._k.completion_of(invocation_id)
        if done is not None:
            if spec is None:
                spec = self.stored_spec(invocation_id)
            return await self.answer(done, invocation_id, spec)
        await anyio.lowlevel.checkpoint()
        record = self._k.load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        if record.outcome is None:
            raise self._lost(invocation_id)
        return self._stored_output(record.outcome, spec or self._resolver.spec_of(record))

    def output(self, invocation_id: str) -> Any:
        """``Runtime.output``: the result of a finished invocation, without waiting."""
        if invocation_id in self._k.parked:
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        inv = self._k.invocations.get(invocation_id)
        done = inv.done if inv is not None else None
        if done is not None and not done.finished:
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        record = self._k.load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        if record.outcome is None:
            if done is None:
                self._resolver.spec_of(record)  # an unregistered handler's: not damage
                raise self._lost(invocation_id)
            raise NotReadyError(f"invocation {invocation_id} has not completed yet")
        spec = self._resolver.spec_of(record)
        return self._stored_output(record.outcome, spec)

    def _stored_output(self, outcome: Outcome, spec: Handler[Any, Any]) -> Any:
        try:
            if type(outcome) is Success:  # (decode_outcome's common case, without its call)
                try:
                    return decode_value(outcome.value, spec.output_type, "")
                except SerializationError:  # again, named in its message (not formatted per call)
                    pass
            return decode_outcome(outcome, spec.output_type, f"output of {spec.qualname}")
        except SerializationError as exc:
            if not isinstance(exc.__cause__, msgspec.DecodeError):
                raise  # valid JSON of another shape: the output type changed, not damage
            # We stored valid JSON: bytes that no longer parse were changed on disk.
            raise damaged_record_error(self._k.store.path, exc) from exc

    def _lost(self, invocation_id: str) -> PersistenceError:
        # Open and not holding it: recovery resumes every unfinished invocation that has
        # an inbox row, so this record lost its outcome or its row to damage.
        return PersistenceError(
            f"store {self._k.store.path} is damaged: invocation {invocation_id} is "
            "recorded as unfinished but nothing resumes it (restore the directory from a "
            "backup)"
        )

    def stored_spec(self, invocation_id: str) -> Handler[Any, Any]:
        record = self._k.load_record(invocation_id)
        if record is None:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")
        return self._resolver.spec_of(record)


@final
class InvocationHandle(metaclass=NoPublicConstructor):
    """A durably accepted invocation. ``status`` is ``"Accepted"`` for a new invocation
    and ``"PreviouslyAccepted"`` when the same id (or idempotency key) was accepted
    before. ``execution_time`` is when a delayed ``rt.send`` that accepted a new
    invocation is due (an aware UTC ``datetime``; the HTTP ingress answers it as
    ``executionTime``); None for every other send.

    ``ctx.send`` returns its handle at once, the send already journaled; ``await`` it
    (it gives itself back) to wait until the send is durable and delivered. Awaiting a
    handle from ``rt.send``, durable already, is a checkpoint."""

    __slots__ = (
        "_cancel",
        "_durable",
        "_results",
        "_spec",
        "execution_time",
        "invocation_id",
        "status",
    )

    def __init__(
        self,
        results: Results,
        invocation_id: str,
        status: InvocationStatusName,
        spec: Handler[Any, Any],
        execution_time: datetime | None = None,
        *,
        durable: Awaitable[object] | None = None,
        cancel: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._results = results
        self._spec = spec
        self.invocation_id = invocation_id
        self.status: InvocationStatusName = status
        self.execution_time = execution_time
        self._durable = durable
        self._cancel = cancel

    def __await__(self) -> Generator[Any, None, InvocationHandle]:
        return self._wait_durable().__await__()

    async def _wait_durable(self) -> InvocationHandle:
        if self._durable is None:
            await anyio.lowlevel.checkpoint()
        else:
            await self._durable
        return self

    def cancel(self) -> Awaitable[None]:
        """Cancel the invocation (see ``Runtime.cancel``).

        On a handle from ``ctx.send`` this is ``ctx.cancel_invocation(invocation_id)``
        of the handler that sent it: journaled when called, whether or not awaited, and
        refusals (it already completed: 409) are raised at the call. On a handle from
        ``rt.send`` it is ``rt.cancel(invocation_id)``: await it."""
        if self._cancel is not None:
            return self._cancel(self.invocation_id)
        return self._results.cancel(self.invocation_id)

    async def result(self) -> Any:
        """Wait for the invocation's result. A ``TerminalError`` of the handler is
        raised here with its message and status code; ``InvocationPausedError`` as soon
        as the invocation is paused (it stays paused: resume it, then wait again)."""
        return await self._results.await_result(self.invocation_id, self._spec)

    def __repr__(self) -> str:
        return f"<InvocationHandle {self.invocation_id} {self.status}>"
