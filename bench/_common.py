"""What the benchmark scripts share: the raw LMDB baselines, summary statistics, temp
directories, the machine header, the common options and the report helpers.

The scripts import this as ``bench._common``; run as ``python bench/X.py`` they put the
repository root on ``sys.path`` first.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import lmdb
import trio

from actors.storage import encode_key

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence

Durability = Literal["fsync", "process"]
Backend = Literal["trio", "asyncio"]

VALUE: Final = bytes(range(100))  # ~100-byte raw record
MAP_SIZE: Final = 1 << 30  # big enough that no measurement grows the map
HANG_MARGIN: Final = 120.0  # seconds past the deadline before a phase counts as hung

perf_counter = time.perf_counter

T = TypeVar("T")


# --- summary statistics --------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(ops: int, seconds: float, latencies: list[float]) -> tuple[float, float, float]:
    """(rate, p50 ms, p99 ms) of ``ops`` operations in ``seconds``; sorts ``latencies``."""
    latencies.sort()
    return (
        ops / seconds if seconds > 0 else 0.0,
        percentile(latencies, 0.50) * 1e3,
        percentile(latencies, 0.99) * 1e3,
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_rate(values: Sequence[float]) -> str:
    return f"{median(values):>9,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


# --- baselines: raw LMDB -------------------------------------------------------------------


def raw_label(durability: Durability) -> str:
    """The row label of the one-record-per-commit baseline."""
    sync = "sync=True" if durability == "fsync" else "sync=False"
    return f"raw LMDB, 1 record/commit ({sync})"


def raw_phase(
    env: lmdb.Environment,
    db: lmdb._Database,
    *,
    seconds: float,
    max_records: int,
    per_txn: int,
    txns_per_unit: int,
    first_index: int,
) -> tuple[int, float, list[float]]:
    """Commit units of ``txns_per_unit`` sequential synced transactions of ``per_txn``
    records each, until ``seconds`` have passed or ``max_records`` are written. Returns
    (units, elapsed, per-unit latencies).

    Transaction ``t`` writes the keys ``("bench", w, t)`` for ``w < per_txn``: the same
    keys, in the same grouping, as ``per_txn`` concurrent writers each appending record
    ``t``.
    """
    latencies: list[float] = []
    begin = env.begin
    per_unit = per_txn * txns_per_unit
    index = first_index
    units = 0
    start = perf_counter()
    deadline = start + seconds
    while (units + 1) * per_unit <= max_records and perf_counter() < deadline:
        chunks = [
            [encode_key(("bench", w, index + t)) for w in range(per_txn)]
            for t in range(txns_per_unit)
        ]
        t0 = perf_counter()
        for chunk in chunks:
            with begin(write=True) as txn:
                for key in chunk:
                    txn.put(key, VALUE, db=db)
        latencies.append(perf_counter() - t0)
        index += txns_per_unit
        units += 1
    return units, perf_counter() - start, latencies


def run_raw(
    directory: Path,
    durability: Durability,
    *,
    per_txn: int = 1,
    txns_per_unit: int = 1,
    seconds: float,
    warmup: float,
    cap: int,
) -> tuple[int, float, list[float]]:
    """Raw LMDB with the store's environment settings, one thread: a warmup, then the
    measured phase (see ``raw_phase``). Returns (units, elapsed, per-unit latencies)."""
    sync = durability == "fsync"
    env = lmdb.open(
        str(directory), map_size=MAP_SIZE, max_dbs=4, sync=sync, metasync=sync, readahead=False
    )
    try:
        db = env.open_db(b"journal")
        warm, _, _ = raw_phase(
            env,
            db,
            seconds=warmup,
            max_records=cap,
            per_txn=per_txn,
            txns_per_unit=txns_per_unit,
            first_index=0,
        )
        return raw_phase(
            env,
            db,
            seconds=seconds,
            max_records=cap,
            per_txn=per_txn,
            txns_per_unit=txns_per_unit,
            first_index=warm * txns_per_unit,
        )
    finally:
        env.close()


# --- runs and report -----------------------------------------------------------------------


def in_fresh_dir(base: str | None, prefix: str, measure: Callable[[Path], T]) -> T:
    """Run ``measure`` in a new temporary directory under ``base``, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        return measure(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def machine_text(base: str | None, *, with_trio: bool = True) -> str:
    """Versions, CPUs and temp dir, for the first line a script prints."""
    trio_text = f"trio {trio.__version__}, " if with_trio else ""
    return (
        f"python {platform.python_version()}, {trio_text}"
        f"lmdb {'.'.join(map(str, lmdb.version()))} (py-lmdb {lmdb.__version__}), "
        f"{os.cpu_count()} CPUs, temp dir {base or tempfile.gettempdir()}"
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """--seconds, --warmup and --runs."""
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (2)")
    parser.add_argument("--warmup", type=float, default=0.3, help="before each (0.3 s)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions; median shown (5)")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """--dir and --json."""
    parser.add_argument("--dir", default=None, help="parent of the temp dirs (system temp)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="save results")


def print_checks(checks: Sequence[Mapping[str, object]], durability: Durability) -> None:
    """The target lines: PASS/FAIL for ``"fsync"``, information otherwise."""
    applies = durability == "fsync"
    print()
    for check in checks:
        # The targets are defined for fsync durability; otherwise they are information.
        verdict = ("PASS" if check["passed"] else "FAIL") if applies else "info"
        print(f"{verdict}  {check['text']}")
    if not applies:
        print("      (targets are defined for durability='fsync'; shown for information)")


def json_meta(argv: Sequence[str], **extra: object) -> dict[str, object]:
    """The ``meta`` entry of a JSON result: versions, CPUs, time and ``extra``."""
    return {
        "argv": list(argv),
        "python": platform.python_version(),
        "lmdb": ".".join(map(str, lmdb.version())),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def save_json(path: Path, result: Mapping[str, object]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults saved to {path}")
