"""Bad input to the store: each case gives a clear error naming the path, and nothing
stored before is changed (DESIGN.md section 3, invariant 13).

"Unchanged" is checked on the bytes of every file. The one exception is LMDB's own
``lock.mdb`` once LMDB itself has opened the environment: LMDB rewrites its reader table
there on every open, and it holds no data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import lmdb
import pytest

from actors.storage import (
    SCHEMA_VERSION,
    ForeignDataError,
    SchemaVersionError,
    Store,
    StoreCorruptedError,
    StoreLocationError,
    StoreLockedError,
    Table,
    ValueTooLargeError,
    WriteBatch,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

LMDB_LOCK = "lock.mdb"


def snapshot(root: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, bytes | None]:
    """Every file and directory under ``root`` with its bytes (None for directories)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if name in skip:
            continue
        out[name] = None if path.is_dir() else path.read_bytes()
    return out


def put(key: bytes, value: bytes) -> WriteBatch:
    batch = WriteBatch()
    batch.put(Table.STATE, key, value)
    return batch


def make_store(path: Path) -> None:
    with Store.open(path) as store:
        store.commit_blocking(put(b"kept", b"value"))


def path_pattern(path: Path) -> str:
    return re.escape(str(path))


# --- paths that are not a store ------------------------------------------------------------


def test_open_a_file(tmp_path: Path) -> None:
    target = tmp_path / "data.lmdb"
    target.write_bytes(b"my precious file")
    before = snapshot(tmp_path)
    with pytest.raises(
        StoreLocationError,
        match=rf"^{path_pattern(target)} is a file, not a directory; a store is a directory$",
    ):
        Store.open(target)
    assert snapshot(tmp_path) == before


def test_open_under_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "file"
    parent.write_bytes(b"x")
    before = snapshot(tmp_path)
    with pytest.raises(
        StoreLocationError, match=rf"^cannot create store directory {path_pattern(parent / 's')}: "
    ):
        Store.open(parent / "s")
    assert snapshot(tmp_path) == before


