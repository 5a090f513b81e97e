"""Checking ``data.mdb`` before LMDB reads it: a damaged file is refused, not mapped.

LMDB trusts its file. It maps it and follows page numbers, node offsets and value
sizes without checking them against the file's end, so a damaged file does not fail
with an error: a read past the end of the file (inside the map) kills the process
with SIGBUS, and a value size that runs past the map reads other memory. Nothing in
Python can catch either. So every opener checks the file first, in two steps:

*Before mapping* (``check_file_size``): the two meta pages at offsets 0 and the page
size say how many pages the file holds (``mm_last_pg`` of the meta with the higher
transaction id, the one LMDB uses). A file shorter than that was truncated: a copy
cut short, a full disk during a restore. Pages are only ever appended, so a file
that an owner is writing beside us can only be longer than its newest meta says.

*After mapping, before any read* (``check_pages``): every page reachable from the
meta of the snapshot the caller holds is walked, reading the file through a mapping
of our own that Python bounds-checks: page numbers within the file and visited once,
page types as the tree's depth requires, node offsets, keys and values inside their
page, overflow runs inside the file, named tables' records of the right size and
flags, free-list entries naming pages that exist and are not in use. After that,
nothing LMDB reads for that snapshot lies outside the file. The caller holds a read
transaction while the walk runs, so an owner writing beside it never reuses a page
of that snapshot (LMDB keeps pages a reader still sees).

The walk reads each page's header and node headers once: about 0.1 s for a 40 MB store
of invocation records, 0.15 s for 10 MB of 500,000 one-byte values (its worst case,
the cost is per node). It runs once per opening, never on a read.

What it cannot see: a byte changed inside a key or a value. LMDB keeps no checksums;
such a value fails to decode later (``RecordDecodeError``) or reads as what it now
says. The layout read here is LMDB 0.9's on 64-bit little-endian machines (py-lmdb
bundles 0.9.x); a file from another layout fails the meta page's magic number check
and is left to LMDB, which refuses it.

Rejected: trusting LMDB's own ``MDB_CORRUPTED`` and ``MDB_PAGE_NOTFOUND`` (it raises
them only for a wrong page type or a page number past the end; a bad node offset or
value size crashes first); a signal handler for SIGBUS (a fault in C code cannot be
resumed from Python); a check in a child process (an embedded library must not fork
behind its user's back).
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import TYPE_CHECKING, Final

from ._errors import StoreCorruptedError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from pathlib import Path

    #: ``on_value(node_flags, key_start, key_end, value_start, value_size)``.
    _OnValue = Callable[[int, int, int, int, int], None]

MAGIC: Final = 0xBEEFC0DE
_PAGE_HEADER: Final = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
_NODE_HEADER: Final = struct.Struct("<HHHH")  # size (or child page) lo, hi, flags, ksize
_OVERFLOW_HEADER: Final = struct.Struct("<QHHI")  # pgno, pad, flags, pages
_DB_RECORD: Final = struct.Struct("<IHHQQQQQ")  # pad, flags, depth, 3 counts, entries, root
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_PAGE_HEADER_SIZE: Final = 16
_NODE_HEADER_SIZE: Final = 8
# The meta record, after its page header: magic, version, address, mapsize, the free
# and main tables' records (48 bytes each), the last page, the transaction id.
_META_DBS: Final = 24
_META_LAST_PAGE: Final = 120
_META_TXNID: Final = 128
_META_SIZE: Final = 136
_PAGE_SIZE_RANGE: Final = range(512, 65537)
_NO_PAGE: Final = (1 << 64) - 1
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META = 0x01, 0x02, 0x04, 0x08
_P_HARMLESS: Final = 0x10 | 0x4000 | 0x8000  # dirty, loose, keep: in-memory marks
_F_BIGDATA, _F_SUBDATA = 0x01, 0x02
_MAX_DEPTH: Final = 64
_RESTORE: Final = "(restore the directory from a backup)"


class _Damage(Exception):
    """Raised inside the walk; the caller words it with the directory's name."""


