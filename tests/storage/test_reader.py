"""StoreReader: read-only access beside the owning Store, and lock_holder.

LMDB must not open one environment twice in one process, so the tests that read
beside an open ``Store`` run the reader in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import lmdb
import pytest

from actors.storage import (
    SCHEMA_VERSION,
    ForeignDataError,
    SchemaVersionError,
    Store,
    StoreClosedError,
    StoreLocationError,
    StoreReader,
    Table,
    WriteBatch,
    lock_holder,
)

if TYPE_CHECKING:
    from pathlib import Path


def make_store(path: Path, items: dict[bytes, bytes]) -> None:
    with Store.open(path) as store:
        batch = WriteBatch()
        for key, value in items.items():
            batch.put(Table.STATE, key, value)
        store.commit_blocking(batch)


def data_bytes(path: Path) -> bytes:
    return (path / "data.mdb").read_bytes()


def test_reads_committed_data_and_writes_nothing(tmp_path: Path) -> None:
    make_store(tmp_path / "s", {b"a": b"1", b"b": b"2"})
    before = data_bytes(tmp_path / "s")
    with StoreReader.open(tmp_path / "s") as reader, reader.read() as view:
        assert view.get(Table.STATE, b"a") == b"1"
        assert view.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"2")]
        assert view.count(Table.STATE) == 2
        assert view.scan(Table.JOURNAL) == []
    assert data_bytes(tmp_path / "s") == before
    with pytest.raises(StoreClosedError, match=r"is closed$"), reader.read():
        pass


def test_no_store_in_the_directory(tmp_path: Path) -> None:
    with pytest.raises(
        StoreLocationError, match=rf"^no virtual-actors store in {re.escape(str(tmp_path))} "
    ):
        StoreReader.open(tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_foreign_lmdb_environment(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path / "s"), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"their key", b"their value")
    env.close()
    with pytest.raises(ForeignDataError, match="virtual-actors did not write"):
        StoreReader.open(tmp_path / "s")


def test_a_newer_schema_version(tmp_path: Path) -> None:
    make_store(tmp_path / "s", {b"a": b"1"})
    env = lmdb.open(str(tmp_path / "s"), max_dbs=len(Table) + 4)
    with env.begin(write=True, db=env.open_db(b"meta", create=False)) as txn:
        txn.put(b"schema_version", str(SCHEMA_VERSION + 1).encode())
    env.close()
    with pytest.raises(SchemaVersionError, match=r"upgrade virtual-actors to read it$"):
        StoreReader.open(tmp_path / "s")


def test_lock_holder_names_the_owner_only_while_it_is_open(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "never") is None
    make_store(tmp_path / "s", {})
    assert lock_holder(tmp_path / "s") is None
    with Store.open(tmp_path / "s"):
        assert lock_holder(tmp_path / "s") == os.getpid()
    assert lock_holder(tmp_path / "s") is None
    with Store.open(tmp_path / "s"):  # probing took no lock of its own
        pass


def test_reading_beside_the_owner_sees_each_commit(tmp_path: Path) -> None:
    make_store(tmp_path / "s", {b"a": b"1"})
    reader_code = textwrap.dedent(
        """
        import sys
        from actors.storage import StoreReader, Table
        with StoreReader.open(sys.argv[1]) as reader:
            for line in sys.stdin:
                with reader.read() as view:
                    print(view.get(Table.STATE, line.strip().encode()), flush=True)
        """
    )
    with (
        Store.open(tmp_path / "s") as store,
        subprocess.Popen(
            [sys.executable, "-c", reader_code, str(tmp_path / "s")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as reader,
    ):
        assert reader.stdin is not None
        assert reader.stdout is not None

        def ask(key: str) -> str:
            assert reader.stdin is not None
            assert reader.stdout is not None
            reader.stdin.write(key + "\n")
            reader.stdin.flush()
            return reader.stdout.readline().strip()

        assert ask("a") == "b'1'"
        batch = WriteBatch()
        batch.put(Table.STATE, b"b", b"2")
        store.commit_blocking(batch)
        assert ask("b") == "b'2'"
        reader.stdin.close()
        assert reader.wait(timeout=30) == 0