def test_open_a_directory_with_foreign_files(tmp_path: Path) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "notes.txt").write_text("not a store")
    (target / "sub").mkdir()
    (target / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = snapshot(tmp_path)
    with pytest.raises(
        ForeignDataError,
        match=rf"^{path_pattern(target)} is not a virtual-actors store: it holds other files "
        r"\(notes\.txt, sub\)$",
    ):
        Store.open(target)
    assert snapshot(tmp_path) == before


def test_open_a_directory_holding_the_upper_layers_files(tmp_path: Path) -> None:
    """The layer above names the files it keeps beside the store; this layer knows none."""
    target = tmp_path / "s"
    Store.open(target).close()
    (target / "upper.json").write_text("{}")
    with pytest.raises(
        ForeignDataError,
        match=rf"^{path_pattern(target)} is not a virtual-actors store: it holds other files "
        r"\(upper\.json\)$",
    ):
        Store.open(target)
    with pytest.raises(ForeignDataError, match=r"\(upper\.json\)$"):
        Store.open(target, extra_files={"other.json"})
    with Store.open(target, extra_files=("upper.json",)) as store:
        assert store.path == target
    assert sorted(os.listdir(target)) == ["actors.lock", "data.mdb", "lock.mdb", "upper.json"]


def test_open_a_directory_with_a_non_lmdb_data_file(tmp_path: Path) -> None:
    target = tmp_path / "s"
    target.mkdir()
    (target / "data.mdb").write_bytes(os.urandom(20_000))
    before = snapshot(tmp_path)
    with pytest.raises(ForeignDataError, match=rf"^{path_pattern(target)} holds an LMDB"):
        Store.open(target)
    assert snapshot(tmp_path) == before


def test_open_our_directory_with_a_non_lmdb_data_file(tmp_path: Path) -> None:
    # As if data.mdb were replaced under an existing store (our lock file is there).
    target = tmp_path / "s"
    target.mkdir()
    garbage = os.urandom(20_000)
    (target / "data.mdb").write_bytes(garbage)
    (target / "actors.lock").write_bytes(b"")
    with pytest.raises(
        ForeignDataError,
        match=rf"^{path_pattern(target)} holds a data\.mdb that is not an LMDB store: ",
    ):
        Store.open(target)
    assert (target / "data.mdb").read_bytes() == garbage
    # The lock was released: a second try fails the same way, not with StoreLockedError.
    with pytest.raises(ForeignDataError):
        Store.open(target)


def _plain_lmdb(path: Path, *, named: bool) -> None:
    env = lmdb.open(str(path), max_dbs=4)
    db = env.open_db(b"theirs") if named else None
    with env.begin(write=True, db=db) as txn:
        txn.put(b"their key", b"their value")
    env.close()


@pytest.mark.parametrize("named", [False, True], ids=["main-db", "named-db"])
def test_open_a_plain_lmdb_environment(tmp_path: Path, named: bool) -> None:
    target = tmp_path / "s"
    _plain_lmdb(target, named=named)
    before = snapshot(tmp_path)
    with pytest.raises(
        ForeignDataError,
        match=rf"^{path_pattern(target)} holds an LMDB environment that virtual-actors did "
        r"not create$",
    ):
        Store.open(target)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("named", [False, True], ids=["main-db", "named-db"])
def test_open_a_plain_lmdb_environment_with_our_lock_file(tmp_path: Path, named: bool) -> None:
    target = tmp_path / "s"
    _plain_lmdb(target, named=named)
    (target / "actors.lock").write_bytes(b"")
    data = (target / "data.mdb").read_bytes()
    with pytest.raises(
        ForeignDataError,
        match=rf"^{path_pattern(target)} holds an LMDB store that virtual-actors did not write$",
    ):
        Store.open(target)
    assert (target / "data.mdb").read_bytes() == data
    env = lmdb.open(str(target), max_dbs=4)
    assert {key for key, _ in env.begin().cursor()} == ({b"theirs"} if named else {b"their key"})
    env.close()


def _set_schema_version(path: Path, version: bytes) -> None:
    env = lmdb.open(str(path), max_dbs=len(Table) + 4)
    meta = env.open_db(Table.META.value.encode(), create=False)
    with env.begin(write=True, db=meta) as txn:
        txn.put(b"schema_version", version)
    env.close()


def test_open_a_newer_schema_version(tmp_path: Path) -> None:
    target = tmp_path / "s"
    make_store(target)
    _set_schema_version(target, str(SCHEMA_VERSION + 1).encode())
    before = snapshot(target, skip=frozenset({LMDB_LOCK}))
    with pytest.raises(
        SchemaVersionError,
        match=rf"^store {path_pattern(target)} has schema version {SCHEMA_VERSION + 1}, newer "
        rf"than this release's {SCHEMA_VERSION}; upgrade virtual-actors to open it$",
    ):
        Store.open(target)
    assert snapshot(target, skip=frozenset({LMDB_LOCK})) == before
    # Nothing was damaged and the lock was released: put the version back and open.
    _set_schema_version(target, str(SCHEMA_VERSION).encode())
    with Store.open(target) as store:
        assert store.get(Table.STATE, b"kept") == b"value"


def test_open_an_unreadable_schema_version(tmp_path: Path) -> None:
    target = tmp_path / "s"
    make_store(target)
    _set_schema_version(target, b"one")
    before = snapshot(target, skip=frozenset({LMDB_LOCK}))
    # Our tables are there: the version was garbled, so it is damage, not a foreign store.
    with pytest.raises(
        StoreCorruptedError,
        match=rf"^store {path_pattern(target)} is damaged: its format record",
    ):
        Store.open(target)
    assert snapshot(target, skip=frozenset({LMDB_LOCK})) == before


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("durability", "sync", r"^durability must be 'fsync' or 'process', not 'sync'$"),
        (
            "commit_mode",
            "async",
            r"^commit_mode must be 'auto', 'thread' or 'inline', not 'async'$",
        ),
    ],
)
def test_open_with_a_bad_option(tmp_path: Path, option: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Store.open(tmp_path / "s", **{option: value})  # type: ignore[arg-type]
    assert not (tmp_path / "s").exists()


# --- read-only locations -------------------------------------------------------------------

# Opens the store after dropping root privileges (when given a uid), and reports the
# storage error on stderr with exit code 3. The interpreter and the modules are loaded
# before the switch: the venv may live where an unprivileged user cannot read.
OPEN_AS = textwrap.dedent(
    """
    import os, sys
    from actors.storage import Store, StorageError, Table, WriteBatch
    path, uid = sys.argv[1], int(sys.argv[2])
    if uid >= 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    try:
        store = Store.open(path)
    except StorageError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    print(len(store.scan(Table.STATE)))
    store.close()
    """
)
NOBODY = 65534


def run_open(path: Path, *, uid: int = -1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPEN_AS, str(path), str(uid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory that an unprivileged user can traverse (pytest's tmp_path is 0o700)."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="actors-ro-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(base)


def open_read_only(path: Path) -> subprocess.CompletedProcess[str]:
    """Open ``path`` as a user for whom ``chmod`` makes it read-only.

    As root, permission bits do not stop writes, so the opener drops to ``nobody`` in a
    child process. As any other user, the bits apply directly.
    """
    if os.geteuid() == 0:
        return run_open(path, uid=NOBODY)
    if os.access(path.parent if not path.exists() else path, os.W_OK):
        pytest.skip("chmod does not make this directory read-only for this user")
    return run_open(path)


def test_open_in_a_read_only_directory(world_readable_dir: Path) -> None:
    parent = world_readable_dir / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    target = parent / "store"
    result = open_read_only(target)
    assert result.returncode == 3, result
    assert re.fullmatch(
        rf"StoreLocationError: cannot create store directory {path_pattern(target)}: "
        r"Permission denied\n",
        result.stderr,
    ), result.stderr
    assert snapshot(world_readable_dir) == {"ro": None}


def test_open_an_empty_read_only_directory(world_readable_dir: Path) -> None:
    target = world_readable_dir / "ro"
    target.mkdir()
    target.chmod(0o555)
    result = open_read_only(target)
    assert result.returncode == 3, result
    assert result.stderr == f"StoreLocationError: store directory {target} is read-only\n"
    assert snapshot(world_readable_dir) == {"ro": None}


@pytest.mark.parametrize("what", ["directory", "files"])
def test_open_a_read_only_store(world_readable_dir: Path, what: str) -> None:
    target = world_readable_dir / "store"
    make_store(target)
    if what == "directory":
        target.chmod(0o555)
    else:  # a writable directory whose files the opener may not write
        target.chmod(0o777)
        for path in target.iterdir():
            path.chmod(0o444)
    before = snapshot(target)
    result = open_read_only(target)
    assert result.returncode == 3, result
    assert re.fullmatch(
        rf"StoreLocationError: store directory {path_pattern(target)} is read-only.*\n",
        result.stderr,
    ), result.stderr
    assert snapshot(target) == before
    target.chmod(0o755)
    for path in target.iterdir():
        path.chmod(0o644)
    with Store.open(target) as store:
        assert store.get(Table.STATE, b"kept") == b"value"


# --- oversized input -----------------------------------------------------------------------


async def test_submit_a_value_over_max_value_size(tmp_path: Path) -> None:
    target = tmp_path / "s"
    with Store.open(target, max_value_size=1024) as store:
        await store.commit(put(b"kept", b"value"))
        batch = put(b"small", b"ok")
        batch.put(Table.STATE, b"big", bytes(2000))
        with pytest.raises(
            ValueTooLargeError,
            match=rf"^batch of 2010 bytes for {path_pattern(target)} is over the "
            r"max_value_size limit of 1024 bytes$",
        ):
            store.submit(batch)
        with pytest.raises(ValueTooLargeError):
            store.commit_blocking(batch)
        with pytest.raises(ValueError, match="max_value_size"):  # also a ValueError
            await store.commit(batch)
        stats = store.statistics()
        assert (stats.submitted_seq, stats.durable_seq) == (1, 1)  # nothing was queued
        assert store.scan(Table.STATE) == [(b"kept", b"value")]
        await store.commit(put(b"after", bytes(1000)))
        assert [k for k, _ in store.scan(Table.STATE)] == [b"after", b"kept"]


@pytest.mark.parametrize("op", ["put", "delete", "delete_prefix"])
async def test_submit_a_key_over_511_bytes(tmp_path: Path, op: str) -> None:
    target = tmp_path / "s"
    with Store.open(target) as store:
        await store.commit(put(b"k" * 511, b"longest key"))  # the limit itself is fine
        batch = WriteBatch()
        if op == "put":
            batch.put(Table.JOURNAL, b"k" * 512, b"v")
        elif op == "delete":
            batch.delete(Table.JOURNAL, b"k" * 512)
        else:
            batch.delete_prefix(Table.JOURNAL, b"k" * 512)
        with pytest.raises(
            ValueTooLargeError,
            match=rf"^key of 512 bytes in table 'journal' of {path_pattern(target)} is over the "
            r"511-byte key limit$",
        ):
            store.submit(batch)
        assert store.statistics().submitted_seq == 1
        assert store.get(Table.STATE, b"k" * 511) == b"longest key"
        await store.commit(put(b"after", b"1"))


async def test_submit_an_empty_key(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        with pytest.raises(ValueTooLargeError, match=r"^empty key in table 'state'$"):
            store.submit(put(b"", b"v"))
        assert store.statistics().submitted_seq == 0


# --- one opener at a time ------------------------------------------------------------------


async def test_open_twice_in_one_process(tmp_path: Path) -> None:
    target = tmp_path / "s"
    first = Store.open(target)
    try:
        await first.commit(put(b"a", b"1"))
        with pytest.raises(
            StoreLockedError,
            match=rf"^store {path_pattern(target)} is already open by another runtime "
            rf"\(pid {os.getpid()}\); one process owns a data directory at a time$",
        ):
            Store.open(target)
        with pytest.raises(StoreLockedError):
            Store.open(target, commit_mode="inline")
        await first.commit(put(b"b", b"2"))  # the first is undisturbed
        assert first.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"2")]
    finally:
        first.close()
    with Store.open(target) as again:
        assert again.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"2")]


async def test_open_from_a_second_process(tmp_path: Path) -> None:
    target = tmp_path / "s"
    first = Store.open(target)
    try:
        await first.commit(put(b"a", b"1"))
        data = (target / "data.mdb").read_bytes()
        result = run_open(target)
        assert result.returncode == 3, result
        assert result.stderr == (
            f"StoreLockedError: store {target} is already open by another runtime "
            f"(pid {os.getpid()}); one process owns a data directory at a time\n"
        )
        assert (target / "data.mdb").read_bytes() == data
        await first.commit(put(b"b", b"2"))
        assert first.scan(Table.STATE) == [(b"a", b"1"), (b"b", b"2")]
    finally:
        first.close()
    result = run_open(target)
    assert (result.returncode, result.stdout) == (0, "2\n"), result
