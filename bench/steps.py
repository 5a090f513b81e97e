"""Durable-steps benchmark: ``ctx.run`` steps/s and 10-step latency of ``actors``.

The handler under test is a ``Service`` handler doing ten durable steps::

    async def step_fn(i: int) -> int:                  # async: runs on the event loop
        return i

    @actors.handler
    async def ten(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(10):
            total += await ctx.run(f"step{i}", step_fn, i)
        return total                                    # 45, checked on every call

Every invocation goes through ``rt.call`` of a runtime opened with ``open_runtime(...,
durability=...)``. A step's body runs only once everything before it is durable (the
output gate), so one invocation is 11 batches in sequence: the acceptance before step 0,
the result of step ``i`` before step ``i + 1``, and the completion with the last result.
Concurrent invocations share commits (group commit); one invocation never can.

Measured in every run, in this order, each in a fresh temporary directory:

* **raw LMDB, 1 record/commit** (baseline): one thread, one ``sync=True`` write
  transaction per ~100-byte record, sequentially (``sync=False`` with ``--durability
  process``). Commits/s and per-commit p50/p99. ``11 x`` its p50 is the derived floor of
  one 10-step invocation.
* **raw LMDB, 11 sequential commits** (baseline): the same, but 11 commits timed as one
  unit: the floor measured directly. Units/s and per-unit p50/p99.
* **raw LMDB, 16 and 256 records/commit** (ceilings, for context): one thread
  committing 16 (256) records per synced transaction, keyed like as many concurrent
  writers. Records/s; latency is per transaction.
* **C = 1, 16, 256**: C tasks each loop ``rt.call(Steps.ten)``. Steps/s (10 per
  invocation), invocations/s, p50/p99 of the whole call, and LMDB commits (and batches)
  per invocation from the store's counters. The C = 1 row is the latency measurement:
  sequential single invocations, nothing else running.
* **C = 16 and 256, plain ``def`` steps**: the same handler with ``def step_fn`` (a plain
  function runs on one of the runtime's step threads), to show the cost of the thread
  hop; the 256 row is the issue's sync-body target, compared with raw commits/s and
  with the async-body row of the same run.
* **C = 256, plain ``def`` steps with ``blocking=False``**: the same ``def`` body declared
  non-blocking, so it runs on the event loop (no thread hop): the opt-in's rate.

Every runtime row also reports the CPU time of the process (``time.process_time()``,
all threads) over the measured phase per step: on a shared machine steps/s moves with
the load of others, CPU per step much less.

Each measurement warms up for ``--warmup`` seconds, then runs for ``--seconds`` or
``--max-calls`` invocations, whichever comes first (a task finishes the call it is in).
The whole set is repeated ``--runs`` times, interleaved, and the table shows the median
with [min-max]. Ratios are computed within each run against that run's baselines; the
median of the per-run ratios is shown.

Targets (defined for ``"fsync"``, on the 2-core machine of the issue): at least 15,000
steps/s with 256 concurrent invocations; with a plain ``def`` body at 256 concurrent, at
least 5x raw fsync'd commits/s and 0.8x the async-body rate; and a 10-step p50 within
1.5x of the 11-commit floor (``11 x`` the raw commit p50; the directly timed 11 commits are shown alongside).
For scale, DBOS on SQLite took 17-46 ms per 10-step workflow on this kind of machine,
and Restate with its Python SDK about 30 ms; the peer ratio is theirs / ours. Targets
are printed as PASS/FAIL lines; only a failed correctness check fails the script.

Run::

    .venv/bin/python bench/steps.py                        # fsync, trio, 5 runs x 2 s
    .venv/bin/python bench/steps.py --runs 3 --backend asyncio
    .venv/bin/python bench/steps.py --durability process --json out.json
    .venv/bin/python bench/steps.py --out bench/results   # also steps.md and .json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import process_time
from typing import TYPE_CHECKING, Any

import anyio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from bench._common import (
    HANG_MARGIN,
    Backend,
    Durability,
    add_output_args,
    add_run_args,
    in_fresh_dir,
    json_meta,
    machine_text,
    median,
    perf_counter,
    raw_label,
    recording_stdout,
    run_raw,
    save_results,
    summarize,
)
from bench._steps_report import (
    COMMITS_PER_INVOCATION,
    CONCURRENCY,
    EXPECTED,
    GROUP_SIZES,
    ON_LOOP_CONCURRENCY,
    STEPS,
    TEMP_PREFIX,
    THREAD_CONCURRENCY,
    BodyKind,
    Row,
    Sample,
    correctness,
    print_table,
    steps_rates,
    target_checks,
)

# --- the handler under test ----------------------------------------------------------------


async def step_fn(i: int) -> int:
    """A trivial async step: runs on the event loop, no thread hop."""
    return i


def step_fn_sync(i: int) -> int:
    """The same step as a plain function: ``ctx.run`` runs it on a step thread."""
    return i


class Steps(actors.Service):
    """Ten durable steps per invocation."""

    @actors.handler
    async def ten(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(STEPS):
            total += await ctx.run(f"step{i}", step_fn, i)
        return total

    @actors.handler
    async def ten_threaded(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(STEPS):
            total += await ctx.run(f"step{i}", step_fn_sync, i)
        return total

    @actors.handler
    async def ten_on_loop(self, ctx: actors.Context) -> int:
        total = 0
        for i in range(STEPS):
            total += await ctx.run(f"step{i}", step_fn_sync, i, blocking=False)
        return total


def make_sample(ops: int, seconds: float, latencies: list[float]) -> Sample:
    rate, p50_ms, p99_ms = summarize(ops, seconds, latencies)
    return Sample(
        rate=rate,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        ops=ops,
        seconds=seconds,
    )


# --- baselines: raw LMDB -------------------------------------------------------------------


def measure_raw(
    directory: Path,
    durability: Durability,
    *,
    per_txn: int,
    txns_per_unit: int,
    seconds: float,
    warmup: float,
    cap: int,
) -> Sample:
    """Raw LMDB with the store's environment settings, one thread (see
    ``bench._common.raw_phase``). The rate is units/s (a unit is one transaction unless
    ``txns_per_unit`` > 1); grouped rows report records/s instead (see ``run_all``)."""
    units, elapsed, latencies = run_raw(
        directory,
        durability,
        per_txn=per_txn,
        txns_per_unit=txns_per_unit,
        seconds=seconds,
        warmup=warmup,
        cap=cap,
    )
    sample = make_sample(units, elapsed, latencies)
    sample.commits_per_op = float(txns_per_unit)
    sample.batches_per_op = float(txns_per_unit)
    return sample


# --- the runtime ---------------------------------------------------------------------------


@dataclass
class Loop:
    """Invocations made by the tasks of one phase."""

    latencies: list[float] = field(default_factory=list)
    wrong: int = 0

    @property
    def calls(self) -> int:
        return len(self.latencies)


async def run_phase(
    rt: actors.Runtime,
    target: actors.Handler[Any, int],
    concurrency: int,
    seconds: float,
    max_calls: int,
) -> tuple[Loop, float]:
    """``concurrency`` tasks loop ``rt.call(target)`` until ``seconds`` have passed or
    ``max_calls`` calls are made in all; returns the calls and the elapsed time once
    every task has finished its last call."""
    loop = Loop()
    per_task = max(1, max_calls // concurrency)
    start = perf_counter()
    deadline = start + seconds

    async def task() -> None:
        record = loop.latencies.append
        call = rt.call
        made = 0
        while made < per_task and perf_counter() < deadline:
            t0 = perf_counter()
            result = await call(target)
            record(perf_counter() - t0)
            if result != EXPECTED:
                loop.wrong += 1
            made += 1

    with anyio.move_on_after(seconds + HANG_MARGIN) as scope:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(task)
    if scope.cancelled_caught:
        raise RuntimeError(f"{concurrency} callers did not finish within {HANG_MARGIN} s")
    return loop, perf_counter() - start


async def measure_runtime_async(
    directory: Path,
    durability: Durability,
    body: BodyKind,
    concurrency: int,
    seconds: float,
    warmup: float,
    cap: int,
) -> Sample:
    target = {"async": Steps.ten, "thread": Steps.ten_threaded, "loop": Steps.ten_on_loop}[body]
    async with actors.open_runtime(directory, [Steps], durability=durability) as rt:
        store = rt._store  # private: read only for its commit counters
        await run_phase(rt, target, concurrency, warmup, cap)
        before = store.statistics()
        cpu = process_time()
        loop, elapsed = await run_phase(rt, target, concurrency, seconds, cap)
        cpu = process_time() - cpu
        after = store.statistics()
    sample = make_sample(loop.calls, elapsed, loop.latencies)
    if loop.calls:
        sample.commits_per_op = (after.commits - before.commits) / loop.calls
        sample.batches_per_op = (after.batches - before.batches) / loop.calls
        sample.cpu_us_per_step = cpu / (loop.calls * STEPS) * 1e6
    sample.wrong = loop.wrong
    return sample


def measure_runtime(
    directory: Path,
    durability: Durability,
    backend: Backend,
    body: BodyKind,
    concurrency: int,
    seconds: float,
    warmup: float,
    cap: int,
) -> Sample:
    return anyio.run(
        measure_runtime_async,
        directory,
        durability,
        body,
        concurrency,
        seconds,
        warmup,
        cap,
        backend=backend,
    )


# --- runs and report -----------------------------------------------------------------------


def make_rows(durability: Durability) -> list[Row]:
    n = COMMITS_PER_INVOCATION
    return [
        Row("raw", raw_label(durability), "commits/s", steps=False),
        Row("raw11", f"raw LMDB, {n} sequential commits", f"{n}-commit/s", steps=False),
        *[
            Row(
                f"raw_grouped_{g}",
                f"raw LMDB, {g} records/commit, ceiling",
                "records/s",
                steps=False,
            )
            for g in GROUP_SIZES
        ],
        *[
            Row(f"c{c}", f"{c} concurrent x {STEPS} async steps", "invocations/s", steps=True)
            for c in CONCURRENCY
        ],
        *[
            Row(
                f"threaded{c}",
                f"{c} concurrent x {STEPS} def steps (thread)",
                "invocations/s",
                steps=True,
            )
            for c in THREAD_CONCURRENCY
        ],
        *[
            Row(
                f"on_loop{c}",
                f"{c} concurrent x {STEPS} def steps (loop)",
                "invocations/s",
                steps=True,
            )
            for c in ON_LOOP_CONCURRENCY
        ],
    ]


def run_all(args: argparse.Namespace) -> list[Row]:
    durability: Durability = args.durability
    backend: Backend = args.backend
    rows = {row.key: row for row in make_rows(durability)}
    secs, warm, cap = args.seconds, args.warmup, args.max_calls

    def raw(per_txn: int, txns_per_unit: int) -> Callable[[Path], Sample]:
        return lambda d: measure_raw(
            d,
            durability,
            per_txn=per_txn,
            txns_per_unit=txns_per_unit,
            seconds=secs,
            warmup=warm,
            cap=cap * COMMITS_PER_INVOCATION,
        )

    def runtime(body: BodyKind, concurrency: int) -> Callable[[Path], Sample]:
        return lambda d: measure_runtime(d, durability, backend, body, concurrency, secs, warm, cap)

    for run in range(args.runs):
        print(f"  run {run + 1}/{args.runs} ...", end="", flush=True, file=sys.stderr)
        base = in_fresh_dir(args.dir, TEMP_PREFIX, raw(1, 1))
        measured: list[tuple[str, Sample]] = [
            ("raw", base),
            ("raw11", in_fresh_dir(args.dir, TEMP_PREFIX, raw(1, COMMITS_PER_INVOCATION))),
        ]
        for group in GROUP_SIZES:
            grouped = in_fresh_dir(args.dir, TEMP_PREFIX, raw(group, 1))
            grouped.rate *= group  # records/s; latency stays per transaction
            grouped.ops *= group
            grouped.commits_per_op = 1 / group
            grouped.batches_per_op = 1.0
            measured.append((f"raw_grouped_{group}", grouped))
        for concurrency in CONCURRENCY:
            measured.append(
                (
                    f"c{concurrency}",
                    in_fresh_dir(args.dir, TEMP_PREFIX, runtime("async", concurrency)),
                )
            )
        for concurrency in THREAD_CONCURRENCY:
            measured.append(
                (
                    f"threaded{concurrency}",
                    in_fresh_dir(args.dir, TEMP_PREFIX, runtime("thread", concurrency)),
                )
            )
        for concurrency in ON_LOOP_CONCURRENCY:
            measured.append(
                (
                    f"on_loop{concurrency}",
                    in_fresh_dir(args.dir, TEMP_PREFIX, runtime("loop", concurrency)),
                )
            )
        floor_ms = base.p50_ms * COMMITS_PER_INVOCATION
        direct_ms = measured[1][1].p50_ms
        for key, sample in measured:
            row = rows[key]
            row.samples.append(sample)
            # Store batches (raw records) per second against raw commits per second.
            row.raw_ratios.append(sample.rate * sample.batches_per_op / base.rate)
            row.p50_ratios.append(sample.p50_ms / floor_ms)
            row.p50_direct_ratios.append(sample.p50_ms / direct_ms)
        print(" done", file=sys.stderr)
    return list(rows.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Durable ctx.run steps/s and latency of actors against raw LMDB baselines."
    )
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    add_run_args(parser)
    parser.add_argument(
        "--max-calls",
        type=int,
        default=200_000,
        help="invocations per measurement at most (200,000); raw: 11x this in records",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    floor = max(*CONCURRENCY, *GROUP_SIZES)
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0 or args.max_calls < floor:
        parser.error(f"need --runs >= 1, --seconds > 0, --warmup >= 0, --max-calls >= {floor}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with recording_stdout() as printed:
        print(
            f"bench/steps.py: {args.runs} runs x {args.seconds:g} s per measurement, "
            f"{STEPS} ctx.run steps per invocation, durability={args.durability}, "
            f"backend={args.backend}; {machine_text(args.dir)}",
            flush=True,
        )
        rows = run_all(args)
        print_table(args, rows)
        ok = correctness(rows)
        checks = target_checks(args, rows)
    meta = json_meta(
        sys.argv[1:],
        durability=args.durability,
        backend=args.backend,
        steps_per_invocation=STEPS,
    )
    result = {
        "meta": meta,
        "rows": [
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "rate_median": median([s.rate for s in row.samples]),
                "steps_per_s_median": median(steps_rates(row)) if row.steps else None,
                "p50_ms_median": median([s.p50_ms for s in row.samples]),
                "p99_ms_median": median([s.p99_ms for s in row.samples]),
                "commits_per_op_median": median([s.commits_per_op for s in row.samples]),
                "batches_per_op_median": median([s.batches_per_op for s in row.samples]),
                "cpu_us_per_step_median": median([s.cpu_us_per_step for s in row.samples]),
                "raw_ratio_median": median(row.raw_ratios),
                "p50_ratio_median": median(row.p50_ratios),
                "p50_direct_ratio_median": median(row.p50_direct_ratios),
                "samples": [asdict(s) for s in row.samples],
            }
            for row in rows
        ],
        "checks": checks,
        "correct": ok,
    }
    save_results(args, "steps", printed.getvalue(), result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
