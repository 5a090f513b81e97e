"""SIGKILL a writer mid-stream: every acknowledged commit survives, intact and whole.

A child process appends records concurrently under trio and prints each index once
``await store.commit`` has returned. The parent reads the pipe (no sleeps), kills the
child with SIGKILL after ``ACKNOWLEDGED`` lines, reopens the directory and checks.
"""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import pytest

from actors.storage import Durability, Store, Table, WriteBatch, decode_key, encode_key

if TYPE_CHECKING:
    from pathlib import Path

ACKNOWLEDGED = 1000


def value(i: int) -> bytes:
    """The value of record ``i``: varied lengths and contents. The child gets this very
    function's source, so both sides agree."""
    return (f"record {i};".encode() * (1 + i % 13))[: 7 + i % 200]


CHILD = inspect.getsource(value) + textwrap.dedent(
    """
    import itertools, sys, trio
    from actors.storage import Store, Table, WriteBatch, encode_key

    async def main(path, durability):
        store = Store.open(path, durability=durability)
        in_flight = trio.Semaphore(64)  # bounded, so the writer always has a queue

        async def append(i):
            try:
                batch = WriteBatch()
                batch.put(Table.JOURNAL, encode_key(("crash", i)), value(i))
                batch.put(Table.STATE, encode_key(("crash", i)), b"twin")  # same batch
                await store.commit(batch)
                print(i, flush=True)  # acknowledged: durable
            finally:
                in_flight.release()

        async with trio.open_nursery() as nursery:
            for i in itertools.count():
                await in_flight.acquire()
                nursery.start_soon(append, i)

    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


def run_and_kill(path: Path, durability: Durability, stderr_path: Path) -> list[int]:
    """Start the child, SIGKILL it after ACKNOWLEDGED acknowledgements; return them all."""
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), durability],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert child.stdout is not None
    # A safety net for a child that hangs without printing; never reached when it works.
    watchdog = threading.Timer(120, child.kill)
    watchdog.start()
    acknowledged: list[int] = []
    try:
        for line in child.stdout:
            acknowledged.append(int(line))
            if len(acknowledged) == ACKNOWLEDGED:
                os.kill(child.pid, signal.SIGKILL)  # no cleanup, no final commit
                break
        # Lines already in the pipe were acknowledged too; a torn last line was not.
        acknowledged += [
            int(line)
            for line in child.stdout.read().splitlines(keepends=True)
            if line.endswith("\n")
        ]
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
        child.stdout.close()
    assert len(acknowledged) >= ACKNOWLEDGED, stderr_path.read_text()
    assert child.returncode == -signal.SIGKILL, stderr_path.read_text()
    return acknowledged


@pytest.mark.parametrize("durability", ["fsync", "process"])
def test_Store_acknowledged_commits_survive_SIGKILL(tmp_path: Path, durability: Durability) -> None:
    path = tmp_path / "store"
    acknowledged = run_and_kill(path, durability, tmp_path / "child.stderr")
    assert len(set(acknowledged)) == len(acknowledged)

    with Store.open(path, durability=durability) as store:
        journal = {decode_key(k): v for k, v in store.scan(Table.JOURNAL, encode_key(("crash",)))}
        twins = {decode_key(k) for k, _ in store.scan(Table.STATE, encode_key(("crash",)))}
        missing = [i for i in acknowledged if ("crash", i) not in journal]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:10]}"
        # Every record on disk (acknowledged or not) is intact, and whole: a batch's two
        # puts landed together or not at all.
        torn = [k for k, v in journal.items() if v != value(int(k[1]))]
        assert not torn, torn[:10]
        assert twins == set(journal)

        batch = WriteBatch()
        batch.put(Table.STATE, encode_key(("after", "crash")), b"still writable")
        store.commit_blocking(batch)
        assert store.get(Table.STATE, encode_key(("after", "crash"))) == b"still writable"
    with Store.open(path, durability=durability) as store:
        assert store.get(Table.STATE, encode_key(("after", "crash"))) == b"still writable"
        assert len(store.scan(Table.JOURNAL)) == len(journal)
