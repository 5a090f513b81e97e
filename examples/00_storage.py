"""The storage engine on its own: write durably, crash, reopen, read.

A child process appends records through the group-commit writer and prints each one
once its commit is acknowledged; this script SIGKILLs it mid-stream, reopens the same
data directory, and checks that every acknowledged record is there.

Run: python examples/00_storage.py [DATA_DIR]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from actors.storage import Store, Table, WriteBatch, decode_key, encode_key

CHILD = """
import sys, trio
from actors.storage import Store, Table, WriteBatch, encode_key

async def main(path):
    store = Store.open(path, durability="fsync")
    in_flight = trio.Semaphore(64)                # 64 concurrent writers share each fsync
    async def append(i):
        batch = WriteBatch()
        batch.put(Table.JOURNAL, encode_key(("demo", i)), f"record {i}".encode())
        await store.commit(batch)
        print(i, flush=True)                      # acknowledged = durable
        in_flight.release()
    async with trio.open_nursery() as nursery:
        for i in range(1_000_000):
            await in_flight.acquire()
            nursery.start_soon(append, i)

trio.run(main, sys.argv[1])
"""


def crash_a_writer(data_dir: Path) -> list[int]:
    """Run the child, SIGKILL it after 2000 acknowledged records; return those."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged: list[int] = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 2000:
            os.kill(child.pid, signal.SIGKILL)  # no cleanup, no final commit
            break
    child.wait()
    print(f"child acknowledged {len(acknowledged)} records, then was killed with SIGKILL")
    return acknowledged


async def reopen_and_check(data_dir: Path, acknowledged: list[int]) -> None:
    with Store.open(data_dir) as store:
        stored = {decode_key(k)[1] for k, _ in store.scan(Table.JOURNAL, encode_key(("demo",)))}
        missing = [i for i in acknowledged if i not in stored]
        print(f"reopened: {len(stored)} records on disk, {len(missing)} acknowledged ones missing")
        assert not missing, missing[:10]

        batch = WriteBatch()
        batch.put(Table.STATE, encode_key(("demo", "after-crash")), b"still writable")
        await store.commit(batch)
        value = store.get(Table.STATE, encode_key(("demo", "after-crash")))
        print(f"wrote after the crash and read back: {value!r}")
        stats = store.statistics()
        print(f"this session: {stats.batches} batches in {stats.commits} commits")
    print("every acknowledged record survived the crash")


def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")
    acknowledged = crash_a_writer(data_dir)
    trio.run(reopen_and_check, data_dir, acknowledged)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "store")
