"""The documented size limits, checked where input arrives, before anything is stored.

LMDB refuses keys over 511 bytes, and a store's ``max_value_size`` caps one batch. A limit
found only at commit time would fail an attempt after its caller was told something else,
so every user-supplied key part and payload is checked here first, where it enters: the
public API, a context operation, the HTTP ingress. Too large is a ``TerminalError`` 413 (HTTP
413) that names the limit; text that is not valid Unicode is a 400.

The key limits leave room for the encoding: an inbox, state or idempotency row joins an
actor name, an object key and a name, each escaped (a NUL is stored as two bytes, so it
counts twice here), and with these limits every such row stays under LMDB's 511 bytes.
The store still checks every encoded key at submission, so a row that slips past these
checks fails before it is stored.

A value is checked on its own (``MAX_VALUE_BYTES``), and everything an invocation commits
at once together (``MAX_BATCH_BYTES``): what it buffers between two durable steps is
counted as it is buffered (``Invocation.take_room``), so the operation that would pass the
batch limit is the one that fails, inside the handler, before anything of it is kept.

Cost on the hot path: a ``len()`` compare per value, and for text an ``isascii()`` (a flag
read in CPython), a length and a NUL count; only non-ASCII text is encoded to be measured.
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

MAX_STEP_NAME_BYTES: Final = 256
"""The name of a ``ctx.run`` step, in UTF-8 bytes (kept in its journal entry)."""

MAX_BATCH_BYTES: Final = MAX_VALUE_BYTES + 1024 * 1024
"""What one invocation commits at once, in bytes as stored: its state writes and journal
entries since its last durable step, with the records that ride along (its own record,
which holds its argument and, at completion, its result; the acceptances of calls it
makes). A value at ``MAX_VALUE_BYTES`` fits with room for its keys and record. The
store is opened with this as its ``max_value_size``."""

MAX_FAILURE_MESSAGE_CHARS: Final = 4096
"""A recorded failure message is cut to this many characters (with a marker)."""

MAX_JSON_DEPTH: Final = 128
"""Arrays and objects nested in one JSON value the HTTP ingress decodes (else 400): far
below the decoder's own recursion limit, which depends on the stack it runs on."""


def utf8_size(text: str, what: str) -> int:
    """The UTF-8 length of ``text``; a 400 ``TerminalError`` if it is not valid Unicode
    (a lone surrogate cannot be stored or sent)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise TerminalError(
            f"the {what} is not valid Unicode text (it holds a lone surrogate)", 400
        ) from None


def check_text(text: str, what: str, limit: int) -> str:
    """``text`` if it is valid Unicode of at most ``limit`` UTF-8 bytes (a NUL counting
    twice, as the key encoding stores it), else a ``TerminalError`` (400 for bad text, 413
    naming the limit for too long)."""
    if text.isascii():  # no surrogate possible: one byte per character
        if len(text) <= limit // 2:
            return text  # even all NULs would fit: the common case, no scan
        size = len(text)
    else:
        size = utf8_size(text, what)
    size += text.count("\0")
    if size > limit:
        raise TerminalError(f"the {what} is {size} bytes, over the limit of {limit} bytes", 413)
    return text


def check_key(key: str) -> str:
    """An object key or workflow id, checked against ``MAX_KEY_BYTES``."""
    if len(key) <= MAX_KEY_BYTES // 2 and key.isascii():
        return key  # check_text's fast path, without its call: read on every call
    return check_text(key, "key", MAX_KEY_BYTES)


def check_idempotency_key(key: str) -> str:
    """An idempotency key, checked against ``MAX_IDEMPOTENCY_KEY_BYTES``."""
    if len(key) <= MAX_IDEMPOTENCY_KEY_BYTES // 2 and key.isascii():
        return key  # check_text's fast path, without its call: read on every call
    return check_text(key, "idempotency key", MAX_IDEMPOTENCY_KEY_BYTES)


def check_name(name: str, what: str) -> str:
    """A state or promise name, checked against ``MAX_NAME_BYTES``."""
    return check_text(name, what, MAX_NAME_BYTES)


def check_step_name(name: str) -> str:
    """A ``ctx.run`` step name, checked against ``MAX_STEP_NAME_BYTES``."""
    if len(name) <= MAX_STEP_NAME_BYTES // 2 and name.isascii():
        return name  # check_text's fast path, without its call: read on every call
    return check_text(name, "step name", MAX_STEP_NAME_BYTES)


def check_blocking(name: str, blocking: object) -> None:
    """``ctx.run(name, ..., blocking=...)`` takes True or False: anything else is the
    handler's bug (a 400 ``BadArgumentError``)."""
    if blocking is not True and blocking is not False:
        raise BadArgumentError(
            f"ctx.run({name!r}, blocking=...) takes True or False, not {type(blocking).__name__}"
        )


def check_value(size: int, what: str) -> None:
    """A 413 ``TerminalError`` if a value of ``size`` bytes is over ``MAX_VALUE_BYTES``."""
    if size > MAX_VALUE_BYTES:
        raise TerminalError(
            f"the {what} is {size} bytes, over the limit of {MAX_VALUE_BYTES} bytes", 413
        )


def batch_too_large(
    size: int,
    what: str,
    advice: str = "write less per step, or make a durable step (such as ctx.run) in between",
) -> TerminalError:
    """The 413 for ``what``, which would make one commit of ``size`` bytes."""
    return TerminalError(
        f"{what} would make one commit of {size} bytes, over the limit of "
        f"{MAX_BATCH_BYTES} bytes (everything an invocation writes at once: its state "
        f"writes and journal entries since its last durable step, and its record); {advice}",
        413,
    )
