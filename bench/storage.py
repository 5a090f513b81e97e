"""Group-commit benchmark: durable appends/s and latency of ``actors.storage``.

What is measured, all in one run so that every figure has a baseline taken on the same
machine minutes apart (this is meant for shared, noisy machines):

* **raw LMDB, 1 record/commit** (the baseline): one thread, one ``sync=True`` write
  transaction per ~100-byte record, sequentially. Commits/s and per-commit p50/p99.
  Concurrency would not help it: LMDB has one writer at a time.
* **raw LMDB, 64 records/commit** (a ceiling, for context): the same thread committing
  64 records per synced transaction, keyed like the 64-writer run below (one record
  under each of 64 writers' key ranges per transaction, so each commit dirties ~64 leaf
  pages, as a group commit of 64 writers does). Records/s; latency is per transaction.
* **store, N writers** for N in 1, 16, 64: ``Store.open(durability=...)`` in
  ``commit_mode="thread"`` under ``trio.run``; N tasks each loop building a
  ``WriteBatch`` with one ~100-byte record under a fresh key and ``await
  store.commit(batch)``. Appends/s, p50/p99 of the ``commit`` await, and the mean number
  of batches the writer thread grouped into one commit (from ``store.statistics()``).

Every measurement runs in a fresh temporary directory, after a short warmup, for
``--seconds`` or ``--max-records`` records, whichever comes first. The whole set is
repeated ``--runs`` times (interleaved, so slow spells hit every configuration alike);
the table shows the median with [min-max]. Ratios are computed within each run, against
that run's raw baseline, and the median of those per-run ratios is shown.

With ``--durability process`` the raw baselines use the same durability
(``sync=False``): like for like. The issue's targets are defined for ``"fsync"``:

* 64 writers: at least 10x the raw one-commit-per-record rate;
* 1 writer: p50 latency within 1.5x of the p50 of one raw commit.

They are printed as PASS/FAIL lines; this script never fails on them (not a timed test).

Run::

    .venv/bin/python bench/storage.py                  # fsync, 5 runs of 2 s each
    .venv/bin/python bench/storage.py --runs 3 --both  # fsync and process
    .venv/bin/python bench/storage.py --json out.json --dir /var/tmp
    .venv/bin/python bench/storage.py --out bench/results   # also storage.md and .json
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from actors.storage import Store, Table, WriteBatch, encode_key

if TYPE_CHECKING:
    from collections.abc import Sequence

# Run as ``python bench/storage.py``: make ``bench._common`` importable.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench._common import (
    HANG_MARGIN,
    MAP_SIZE,
    VALUE,
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

WRITER_COUNTS: Final = (1, 16, 64)
GROUP_SIZE: Final = 64  # records per transaction in the grouped raw ceiling
P50_TARGET: Final = 1.5  # 1 writer: p50 at most this times the raw commit p50
RATE_TARGET: Final = 10.0  # 64 writers: at least this times the raw commit rate
TEMP_PREFIX: Final = "bench-storage-"


@dataclass
class Sample:
    """One measurement of one configuration."""

    rate: float  # records (appends) per second
    p50_ms: float
    p99_ms: float
    per_commit: float  # records (batches) per LMDB commit
    records: int
    seconds: float


@dataclass
class Row:
    """One configuration across runs."""

    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # rate / raw rate, per run
    p50_ratios: list[float] = field(default_factory=list)  # p50 / raw p50, per run


def make_sample(records: int, seconds: float, latencies: list[float], commits: int) -> Sample:
    rate, p50_ms, p99_ms = summarize(records, seconds, latencies)
    return Sample(
        rate=rate,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        per_commit=records / commits if commits else float("nan"),
        records=records,
        seconds=seconds,
    )


# --- raw LMDB --------------------------------------------------------------------------


def measure_raw(
    directory: Path, durability: Durability, per_txn: int, seconds: float, warmup: float, cap: int
) -> Sample:
    """Raw LMDB with the store's environment settings, one thread, ``per_txn`` records per
    transaction keyed like as many store writers (see ``bench._common.raw_phase``)."""
    txns, elapsed, latencies = run_raw(
        directory, durability, per_txn=per_txn, seconds=seconds, warmup=warmup, cap=cap
    )
    return make_sample(txns * per_txn, elapsed, latencies, max(1, txns))


# --- the store ---------------------------------------------------------------------------


async def store_phase(
    store: Store,
    writers: int,
    *,
    seconds: float,
    max_records: int,
    next_index: list[int],
) -> tuple[int, float, list[float]]:
    """``writers`` tasks append one record per commit until ``seconds`` have passed or
    ``max_records`` are written in all. Returns (records, elapsed, commit latencies)."""
    latencies: list[float] = []
    per_writer = max(1, max_records // writers)
    start = perf_counter()
    deadline = start + seconds

    async def writer(w: int) -> None:
        commit = store.commit
        record = latencies.append
        i = next_index[w]
        end = i + per_writer
        while i < end and perf_counter() < deadline:
            batch = WriteBatch()
            batch.put(Table.JOURNAL, encode_key(("bench", w, i)), VALUE)
            t0 = perf_counter()
            await commit(batch)
            record(perf_counter() - t0)
            i += 1
        next_index[w] = i

    with trio.move_on_after(seconds + HANG_MARGIN) as scope:
        async with trio.open_nursery() as nursery:
            for w in range(writers):
                nursery.start_soon(writer, w)
    if scope.cancelled_caught:
        raise RuntimeError(f"{writers} writers did not finish within {HANG_MARGIN} s of the end")
    return len(latencies), perf_counter() - start, latencies


async def measure_store_async(
    directory: Path,
    durability: Durability,
    writers: int,
    seconds: float,
    warmup: float,
    cap: int,
) -> Sample:
    store = Store.open(directory, durability=durability, commit_mode="thread", map_size=MAP_SIZE)
    try:
        next_index = [0] * writers
        await store_phase(store, writers, seconds=warmup, max_records=cap, next_index=next_index)
        before = store.statistics()
        records, elapsed, latencies = await store_phase(
            store, writers, seconds=seconds, max_records=cap, next_index=next_index
        )
        after = store.statistics()
    finally:
        await store.aclose()
    if after.batches - before.batches != records:
        raise RuntimeError(f"store counted {after.batches - before.batches} batches, not {records}")
    return make_sample(records, elapsed, latencies, after.commits - before.commits)


def measure_store(
    directory: Path, durability: Durability, writers: int, seconds: float, warmup: float, cap: int
) -> Sample:
    return trio.run(measure_store_async, directory, durability, writers, seconds, warmup, cap)


# --- runs and report -----------------------------------------------------------------------


def run_durability(durability: Durability, args: argparse.Namespace) -> list[Row]:
    raw = Row("raw", raw_label(durability))
    grouped = Row("raw_grouped", f"raw LMDB, {GROUP_SIZE} records/commit, ceiling")
    stores = [
        Row(f"store_{n}", f"store {durability}, {n} writer{'s' if n > 1 else ''}")
        for n in WRITER_COUNTS
    ]
    secs, warm, cap = args.seconds, args.warmup, args.max_records
    for run in range(args.runs):
        print(f"  {durability} run {run + 1}/{args.runs} ...", end="", flush=True, file=sys.stderr)
        base = in_fresh_dir(
            args.dir, TEMP_PREFIX, lambda d: measure_raw(d, durability, 1, secs, warm, cap)
        )
        raw.samples.append(base)
        raw.ratios.append(1.0)
        raw.p50_ratios.append(1.0)
        for row, measure in [
            (
                grouped,
                lambda d: measure_raw(d, durability, GROUP_SIZE, secs, warm, cap),
            ),
            *[
                (
                    row,
                    lambda d, n=n: measure_store(d, durability, n, secs, warm, cap),
                )
                for row, n in zip(stores, WRITER_COUNTS, strict=True)
            ],
        ]:
            sample = in_fresh_dir(args.dir, TEMP_PREFIX, measure)
            row.samples.append(sample)
            row.ratios.append(sample.rate / base.rate)
            row.p50_ratios.append(sample.p50_ms / base.p50_ms)
        print(" done", file=sys.stderr)
    return [raw, grouped, *stores]


def print_table(durability: Durability, rows: list[Row], runs: int) -> None:
    header = (
        f"{'config':<40} | {'appends/s median [min-max]':<34} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'batches/commit':>14} | ratio vs raw"
    )
    print()
    print(f"durability={durability!r}, median of {runs} runs (ratios: median of per-run ratios)")
    print(header)
    print("-" * len(header))
    for row in rows:
        samples = row.samples
        ratio = f"{median(row.ratios):6.2f}x"
        if row.key == "store_1":
            ratio += f" (p50 {median(row.p50_ratios):.2f}x)"
        print(
            f"{row.label:<40} | {fmt_rate([s.rate for s in samples]):<34} | "
            f"{median([s.p50_ms for s in samples]):7.3f} | "
            f"{median([s.p99_ms for s in samples]):7.3f} | "
            f"{median([s.per_commit for s in samples]):14.1f} | {ratio}"
        )


def target_checks(durability: Durability, rows: list[Row]) -> list[dict[str, object]]:
    by_key = {row.key: row for row in rows}
    raw, one, many = by_key["raw"], by_key["store_1"], by_key[f"store_{WRITER_COUNTS[-1]}"]
    rate_ratio = median(many.ratios)
    p50_ratio = median(one.p50_ratios)
    one_p50 = median([s.p50_ms for s in one.samples])
    raw_p50 = median([s.p50_ms for s in raw.samples])
    checks: list[dict[str, object]] = [
        {
            "name": "rate_64_writers",
            "ratio": rate_ratio,
            "passed": rate_ratio >= RATE_TARGET,
            "text": f"{WRITER_COUNTS[-1]} writers: {rate_ratio:.1f}x raw one-commit-per-record "
            f"rate (target >= {RATE_TARGET:g}x)",
        },
        {
            "name": "p50_1_writer",
            "ratio": p50_ratio,
            "passed": p50_ratio <= P50_TARGET,
            "text": f"1 writer: p50 {one_p50:.3f} ms vs raw commit p50 {raw_p50:.3f} ms = "
            f"{p50_ratio:.2f}x (target <= {P50_TARGET:g}x)",
        },
    ]
    print_checks(checks, durability)
    grouped = by_key["raw_grouped"]
    share = median([a / b for a, b in zip(many.ratios, grouped.ratios, strict=True)])
    print(
        f"info  {WRITER_COUNTS[-1]} writers reach {share:.0%} of the raw "
        f"{GROUP_SIZE}-records/commit ceiling (the same keys, committed with no Python around)"
    )
    return checks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Durable appends/s and latency of actors.storage against raw LMDB."
    )
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--both", action="store_true", help="run fsync and process")
    add_run_args(parser)
    parser.add_argument(
        "--max-records", type=int, default=1_000_000, help="cap per measurement (1,000,000)"
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0 or args.max_records < GROUP_SIZE:
        parser.error("need --runs >= 1, --seconds > 0, --warmup >= 0, --max-records >= 64")
    return args


def run_and_print(args: argparse.Namespace) -> dict[str, object]:
    modes: list[Durability] = ["fsync", "process"] if args.both else [args.durability]
    print(
        f"bench/storage.py: {args.runs} runs x {args.seconds:g} s per measurement, "
        f"{len(VALUE)}-byte records; {machine_text(args.dir, with_trio=False)}",
        flush=True,
    )
    results: dict[str, object] = {}
    for durability in modes:
        rows = run_durability(durability, args)
        print_table(durability, rows, args.runs)
        checks = target_checks(durability, rows)
        sys.stdout.flush()
        results[durability] = {
            "rows": [
                {
                    "key": row.key,
                    "label": row.label,
                    "rate_median": median([s.rate for s in row.samples]),
                    "p50_ms_median": median([s.p50_ms for s in row.samples]),
                    "p99_ms_median": median([s.p99_ms for s in row.samples]),
                    "ratio_median": median(row.ratios),
                    "p50_ratio_median": median(row.p50_ratios),
                    "samples": [asdict(s) for s in row.samples],
                }
                for row in rows
            ],
            "checks": checks,
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with recording_stdout() as printed:
        results = run_and_print(args)
    save_results(args, "storage", printed.getvalue(), {"meta": json_meta(sys.argv[1:]), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
