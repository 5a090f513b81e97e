"""The report of ``bench/workflows.py``: one run's sample, the table of medians with
[min-max], the targets (RSS with workflows parked, resuming sleepers after a restart) and
the correctness line.

Split from ``bench/workflows.py`` (which runs the child processes that measure) so that
each reads in one sitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bench._common import median, print_checks, raw_label

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from bench._common import Durability


SUBMITTERS: Final = 256  # tasks submitting (and resolving) concurrently

# Targets of the issue ("fsync").
RSS_TARGET_MB: Final = 300.0  # with PARKED_TARGET workflows parked
PARKED_TARGET: Final = 100_000
RESUME_TARGET_S: Final = 10.0  # for RESUME_COUNT sleeping workflows after a restart
RESUME_COUNT: Final = 10_000


@dataclass
class Sample:
    """One run at one durability."""

    raw_commits_per_s: float
    rss_empty_mb: float
    rss_parked_mb: float
    hwm_parked_mb: float
    anon_parked_mb: float
    file_parked_mb: float
    data_mb: float
    bytes_per_parked: float
    submit_s: float
    park_s: float
    resolve_s: float
    hwm_end_mb: float
    sleepers_submit_park_s: float
    restart_wait_s: float
    open_s: float
    resume_s: float
    parked_count: int
    wrong: int


def spread(values: Sequence[float], fmt: str) -> str:
    return f"{median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def print_table(args: argparse.Namespace, durability: Durability, samples: list[Sample]) -> None:
    def col(get: Callable[[Sample], float], fmt: str = ",.1f") -> str:
        return spread([get(s) for s in samples], fmt)

    n, m = args.parked, args.sleeping
    raw = [s.raw_commits_per_s for s in samples]
    rows: list[tuple[str, str, str]] = [
        (raw_label(durability), "commits/s", col(lambda s: s.raw_commits_per_s, ",.0f")),
        ("RSS, runtime open, nothing submitted", "MB", col(lambda s: s.rss_empty_mb)),
        (f"RSS, {n:,} workflows parked (VmRSS)", "MB", col(lambda s: s.rss_parked_mb)),
        ("  of which anonymous (RssAnon)", "MB", col(lambda s: s.anon_parked_mb)),
        ("  of which file-backed, LMDB map (RssFile)", "MB", col(lambda s: s.file_parked_mb)),
        ("  peak so far (VmHWM)", "MB", col(lambda s: s.hwm_parked_mb)),
        ("  LMDB data file", "MB", col(lambda s: s.data_mb)),
        (
            "RSS per parked workflow, over the empty",
            "bytes",
            col(lambda s: s.bytes_per_parked, ",.0f"),
        ),
        (f"submit {n:,} (rt.send, {SUBMITTERS} tasks)", "s", col(lambda s: s.submit_s, ".2f")),
        ("  then until all parked", "s", col(lambda s: s.park_s, ".2f")),
        (f"resolve {n:,} and get every result", "s", col(lambda s: s.resolve_s, ".2f")),
        ("  rate", "workflows/s", col(lambda s: n / s.resolve_s, ",.0f")),
        (
            "  rate / raw commits/s",
            "ratio",
            spread([n / s.resolve_s / r for s, r in zip(samples, raw, strict=True)], ".3f"),
        ),
        ("  peak RSS at the end (VmHWM)", "MB", col(lambda s: s.hwm_end_mb)),
        (
            f"{m:,} sleepers: submit until all parked",
            "s",
            col(lambda s: s.sleepers_submit_park_s, ".2f"),
        ),
        ("  process down until all due", "s", col(lambda s: s.restart_wait_s, ".2f")),
        (f"restart: open_runtime (recovers {m:,})", "s", col(lambda s: s.open_s, ".3f")),
        (f"restart: until all {m:,} results are in", "s", col(lambda s: s.resume_s, ".3f")),
        ("  rate", "workflows/s", col(lambda s: m / s.resume_s, ",.0f")),
        (
            "  rate / raw commits/s",
            "ratio",
            spread([m / s.resume_s / r for s, r in zip(samples, raw, strict=True)], ".3f"),
        ),
    ]
    print()
    print(
        f"durability={durability!r}, median [min-max] of {len(samples)} runs "
        f"(ratios within each run)"
    )
    header = f"{'measure':<44} | {'unit':<11} | median [min-max]"
    print(header)
    print("-" * len(header))
    for label, unit, text in rows:
        print(f"{label:<44} | {unit:<11} | {text}")


def target_checks(
    args: argparse.Namespace, durability: Durability, samples: list[Sample]
) -> list[dict[str, object]]:
    rss = median([s.rss_parked_mb for s in samples])
    resume = median([s.resume_s for s in samples])
    raw = median([s.raw_commits_per_s for s in samples])
    resolve = median([s.resolve_s for s in samples])
    scale = "" if args.parked == PARKED_TARGET else f" (target is for {PARKED_TARGET:,})"
    resume_scale = "" if args.sleeping == RESUME_COUNT else f" (target is for {RESUME_COUNT:,})"
    checks: list[dict[str, object]] = [
        {
            "name": "rss_parked_mb",
            "value": rss,
            "target": RSS_TARGET_MB,
            "passed": rss < RSS_TARGET_MB,
            "text": (
                f"{args.parked:,} parked workflows: RSS {rss:,.1f} MB (target < "
                f"{RSS_TARGET_MB:g} MB{scale}: {rss / RSS_TARGET_MB:.2f}x of target); resolving "
                f"all took {resolve:.2f} s ({args.parked / resolve:,.0f}/s = "
                f"{args.parked / resolve / raw:.3f}x raw commits/s)"
            ),
        },
        {
            "name": "resume_s",
            "value": resume,
            "target": RESUME_TARGET_S,
            "passed": resume <= RESUME_TARGET_S,
            "text": (
                f"{args.sleeping:,} sleeping workflows resumed after a restart in "
                f"{resume:.3f} s (target <= {RESUME_TARGET_S:g} s{resume_scale}: "
                f"{resume / RESUME_TARGET_S:.2f}x of target; {args.sleeping / resume:,.0f}/s = "
                f"{args.sleeping / resume / raw:.3f}x raw commits/s)"
            ),
        },
    ]
    print_checks(checks, durability)
    return checks


def correctness(durability: Durability, args: argparse.Namespace, samples: list[Sample]) -> bool:
    wrong = sum(s.wrong for s in samples)
    unparked = sum(1 for s in samples if s.parked_count != args.parked)
    ok = wrong == 0 and unparked == 0
    verdict = "OK  " if ok else "FAIL"
    print(
        f"{verdict}  {durability}: {wrong} wrong results; {unparked} runs where not all "
        f"{args.parked:,} were parked at once, over {len(samples)} runs"
    )
    return ok
