"""What an fsync'd LMDB commit costs when CPU work comes between commits.

The issue-14 baselines commit back to back (``bench/objects.py``'s raw LMDB row). The
runtime never does: between two of its commits the loop runs the calls whose writes the
next commit holds (W2: 64 calls, ~3 ms of CPU; W1: one call, ~0.1 ms). On the 2-core VMs
this project is measured on, a commit that follows CPU work costs more than one that
follows another commit, so a ratio to back-to-back commits also carries this.

For each gap, ``--commits`` commits of 64 small records each (``sync=True``) run
one after another, each after spinning the CPU for the gap (``time.perf_counter`` in
a loop: busy, as the loop is). The rounds of all gaps are interleaved, ``--rounds``
times, and the table shows the median of the rounds' commit p50, and its ratio to the
gap-0 p50 of the same round (median of those ratios).

Run::

    .venv/bin/python bench/fsync_gap.py
    .venv/bin/python bench/fsync_gap.py --rounds 5 --commits 300
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Final

import lmdb

GAPS_MS: Final = (0.0, 0.1, 0.5, 1.0, 2.0, 4.0, 8.0)
RECORDS: Final = 64


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def commit_p50(env: lmdb.Environment, db: lmdb._Database, gap_s: float, commits: int) -> float:
    """The p50 in seconds of ``commits`` fsync'd commits, each after ``gap_s`` of CPU."""
    times: list[float] = []
    for n in range(commits):
        spin(gap_s)
        txn = env.begin(write=True, db=db)
        for i in range(RECORDS):
            txn.put(b"Counter\x00k%d\x00value" % i, b"%d" % n)
        start = time.perf_counter()
        txn.commit()  # (only the commit is timed: the write and its fsync)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    p50s: dict[float, list[float]] = {gap: [] for gap in GAPS_MS}
    ratios: dict[float, list[float]] = {gap: [] for gap in GAPS_MS}
    with tempfile.TemporaryDirectory() as directory:
        env = lmdb.open(directory, map_size=1 << 28, max_dbs=4, sync=True, metasync=True)
        db = env.open_db(b"state")
        for _ in range(args.rounds):
            this_round = {gap: commit_p50(env, db, gap / 1e3, args.commits) for gap in GAPS_MS}
            for gap, p50 in this_round.items():
                p50s[gap].append(p50)
                ratios[gap].append(p50 / this_round[0.0])
        env.close()
    print(
        f"fsync'd LMDB commit of {RECORDS} records after a CPU gap: median of "
        f"{args.rounds} rounds x {args.commits} commits"
    )
    print("CPU gap before each commit | commit p50 | vs back to back")
    for gap in GAPS_MS:
        p50 = statistics.median(p50s[gap]) * 1e6
        ratio = statistics.median(ratios[gap])
        print(f"{gap:>22.1f} ms | {p50:7.0f} us | {ratio:6.2f}x")


if __name__ == "__main__":
    main()
