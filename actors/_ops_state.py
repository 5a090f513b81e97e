"""Context operations on state, time and randomness (``ctx.get``, ``ctx.set``,
``ctx.state_keys``, ``ctx.time``, ``ctx.random``, ``ctx.uuid``).

Every read is journaled, so a replay returns what the original run read (invariant 5).
An exclusive invocation reads, in order: its own writes of this attempt, then its key's
overlay (writes of earlier invocations submitted but not yet durable: pipelining), then
LMDB. Shared handlers read LMDB only: committed state, never another invocation's
uncommitted writes (invariant 3). Writes are buffered in the invocation and written by
the output gate (``_gate``).

Reads do not yield to other tasks: they answer from memory or from one LMDB read, as
``await ctx.get(...)`` of loaded state does in Restate's SDK, so a handler that reads and
writes without waiting runs to its end in one go (and a key's queued exclusive
invocations run back to back: the mailbox's relay). They are still cancellation points:
an invocation cancelled or killed meanwhile is interrupted at its next read.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import TYPE_CHECKING, Any, Final

from actors.storage import (
    ClearStateEntry,
    GetStateEntry,
    SetStateEntry,
    StateKeysEntry,
    StorageError,
    Table,
    TimeEntry,
    decode_key,
    encode_key,
)

from ._control_flow import RUN_BODY, check_usable
from ._errors import BadArgumentError, SerializationError, persistence_error
from ._invocation import ENTRY_OVERHEAD, ROW_OVERHEAD
from ._limits import MAX_NAME_BYTES, MAX_VALUE_BYTES, check_name, check_value
from ._rows import state_key
from ._serde import decode_value, encode_value

if TYPE_CHECKING:
    from ._invocation import Invocation
    from ._kernel import Kernel

#: Read on every ``ctx.get``: bound once (``Enum.MEMBER`` costs ~0.1 us in Python 3.11).
_STATE: Final = Table.STATE


#: A state name this short and ASCII is within ``MAX_NAME_BYTES`` even if all NULs: the
#: common case, checked inline without a call.
_SHORT_NAME = MAX_NAME_BYTES // 2


def _check_state_name(name: object) -> None:
    if not isinstance(name, str):  # the handler's bug, which no retry fixes: 400 at once
        raise BadArgumentError(f"state names are str, not {type(name).__name__}")
    check_name(name, "state name")


class StateOps:
    """State, time and randomness, for every kind of context."""

    __slots__ = ("_checkpoint_if_cancelled", "_clock", "_store")

    def __init__(self, kernel: Kernel) -> None:
        self._store = kernel.store
        self._clock = kernel.clock
        self._checkpoint_if_cancelled = kernel.primitives.checkpoint_if_cancelled

    async def get(self, inv: Invocation, name: str, annotation: Any) -> Any:
        if RUN_BODY.get() is not None:  # (check_usable's test, without its call)
            check_usable("ctx.get()")
        if not (isinstance(name, str) and name.isascii() and len(name) <= _SHORT_NAME):
            _check_state_name(name)
        # (A live invocation has nothing to replay: no lookup, no message to format.)
        recorded = inv.next_replayed(GetStateEntry, name, f"get({name!r})") if inv.replay else None
        if recorded is not None:
            data = recorded.value
        else:
            data = self.read(inv, name)
            if data is not None:
                # The value read is journaled: counted toward the step's commit (checked
                # at the next write or flush; a read alone never passes the limit).
                inv.pending_bytes += len(data)
            # (``inv.append``, without its call: a read is the commonest operation)
            inv.unflushed.append((inv.index, GetStateEntry(name, data)))
            inv.index += 1
        await self._checkpoint_if_cancelled()
        if data is None:
            return None
        try:
            return decode_value(data, annotation, "")
        except SerializationError:  # again, named in its message (not formatted per read)
            where = f"state {name!r} of {inv.target.actor}/{inv.target.key}"
            return decode_value(data, annotation, where)

    def read(self, inv: Invocation, name: str) -> bytes | None:
        if inv.exclusive:
            if name in inv.writes:
                return inv.writes[name]
            if inv.cleared_all:
                return None
            activation = inv.activation
            if activation is not None and activation.overlay_seq:
                if self._store.durable_seq >= activation.overlay_seq:
                    activation.overlay.clear()  # durable now (or failed): LMDB is the truth
                    activation.overlay_cleared = False
                    activation.overlay_seq = 0
                elif name in activation.overlay:
                    return activation.overlay[name]
                elif activation.overlay_cleared:
                    return None
        assert inv.target.key is not None
        try:
            return self._store.get(_STATE, state_key(inv.target.actor, inv.target.key, name))
        except StorageError as exc:
            raise persistence_error(exc) from exc

    async def keys(self, inv: Invocation) -> list[str]:
        check_usable("ctx.state_keys()")
        recorded = inv.next_replayed(StateKeysEntry, None, "state_keys()")
        if recorded is not None:
            await self._checkpoint_if_cancelled()
            return list(recorded.names)
        assert inv.target.key is not None
        prefix = encode_key((inv.target.actor, inv.target.key))
        # Read the watermark BEFORE scanning. The watermark moves only in this loop
        # (``storage._writer``), so it cannot move between the two today; but a scan
        # that ran before a batch landed does not hold its writes even if the watermark
        # has passed it by the time we look, so this order stays right if that ever
        # changes. Applying an overlay the scan already holds is harmless; skipping one
        # it does not hold loses writes.
        durable_before_scan = self._store.durable_seq
        try:
            names = {
                str(decode_key(k)[2])
                for k, _ in self._store.scan(Table.STATE, prefix, children=True)
            }
        except StorageError as exc:
            raise persistence_error(exc) from exc
        if inv.exclusive:
            activation = inv.activation
            layers: list[tuple[bool, dict[str, bytes | None]]] = []
            if activation is not None and durable_before_scan < activation.overlay_seq:
                layers.append((activation.overlay_cleared, activation.overlay))
            layers.append((inv.cleared_all, inv.writes))
            for cleared, writes in layers:
                if cleared:
                    names = set()
                for name, value in writes.items():
                    if value is None:
                        names.discard(name)
                    else:
                        names.add(name)
        result = sorted(names)
        inv.pending_bytes += sum(map(len, result)) + 8 * len(result)  # journaled, as a read
        inv.append(StateKeysEntry(tuple(result)))
        await self._checkpoint_if_cancelled()
        return result

    def set(self, inv: Invocation, name: str, value: object) -> None:
        if RUN_BODY.get() is not None:  # (check_usable's test, without its call)
            check_usable("ctx.set()")
        if not (isinstance(name, str) and name.isascii() and len(name) <= _SHORT_NAME):
            _check_state_name(name)
        if inv.replay and inv.next_replayed(SetStateEntry, name, f"set({name!r})") is not None:
            return  # written with the journal entry that recorded it
        annotation = type(value) if value is not None else object
        try:
            data = encode_value(value, annotation, "")
        except SerializationError:  # again, named in its message (not formatted per write)
            data = encode_value(value, annotation, f"state {name!r}")
        size = len(data)
        if size > MAX_VALUE_BYTES:
            check_value(size, f"value of state {name!r}")
        # Checked before anything is buffered: on a 413 the write is simply not made.
        replaced = inv.writes.get(name)
        grows = size - (len(replaced) if replaced is not None else 0)
        inv.take_room(grows, ENTRY_OVERHEAD + ROW_OVERHEAD, "ctx.set", name)
        inv.writes[name] = data
        inv.unflushed.append((inv.index, SetStateEntry(name)))  # (``inv.append``, inline)
        inv.index += 1

    def clear(self, inv: Invocation, name: str) -> None:
        check_usable("ctx.clear()")
        if not (isinstance(name, str) and name.isascii() and len(name) <= _SHORT_NAME):
            _check_state_name(name)
        if inv.next_replayed(ClearStateEntry, name, f"clear({name!r})") is not None:
            return
        replaced = inv.writes.get(name)
        if replaced is not None:
            inv.pending_bytes -= len(replaced)  # no longer written
        inv.writes[name] = None
        inv.append(ClearStateEntry(name))

    def clear_all(self, inv: Invocation) -> None:
        check_usable("ctx.clear_all()")
        if inv.next_replayed(ClearStateEntry, None, "clear_all()") is not None:
            return
        inv.pending_bytes -= sum(len(data) for data in inv.writes.values() if data is not None)
        inv.writes = {}
        inv.cleared_all = True
        inv.append(ClearStateEntry(None))

    async def time(self, inv: Invocation) -> float:
        check_usable("ctx.time()")
        recorded = inv.next_replayed(TimeEntry, None, "time()")
        if recorded is not None:
            now = recorded.now
        else:
            now = self._clock.now()
            inv.append(TimeEntry(now))
        await self._checkpoint_if_cancelled()
        return now

    def rng(self, inv: Invocation) -> random.Random:
        check_usable("ctx.random()")
        if inv.rng is None:
            seed = hashlib.blake2b(inv.invocation_id.encode(), digest_size=16).digest()
            inv.rng = random.Random(int.from_bytes(seed, "big"))
        return inv.rng

    def new_uuid(self, inv: Invocation) -> uuid.UUID:
        return uuid.UUID(int=self.rng(inv).getrandbits(128), version=4)
