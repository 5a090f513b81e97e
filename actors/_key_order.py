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

from actors.storage import Table, WorkflowRecord, decode_key, dumps, encode_key

if TYPE_CHECKING:
    from actors.storage import InvocationStatus, Target, WriteBatch

    from ._invocation import Invocation

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


class KeyOrder:
    """The counter behind positions and acceptance sequences, and the writes that put an
    invocation in the inbox. One counter for both: a restart continues after the largest
    number any row carries (``recovered``)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 1

    def next_seq(self) -> int:
        seq = self._next
        self._next += 1
        return seq

    def recovered(self, seq: int) -> None:
        """A row carrying ``seq`` exists: never hand it out again."""
        if seq >= self._next:
            self._next = seq + 1

    def admit(self, inv: Invocation) -> None:
        """Give an exclusive invocation its place among its key's work, at the moment it
        enters the key's FIFO: mailbox order and durable order are then the same order.
        One that had started keeps the place it had."""
        if inv.position is None and inv.exclusive:
            inv.position = self._next
            self._next += 1

    def add_acceptance(self, inv: Invocation, batch: WriteBatch, status: InvocationStatus) -> None:
        """Write ``inv``'s record and inbox row: at its admitted position when it already
        holds one (a ``call`` recorded at its first flush), else in acceptance order; and
        for a workflow's ``main``, the record that maps the workflow id to it."""
        if inv.position is not None:
            inv.inbox_key = admitted_row(inv.target, inv.position)
        else:
            inv.inbox_key = accepted_row(inv.target, self.next_seq())
        batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), inv.record_bytes(status))
        batch.put(Table.INBOX, inv.inbox_key, inv.invocation_id.encode())
        if inv.spec.kind == "main" and inv.target.key is not None:
            batch.put(
                Table.WORKFLOWS,
                encode_key((inv.target.actor, inv.target.key)),
                dumps(WorkflowRecord(inv.invocation_id)),
            )

    def move_to_admitted(self, inv: Invocation, batch: WriteBatch) -> bytes | None:
        """If ``inv`` holds a position but its row is still its acceptance row, move the
        row in ``batch`` (its first durable step) and return the row it replaced."""
        if inv.position is None or inv.inbox_key is None:
            return None
        started = admitted_row(inv.target, inv.position)
        if inv.inbox_key == started:
            return None
        previous = inv.inbox_key
        batch.delete(Table.INBOX, previous)
        batch.put(Table.INBOX, started, inv.invocation_id.encode())
        inv.inbox_key = started
        return previous
