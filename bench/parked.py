"""Parked workflows' memory between two counts, and resolving them against raw commits.

Two runtimes, each in a fresh temporary directory of one process:

* **memory** (``durability="process"``: the figure does not depend on it, and parking
  500,000 under fsync takes many minutes): park ``--low`` workflows (100,000) on a
  durable promise (``bench.workflows.Wf``), read ``/proc/self/status`` (after
  ``gc.collect()``), park more up to ``--high`` (500,000), read it again, and print the
  bytes per parked workflow between the two: VmRSS, split into anonymous memory
  (RssAnon: the process's own) and RssFile (LMDB's file-backed map pages that the
  writer thread touched: clean page cache the kernel may drop, not memory per parked
  workflow; they grow with the database, whatever is in memory).
* **resolve** (``--durability``, fsync by default): park ``--resolve`` workflows
  (100,000), then resolve each through ``rt.call(Wf.approve, ...)`` from 256 tasks, each
  also waiting for its workflow's result (``rt.attach_workflow``); printed: resolutions/s
  against raw LMDB commits/s of the same durability (one ~100-byte record per commit,
  ``sync=True`` for fsync) measured in the same run, and the process CPU time per
  resolution (all threads: the machine is shared, CPU is the steadier figure).

Targets (issue 14): at most 200 bytes per parked workflow; resolving at >= 0.8x raw
fsync'd commits/s.

Run::

    .venv/bin/python bench/parked.py                          # 100,000 -> 500,000; 100,000
    .venv/bin/python bench/parked.py --low 20000 --high 60000 --resolve 20000
    .venv/bin/python bench/parked.py --resolve 0              # memory only
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import trio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors
from bench._common import (
    Durability,
    add_output_args,
    json_meta,
    perf_counter,
    print_checks,
    recording_stdout,
    run_raw,
    save_results,
)
from bench.workflows import Wf, memory_mb, pool, wait_parked


async def park(rt: actors.Runtime, start: int, count: int) -> None:
    """Park the workflows ``wf-{start}`` up to ``wf-{count - 1}``."""
    items = iter(range(start, count))

    async def submit(_: int) -> None:
        i = next(items)
        await rt.send(Wf.run, i, key=f"wf-{i}")

    await pool(count - start, submit)
    await wait_parked(rt, count, "parked")


async def measure_memory(directory: Path, low: int, high: int) -> dict[str, float]:
    async with actors.open_runtime(directory, [Wf], durability="process", suspend_after=1.0) as rt:
        await park(rt, 0, low)
        gc.collect()
        at_low = memory_mb()
        await park(rt, low, high)
        gc.collect()
        at_high = memory_mb()
    per = {
        name: (at_high[name] - at_low[name]) * 2**20 / (high - low)
        for name in ("VmRSS", "RssAnon", "RssFile")
    }
    return {
        **{f"per_{k}": v for k, v in per.items()},
        "rss_low": at_low["VmRSS"],
        "rss_high": at_high["VmRSS"],
    }


async def measure_resolve(directory: Path, durability: Durability, count: int) -> dict[str, float]:
    async with actors.open_runtime(directory, [Wf], durability=durability, suspend_after=1.0) as rt:
        await park(rt, 0, count)

        async def resolve_one(i: int) -> None:
            await rt.call(Wf.approve, f"v{i}", key=f"wf-{i}")
            if await rt.attach_workflow(Wf, f"wf-{i}") != f"v{i}":
                raise AssertionError(f"wrong result for wf-{i}")

        cpu, start = time.process_time(), perf_counter()
        await pool(count, resolve_one)
        elapsed, cpu = perf_counter() - start, time.process_time() - cpu
    return {"rate": count / elapsed, "cpu_us": cpu / count * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=100_000)
    parser.add_argument("--high", type=int, default=500_000)
    parser.add_argument("--resolve", type=int, default=100_000)
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync")
    add_output_args(parser)
    args = parser.parse_args()
    if not 0 < args.low < args.high or args.resolve < 0:
        parser.error("need 0 < --low < --high and --resolve >= 0")
    with recording_stdout() as printed:
        result = run(args)
    save_results(args, "parked", printed.getvalue(), result)
    return 0


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-parked-", dir=args.dir) as directory:
        memory = trio.run(measure_memory, Path(directory), args.low, args.high)
    print(
        f"RSS {memory['rss_low']:.1f} MB at {args.low:,} parked, "
        f"{memory['rss_high']:.1f} MB at {args.high:,}"
    )
    per = memory["per_VmRSS"]
    print(
        f"per parked workflow between them: {per:.0f} bytes VmRSS "
        f"= {memory['per_RssAnon']:.0f} anonymous + {memory['per_RssFile']:.0f} LMDB map "
        "pages; target <= 200"
    )
    checks: list[dict[str, object]] = [
        {
            "name": "rss_per_parked",
            "passed": per <= 200,
            "text": f"RSS per parked workflow, {args.low:,} to {args.high:,}: {per:.0f} B "
            "(target <= 200 B)",
        }
    ]
    result: dict[str, object] = {
        "meta": json_meta(sys.argv, low=args.low, high=args.high, durability=args.durability),
        "memory": memory,
        "checks": checks,
    }
    if args.resolve:
        with tempfile.TemporaryDirectory(prefix="bench-parked-", dir=args.dir) as raw_dir:
            units, seconds, _ = run_raw(
                Path(raw_dir), args.durability, seconds=2.0, warmup=0.3, cap=1_000_000
            )
        raw = units / seconds
        with tempfile.TemporaryDirectory(prefix="bench-parked-", dir=args.dir) as directory:
            resolved = trio.run(measure_resolve, Path(directory), args.durability, args.resolve)
        print(f"raw LMDB, 1 record/commit ({args.durability}): {raw:,.0f} commits/s")
        rate = resolved["rate"]
        print(
            f"resolve {args.resolve:,} ({args.durability}) and get each result: {rate:,.0f}/s "
            f"= {rate / raw:.3f}x raw commits/s (target >= 0.8x fsync); "
            f"{resolved['cpu_us']:.0f} us CPU per resolution"
        )
        checks.append(
            {
                "name": "resolve_rate",
                "passed": rate / raw >= 0.8,
                "text": f"resolving {args.resolve:,} parked workflows: {rate / raw:.3f}x raw "
                "commits/s (target >= 0.8x)",
            }
        )
        result["resolve"] = {**resolved, "raw_commits_per_s": raw, "ratio": rate / raw}
    print_checks(checks, args.durability)
    return result


if __name__ == "__main__":
    sys.exit(main())
