"""Damage the opening checks cannot confuse with anything else, in this process.

The damage here is of kinds LMDB reads without crashing (a changed name, a page of the
wrong type), so these tests can run in pytest's own process; damage that crashes an
unchecked LMDB (truncation, values running off the file) is in
``tests/test_damaged_stores.py``, in worker processes.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import lmdb
import pytest

from actors.storage import (
    ReadFailedError,
    SchemaVersionError,
    Store,
    StoreCorruptedError,
    StoreReader,
    Table,
    WriteBatch,
)
from actors.storage._reader import read_error

if TYPE_CHECKING:
    from pathlib import Path

PAGE_HEADER = struct.Struct("<QHHHH")


def make_store(path: Path) -> None:
    with Store.open(path) as store:
        batch = WriteBatch()
        batch.put(Table.STATE, b"kept", b"value")
        batch.put(Table.JOURNAL, b"entry", b"value")
        store.commit_blocking(batch)


def replace_everywhere(path: Path, old: bytes, new: bytes) -> None:
    """In the main table's leaf, and in the stale copies of it on free pages."""
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))


def test_a_table_name_changed_in_the_file_is_damage_not_a_new_table(tmp_path: Path) -> None:
    """Before: the store opened, created an empty ``journal`` beside ``journcl`` and
    every journal entry was gone without a word."""
    make_store(tmp_path)
    replace_everywhere(tmp_path / "data.mdb", b"journal", b"journcl")
    before = (tmp_path / "data.mdb").read_bytes()
    expected = (
        f"store {tmp_path} is damaged: it holds tables virtual-actors never creates "
        "('journcl') (restore the directory from a backup)"
    )
    with pytest.raises(StoreCorruptedError) as caught:
        Store.open(tmp_path)
    assert str(caught.value) == expected
    with pytest.raises(StoreCorruptedError) as caught:
        StoreReader.open(tmp_path)
    assert str(caught.value) == expected
    assert (tmp_path / "data.mdb").read_bytes() == before


def test_a_newer_schema_with_a_new_table_is_a_schema_error_not_damage(tmp_path: Path) -> None:
    make_store(tmp_path)
    env = lmdb.open(str(tmp_path), max_dbs=len(Table) + 4)
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", b"99", db=env.open_db(b"meta", txn=txn))
        txn.put(b"k", b"v", db=env.open_db(b"future", txn=txn))
    env.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        Store.open(tmp_path)
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        StoreReader.open(tmp_path)


def leaf_holding(data: bytes, key: bytes, page_size: int = 4096) -> int:
    """The offset of the leaf page whose nodes hold ``key`` (found by its bytes)."""
    position = data.index(key, 2 * page_size)
    page = position // page_size * page_size
    assert PAGE_HEADER.unpack_from(data, page)[2] & 0x02  # a leaf
    return page


def test_damage_done_after_opening_is_a_clean_error_on_read(tmp_path: Path) -> None:
    """The opening checks saw a sound file; a page then changed under the map (LMDB
    reads the file through the page cache). Before: a raw ``lmdb.CorruptedError``."""
    make_store(tmp_path)
    with Store.open(tmp_path) as store:
        data = (tmp_path / "data.mdb").read_bytes()
        page = leaf_holding(data, b"kept")
        with (tmp_path / "data.mdb").open("r+b") as file:
            file.seek(page + 10)
            file.write(struct.pack("<H", 0x04))  # an overflow page where a leaf was
        pattern = (
            rf"^store {tmp_path} is damaged: mdb_\w+: MDB_CORRUPTED: .* "
            r"\(restore the directory from a backup\)$"
        )
        with pytest.raises(StoreCorruptedError, match=pattern):
            store.get(Table.STATE, b"kept")
        with pytest.raises(StoreCorruptedError, match=pattern):
            store.scan(Table.STATE)
        assert store.get(Table.JOURNAL, b"entry") == b"value"  # other tables still read


def test_lmdb_errors_on_read_are_storage_errors_naming_the_directory(tmp_path: Path) -> None:
    for damage in (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadValsizeError):
        error = read_error(tmp_path, damage("what LMDB said"))
        assert isinstance(error, StoreCorruptedError)
        assert str(error) == (
            f"store {tmp_path} is damaged: what LMDB said (restore the directory from a backup)"
        )
    error = read_error(tmp_path, lmdb.ReadersFullError("readers full"))
    assert isinstance(error, ReadFailedError)
    assert str(error) == f"cannot read store {tmp_path}: readers full"


@pytest.mark.parametrize(
    ("key", "old", "new"),
    [(b"format", None, None), (b"schema_version", None, b"1\x00")],
    ids=["format-record-lost", "schema-version-garbled"],
)
def test_a_damaged_format_record_beside_our_tables_is_damage_not_foreign(
    tmp_path: Path, key: bytes, old: bytes | None, new: bytes | None
) -> None:
    """Our tables are there, the format record is gone or garbled (a bit flip in the meta
    page). Before: ``ForeignDataError`` ("virtual-actors did not write"), which sends the
    user looking for another program instead of their backup."""
    make_store(tmp_path)
    env = lmdb.open(str(tmp_path), max_dbs=len(Table) + 4)
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        if new is None:
            txn.delete(key, db=meta)
        else:
            txn.put(key, new, db=meta)
    env.close()
    before = (tmp_path / "data.mdb").read_bytes()
    pattern = rf"^store {tmp_path} is damaged: its format record .* \(restore the directory"
    with pytest.raises(StoreCorruptedError, match=pattern):
        Store.open(tmp_path)
    with pytest.raises(StoreCorruptedError, match=pattern):
        StoreReader.open(tmp_path)
    assert (tmp_path / "data.mdb").read_bytes() == before


def test_a_bit_flip_in_a_table_record_is_an_answer_or_a_clean_error(tmp_path: Path) -> None:
    """Every single bit of the ``meta`` and ``invocations`` table records (in the main
    table, and in its stale copies), flipped in turn: each opening works or raises a
    ``StorageError``. Before: a raw ``lmdb.InvalidError`` or ``lmdb.CorruptedError`` from
    ``mdb_dbi_open`` escaped for about 1 flip in 7 (found by CI's random damage)."""
    import re
    import shutil

    from actors.storage import StorageError

    pristine = tmp_path / "pristine"
    make_store(pristine)
    data = (pristine / "data.mdb").read_bytes()
    outcomes: dict[str, int] = {}
    for name in (b"meta", b"invocations"):
        records = [2 * 4096 + m.end() for m in re.finditer(re.escape(name), data[2 * 4096 :])]
        assert records
        for bit in range(48 * 8):  # an MDB_db record is 48 bytes
            damaged = bytearray(data)
            for start in records:
                damaged[start + bit // 8] ^= 1 << (bit % 8)
            copy = tmp_path / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(pristine, copy)
            (copy / "data.mdb").write_bytes(bytes(damaged))
            for opener in (Store.open, StoreReader.open):
                try:
                    with opener(copy):
                        outcome = "ok"
                except StorageError as exc:
                    outcome = type(exc).__name__
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("StoreCorruptedError", 0) > 0, outcomes
    assert outcomes.get("ok", 0) > 0, outcomes
