"""What ``bench/steps.py`` measures and how it reports it: the workload's constants and
targets, a run's samples and rows, the table, the correctness lines and the target checks.

Split from ``bench/steps.py`` (which runs the measurements) so that each reads in one
sitting; ``bench/steps.py``'s docstring says what every row is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from bench._common import fmt_rate, median, print_checks

if TYPE_CHECKING:
    import argparse


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


# --- samples and rows --------------------------------------------------------------------


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


# --- the report -------------------------------------------------------------------------


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
