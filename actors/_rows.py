"""Row keys of the actors layer's tables (the ``inbox`` has its own module,
``_key_order``, because its order is a rule, not just an encoding)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from actors.storage import encode_key

if TYPE_CHECKING:
    from actors.storage import TimerKind


def journal_key(invocation_id: str, index: int) -> bytes:
    """Entry ``index`` of an invocation's journal; an invocation's entries are contiguous.

    A key is its parts' encodings one after the other, so it is made of two cached
    parts: every step writes one entry, and an invocation writes its entries in a few
    batches close together (~2 us to encode, ~0.2 us to look up both)."""
    return _journal_of(invocation_id) + _entry_at(index)


@functools.lru_cache(maxsize=4096)
def _journal_of(invocation_id: str) -> bytes:
    return encode_key((invocation_id,))


@functools.lru_cache(maxsize=1024)
def _entry_at(index: int) -> bytes:
    return encode_key((index,))


@functools.lru_cache(maxsize=4096)
def state_key(actor: str, key: str, name: str) -> bytes:
    """State ``name`` of one object key or workflow id.

    Cached: every ``ctx.get`` and ``ctx.set`` encodes its row's key, and a hot key's
    handlers ask for the same few names on every call (~3 us to encode, ~0.2 us to look
    up). 4,096 keys of at most ``MAX_KEY_SIZE`` bytes each bound the memory."""
    return encode_key((actor, key, name))


def timer_key(due: float, invocation_id: str, kind: TimerKind, index: int) -> bytes:
    """A durable timer, in due-time order (microseconds)."""
    # ``_value_``: ``Enum.value`` is a property (~0.3 us); every completion makes one.
    return encode_key((round(due * 1_000_000), invocation_id, kind._value_, index))


#: The actor part of a signal's ``promises`` row: empty, which no actor's name can be
#: (``_definitions`` refuses one), so a signal never meets a workflow's promise.
SIGNAL_SCOPE = ""


def signal_key(invocation_id: str, name: str) -> bytes:
    """The ``promises`` row of the signal ``name`` of one invocation."""
    return encode_key((SIGNAL_SCOPE, invocation_id, name))


def signal_prefix(invocation_id: str) -> bytes:
    """The ``promises`` rows of every signal of ``invocation_id`` are its children."""
    return encode_key((SIGNAL_SCOPE, invocation_id))
