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
from typing import TYPE_CHECKING, Any, Final, Literal

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
    fmt_rate,
    in_fresh_dir,
    json_meta,
    machine_text,
    median,
    perf_counter,
    print_checks,
    raw_label,
    recording_stdout,
    run_raw,
    save_results,
    summarize,
)

STEPS: Final = 10  # ctx.run steps per invocation
BodyKind = Literal["async", "thread", "loop"]  # how a step's body runs
COMMITS_PER_INVOCATION: Final = STEPS + 1  # batches one invocation writes in sequence
EXPECTED: Final = sum(range(STEPS))  # what every invocation returns
CONCURRENCY: Final = (1, 16, 256)
THREAD_CONCURRENCY: Final = (16, 256)  # the plain-def rows
ON_LOOP_CONCURRENCY: Final = (256,)  # the plain-def rows with blocking=False
GROUP_SIZES: Final = (16, 256)  # raw grouped ceilings
TEMP_PREFIX: Final = "bench-steps-"

# Targets of the issue ("fsync", 2-core machine) and the peer figures for scale.
RATE_TARGET: Final = 15_000.0  # steps/s with 256 concurrent invocations
RATE_CONCURRENCY: Final = 256
P50_TARGET: Final = 1.5  # 10-step p50 at most this times the 11-commit floor
SYNC_RAW_TARGET: Final = 5.0  # plain-def steps/s at 256 concurrent over raw commits/s
SYNC_ASYNC_TARGET: Final = 0.8  # plain-def steps/s at 256 over async-body steps/s
DBOS_MS: Final = (17.0, 46.0)  # DBOS on SQLite, ms per 10-step workflow
RESTATE_MS: Final = 30.0  # Restate server + Python SDK, ms per 10-step invocation


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


# --- samples and rows ----------------------------------------------------------------------


@dataclass
class Sample:
    """One measurement of one configuration."""

    rate: float  # operations (invocations, commits, units, records) per second
    p50_ms: float
    p99_ms: float
    ops: int
    seconds: float
    commits_per_op: float = float("nan")  # LMDB commits per operation
    batches_per_op: float = float("nan")  # store batches per operation
    wrong: int = 0  # invocations that did not return EXPECTED
    cpu_us_per_step: float = float("nan")  # process CPU time (all threads) per step


@dataclass
class Row:
    """One configuration across runs."""

    key: str
    label: str
    unit: str
    steps: bool  # an invocation row: rate x STEPS is steps/s
    samples: list[Sample] = field(default_factory=list)
    raw_ratios: list[float] = field(default_factory=list)  # batches/s / raw commits/s
    p50_ratios: list[float] = field(default_factory=list)  # p50 / derived 11-commit floor
    p50_direct_ratios: list[float] = field(default_factory=list)  # p50 / timed 11 commits


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


def steps_rates(row: Row) -> list[float]:
    return [s.rate * STEPS for s in row.samples]


