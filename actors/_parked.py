"""Parked invocations: suspended invocations dropped from memory, at a few dozen bytes
each.

A parked invocation has no coroutine, no ``Invocation`` object and no ``Completion``:
storage holds all of it (its record, journal and inbox row), and ``Scheduler.revive``
rebuilds it by replay when what it waits for happens. What memory must still hold is
only what makes it findable by id (a wake-up, a cancel, a kill, an attach name it by
id), what a promise's resolution needs to tell its waiters from the other unfinished
invocations of the workflow id, and, for a service only, which inbox row is its own
(inbox rows are keyed by target and sequence, not by invocation id). So the index is
one dict entry per parked invocation, from a compact form of its id to one int:

* the id ``inv_<tail>``, with a tail of lower-case letters and digits that does not
  start with ``0`` (every id this runtime mints, random or derived), is the int
  ``int(tail, 36)``: distinct tails give distinct ints, and an int of 80-120 bits
  costs 36-44 bytes where the str costs 70-80. Any other id (upper case, as Restate's)
  is kept as its str: an int and a str are never equal, so the two kinds never collide.
  Nothing needs the id back from its key (the caller names it), so the map is one way.
* the inbox row ``(actor, key, kind, number)``, only for an invocation without a key
  (a service): ``number * 2 + kind``, the actor being in the record, which ``revive``
  reads anyway. An invocation with a key keeps no row: its row is the one among the
  inbox rows under its ``(actor, key)`` whose value is its id (``revived_row``; a
  workflow id's or object key's unfinished invocations, few), and a promise's
  resolution, which lists those rows anyway, hands it over. A service's rows all share
  one prefix per actor, so a service keeps its row. A row of another shape (written by
  an older release) is kept as its bytes.
* what it waits on, when that is durable promises: the parked one is revived by their
  resolution and by nothing else that completes a promise (``waits_on``). One promise
  (the usual case) is a tag from 1 to 255 (``crc32`` of the promise's row, mod 255,
  plus 1), 0 is none: a small int, which CPython shares, so an entry of a keyed
  invocation costs no value object at all. A tag is not the row: two promises of one
  workflow id with the same tag revive each other's waiters, which then replay and
  park again (a cost, never a lost wake-up). Several promises at once (a select) are
  tag 256 and kept exactly, apart. (The rows come from the waits that gave way to
  ``Suspended``: ``Invocation.promises_waited``; a promise wait cancelled instead
  stays registered in memory, ``SignalOps.promise_waiters``, and is woken from there.)
  A service's entry is ``(row + 1) << 9 | tag``, always above 511.

That is about 80 bytes per parked workflow (the key int and the dict's slot), against
~1,400 when a parked one kept its ``Completion``, id and row objects.

What wakes a parked invocation finds it through storage, never through a per-waiter
object in memory: a callee's record names its caller, an awakeable id names its owner,
a timer row names its invocation, and a durable promise's resolution lists the
unfinished invocations of its workflow id by the ``inbox`` rows under that id
(``SignalOps``) and revives those this index says wait on it.

A ``Completion`` exists only while someone waits for the result. One that has waiters
when the invocation parks (``Completion.waiters``: an attached caller, a ``ctx.call``
waiting on it, each counted from before its first await) is kept here; one asked for
later (``completion``, for ``rt.attach`` or a caller's ``ready``) is made on demand.
``revive`` hands it to the rebuilt invocation, so every waiter is answered by the
same object, exactly once. A kept ``Completion`` stays until the invocation is revived
(a waiter that gave up does not remove it): their number is bounded by the waits
asked for, not by the invocations parked.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, TypeAlias

from actors.storage import StorageError, Table, encode_key

from ._errors import PersistenceError, persistence_error
from ._invocation import Completion
from ._key_order import accepted_row, admitted_row, parse_row

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from actors.storage import Store, Target

_IdKey: TypeAlias = "int | str"
_Row: TypeAlias = "int | bytes"
#: The tag, with the compact inbox row above it (a service) or a tuple with the row's
#: bytes (a row of another shape).
_Entry: TypeAlias = "int | tuple[bytes, int]"

_ID_PREFIX = "inv_"
_TAG_BITS = 9
_TAG_MASK = (1 << _TAG_BITS) - 1
#: The tag of an invocation that waits on no promise, and of one that waits on several
#: (see ``ParkedInvocations._promise_sets``). One promise's tag is 1-255.
_NO_PROMISE = 0
_SEVERAL_PROMISES = 256


def _promise_tag(promise_row: bytes) -> int:
    return 1 + zlib.crc32(promise_row) % 255


def id_key(invocation_id: str) -> _IdKey:
    """The compact, injective key of ``invocation_id`` (see the module docstring)."""
    # Asked several times per wake-up: str methods only (no per-char Python loop).
    tail = invocation_id[4:]
    if (
        invocation_id[:4] == _ID_PREFIX
        and tail.isalnum()  # False for ""
        and tail.isascii()
        and tail[0] != "0"
        and tail == tail.lower()
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


def revived_row(store: Store, row: _Row | None, target: Target, invocation_id: str) -> bytes:
    """The inbox row of the parked ``invocation_id`` of ``target``, from what ``unpark``
    gave back: rebuilt from it, or (None: a keyed invocation) the row among those under
    its ``(actor, key)`` whose value is its id (a key's unfinished invocations: few)."""
    if row is not None:
        return inbox_row(row, target)
    assert target.key is not None
    wanted = invocation_id.encode()
    try:
        rows = store.scan(Table.INBOX, encode_key((target.actor, target.key)), children=True)
    except StorageError as exc:
        raise persistence_error(exc) from exc
    for inbox_key, value in rows:
        if value == wanted:
            return inbox_key
    raise PersistenceError(
        f"store {store.path} is damaged: the parked invocation {invocation_id} has no inbox "
        "row (restore the directory from a backup)"
    )


class ParkedInvocations:
    """The index of parked invocations, by id; see the module docstring.

    Every operation is O(1): a dict lookup on the compact id."""

    __slots__ = ("_completions", "_entries", "_promise_sets")

    def __init__(self) -> None:
        self._entries: dict[_IdKey, _Entry] = {}
        #: Completions someone waits on, by invocation id (few: see the docstring).
        self._completions: dict[str, Completion] = {}
        #: The promise rows of the parked invocations that wait on several at once.
        self._promise_sets: dict[_IdKey, frozenset[bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, invocation_id: str) -> bool:
        return id_key(invocation_id) in self._entries

    def park(
        self,
        invocation_id: str,
        inbox_key: bytes,
        target: Target,
        done: Completion,
        promises: Sequence[bytes] = (),
    ) -> None:
        """Index a suspended invocation dropped from memory. ``done`` is its completion,
        kept only if it has waiters (``Completion.waiters``); ``promises`` are the rows
        of the durable promises it waits on (``waits_on``)."""
        key = id_key(invocation_id)
        if not promises:
            tag = _NO_PROMISE
        elif len(set(promises)) == 1:
            tag = _promise_tag(promises[0])
        else:
            tag = _SEVERAL_PROMISES
            self._promise_sets[key] = frozenset(promises)
        if target.key is not None:
            self._entries[key] = tag  # its row is found again under its key
        else:
            row = _row_value(inbox_key, target)
            self._entries[key] = (
                (row + 1) << _TAG_BITS | tag if isinstance(row, int) else (row, tag)
            )
        if done.waiters > 0:
            self._completions[invocation_id] = done

    def unpark(self, invocation_id: str) -> tuple[_Row | None, Completion | None] | None:
        """Remove ``invocation_id`` from the index: its row (``inbox_row`` rebuilds it;
        None for a keyed invocation: ``revived_row``) and the completion someone
        waits on, if any; None if it is not parked."""
        key = id_key(invocation_id)
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._promise_sets.pop(key, None)
        row: _Row | None
        if isinstance(entry, tuple):
            row = entry[0]
        else:
            row = (entry >> _TAG_BITS) - 1 if entry > _TAG_MASK else None
        return row, self._completions.pop(invocation_id, None)

    def waits_on(self, invocation_id: str, promise_row: bytes) -> bool:
        """Whether ``invocation_id`` is parked waiting on the promise ``promise_row``
        (or on another whose row has the same tag: see the module docstring)."""
        key = id_key(invocation_id)
        entry = self._entries.get(key)
        if entry is None:
            return False
        tag = entry & _TAG_MASK if isinstance(entry, int) else entry[1]
        if tag == _SEVERAL_PROMISES:
            return promise_row in self._promise_sets[key]
        return tag != _NO_PROMISE and tag == _promise_tag(promise_row)

    def completion(self, invocation_id: str) -> Completion | None:
        """Where the result of the parked ``invocation_id`` lands (made now if nobody
        asked before); None if it is not parked."""
        done = self._completions.get(invocation_id)
        if done is None and id_key(invocation_id) in self._entries:
            done = self._completions[invocation_id] = Completion()
        return done

    def completions(self) -> Iterable[Completion]:
        """The completions someone waits on (``Kernel.stop`` answers them)."""
        return self._completions.values()
