"""Restate's ``restate.exceptions``, on the embedded runtime.

``TerminalError`` is a subclass of ``actors.TerminalError``: raised by a Restate handler,
the runtime records it as the invocation's outcome without retry, exactly as its own.
Every terminal failure that reaches Restate code from the runtime (a callee's failure,
a cancellation, a rejected promise, a deadlock) is raised as *this* class, so that
``except TerminalError`` in Restate code catches it (``_errors.restate_error``).

The internal exceptions (``SdkInternalBaseException`` and its two subclasses) exist so
that code which names them imports; the embedded runtime unwinds handlers with its own
control-flow signals (BaseException subclasses, invariant 14), never with these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import actors

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = [
    "RetryableError",
    "SdkInternalBaseException",
    "SdkInternalException",
    "SuspendedException",
    "TerminalError",
    "is_internal_exception",
]


class TerminalError(actors.TerminalError):
    """Ends the invocation without retry; callers get it with the same message, status
    code and metadata (Restate's ``TerminalError``).

    Args:
      message: what went wrong, shown to callers.
      status_code: an HTTP-style status code; 500 unless given.
      metadata: string pairs stored with the failure (``actors.TerminalError``'s
        limits apply: ``TypeError``/``ValueError`` for a malformed or oversized one).
    """

    def __init__(
        self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, status_code, metadata)


class RetryableError(Exception):
    """A failure to retry (Restate's ``RetryableError``). Embedded, it is retried like any
    other exception that is not terminal, with the handler's retry policy; the
    ``retry_after`` hint is kept on the error but does not change the backoff."""

    def __init__(
        self, message: str, status_code: int = 500, retry_after: timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Restate's base of internal control flow. Never raised by the embedded runtime;
    kept so that ``except`` clauses and ``is_internal_exception`` naming it work."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SuspendedException(SdkInternalBaseException):
    """Restate's suspension signal; never raised embedded (a suspended invocation's
    coroutine is dropped and rebuilt by replay instead)."""

    def __init__(self) -> None:
        super().__init__("the invocation is suspended; it resumes when it can progress")


class SdkInternalException(SdkInternalBaseException):
    """Restate's retryable-attempt signal; never raised embedded."""

    def __init__(self) -> None:
        super().__init__("the invocation attempt failed with a retryable error")


def is_internal_exception(e: BaseException) -> bool:
    """True if ``e`` must not be swallowed by handler code: one of the internal classes
    above, or one of the runtime's own control-flow signals (anything that is a
    ``BaseException`` but not an ``Exception``, cancellation included)."""
    return isinstance(e, SdkInternalBaseException) or not isinstance(e, Exception)
