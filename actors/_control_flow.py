"""The runtime's own control-flow signals, and the one rule about where a context may
be used.

Every signal is a ``BaseException`` (DESIGN.md invariant 14): it travels through handler
code the way trio's ``Cancelled`` does, so a handler's ``except Exception`` can never
swallow a failed commit, a cancellation in flight or a suspension, and turn a retryable
condition into an answer. ``finally`` blocks still run.
"""

from __future__ import annotations

import contextvars

from ._errors import TerminalError


class StepFailed(BaseException):
    """A batch of the invocation failed to commit: retry the attempt from the journal."""


class HandlerFailed(BaseException):
    """The handler raised a non-terminal exception: retry the attempt."""


class CancelRequested(BaseException):
    """A durable wait was interrupted by ``cancel``: the await that started it raises
    the cancellation (a 409 ``TerminalError``) at its own journal position."""


class Suspended(BaseException):
    """Unwinds a handler whose invocation waits too long: its coroutine is dropped and
    it is resumed by replay when what it waits for completes."""


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
