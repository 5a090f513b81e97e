"""One durable order per key: where an unfinished invocation sits in the ``inbox`` table.

The rule
--------
An exclusive invocation takes its *position* among its key's work when it enters the
key's FIFO (the mailbox), whatever its source: ``rt.call`` claiming a free key,
``rt.send`` or ``ctx.send`` once its acceptance is durable, a ``ctx.call`` once its
caller's batch is durable, a delayed send when it becomes due, HTTP, recovery. Positions
come from one counter, so mailbox order and position order are the same order. The
position is written, as the invocation's inbox row, in the batch of its first durable
step (its first journal entries), never later: so whenever an invocation has anything
durable to replay, its place is durable too. After a crash a key runs first the
invocations that had started, in position order, and only then those that had not (in
acceptance order): nothing admitted later overtakes one whose replayed reads would
otherwise go stale. An invocation that started but made nothing durable has nothing to
replay and simply starts again in acceptance order.

Why two kinds of rows, not one sequence: the acceptance of a send must be durable before
``send`` returns, long before the send reaches its key (a delayed send, a send queued
behind a call that claimed the key first), so its acceptance row cannot carry its place
in the key's order. Rewriting the row at its first step costs nothing extra (it rides in
a batch that is committed anyway), and a plain ``rt.call`` still costs one commit: its
record and admitted row are written with its first flush, often its completion.

Rows sort per key: admitted rows ``(actor, key, 0, position)`` before accepted rows
``(actor, key, 1, sequence)``, so a plain scan of the table is the recovery order. Rows of
services and shared handlers (which hold no key) are always accepted rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import decode_key, encode_key

if TYPE_CHECKING:
    from actors.storage import Target

_ADMITTED = 0
_ACCEPTED = 1


def admitted_row(target: Target, position: int) -> bytes:
    """The inbox row of an exclusive invocation that holds ``position`` on its key."""
    assert target.key is not None
    return encode_key((target.actor, target.key, _ADMITTED, position))


def accepted_row(target: Target, sequence: int) -> bytes:
    """The inbox row of an invocation accepted as number ``sequence``, not yet started."""
    key_part: str | bytes = target.key if target.key is not None else b""
    return encode_key((target.actor, key_part, _ACCEPTED, sequence))


def parse_row(row: bytes) -> tuple[int, int | None]:
    """``(sequence, position)`` of an inbox row: the counter value it carries, and the
    position when it is an admitted row (None for an accepted one)."""
    parts = decode_key(row)
    number = parts[-1]
    assert isinstance(number, int)
    if len(parts) == 4 and parts[2] == _ADMITTED:
        return number, number
    return number, None  # accepted (or a row of a directory written before positions)