def check_file_size(root: Path) -> None:
    """Raise ``StoreCorruptedError`` if ``root/data.mdb`` is shorter than its own meta
    pages say. A file that is not LMDB's (wrong magic) is left for LMDB to refuse."""
    path = root / "data.mdb"
    with path.open("rb") as file:
        head = file.read(_PAGE_HEADER_SIZE + _META_SIZE)
        if not head:
            raise StoreCorruptedError(
                f"store {root} is damaged: its data.mdb is empty; the file was truncated {_RESTORE}"
            )
        if len(head) >= _PAGE_HEADER_SIZE + 4 and _magic(head, 0) != MAGIC:
            return  # not LMDB's layout at all: lmdb.open says so
        size = os.fstat(file.fileno()).st_size
        page_size = _page_size(head)
        if page_size == 0 or size < 2 * page_size:
            raise StoreCorruptedError(
                f"store {root} is damaged: its data.mdb is {size} bytes, too short to hold "
                f"its two meta pages; the file was truncated {_RESTORE}"
            )
        file.seek(page_size)
        second = file.read(_PAGE_HEADER_SIZE + _META_SIZE)
    metas = [head] if _magic(second, 0) != MAGIC else [head, second]
    newest = max(metas, key=lambda meta: _U64.unpack_from(meta, _PAGE_HEADER_SIZE + _META_TXNID))
    pages = _U64.unpack_from(newest, _PAGE_HEADER_SIZE + _META_LAST_PAGE)[0] + 1
    if size < pages * page_size:
        raise StoreCorruptedError(
            f"store {root} is damaged: its data.mdb is {size} bytes, but its meta page "
            f"counts {pages} pages of {page_size} bytes ({pages * page_size} bytes); the "
            f"file was truncated {_RESTORE}"
        )


def check_pages(root: Path, txnid: int, tables: Collection[bytes]) -> tuple[set[bytes], set[bytes]]:
    """Walk every page reachable from the meta of transaction ``txnid`` (a snapshot the
    caller holds open) and raise ``StoreCorruptedError`` at the first that LMDB could
    not read safely.

    ``tables`` are the names of the plain named tables a store of ours holds. Returns
    the names of the tables walked, and the names in the main table that are not such
    a table (another program's, a newer schema's, or a damaged name): those are not
    walked, and must not be read. The caller decides what they mean."""
    path = root / "data.mdb"
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return set(), set()
        with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                walk = _Walk(view, txnid, frozenset(tables))
                walk.run()
            except _Damage as exc:
                raise StoreCorruptedError(f"store {root} is damaged: {exc} {_RESTORE}") from None
            finally:
                view.release()
    return walk.walked, walk.odd


def _page_size(head: bytes) -> int:
    """The page size the first meta page records, or 0 when it cannot be one."""
    if len(head) < _PAGE_HEADER_SIZE + _META_SIZE:
        return 0
    size: int = _U32.unpack_from(head, _PAGE_HEADER_SIZE + _META_DBS)[0]
    return size if size in _PAGE_SIZE_RANGE and size & (size - 1) == 0 else 0


def _magic(data: bytes, page_offset: int) -> int:
    if len(data) < page_offset + _PAGE_HEADER_SIZE + 4:
        return 0
    magic: int = _U32.unpack_from(data, page_offset + _PAGE_HEADER_SIZE)[0]
    return magic


