"""Parked invocations: suspended invocations dropped from memory, at a few dozen bytes
each.

A parked invocation has no coroutine, no ``Invocation`` object and no ``Completion``:
storage holds all of it (its record, journal and inbox row), and ``Scheduler.revive``
rebuilds it by replay when what it waits for happens. What memory must still hold is
only what makes it findable by id (a wake-up, a cancel, a kill, an attach name it by
id) and the one thing storage cannot answer by id in one read: which inbox row is its
own (inbox rows are keyed by target and sequence, not by invocation id). So the index
is one dict entry per parked invocation, from a compact form of its id to a compact
form of its inbox row:

* the id ``inv_<tail>``, with a tail of lower-case letters and digits that does not
  start with ``0`` (every id this runtime mints, random or derived), is the int
  ``int(tail, 36)``: distinct tails give distinct ints, and an int of 80-120 bits
  costs 36-44 bytes where the str costs 70-80. Any other id (upper case, as Restate's)
  is kept as its str: an int and a str are never equal, so the two kinds never collide.
  Nothing needs the id back from its key (the caller names it), so the map is one way.
* the inbox row ``(actor, key, kind, number)`` is ``number * 2 + kind``: the actor and
  key are in the record, which ``revive`` reads anyway. A row of another shape (written
  by an older release) is kept as its bytes.

That is about 100 bytes per parked invocation (the key int, the value int, the dict's
slot), against ~1,400 when a parked one kept its ``Completion``, id and row objects.

What wakes a parked invocation finds it through storage, never through a per-waiter
object in memory: a callee's record names its caller, an awakeable id names its owner,
a timer row names its invocation, and a durable promise wakes the unfinished
invocations of its workflow id, listed by the ``inbox`` rows under that id
(``SignalOps``). Each then asks this index whether the id is parked.

A ``Completion`` exists only while someone waits for the result: one that somebody
held when the invocation parked (an attached caller, a ``ctx.call`` waiting on it) is
kept here, and one asked for later (``completion``, for ``rt.attach`` or a caller's
``ready``) is made on demand. ``revive`` hands it to the rebuilt invocation, so every
waiter is answered by the same object, exactly once. A kept ``Completion`` stays until
the invocation is revived (a waiter that gave up does not remove it): their number is
bounded by the waits asked for, not by the invocations parked.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeAlias

from ._invocation import Completion
from ._key_order import accepted_row, admitted_row, parse_row

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actors.storage import Target

_IdKey: TypeAlias = "int | str"
_Row: TypeAlias = "int | bytes"

_ID_PREFIX = "inv_"
#: References to a ``Completion`` that only its parking invocation holds, as
#: ``sys.getrefcount`` counts them in ``park``: the ``Invocation.done`` attribute, the
#: argument, and ``getrefcount``'s own. Any more is someone waiting on it.
_UNSHARED_REFS = 3


def id_key(invocation_id: str) -> _IdKey:
    """The compact, injective key of ``invocation_id`` (see the module docstring)."""
    tail = invocation_id[4:]
    if (
        invocation_id.startswith(_ID_PREFIX)
        and tail
        and tail[0] != "0"
        and tail.isascii()
        and tail.isalnum()
        and not any("A" <= c <= "Z" for c in tail)
    ):
        return int(tail, 36)
    return invocation_id


def _row_value(inbox_key: bytes, target: Target) -> _Row:
    """The compact form of ``inbox_key``, or the bytes when its shape is another."""
    try:
        number, position = parse_row(inbox_key)
    except (ValueError, AssertionError):  # pragma: no cover - rows are ours
        return inbox_key
    if position is not None:
        value, rebuilt = number * 2, admitted_row(target, number)
    else:
        value, rebuilt = number * 2 + 1, accepted_row(target, number)
    return value if rebuilt == inbox_key else inbox_key


def inbox_row(value: _Row, target: Target) -> bytes:
    """The inbox row that ``value`` (from ``_row_value``) stands for, for ``target``."""
    if isinstance(value, bytes):
        return value
    number, kind = divmod(value, 2)
    return accepted_row(target, number) if kind else admitted_row(target, number)


class ParkedInvocations:
    """The index of parked invocations, by id; see the module docstring.

    Every operation is O(1): a dict lookup on the compact id."""

    __slots__ = ("_completions", "_rows")

    def __init__(self) -> None:
        self._rows: dict[_IdKey, _Row] = {}
        #: Completions someone waits on, by invocation id (few: see the docstring).
        self._completions: dict[str, Completion] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, invocation_id: str) -> bool:
        return id_key(invocation_id) in self._rows

    def park(self, invocation_id: str, inbox_key: bytes, target: Target, done: Completion) -> None:
        """Index a suspended invocation dropped from memory; ``done`` is its completion,
        kept only if someone else holds it (waits, or is about to wait, on it)."""
        self._rows[id_key(invocation_id)] = _row_value(inbox_key, target)
        # Exact in CPython: any caller's frame, closure or handle holding ``done`` is a
        # reference. A waiter that got it before the park must be answered by it.
        if sys.getrefcount(done) > _UNSHARED_REFS:
            self._completions[invocation_id] = done

    def unpark(self, invocation_id: str) -> tuple[_Row, Completion | None] | None:
        """Remove ``invocation_id`` from the index: its row (``inbox_row`` rebuilds it)
        and the completion someone waits on, if any; None if it is not parked."""
        row = self._rows.pop(id_key(invocation_id), None)
        if row is None:
            return None
        return row, self._completions.pop(invocation_id, None)

    def completion(self, invocation_id: str) -> Completion | None:
        """Where the result of the parked ``invocation_id`` lands (made now if nobody
        asked before); None if it is not parked."""
        done = self._completions.get(invocation_id)
        if done is None and id_key(invocation_id) in self._rows:
            done = self._completions[invocation_id] = Completion()
        return done

    def completions(self) -> Iterable[Completion]:
        """The completions someone waits on (``Kernel.stop`` answers them)."""
        return self._completions.values()