def print_table(args: argparse.Namespace, rows: list[Row]) -> None:
    n = COMMITS_PER_INVOCATION
    header = (
        f"{'config':<38} | {'unit':<14} | {'rate median [min-max]':<28} | "
        f"{'steps/s median [min-max]':<28} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'commits/op':>10} | {'batches/op':>10} | {'CPU us/step':>11} | {'vs raw':>7} | "
        f"p50 vs {n}x raw"
    )
    print()
    print(
        f"durability={args.durability!r}, backend={args.backend!r}, median of {args.runs} runs "
        f"(ratios: median of per-run ratios; vs raw = store batches (raw records) per second "
        f"/ raw commits per second; p50 vs {n}x raw = p50 / ({n} x raw commit p50))"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        samples = row.samples
        steps = fmt_rate(steps_rates(row)) if row.steps else ""
        # A grouped transaction is not a unit of a 10-step invocation: no floor ratio.
        floor = "" if row.key.startswith("raw_grouped") else f"{median(row.p50_ratios):6.2f}x"
        cpu = f"{median([s.cpu_us_per_step for s in samples]):.1f}" if row.steps else ""
        print(
            f"{row.label:<38} | {row.unit:<14} | {fmt_rate([s.rate for s in samples]):<28} | "
            f"{steps:<28} | "
            f"{median([s.p50_ms for s in samples]):7.3f} | "
            f"{median([s.p99_ms for s in samples]):7.3f} | "
            f"{median([s.commits_per_op for s in samples]):10.3f} | "
            f"{median([s.batches_per_op for s in samples]):10.2f} | "
            f"{cpu:>11} | "
            f"{median(row.raw_ratios):6.2f}x | {floor}".rstrip()
        )


def correctness(rows: list[Row]) -> bool:
    print()
    all_ok = True
    for row in rows:
        if not row.steps:
            continue
        calls = sum(s.ops for s in row.samples)
        wrong = sum(s.wrong for s in row.samples)
        all_ok = all_ok and wrong == 0
        verdict = "OK  " if wrong == 0 else "FAIL"
        print(
            f"{verdict}  {row.label}: {calls - wrong:,}/{calls:,} measured invocations "
            f"returned {EXPECTED} over {len(row.samples)} runs"
        )
    return all_ok


def sync_checks(by_key: dict[str, Row]) -> list[dict[str, object]]:
    """The sync-body targets: plain ``def`` steps at 256 concurrent against raw commits/s
    and against the async-body row, each the median of the per-run ratios."""
    concurrency = RATE_CONCURRENCY
    raw, threaded = by_key["raw"], by_key[f"threaded{concurrency}"]
    same = by_key[f"c{concurrency}"]
    steps = median(steps_rates(threaded))
    cpu = median([s.cpu_us_per_step for s in threaded.samples])
    async_cpu = median([s.cpu_us_per_step for s in same.samples])
    runs = list(zip(raw.samples, threaded.samples, same.samples, strict=True))
    vs_raw = median([t.rate * STEPS / r.rate for r, t, _ in runs])
    vs_async = median([t.rate / a.rate for _, t, a in runs])
    return [
        {
            "name": f"sync_steps_vs_raw_{concurrency}",
            "value": steps,
            "target": SYNC_RAW_TARGET,
            "ratio": vs_raw,
            "cpu_us_per_step": cpu,
            "passed": vs_raw >= SYNC_RAW_TARGET,
            "text": (
                f"{concurrency} concurrent invocations, plain def body: {steps:,.0f} steps/s "
                f"= {vs_raw:.2f}x raw fsync'd commits/s (target >= {SYNC_RAW_TARGET:g}x); "
                f"CPU {cpu:.1f} us/step"
            ),
        },
        {
            "name": f"sync_steps_vs_async_{concurrency}",
            "value": steps,
            "target": SYNC_ASYNC_TARGET,
            "ratio": vs_async,
            "cpu_us_per_step": cpu,
            "async_cpu_us_per_step": async_cpu,
            "passed": vs_async >= SYNC_ASYNC_TARGET,
            "text": (
                f"{concurrency} concurrent invocations, plain def body: {vs_async:.2f}x the "
                f"async-body steps/s of the same runs (target >= {SYNC_ASYNC_TARGET:g}x); "
                f"CPU {cpu:.1f} vs {async_cpu:.1f} us/step"
            ),
        },
    ]


def target_checks(args: argparse.Namespace, rows: list[Row]) -> list[dict[str, object]]:
    by_key = {row.key: row for row in rows}
    n = COMMITS_PER_INVOCATION
    raw, raw11, one = by_key["raw"], by_key["raw11"], by_key["c1"]
    many = by_key[f"c{RATE_CONCURRENCY}"]

    steps = median(steps_rates(many))
    raw_p50 = median([s.p50_ms for s in raw.samples])
    direct_p50 = median([s.p50_ms for s in raw11.samples])
    one_p50 = median([s.p50_ms for s in one.samples])
    one_p99 = median([s.p99_ms for s in one.samples])
    p50_ratio = median(one.p50_ratios)
    direct_ratio = median(one.p50_direct_ratios)
    direct_vs_derived = median(raw11.p50_ratios)
    rate_text = (
        f"{RATE_CONCURRENCY} concurrent invocations: {steps:,.0f} steps/s "
        f"({steps / STEPS:,.0f} invocations/s; target >= {RATE_TARGET:,.0f}: "
        f"{steps / RATE_TARGET:.2f}x of target; "
        f"{median([s.commits_per_op for s in many.samples]):.3f} commits/invocation, "
        f"{median(many.raw_ratios):.2f}x raw commit rate in batches)"
    )
    p50_text = (
        f"{STEPS}-step invocation: p50 {one_p50:.3f} ms (p99 {one_p99:.3f}) vs {n}-commit floor "
        f"{n} x {raw_p50:.3f} = {n * raw_p50:.3f} ms -> {p50_ratio:.2f}x (target <= "
        f"{P50_TARGET:g}x); vs {n} commits timed as one unit, p50 {direct_p50:.3f} ms -> "
        f"{direct_ratio:.2f}x"
    )
    checks: list[dict[str, object]] = [
        {
            "name": f"steps_per_s_{RATE_CONCURRENCY}",
            "value": steps,
            "target": RATE_TARGET,
            "ratio": steps / RATE_TARGET,
            "passed": steps >= RATE_TARGET,
            "text": rate_text,
        },
        *sync_checks(by_key),
        {
            "name": f"p50_{STEPS}_steps",
            "value": one_p50,
            "target": P50_TARGET,
            "floor_ms": n * raw_p50,
            "ratio": p50_ratio,
            "direct_floor_ms": direct_p50,
            "direct_ratio": direct_ratio,
            "passed": p50_ratio <= P50_TARGET,
            "text": p50_text,
        },
    ]
    applies = args.durability == "fsync"
    print_checks(checks, args.durability)
    if applies and (p50_ratio <= P50_TARGET) != (direct_ratio <= P50_TARGET):
        verdict = "pass" if direct_ratio <= P50_TARGET else "fail"
        print(f"note  against the directly timed {n} commits the latency target would {verdict}")
    print(
        f"info  {n} commits timed as one unit: p50 {direct_p50:.3f} ms = {direct_vs_derived:.2f}x "
        f"the derived floor ({n} x one commit's p50)"
    )
    low, high = DBOS_MS
    print(
        f"info  peers, {STEPS}-step latency: DBOS on SQLite {low:g}-{high:g} ms -> "
        f"{low / one_p50:.1f}-{high / one_p50:.1f}x ours; Restate + Python SDK "
        f"~{RESTATE_MS:g} ms -> {RESTATE_MS / one_p50:.1f}x ours (p50 {one_p50:.3f} ms)"
    )
    for concurrency in THREAD_CONCURRENCY:
        threaded, same = by_key[f"threaded{concurrency}"], by_key[f"c{concurrency}"]
        pairs = list(zip(threaded.samples, same.samples, strict=True))
        slow = median([t.p50_ms / s.p50_ms for t, s in pairs])
        speed = median([t.rate / s.rate for t, s in pairs])
        cpu = median([t.cpu_us_per_step - s.cpu_us_per_step for t, s in pairs])
        print(
            f"info  plain def steps (step threads) at {concurrency} concurrent: "
            f"{median(steps_rates(threaded)):,.0f} steps/s = {speed:.2f}x the async-step rate, "
            f"p50 {slow:.2f}x, CPU {median([t.cpu_us_per_step for t, _ in pairs]):.1f} us/step "
            f"= {cpu:+.1f} us/step over the async body"
        )
    for concurrency in ON_LOOP_CONCURRENCY:
        on_loop, same = by_key[f"on_loop{concurrency}"], by_key[f"c{concurrency}"]
        runs = list(zip(raw.samples, on_loop.samples, same.samples, strict=True))
        print(
            f"info  plain def steps with blocking=False (on the loop) at {concurrency} "
            f"concurrent: {median(steps_rates(on_loop)):,.0f} steps/s = "
            f"{median([o.rate * STEPS / r.rate for r, o, _ in runs]):.2f}x raw commits/s, "
            f"{median([o.rate / a.rate for _, o, a in runs]):.2f}x the async-step rate, CPU "
            f"{median([o.cpu_us_per_step for o in on_loop.samples]):.1f} us/step"
        )
    for group in GROUP_SIZES:
        if group not in CONCURRENCY:
            continue
        grouped, runtime = by_key[f"raw_grouped_{group}"], by_key[f"c{group}"]
        share = median([a / b for a, b in zip(runtime.raw_ratios, grouped.raw_ratios, strict=True)])
        print(
            f"info  {group} concurrent invocations write store batches at {share:.0%} of the raw "
            f"{group}-records/commit ceiling's record rate"
        )
    return checks


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
