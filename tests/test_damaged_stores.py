"""Damaged data directories are refused with a clear error; nothing crashes the process.

Every opening runs in a worker process (``tests/damaged_store_worker.py``), so a SIGBUS
or SIGSEGV from reading a damaged map shows as the worker's signal exit instead of
killing pytest. Each worker opens several damaged copies of one pristine directory in
turn, and says for each what it got; these tests judge that.

The damage: truncation (to half, one page short, a size that is not a multiple of the
page size, less than a meta page, zero), a value whose stored size points past the end
of the file, and seeded random damage in data pages (bit flips anywhere, and random
bytes in page headers and node pointers, where LMDB is most fragile). The openers:
``Store.open``, ``StoreReader.open``, ``open_runtime`` under trio and asyncio, and
``actors invocations``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

WORKER = Path(__file__).with_name("damaged_store_worker.py")
OPENERS = ["store", "reader", "runtime-trio", "runtime-asyncio", "cli"]
#: What each opener may raise for a damaged directory (any other type is a failure).
#: A changed byte inside a key can make an invocation's record unfindable: ``attach``
#: then answers "no invocation" (LMDB keeps no checksums that could tell).
CLEAN_ERRORS = {
    "store": {"StoreCorruptedError", "RecordDecodeError"},
    "reader": {"StoreCorruptedError", "RecordDecodeError"},
    "runtime-trio": {"PersistenceError", "UnknownHandlerError"},
    "runtime-asyncio": {"PersistenceError", "UnknownHandlerError"},
}
INVOCATIONS = 120


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with 120 completed invocations (ids in ``ids.json`` beside it)."""
    root = tmp_path_factory.mktemp("pristine")
    done = subprocess.run(
        [sys.executable, str(WORKER), "make", str(root / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ids = json.loads(done.stdout)
    assert len(ids) == INVOCATIONS
    (root / "ids.json").write_text(json.dumps(ids))
    return root


def damaged_copies(
    pristine: Path, tmp_path: Path, damages: dict[str, Callable[[Path], None]]
) -> list[Path]:
    copies = []
    for name, damage in damages.items():
        copy = tmp_path / name
        shutil.copytree(pristine / "data", copy)
        damage(copy / "data.mdb")
        copies.append(copy)
    return copies


def run_worker(opener: str, pristine: Path, dirs: list[Path]) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, str(WORKER), opener, str(pristine / "ids.json"), *map(str, dirs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, (
        f"the {opener} worker exited with {done.returncode} while opening "
        f"{dirs[len(lines)] if len(lines) < len(dirs) else '?'} "
        f"(after {len(lines)} of {len(dirs)}):\n{done.stderr[-3000:]}"
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert [line["dir"] for line in lines] == [str(d) for d in dirs]
    return lines


def assert_clean(opener: str, line: dict[str, object]) -> None:
    """A clean answer, or a clean error naming the directory; never anything else."""
    where = line["dir"]
    if opener == "cli":
        assert line.get("status") in (0, 1), line  # none: an exception escaped main
        if line["status"] == 0:
            assert line["rows"] == INVOCATIONS, line  # never "no invocations"
        else:
            stderr = str(line["stderr"])
            assert stderr.startswith("actors: error: "), line
            assert stderr.count("\n") == 1, line  # one line, no traceback
            assert str(where) in stderr, line
        for status, stderr in line["others"]:  # type: ignore[attr-defined]
            assert status in (0, 1), line
            if status == 1:
                assert stderr.startswith("actors: error: "), line
                assert stderr.count("\n") == 1, line
        return
    if line["outcome"] == "ok":
        return
    assert line["error"] in CLEAN_ERRORS[opener], line
    if line["error"] == "PersistenceError" or line["error"] == "StoreCorruptedError":
        assert str(where) in str(line["message"]), line


# --- the file's layout, to aim the damage -------------------------------------------------

PAGE_HEADER = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
NODE_HEADER = struct.Struct("<HHHH")  # lo, hi, flags, ksize
DB_RECORD = struct.Struct("<IHHQQQQQ")  # pad, flags, depth, pages x3, entries, root
P_BRANCH, P_LEAF = 0x01, 0x02


def page_size(data: bytes) -> int:
    size: int = struct.unpack_from("<I", data, 16 + 24)[0]
    return size


def newest_meta(data: bytes) -> int:
    """The offset of the meta (after its page header) LMDB reads: the higher txnid."""
    psize = page_size(data)
    offsets = [16, psize + 16]
    return max(offsets, key=lambda off: struct.unpack_from("<Q", data, off + 128)[0])


def first_leaf(data: bytes, root: int) -> int:
    psize = page_size(data)
    page = root
    while True:
        _, _, flags, _, _ = PAGE_HEADER.unpack_from(data, page * psize)
        if flags & P_LEAF:
            return page
        (pointer,) = struct.unpack_from("<H", data, page * psize + 16)
        lo, hi, high, _ = NODE_HEADER.unpack_from(data, page * psize + pointer)
        page = lo | hi << 16 | high << 32


def table_root(data: bytes, name: bytes) -> int:
    """The root page of the named table, found through the main table's leaf nodes."""
    psize = page_size(data)
    main_root: int = DB_RECORD.unpack_from(data, newest_meta(data) + 24 + 48)[7]
    leaf = first_leaf(data, main_root)
    _, _, _, lower, _ = PAGE_HEADER.unpack_from(data, leaf * psize)
    for index in range((lower - 16) // 2):
        (pointer,) = struct.unpack_from("<H", data, leaf * psize + 16 + 2 * index)
        node = leaf * psize + pointer
        _, _, _, ksize = NODE_HEADER.unpack_from(data, node)
        if data[node + 8 : node + 8 + ksize] == name:
            root: int = DB_RECORD.unpack_from(data, node + 8 + ksize)[7]
            return root
    raise AssertionError(f"no table {name!r}")


def oversized_value(table: bytes) -> Callable[[Path], None]:
    """The first value of ``table`` claims 2 GiB: reading it runs off the end of the file."""

    def damage(path: Path) -> None:
        data = path.read_bytes()
        psize = page_size(data)
        leaf = first_leaf(data, table_root(data, table))
        (pointer,) = struct.unpack_from("<H", data, leaf * psize + 16)
        with path.open("r+b") as file:
            file.seek(leaf * psize + pointer)
            file.write(struct.pack("<HH", 0xFFFF, 0x7FFF))

    return damage


def truncate_to(size: Callable[[int, int], int]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        psize = page_size(path.read_bytes())
        os.truncate(path, size(path.stat().st_size, psize))

    return damage


TRUNCATIONS: dict[str, Callable[[Path], None]] = {
    "half": truncate_to(lambda size, psize: size // 2),
    "one-page-short": truncate_to(lambda size, psize: size - psize),
    "not-a-page-multiple": truncate_to(lambda size, psize: size - 1000),
    "less-than-a-meta-page": truncate_to(lambda size, psize: 100),
    "zero": truncate_to(lambda size, psize: 0),
}


def random_damage(seed: int) -> Callable[[Path], None]:
    """Even seeds: three bit flips anywhere in the data pages. Odd seeds: random bytes in
    the first 64 bytes of one data page (its header and node pointers)."""

    def damage(path: Path) -> None:
        rng = random.Random(seed)
        data = bytearray(path.read_bytes())
        psize = page_size(bytes(data))
        pages = len(data) // psize
        if seed % 2 == 0:
            for _ in range(3):
                position = rng.randrange(2 * psize, len(data))
                data[position] ^= 1 << rng.randrange(8)
        else:
            page = rng.randrange(2, pages)
            for _ in range(2):
                data[page * psize + rng.randrange(64)] = rng.randrange(256)
        path.write_bytes(bytes(data))

    return damage


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("opener", OPENERS)
def test_a_truncated_store_is_refused_and_left_as_it_is(
    pristine: Path, tmp_path: Path, opener: str
) -> None:
    copies = damaged_copies(pristine, tmp_path, TRUNCATIONS)
    before = {copy: (copy / "data.mdb").read_bytes() for copy in copies}
    size = (pristine / "data" / "data.mdb").stat().st_size
    psize = page_size((pristine / "data" / "data.mdb").read_bytes())
    for copy, line in zip(copies, run_worker(opener, pristine, copies), strict=True):
        actual = len(before[copy])
        if actual == 0:
            expected = (
                f"store {copy} is damaged: its data.mdb is empty; the file was truncated "
                "(restore the directory from a backup)"
            )
        elif actual < 2 * psize:
            expected = (
                f"store {copy} is damaged: its data.mdb is {actual} bytes, too short "
                "to hold its two meta pages; the file was truncated (restore the "
                "directory from a backup)"
            )
        else:
            expected = (
                f"store {copy} is damaged: its data.mdb is {actual} bytes, but its "
                f"meta page counts {size // psize} pages of {psize} bytes "
                f"({size} bytes); the file was truncated (restore the directory from a "
                "backup)"
            )
        if opener == "cli":
            assert (line["status"], line["stderr"]) == (1, f"actors: error: {expected}\n")
            assert line["others"] == [[1, f"actors: error: {expected}\n"]] * 2  # journal, state
        else:
            assert line["outcome"] == "error", line
            refused = "PersistenceError" if opener.startswith("runtime") else "StoreCorruptedError"
            assert (line["error"], line["message"]) == (refused, expected)
        assert (copy / "data.mdb").read_bytes() == before[copy]  # nothing changed


@pytest.mark.parametrize("opener", OPENERS)
def test_a_value_running_off_the_end_of_the_file_is_refused(
    pristine: Path, tmp_path: Path, opener: str
) -> None:
    damages = {
        "state": oversized_value(b"state"),
        "invocations": oversized_value(b"invocations"),
    }
    copies = damaged_copies(pristine, tmp_path, damages)
    for line in run_worker(opener, pristine, copies):
        if opener == "cli":
            assert line["status"] == 1, line
            assert "is damaged" in str(line["stderr"]), line
        else:
            assert line["outcome"] == "error", line
            assert "is damaged" in str(line["message"]), line
        assert_clean(opener, line)


@pytest.mark.parametrize("opener", OPENERS)
def test_random_damage_in_data_pages_gives_an_answer_or_a_clean_error(
    pristine: Path, tmp_path: Path, opener: str
) -> None:
    damages = {f"seed-{seed}": random_damage(seed) for seed in range(40)}
    copies = damaged_copies(pristine, tmp_path, damages)
    for line in run_worker(opener, pristine, copies):
        assert_clean(opener, line)
