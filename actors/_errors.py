"""The errors users of virtual-actors see.

The tree::

    ActorsError                      root; never raised itself
    ├─ UnknownHandlerError (404)     no such actor or handler (also a LookupError)
    ├─ SerializationError (400)      a value does not convert to or from its type
    ├─ RuntimeClosedError            the runtime was closed by its owner
    ├─ PersistenceError              the data directory failed; the StorageError is __cause__
    ├─ NonDeterminismError           a replay diverged from the journal
    ├─ NotReadyError (470)           a non-blocking output lookup: still running
    └─ TerminalError (500)           ends an invocation without retry; reaches callers
       └─ DeadlockError (409)        an exclusive call would close a wait-for cycle

Lower-layer errors never reach users: the runtime translates ``StorageError`` into
``PersistenceError`` at its boundary (``persistence_error``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.storage import StorageError


class ActorsError(Exception):
    """Root of every error virtual-actors raises. Never raised itself."""

    status_code: int = 500


class UnknownHandlerError(ActorsError, LookupError):
    """Raised when a call names an actor or handler that is not registered."""

    status_code = 404


class SerializationError(ActorsError, ValueError):
    """Raised when an input, output or stored value does not convert to its annotated
    type. The message names the offending field. Nothing is stored for such input."""

    status_code = 400


class RuntimeClosedError(ActorsError):
    """Raised when a runtime is used after it was closed."""


class PersistenceError(ActorsError):
    """Raised when the data directory cannot be opened, read or written.

    The message says what failed and names the path; the storage layer's error is the
    ``__cause__``. Data committed before the failure is intact.
    """


class NonDeterminismError(ActorsError):
    """Raised when a handler's replay takes a different step than its journal records.
    The invocation is paused; nothing stored is changed."""


class TerminalError(ActorsError):
    """Ends an invocation without retry. Raised by handler code, it reaches every caller
    (through any chain of calls) as a ``TerminalError`` with the same message and code.

    Args:
      message: what went wrong, shown to callers.
      status_code: an HTTP-style status code; 500 unless given.
    """

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __reduce__(self) -> tuple[type[TerminalError], tuple[str, int]]:
        return (type(self), (self.message, self.status_code))


class DeadlockError(TerminalError):
    """Raised by an exclusive call that would close a cycle of invocations waiting on
    each other's keys. The message names the cycle. Status 409."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message, status_code)


def persistence_error(exc: StorageError) -> PersistenceError:
    """Translate a storage-layer error at the actors boundary (use with ``from exc``)."""
    error = PersistenceError(str(exc))
    error.__cause__ = exc
    return error


def damaged_record_error(path: object, exc: StorageError) -> PersistenceError:
    """A stored record that does not decode (``RecordDecodeError``, whose decoder cannot
    know the directory), as a ``PersistenceError`` naming the directory."""
    error = PersistenceError(
        f"store {path} is damaged: {exc} (restore the directory from a backup)"
    )
    error.__cause__ = exc
    return error


class NotReadyError(ActorsError):
    """A non-blocking output lookup found the invocation still running (HTTP 470, as
    Restate's ingress answers)."""

    status_code = 470
