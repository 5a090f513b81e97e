"""The runtime's own control-flow signals, and the one rule about where a context may
be used.

Every signal is a ``BaseException`` (DESIGN.md invariant 14): it travels through handler
code the way trio's ``Cancelled`` does, so a handler's ``except Exception`` can never
swallow a failed commit, a cancellation in flight or a suspension, and turn a retryable
condition into an answer. ``finally`` blocks still run. They share the base
``ControlFlow``, by which the executor tells them from a ``BaseException`` that handler
code raised itself, which is a failure like any other (``_failures``).
"""

from __future__ import annotations

import contextvars

from ._errors import TerminalError


class ControlFlow(BaseException):
    """The base of the runtime's signals (and of ``actors.testing.SimulatedCrash``):
    they unwind handler code on purpose and are never recorded as its failure."""


class StepFailed(ControlFlow):
    """A batch of the invocation failed to commit: retry the attempt from the journal."""


class HandlerFailed(ControlFlow):
    """The handler raised a non-terminal exception: retry the attempt."""


class CancelRequested(ControlFlow):
    """A durable wait was interrupted by ``cancel``: the await that started it raises
    the cancellation (a 409 ``TerminalError``) at its own journal position."""


class Suspended(ControlFlow):
    """Unwinds a handler whose invocation waits too long: its coroutine is dropped and
    it is resumed by replay when what it waits for completes."""


class PausedInline(ControlFlow):
    """An invocation running in its outside caller's own task (``Runtime.call``) paused:
    unwind to the caller, who is answered ``InvocationPausedError``, while a task of the
    runtime takes the invocation over and waits for its resume."""


#: The name of the ``ctx.run`` step whose body the current task runs (None outside).
RUN_BODY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "actors_run_body", default=None
)


def check_usable(operation: str) -> None:
    """Refuse a context operation inside a ``ctx.run`` body: a body's effects are not
    journaled, so touching the context there would break replay."""
    in_run = RUN_BODY.get()
    if in_run is not None:
        raise TerminalError(
            f"{operation} cannot be used inside the body of ctx.run({in_run!r}): a "
            "run body must not touch the context; return a value and use it after the run",
            500,
        )
