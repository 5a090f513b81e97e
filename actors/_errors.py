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
       ├─ DeadlockError (409)        an exclusive call would close a wait-for cycle
       └─ InvocationPausedError (500)  a caller outside the runtime waited on an
                                     invocation that paused (it is not ended)

Lower-layer errors never reach users: the runtime translates ``StorageError`` into
``PersistenceError`` at its boundary (``persistence_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final

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


#: At most this many characters of keys and values, all entries together, in the
#: ``metadata`` of a ``TerminalError`` (it is stored with the failure).
MAX_METADATA_CHARS: Final = 4096


def check_metadata(metadata: object) -> dict[str, str]:
    """A copy of ``metadata`` as a ``dict[str, str]`` (empty for None). Raises
    ``TypeError`` for anything but a mapping of str to str and ``ValueError`` for one
    over ``MAX_METADATA_CHARS``."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"TerminalError metadata is a dict of str to str, not {type(metadata).__name__}"
        )
    checked: dict[str, str] = {}
    size = 0
    for name, value in metadata.items():
        if type(name) is not str or type(value) is not str:
            raise TypeError(
                "TerminalError metadata is a dict of str to str, but it maps "
                f"{type(name).__name__} {name!r} to {type(value).__name__}"
            )
        size += len(name) + len(value)
        checked[name] = value
    if size > MAX_METADATA_CHARS:
        raise ValueError(
            f"TerminalError metadata holds {size} characters, over the limit of "
            f"{MAX_METADATA_CHARS}"
        )
    return checked


class TerminalError(ActorsError):
    """Ends an invocation without retry. Raised by handler code, it reaches every caller
    (through any chain of calls) as a ``TerminalError`` with the same message, code and
    metadata: ``rt.call``, ``ctx.call``, ``attach``, and the HTTP error body
    (``"metadata"``, as Restate's ingress answers it).

    Args:
      message: what went wrong, shown to callers.
      status_code: an HTTP-style status code; 500 unless given.
      metadata: string pairs stored with the failure (an error code of your domain, a
        retry hint...); at most ``MAX_METADATA_CHARS`` characters in all. Nothing is
        stored when it is empty.

    Raises:
      TypeError: ``metadata`` is not a mapping of str to str.
      ValueError: ``metadata`` is over ``MAX_METADATA_CHARS``.
    """

    #: The metadata it was raised with (empty if none): a copy, as a plain dict.
    metadata: dict[str, str]

    #: True on an error that is an invocation's recorded outcome, as opposed to a request
    #: refused before anything ran (a reused idempotency key, a key over its limit...).
    #: Set by the runtime; the HTTP ingress tells clients which it is
    #: (``x-restate-error-source``), so that they never retry an outcome.
    _outcome: bool = False

    def __init__(
        self, message: str, status_code: int = 500, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = check_metadata(metadata)

    def __reduce__(self) -> tuple[Any, ...]:
        if not self.metadata:
            return (type(self), (self.message, self.status_code))
        return (type(self), (self.message, self.status_code, self.metadata))


class DeadlockError(TerminalError):
    """Raised by an exclusive call that would close a cycle of invocations waiting on
    each other's keys. The message names the cycle. Status 409."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message, status_code)


@final
class InvocationPausedError(TerminalError):
    """Raised to a caller outside the runtime (``Runtime.call``,
    ``InvocationHandle.result``, ``Runtime.attach``, the HTTP ingress: a 500) when the
    invocation it waits on is paused: its attempts ran out, or its replay diverged from
    its journal. Raised as soon as the invocation pauses, or at once if it already is.

    The invocation is *not* ended: it stays paused (visible in ``actors invocations``,
    holding its key), and ``Runtime.resume`` (``actors resume ID``) runs it again; attach
    to it then for its real result. A caller inside a handler (``ctx.call``) is not
    told: it keeps waiting, durably, for the callee's outcome.

    Attributes:
      invocation_id: the paused invocation.
      reason: its last failure, as recorded.
    """

    def __init__(self, invocation_id: str, reason: str) -> None:
        super().__init__(
            f"invocation {invocation_id} is paused: {reason} (fix the cause, then resume "
            f"it with Runtime.resume or `actors resume {invocation_id}` and attach to it "
            "for its result)",
            500,
        )
        self.invocation_id = invocation_id
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvocationPausedError], tuple[str, str]]:
        return (type(self), (self.invocation_id, self.reason))


class ContextMisuseError(TerminalError, AttributeError):
    """What a handler that used a method or attribute its context does not have (a
    shared handler writing state, a service reading state, a typo) ends with: a 500
    ``TerminalError`` recorded at once, since no retry can fix the handler's code (the
    handler itself sees the plain ``AttributeError``). Callers see a ``TerminalError``.
    Not exported: catch ``TerminalError``."""


class BadArgumentError(TerminalError, TypeError):
    """Raised in a handler that passes a context operation an argument of the wrong type
    (``ctx.sleep("5")``, a state name that is not a str, ``ctx.run`` without a function):
    a 400 ``TerminalError`` that ends the invocation at once, and a ``TypeError``, as the
    same mistake outside a handler would be. Callers see a ``TerminalError``. Not
    exported: catch ``TerminalError`` (or ``TypeError``)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message, status_code)


def persistence_error(exc: StorageError) -> PersistenceError:
    """Translate a storage-layer error at the actors boundary (use with ``from exc``)."""
    error = PersistenceError(str(exc))
    error.__cause__ = exc
    return error


def damaged_record_error(path: object, exc: Exception) -> PersistenceError:
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