class _Walk:
    """One walk over the trees of one meta page. Raises ``_Damage``."""

    def __init__(self, data: memoryview, txnid: int, tables: frozenset[bytes]) -> None:
        self.data = data
        self.tables = tables
        self.page_size: int = _U32.unpack_from(data, _PAGE_HEADER_SIZE + _META_DBS)[0]
        self.meta = self._meta_of(txnid)
        self.last_page: int = _U64.unpack_from(data, self.meta + _META_LAST_PAGE)[0]
        if (self.last_page + 1) * self.page_size > len(data):
            raise _Damage(f"its meta page counts {self.last_page + 1} pages, past the file's end")
        self.in_use: set[int] = {0, 1}
        self.free_lists: list[tuple[int, int]] = []
        self.walked: set[bytes] = set()
        self.odd: set[bytes] = set()

    def _meta_of(self, txnid: int) -> int:
        for offset in (_PAGE_HEADER_SIZE, self.page_size + _PAGE_HEADER_SIZE):
            if _U64.unpack_from(self.data, offset + _META_TXNID)[0] == txnid:
                return offset
        raise _Damage(f"neither meta page records transaction {txnid}")

    def run(self) -> None:
        self._tree(self._db_record(self.meta + _META_DBS + _DB_RECORD.size), self._main_value)
        self._tree(self._db_record(self.meta + _META_DBS), self._free_value)
        # Only now is every page in use known, which no free-list entry may name; with
        # tables left unwalked it is not (and such a store is refused, never written).
        if not self.odd:
            for start, size in self.free_lists:
                self._free_list(start, size)

    def _db_record(self, offset: int) -> tuple[int, int, int]:
        _, flags, depth, _, _, _, _, root = _DB_RECORD.unpack_from(self.data, offset)
        return flags, depth, root

    def _tree(self, record: tuple[int, int, int], on_value: _OnValue | None) -> None:
        """Walk one B-tree. ``on_value`` sees every leaf value once its bytes are known
        to lie inside the file; without it, the values are a table's plain ones."""
        _, depth, root = record
        if root == _NO_PAGE:
            return
        if not 1 <= depth <= _MAX_DEPTH:
            raise _Damage(f"a table records a depth of {depth}")
        data = self.data
        stack = [(root, depth)]
        while stack:
            page, level = stack.pop()
            base = self._claim(page)
            _, _, flags, lower, upper = _PAGE_HEADER.unpack_from(data, base)
            expected = _P_LEAF if level == 1 else _P_BRANCH
            if flags & ~_P_HARMLESS != expected:
                kind = "leaf" if level == 1 else "branch"
                raise _Damage(f"page {page} should be a {kind} page (flags {flags:#x})")
            if lower < _PAGE_HEADER_SIZE or lower & 1 or not lower <= upper <= self.page_size:
                raise _Damage(f"page {page} has bounds {lower}..{upper}")
            count = (lower - _PAGE_HEADER_SIZE) >> 1
            if count == 0 and level > 1:
                raise _Damage(f"branch page {page} is empty")
            end = base + self.page_size
            for pointer in struct.unpack_from(f"<{count}H", data, base + _PAGE_HEADER_SIZE):
                node = base + pointer
                if pointer < upper or node + _NODE_HEADER_SIZE > end:
                    raise _Damage(f"page {page} has a node at offset {pointer}")
                low, high, node_flags, key_size = _NODE_HEADER.unpack_from(data, node)
                key_start = node + _NODE_HEADER_SIZE
                key_end = key_start + key_size
                if key_end > end:
                    raise _Damage(f"page {page} has a key running past the page")
                if level > 1:
                    stack.append((low | high << 16 | node_flags << 32, level - 1))
                    continue
                size = low | high << 16
                if node_flags & _F_BIGDATA:
                    value_start = self._overflow(page, key_end, end, size)
                elif key_end + size > end:
                    raise _Damage(f"page {page} has a value running past the page")
                else:
                    value_start = key_end
                if on_value is not None:
                    on_value(node_flags, key_start, key_end, value_start, size)
                elif node_flags & ~_F_BIGDATA:
                    raise _Damage(f"page {page} holds a node with flags {node_flags:#x}")

    def _claim(self, page: int) -> int:
        if not 2 <= page <= self.last_page:
            raise _Damage(f"a table points at page {page}, outside the file")
        if page in self.in_use:
            raise _Damage(f"page {page} is used twice")
        self.in_use.add(page)
        return page * self.page_size

    def _overflow(self, page: int, key_end: int, end: int, size: int) -> int:
        """Check a large value's run of overflow pages; where its bytes start."""
        if key_end + 8 > end:
            raise _Damage(f"page {page} has a large value's page number past the page")
        first: int = _U64.unpack_from(self.data, key_end)[0]
        base = self._claim(first)
        _, _, flags, pages = _OVERFLOW_HEADER.unpack_from(self.data, base)
        if flags & ~_P_HARMLESS != _P_OVERFLOW or pages < 1 or first + pages - 1 > self.last_page:
            raise _Damage(f"page {first} is not a run of overflow pages inside the file")
        if size > pages * self.page_size - _PAGE_HEADER_SIZE:
            raise _Damage(f"a value of {size} bytes runs past its pages at {first}")
        for extra in range(first + 1, first + pages):
            if extra in self.in_use:
                raise _Damage(f"page {extra} is used twice")
            self.in_use.add(extra)
        return base + _PAGE_HEADER_SIZE

    def _main_value(self, flags: int, key_start: int, key_end: int, start: int, size: int) -> None:
        """A value of the main table: a named table's record, walked in turn."""
        name = bytes(self.data[key_start:key_end])
        # Ours are plain tables: no duplicates, byte-order keys (flags 0).
        plain = flags == _F_SUBDATA and size == _DB_RECORD.size and name in self.tables
        if not plain or self._db_record(start)[0] != 0:
            self.odd.add(name)
            return
        self.walked.add(name)
        self._tree(self._db_record(start), None)

    def _free_value(self, flags: int, key_start: int, key_end: int, start: int, size: int) -> None:
        if flags & ~_F_BIGDATA:
            raise _Damage(f"the free list holds a node with flags {flags:#x}")
        self.free_lists.append((start, size))

    def _free_list(self, start: int, size: int) -> None:
        """A free-list record: a count, then that many page numbers, none in use."""
        if size < 8 or size % 8:
            raise _Damage(f"a free-list record is {size} bytes")
        (count,) = _U64.unpack_from(self.data, start)
        if (count + 1) * 8 > size:
            raise _Damage(f"a free-list record counts {count} pages in {size} bytes")
        for (page,) in struct.iter_unpack("<Q", self.data[start + 8 : start + 8 + count * 8]):
            if not 2 <= page <= self.last_page or page in self.in_use:
                raise _Damage(f"its free list names page {page}, which is in use or missing")
