"""Context operations on state, time and randomness (``ctx.get``, ``ctx.set``,
``ctx.state_keys``, ``ctx.time``, ``ctx.random``, ``ctx.uuid``).

Every read is journaled, so a replay returns what the original run read (invariant 5).
An exclusive invocation reads, in order: its own writes of this attempt, then its key's
overlay (writes of earlier invocations submitted but not yet durable: pipelining), then
LMDB. Shared handlers read LMDB only: committed state, never another invocation's
uncommitted writes (invariant 3). Writes are buffered in the invocation and written by
the output gate (``_gate``).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

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

from ._control_flow import check_usable
from ._errors import BadArgumentError, persistence_error
from ._rows import state_key
from ._serde import decode_value, encode_value

if TYPE_CHECKING:
    from ._invocation import Invocation
    from ._kernel import Kernel


def bad_name(operation: str, name: object) -> BadArgumentError:
    """A state name that is not a str: the handler's bug, which no retry fixes (400)."""
    return BadArgumentError(f"{operation}: a state name is a str, not {type(name).__name__}")


class StateOps:
    """State, time and randomness, for every kind of context."""

    __slots__ = ("_clock", "_store")

    def __init__(self, kernel: Kernel) -> None:
        self._store = kernel.store
        self._clock = kernel.clock

    async def get(self, inv: Invocation, name: str, annotation: Any) -> Any:
        check_usable("ctx.get()")
        if not isinstance(name, str):
            raise bad_name("ctx.get()", name)
        recorded = inv.next_replayed(GetStateEntry, name, f"get({name!r})")
        if recorded is not None:
            data = recorded.value
        else:
            data = self.read(inv, name)
            inv.append(GetStateEntry(name, data))
        await anyio.lowlevel.checkpoint()
        if data is None:
            return None
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
            return self._store.get(Table.STATE, state_key(inv.target.actor, inv.target.key, name))
        except StorageError as exc:
            raise persistence_error(exc) from exc

    async def keys(self, inv: Invocation) -> list[str]:
        check_usable("ctx.state_keys()")
        recorded = inv.next_replayed(StateKeysEntry, None, "state_keys()")
        if recorded is not None:
            await anyio.lowlevel.checkpoint()
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
        inv.append(StateKeysEntry(tuple(result)))
        await anyio.lowlevel.checkpoint()
        return result

    def set(self, inv: Invocation, name: str, value: object) -> None:
        check_usable("ctx.set()")
        if not isinstance(name, str):
            raise bad_name("ctx.set()", name)
        if inv.next_replayed(SetStateEntry, name, f"set({name!r})") is not None:
            return  # written with the journal entry that recorded it
        annotation = type(value) if value is not None else object
        inv.writes[name] = encode_value(value, annotation, f"state {name!r}")
        inv.append(SetStateEntry(name))

    def clear(self, inv: Invocation, name: str) -> None:
        check_usable("ctx.clear()")
        if not isinstance(name, str):
            raise bad_name("ctx.clear()", name)
        if inv.next_replayed(ClearStateEntry, name, f"clear({name!r})") is not None:
            return
        inv.writes[name] = None
        inv.append(ClearStateEntry(name))

    def clear_all(self, inv: Invocation) -> None:
        check_usable("ctx.clear_all()")
        if inv.next_replayed(ClearStateEntry, None, "clear_all()") is not None:
            return
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
        await anyio.lowlevel.checkpoint()
        return now

    def rng(self, inv: Invocation) -> random.Random:
        check_usable("ctx.random()")
        if inv.rng is None:
            seed = hashlib.blake2b(inv.invocation_id.encode(), digest_size=16).digest()
            inv.rng = random.Random(int.from_bytes(seed, "big"))
        return inv.rng

    def new_uuid(self, inv: Invocation) -> uuid.UUID:
        return uuid.UUID(int=self.rng(inv).getrandbits(128), version=4)
