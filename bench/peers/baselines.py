"""Workload driver: the floors and ceilings, mapped onto the workload metrics.

* ``lmdb1``: raw LMDB, one ~100-byte record per synced write transaction (the
  store's environment settings, ``sync=True``), one thread. W1 = one commit's latency,
  W2/W3 = commits/s, W4 p50 = 11 sequential commits (a 10-step workflow's commits).
* ``lmdbgroup``: raw LMDB committing 64 records per transaction (W2/W3, records/s), and
  16 / 256 per transaction for W4 (records/s / 11: a workflow needs 11 records).
* ``pingpong``: a raw trio request/reply over memory channels: 1 client (W1), 64 clients
  (W2/W3 round trips/s). No storage at all: the event loop's ceiling.

Run by ``bench/peers/run.py`` as ``python bench/peers/baselines.py WHICH --settings JSON``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench._common import run_raw
from bench.objects import pingpong_trio
from bench.peers.common import CALLERS, STEPS, W4_CONCURRENCY, Phase, Settings, emit


def lmdb_phase(per_txn: int, txns_per_unit: int, s: Settings) -> Phase:
    with tempfile.TemporaryDirectory(prefix="peers-raw-") as tmp:
        units, elapsed, latencies = run_raw(
            Path(tmp),
            "fsync",
            per_txn=per_txn,
            txns_per_unit=txns_per_unit,
            seconds=s.seconds,
            warmup=s.warmup,
            cap=s.cap,
        )
    phase = Phase(latencies=latencies, elapsed=elapsed)
    assert len(latencies) == units
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", choices=["lmdb1", "lmdbgroup", "pingpong"])
    parser.add_argument("--settings", default=Settings().to_json())
    args = parser.parse_args()
    s = Settings.from_json(args.settings)
    metrics: dict[str, float] = {}
    notes: dict[str, str] = {}
    if args.which == "lmdb1":
        one = lmdb_phase(1, 1, s)
        metrics["w1_p50_ms"], metrics["w1_p99_ms"] = one.percentile_ms(0.5), one.percentile_ms(0.99)
        metrics["w2_rate"] = metrics["w3_rate"] = one.rate
        notes["w2_rate"] = notes["w3_rate"] = "commits/s, 1 record each"
        eleven = lmdb_phase(1, STEPS + 1, s)
        metrics["w4_p50_ms"] = eleven.percentile_ms(0.5)
        notes["w4_p50_ms"] = f"{STEPS + 1} sequential commits"
    elif args.which == "lmdbgroup":
        grouped = lmdb_phase(CALLERS, 1, s)
        metrics["w2_rate"] = metrics["w3_rate"] = grouped.rate * CALLERS
        notes["w2_rate"] = notes["w3_rate"] = f"records/s, {CALLERS} records/commit"
        for c in W4_CONCURRENCY:
            phase = lmdb_phase(c, 1, s)
            metrics[f"w4_rate_{c}"] = phase.rate * c / (STEPS + 1)
            notes[f"w4_rate_{c}"] = f"{c} records/commit, records/s / {STEPS + 1}"
    else:
        for clients, names in ((1, ("w1",)), (CALLERS, ("w2", "w3"))):
            trio.run(pingpong_trio, clients, s.warmup, s.cap)
            ops, elapsed, latencies = trio.run(pingpong_trio, clients, s.seconds, s.cap)
            phase = Phase(latencies=latencies, elapsed=elapsed)
            if clients == 1:
                metrics["w1_p50_ms"] = phase.percentile_ms(0.5)
                metrics["w1_p99_ms"] = phase.percentile_ms(0.99)
            for name in names:
                if name != "w1":
                    metrics[f"{name}_rate"] = ops / elapsed
                    notes[f"{name}_rate"] = f"round trips/s, {clients} clients"
    emit(metrics, notes)


if __name__ == "__main__":
    main()
