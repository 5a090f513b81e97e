"""WriteBatch: the unit a caller submits for one atomic, durable commit."""

from __future__ import annotations

import enum
from typing import Final

import attrs


class Table(enum.Enum):
    """The named LMDB databases. Values are the on-disk names: never change them."""

    INVOCATIONS = "invocations"
    INBOX = "inbox"
    JOURNAL = "journal"
    STATE = "state"
    TIMERS = "timers"
    PROMISES = "promises"
    IDEMPOTENCY = "idempotency"
    WORKFLOWS = "workflows"
    META = "meta"

    # Members are singletons compared by identity: hashing by identity is the same
    # contract, in C. Every read and write looks up its LMDB database by table
    # (``dict[Table, ...]``), and ``Enum.__hash__`` is a Python-level call (~0.2 us).
    __hash__ = object.__hash__


class _Op(enum.Enum):
    PUT = 1
    DELETE = 2
    DELETE_PREFIX = 3
    DELETE_CHILDREN = 4


# Bound once: every put and delete reads one, and in Python 3.11 ``Enum.MEMBER`` goes
# through ``EnumType.__getattr__``'s slot (~0.1 us a read; a module global ~0.01 us).
_PUT: Final = _Op.PUT
_DELETE: Final = _Op.DELETE


@attrs.define(eq=False)
class WriteBatch:
    """Puts and deletes applied together, atomically, in submission order.

    A batch is all-or-nothing: after a crash either every operation of it is visible or
    none is. Keys and values are bytes; callers encode them (``encode_key``, ``dumps``).
    """

    ops: list[tuple[_Op, Table, bytes, bytes | None]] = attrs.field(factory=list)
    nbytes: int = 0
    #: Sequence number of an earlier batch this one was computed from (0: none). If that
    #: batch failed, this one fails too instead of landing on state that never existed.
    depends_on: int = 0

    def put(self, table: Table, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` in ``table``."""
        self.ops.append((_PUT, table, key, value))
        self.nbytes += len(key) + len(value)

    def delete(self, table: Table, key: bytes) -> None:
        """Remove ``key`` from ``table`` (no error when absent)."""
        self.ops.append((_DELETE, table, key, None))
        self.nbytes += len(key)

    def delete_prefix(self, table: Table, prefix: bytes) -> None:
        """Remove every key of ``table`` that starts with ``prefix``."""
        self.ops.append((_Op.DELETE_PREFIX, table, prefix, None))
        self.nbytes += len(prefix)

    def delete_children(self, table: Table, parent: bytes) -> None:
        """Remove every key of ``table`` that encodes a tuple extending the tuple encoded
        as ``parent`` (see ``tuple_prefix_end``: unlike ``delete_prefix``, the key of
        ``("w",)`` does not take ``("w\x00",)`` with it)."""
        self.ops.append((_Op.DELETE_CHILDREN, table, parent, None))
        self.nbytes += len(parent)

    def __len__(self) -> int:
        return len(self.ops)
