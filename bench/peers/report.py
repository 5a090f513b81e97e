"""The systems ``bench/peers/run.py`` compares and its report: each system's pinned
packages, names and notes, the outcome of its runs, and ``peers.md``'s text (medians with
[min-max] and ratios to virtual-actors with fsync, the reference).

Split from ``bench/peers/run.py`` (which starts the systems and drives them) so that each
reads in one sitting.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from bench.peers.common import METRICS
from bench.peers.restate_server import RESTATE_NPM

if TYPE_CHECKING:
    import argparse

    from bench.peers.common import Settings


PINS: Final = {
    "dbos": ["dbos==3.4.0", "psycopg[binary]==3.3.9"],
    "restate": ["restate-sdk==1.3.0", "hypercorn==0.18.0"],
    "plot": ["matplotlib==3.11.2"],
}
REFERENCE: Final = "va-fsync"

SYSTEMS: Final = {
    "va-fsync": "virtual-actors embedded, fsync",
    "va-process": "virtual-actors embedded, process durability",
    "va-http": "virtual-actors HTTP ingress, fsync",
    "dbos-sqlite": "DBOS Transact 3.4, SQLite (WAL)",
    "dbos-postgres": "DBOS Transact 3.4, PostgreSQL 15",
    "restate": "Restate 1.7 server + Python SDK 1.3",
    "raw-lmdb-1": "floor: raw LMDB, 1 record/commit",
    "raw-lmdb-64": "ceiling: raw LMDB, 64 records/commit",
    "raw-pingpong": "ceiling: raw trio ping-pong",
}
SYSTEM_NOTES: Final = {
    "va-process": "no fsync per commit (survives a process kill, not an OS crash)",
    "va-http": "keep-alive HTTP/1.1 client, one connection per caller",
    "dbos-sqlite": "no keyed objects: W1-W3 = workflow + transaction step UPDATE of a row; "
    "W5 = read-only transaction; callers are threads",
    "dbos-postgres": "as dbos-sqlite; synchronous_commit on (fsync)",
    "restate": "HTTP/1.1 client to the ingress in the same loopback-only netns",
    "raw-lmdb-1": "W1 = 1 synced commit, W2/W3 = commits/s, W4 p50 = 11 sequential commits",
    "raw-lmdb-64": "records/s; W4 = records/s / 11 at 16 / 256 records per commit",
    "raw-pingpong": "memory channels, no storage; W1 = 1 client, W2/W3 = 64 clients",
}


@dataclass
class Outcome:
    system: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def values(self, metric: str) -> list[float]:
        return [r["metrics"][metric] for r in self.runs if metric in r["metrics"]]

    def note(self, metric: str) -> str:
        notes = {r["notes"].get(metric, "") for r in self.runs} - {""}
        return "; ".join(sorted(notes))


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def versions() -> dict[str, str]:
    import lmdb
    import trio

    found = {"trio": trio.__version__, "py-lmdb": lmdb.__version__}
    for name, pins in PINS.items():
        found.update({p.split("==")[0]: p.split("==")[1] for p in pins if "==" in p} | {})
        del name
    found["restate-server"] = RESTATE_NPM.rsplit("@", 1)[1]
    found["postgresql"] = "15"
    return found


def report(outcomes: list[Outcome], args: argparse.Namespace, settings: Settings) -> str:
    m, v = machine(), versions()
    ref = next((o for o in outcomes if o.system == REFERENCE and o.runs), None)
    lines = [
        "# virtual-actors vs peers",
        "",
        f"`{' '.join(['python', 'bench/peers/run.py', *sys.argv[1:]])}` (`make bench` runs it)",
        "",
        f"* machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}",
        f"* date: {m['date']}",
        "* versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"* runs: {args.runs}; each phase {settings.warmup} s warmup + {settings.seconds} s "
        f"(or {settings.cap:,} operations); W6 N = {settings.w6_count:,} for virtual-actors, "
        f"{args.peer_w6:,} for the peers (scaled down: DBOS and Restate recover far slower)",
        "* cells: median [min-max] over the runs; `x va` = median / virtual-actors fsync "
        "median (for rates > 1 is faster than va; for times > 1 is slower)",
        "* W6 compares different N (virtual-actors vs peers) unless they are equal, so its "
        "`x va` is not per workflow; spreads are wide when others share the CPUs",
        "",
    ]
    by_workload: dict[str, list[str]] = {}
    for metric, (workload, what, unit, higher) in METRICS.items():
        by_workload.setdefault(workload, []).append(metric)
        del what, unit, higher
    for workload, metrics in by_workload.items():
        lines += [f"## {workload}", ""]
        for metric in metrics:
            _, what, unit, higher = METRICS[metric]
            lines += [
                f"**{what}** ({unit}, {'higher' if higher else 'lower'} is better)",
                "",
                "| system | median [min-max] | x va | notes |",
                "| --- | --- | --- | --- |",
            ]
            for o in outcomes:
                note = "; ".join(x for x in (o.note(metric), SYSTEM_NOTES.get(o.system, "")) if x)
                if o.error:
                    lines.append(f"| {o.system} | n/a | | {o.error} |")
                    continue
                vals = o.values(metric)
                if not vals:
                    continue
                med = statistics.median(vals)
                ratio = ""
                if ref and ref.values(metric):
                    ref_med = statistics.median(ref.values(metric))
                    ratio = f"{med / ref_med:.3g}" if ref_med else ""
                cell = f"{fmt(med)} [{fmt(min(vals))}-{fmt(max(vals))}]"
                lines.append(f"| {o.system} | {cell} | {ratio} | {note} |")
            lines.append("")
    lines += ["## Systems", "", "| key | system |", "| --- | --- |"]
    lines += [f"| {k} | {SYSTEMS[k]} |" for k in [o.system for o in outcomes]]
    return "\n".join(lines) + "\n"
