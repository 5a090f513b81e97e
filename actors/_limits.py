"""The documented size limits, checked where input arrives, before anything is stored.

LMDB refuses keys over 511 bytes, and a store's ``max_value_size`` caps one batch. A limit
found only at commit time would fail an attempt after its caller was told something else,
so every user-supplied key part and payload is checked here first, where it enters: the
public API, a context operation, the HTTP ingress. Too large is a ``TerminalError`` 413 (HTTP
413) that names the limit; text that is not valid Unicode is a 400.

The key limits leave room for the encoding: an inbox, state or idempotency row joins an
actor name, an object key and a name, each escaped, and with these limits every such row of
text without NUL characters stays under LMDB's 511 bytes. The store still checks every
encoded key at submission, so a row that slips past these checks fails before it is stored.
"""

from __future__ import annotations

from typing import Final

from actors._errors import BadArgumentError, TerminalError

MAX_KEY_BYTES: Final = 256
"""An object key or workflow id, in UTF-8 bytes."""

MAX_IDEMPOTENCY_KEY_BYTES: Final = 256
"""An idempotency key, in UTF-8 bytes."""

MAX_NAME_BYTES: Final = 64
"""A state name, promise name, actor or handler name, in UTF-8 bytes."""

MAX_VALUE_BYTES: Final = 16 * 1024 * 1024
"""One state value, journal entry, argument or result, in bytes as stored."""

MAX_FAILURE_MESSAGE_CHARS: Final = 4096
"""A recorded failure message is cut to this many characters (with a marker)."""


def utf8_size(text: str, what: str) -> int:
    """The UTF-8 length of ``text``; a 400 ``TerminalError`` if it is not valid Unicode
    (a lone surrogate cannot be stored or sent), or not a str at all."""
    if not isinstance(text, str):
        raise BadArgumentError(f"the {what} must be a str, not {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise TerminalError(
            f"the {what} is not valid Unicode text (it holds a lone surrogate)", 400
        ) from None


def check_text(text: str, what: str, limit: int) -> str:
    """``text`` if it is valid Unicode of at most ``limit`` UTF-8 bytes, else a
    ``TerminalError`` (400 for bad text, 413 naming the limit for too long)."""
    size = utf8_size(text, what)
    if size > limit:
        raise TerminalError(f"the {what} is {size} bytes, over the limit of {limit} bytes", 413)
    return text


def check_key(key: str) -> str:
    """An object key or workflow id, checked against ``MAX_KEY_BYTES``."""
    return check_text(key, "key", MAX_KEY_BYTES)


def check_idempotency_key(key: str) -> str:
    """An idempotency key, checked against ``MAX_IDEMPOTENCY_KEY_BYTES``."""
    return check_text(key, "idempotency key", MAX_IDEMPOTENCY_KEY_BYTES)


def check_name(name: str, what: str) -> str:
    """A state or promise name, checked against ``MAX_NAME_BYTES``."""
    return check_text(name, what, MAX_NAME_BYTES)


def check_value(size: int, what: str) -> None:
    """A 413 ``TerminalError`` if a value of ``size`` bytes is over ``MAX_VALUE_BYTES``."""
    if size > MAX_VALUE_BYTES:
        raise TerminalError(
            f"the {what} is {size} bytes, over the limit of {MAX_VALUE_BYTES} bytes", 413
        )
