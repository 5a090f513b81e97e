"""Parked workflows' memory between two counts, and resolving them against raw commits.

One process, one temporary directory, ``durability="process"``: park ``--low`` workflows
(100,000) on a durable promise (``bench.workflows.Wf``), read VmRSS (after
``gc.collect()``), park more up to ``--high`` (500,000), read it again, and print the
bytes per parked workflow between the two (anonymous memory and LMDB's file-backed map
pages shown apart). Then resolve ``--resolve`` (100,000) of them, each from one of 256
tasks that also waits for its workflow's result, and print the rate against raw LMDB
commits/s (one record per ``sync=False`` commit) measured in the same run. Target
(issue 14): at most 200 bytes per parked workflow, resolving at >= 0.8x raw commits/s.

Run::

    .venv/bin/python bench/parked.py                          # 100,000 -> 500,000
    .venv/bin/python bench/parked.py --low 20000 --high 60000 --resolve 20000
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

import trio

import actors

sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench._common import perf_counter, run_raw
from bench.workflows import Wf, memory_mb, pool, wait_parked


async def measure(directory: Path, low: int, high: int, resolve: int) -> dict[str, float]:
    async with actors.open_runtime(directory, [Wf], durability="process", suspend_after=1.0) as rt:

        async def submit(i: int) -> None:
            await rt.send(Wf.run, i, key=f"wf-{i}")

        async def park_up_to(count: int, start: int) -> dict[str, float]:
            items = iter(range(start, count))

            async def work(_: int) -> None:
                await submit(next(items))

            await pool(count - start, work)
            await wait_parked(rt, count, "parked")
            gc.collect()
            return memory_mb()

        at_low = await park_up_to(low, 0)
        at_high = await park_up_to(high, low)

        async def resolve_one(i: int) -> None:
            await rt.call(Wf.approve, f"v{i}", key=f"wf-{i}")
            if await rt.attach_workflow(Wf, f"wf-{i}") != f"v{i}":
                raise AssertionError(f"wrong result for wf-{i}")

        start = perf_counter()
        await pool(resolve, resolve_one)
        elapsed = perf_counter() - start
    per = {
        name: (at_high[name] - at_low[name]) * 2**20 / (high - low)
        for name in ("VmRSS", "RssAnon", "RssFile")
    }
    return {
        **{f"per_{k}": v for k, v in per.items()},
        "resolve_rate": resolve / elapsed,
        "rss_low": at_low["VmRSS"],
        "rss_high": at_high["VmRSS"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low", type=int, default=100_000)
    parser.add_argument("--high", type=int, default=500_000)
    parser.add_argument("--resolve", type=int, default=100_000)
    args = parser.parse_args()
    if not 0 < args.low < args.high or not 0 < args.resolve <= args.high:
        parser.error("need 0 < --low < --high and 0 < --resolve <= --high")
    with tempfile.TemporaryDirectory(prefix="bench-parked-") as raw_dir:
        units, seconds, _ = run_raw(
            Path(raw_dir), "process", seconds=2.0, warmup=0.3, cap=1_000_000
        )
    raw = units / seconds
    with tempfile.TemporaryDirectory(prefix="bench-parked-") as directory:
        result = trio.run(measure, Path(directory), args.low, args.high, args.resolve)
    print(f"raw LMDB, 1 record/commit (sync=False): {raw:,.0f} commits/s")
    print(
        f"RSS {result['rss_low']:.1f} MB at {args.low:,} parked, {result['rss_high']:.1f} MB at {args.high:,}"
    )
    print(
        f"per parked workflow between them: {result['per_VmRSS']:.0f} bytes VmRSS "
        f"({result['per_RssAnon']:.0f} anonymous, {result['per_RssFile']:.0f} LMDB map pages); "
        f"target <= 200"
    )
    rate = result["resolve_rate"]
    print(
        f"resolve {args.resolve:,} and get each result: {rate:,.0f}/s = {rate / raw:.3f}x raw commits/s; target >= 0.8x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
