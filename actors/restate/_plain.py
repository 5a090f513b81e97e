"""Values between Restate's serdes and the runtime, and errors back into Restate's class.

State, step results, promise, awakeable and signal values go through the user's serde
(Restate's encoding wins) and are then handed to the runtime as the JSON value those
bytes hold, so they stay readable by ``actors state``, native handlers and HTTP
clients, which resolve promises and awakeables with JSON bodies. Bytes that are not
JSON (``BytesSerde``, a custom binary serde) are handed over as bytes.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import actors

from .exceptions import TerminalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .serde import Serde

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

#: What the runtime is asked to convert stored values to: no conversion at all.
PLAIN: Any = object


def to_plain(serde: Serde[Any], value: object) -> object:
    """The runtime's form of ``value``: the JSON value of its serialized bytes, None for
    the empty payload, or the bytes themselves when they are not JSON."""
    data = serde.serialize(value)
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return bytes(data)


def from_plain(serde: Serde[T], value: object) -> T | None:
    """The inverse of ``to_plain``: decode the runtime's value with ``serde``."""
    if value is None:
        return serde.deserialize(b"")
    if isinstance(value, bytes):
        return serde.deserialize(value)
    return serde.deserialize(json.dumps(value).encode())


def restate_error(exc: actors.TerminalError) -> TerminalError:
    """``exc`` as Restate's ``TerminalError`` (itself if it already is one), so that
    ``except TerminalError`` in Restate code catches what the runtime raises."""
    if isinstance(exc, TerminalError):
        return exc
    error = TerminalError(exc.message, exc.status_code, exc.metadata or None)
    error.__cause__ = exc
    return error


async def translated(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; a runtime ``TerminalError`` is raised as Restate's."""
    try:
        return await awaitable
    except TerminalError:
        raise
    except actors.TerminalError as exc:
        raise restate_error(exc) from exc


def raising_restate_errors(method: Callable[P, R]) -> Callable[P, R]:
    """``method`` (a context method that asks the runtime something at once), with a
    runtime ``TerminalError`` raised at the call (a deadlock refused, a bad argument,
    an unknown awakeable) re-raised as Restate's, so that ``except TerminalError`` in
    Restate code catches it. The signature is kept (``__wrapped__``)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except TerminalError:
            raise
        except actors.TerminalError as exc:
            raise restate_error(exc) from exc

    return wrapper
