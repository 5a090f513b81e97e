"""Where a call's CPU goes: the floors of the primitives it uses, beside the runtime's
own CPU per call, measured in the same run.

Issue 14 asks that a target it does not meet be explained by "the primitive and its
measured floor". A call through the runtime uses a handful of primitives it cannot do
without, each with a cost this machine sets:

* **cancel scope** (trio's, entered and left): one per inline call that suspends, so
  that ``kill`` can stop the handler wherever it awaits and closing the runtime can stop
  a handler running in its caller's task (under asyncio two, one for each); trio's
  scope enters and leaves through a ``contextmanager`` of its own, which is most of its
  cost. An object's call that never suspends in its handler gets none
  (``actors/_lazy_scope.py``: a shared read, or an exclusive call whose first suspension
  is the wait for its commit, which needs none), so W5, W2 and W1 need no scope.
* **checkpoint** (``trio.lowlevel.checkpoint``): a call that ran without yielding ends
  with one, so that a task calling in a loop cannot starve the others (measured with 64
  tasks checkpointing, which share the scheduler's passes as the workloads' tasks do).
* **task switch**: a call that waits for its commit parks and is woken by the commit
  (measured as half a round trip between two tasks over trio's events, 32 pairs).
* **LMDB read**: a read transaction and one ``get`` (py-lmdb), what ``ctx.get`` costs.
* **LMDB write, per record**: the CPU of a write transaction of 64 records, per
  record, without the fsync (which is not CPU: the loop waits for it, and a commit's
  records share it). A call with no idempotency key writes one record: its state
  (its invocation is not recorded: nothing could ask for it again).

Each is timed as CPU seconds (``time.process_time``) over many repetitions. Then the
runtime's own workloads run with ``durability="process"`` (no fsync: its CPU, not the
disk's) and the CPU per call is printed beside the sum of the floors that call needs.
What lies between the two is the runtime's own Python: resolving the target, the
invocation's record and lifecycle, the journal entries, the context object, the output
gate, the mailbox. It is what a change can still move; the floors are not, short of
leaving out the primitive (and the guarantee it gives).

Last, the single call's latency (issue 14's target 2: W1 p50 at most 1.5x of one raw
commit), split: one sequential ``add`` after another with ``durability="fsync"``, timing
both the whole call and, inside the store's writer, the LMDB commit it waits for (its
transaction with the fsync), beside raw LMDB commits with the store's settings in the
same run. What the call costs beyond its commit is the runtime's CPU on the way in and
out, and the loop's passes that park the caller and wake it.

Run::

    .venv/bin/python bench/floors.py                  # 3 runs
    .venv/bin/python bench/floors.py --out bench/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lmdb
import trio

import actors
from bench._common import (
    MAP_SIZE,
    VALUE,
    add_output_args,
    json_meta,
    machine_text,
    median,
    recording_stdout,
    run_raw,
    save_results,
)
from bench.objects import Counter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.storage import StorageError, WriteBatch

TASKS: Final = 64
cpu = time.process_time


# --- the primitives -----------------------------------------------------------------------


def scope_us(n: int) -> float:
    """A trio cancel scope entered and left (in a trio task: a scope needs one)."""
    start = cpu()
    for _ in range(n):
        with trio.CancelScope():  # noqa: ASYNC100 (its enter and exit are measured)
            pass
    return (cpu() - start) / n * 1e6


async def checkpoint_us(n: int) -> float:
    """A checkpoint of one of 64 tasks that checkpoint in turn: the scheduler's pass (and
    its poll for I/O) is shared by the tasks it runs, as it is in the workloads."""

    async def task(count: int) -> None:
        for _ in range(count):
            await trio.lowlevel.checkpoint()

    start = cpu()
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(task, n // TASKS)
    return (cpu() - start) / (n // TASKS * TASKS) * 1e6


async def switch_us(n: int) -> float:
    """One task parking on an event and being woken by another, among 32 such pairs:
    half of a round trip."""
    pairs = TASKS // 2
    rounds = max(1, n // pairs)

    async def pair() -> None:
        events = [trio.Event(), trio.Event()]

        async def echo() -> None:
            for _ in range(rounds):
                await events[0].wait()
                events[0] = trio.Event()
                events[1].set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            await trio.lowlevel.checkpoint()
            for _ in range(rounds):
                reply = events[1]
                events[0].set()
                await reply.wait()
                events[1] = trio.Event()

    start = cpu()
    async with trio.open_nursery() as nursery:
        for _ in range(pairs):
            nursery.start_soon(pair)
    return (cpu() - start) / (rounds * pairs * 2) * 1e6


def lmdb_us(directory: Path, n: int) -> tuple[float, float]:
    """(one read transaction with a get, one record of a 64-record write transaction)."""
    env = lmdb.open(str(directory / "floor"), map_size=MAP_SIZE, sync=False, metasync=False)
    try:
        with env.begin(write=True) as txn:
            for i in range(TASKS):
                txn.put(b"k%03d" % i, VALUE)
        start = cpu()
        for i in range(n):
            with env.begin() as txn:
                txn.get(b"k%03d" % (i % TASKS))
        read = (cpu() - start) / n * 1e6
        rounds = max(1, n // TASKS)
        start = cpu()
        for r in range(rounds):
            with env.begin(write=True) as txn:
                for i in range(TASKS):
                    txn.put(b"r%03d%08d" % (i, r), VALUE)
        write = (cpu() - start) / (rounds * TASKS) * 1e6
        return read, write
    finally:
        env.close()


# --- the runtime ----------------------------------------------------------------------------


async def runtime_us(directory: Path, workload: str, calls: int) -> float:
    """CPU microseconds per call of ``workload`` (``w5r``, ``w2`` or ``w1``), all
    threads, after a warm-up; ``durability="process"``."""
    async with actors.open_runtime(directory, [Counter], durability="process") as rt:

        async def read(key: str, count: int) -> None:
            for _ in range(count):
                await rt.call(Counter.value, key=key)

        async def add(key: str, count: int) -> None:
            for _ in range(count):
                await rt.call(Counter.add, 1, key=key)

        async def phase(count: int) -> None:
            async with trio.open_nursery() as nursery:
                if workload == "w5r":
                    for _ in range(TASKS):
                        nursery.start_soon(read, "one", count // TASKS)
                elif workload == "w2":
                    for i in range(TASKS):
                        nursery.start_soon(add, f"k{i}", count // TASKS)
                else:
                    nursery.start_soon(add, "one", count)

        await phase(max(TASKS, calls // 5))  # warm-up
        start = cpu()
        await phase(calls)
        return (cpu() - start) / (calls // TASKS * TASKS if workload != "w1" else calls) * 1e6


async def w1_split(directory: Path, calls: int) -> tuple[float, float]:
    """(call p50, its commit's p50) in microseconds, sequential ``add`` calls, fsync."""
    async with actors.open_runtime(directory, [Counter]) as rt:
        writer = rt._store._writer  # private: timed from outside, for this split only
        apply = writer._apply
        commits: list[float] = []

        def timed_apply(batches: Sequence[WriteBatch]) -> StorageError | None:
            start = time.perf_counter()
            try:
                return apply(batches)
            finally:
                commits.append(time.perf_counter() - start)

        writer._apply = timed_apply  # type: ignore[method-assign]
        for _ in range(calls // 10):  # warm-up
            await rt.call(Counter.add, 1, key="one")
        commits.clear()
        latencies: list[float] = []
        for _ in range(calls):
            start = time.perf_counter()
            await rt.call(Counter.add, 1, key="one")
            latencies.append(time.perf_counter() - start)
    return statistics.median(latencies) * 1e6, statistics.median(commits) * 1e6


def raw_commit_p50(directory: Path) -> float:
    _, _, latencies = run_raw(directory, "fsync", seconds=1.0, warmup=0.2, cap=1_000_000)
    return statistics.median(latencies) * 1e6


# --- report ---------------------------------------------------------------------------------

PRIMITIVES: Final = ("scope", "checkpoint", "switch", "lmdb_read", "lmdb_write")
LABELS: Final = {
    "scope": "trio cancel scope, entered and left",
    "checkpoint": "trio checkpoint",
    "switch": "task switch (park and be woken)",
    "lmdb_read": "LMDB read transaction + get",
    "lmdb_write": "LMDB write, per record of 64 (no fsync)",
}
#: The primitives each workload's call cannot do without, with how many of each.
NEEDS: Final = {
    "w5r": {"checkpoint": 1, "lmdb_read": 1},
    "w2": {"switch": 1, "lmdb_read": 1, "lmdb_write": 1},
    "w1": {"switch": 1, "lmdb_read": 1, "lmdb_write": 1},
}
WORKLOADS: Final = {
    "w5r": "W5 shared read, 64 readers, 1 key",
    "w2": "W2 exclusive add, 64 keys x 1 caller",
    "w1": "W1 exclusive add, 1 caller",
}


def one_run(n: int, calls: int, directory: str | None) -> dict[str, float]:
    figures: dict[str, float] = {}

    async def primitives() -> None:
        figures["scope"] = scope_us(n)
        figures["checkpoint"] = await checkpoint_us(n)
        figures["switch"] = await switch_us(n // 4)

    trio.run(primitives)
    with tempfile.TemporaryDirectory(prefix="floors-") as tmp:
        figures["lmdb_read"], figures["lmdb_write"] = lmdb_us(Path(tmp), n)
    for workload in WORKLOADS:
        with tempfile.TemporaryDirectory(prefix="floors-rt-") as tmp:
            count = calls if workload != "w1" else calls // 8
            figures[workload] = trio.run(runtime_us, Path(tmp), workload, count)
    with tempfile.TemporaryDirectory(prefix="floors-raw-", dir=directory) as tmp:
        figures["raw_commit"] = raw_commit_p50(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="floors-w1-", dir=directory) as tmp:
        figures["w1_call"], figures["w1_commit"] = trio.run(w1_split, Path(tmp), calls // 20)
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="runs, interleaved (3)")
    parser.add_argument("--n", type=int, default=100_000, help="repetitions per primitive")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per workload")
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.n < 1_000 or args.calls < 10 * TASKS:
        parser.error(f"need --runs >= 1, --n >= 1000, --calls >= {10 * TASKS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs = [one_run(args.n, args.calls, args.dir) for _ in range(args.runs)]
    med = {key: median([run[key] for run in runs]) for key in runs[0]}
    with recording_stdout() as printed:
        print(f"bench/floors.py: {args.runs} runs, CPU us (medians); {machine_text(None)}")
        print()
        print("primitive | CPU us per use [min-max]")
        print("-" * 60)
        for key in PRIMITIVES:
            values = [run[key] for run in runs]
            print(f"{LABELS[key]} | {med[key]:.2f} [{min(values):.2f}-{max(values):.2f}]")
        print()
        print("call | CPU us per call | floor us | primitives the call needs | runtime's own")
        print("-" * 100)
        rows = []
        for workload, label in WORKLOADS.items():
            needs = NEEDS[workload]
            floor = sum(med[key] * count for key, count in needs.items())
            spent = med[workload]
            uses = ", ".join(f"{count} x {key}" for key, count in needs.items())
            print(f"{label} | {spent:.1f} | {floor:.1f} | {uses} | {spent - floor:.1f}")
            rows.append({"workload": workload, "cpu_us": spent, "floor_us": floor})
        print()
        print("W1, fsync | p50 us | vs raw commit p50")
        print("-" * 60)
        raw = med["raw_commit"]
        beyond = med["w1_call"] - med["w1_commit"]
        for label, value in (
            ("raw LMDB commit (the store's settings)", raw),
            ("W1 call, sequential add", med["w1_call"]),
            ("  of which its LMDB commit (timed in the writer)", med["w1_commit"]),
            ("  the rest: the runtime's way in and out", beyond),
        ):
            print(f"{label} | {value:.0f} | {value / raw:.2f}x")
    result = {"meta": json_meta(sys.argv[1:]), "medians": med, "runs": runs, "rows": rows}
    save_results(args, "floors", printed.getvalue(), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
