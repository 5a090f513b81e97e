"""Issue 14's ratio targets, measured: one table from the benchmarks' last results.

Reads ``bench/results/{objects,steps,workflows,parked,scaling,peers}.json``, which ``make
bench`` writes just before running this, and prints each target
with the measured ratio and PASS/FAIL. A figure whose file or field is missing reads
"not measured"; a figure measured with ``durability="process"`` reads "info", since the
targets are defined for ``"fsync"``. Then it writes the same table into README.md between
``<!-- bench:targets:begin -->`` and ``<!-- bench:targets:end -->`` (not with
``--no-readme``). It measures nothing itself and never fails on a target.

The ratios are the ones the benchmark scripts compute, each against a baseline measured
in the same run (raw LMDB commits with the same durability), so they are comparable
across machines; only the memory target is an absolute figure (bytes per parked workflow,
RSS over the empty runtime). The HTTP targets compare systems of one ``bench/peers/run.py``
run: virtual-actors' HTTP ingress (fsync) against Restate, and against virtual-actors
embedded (fsync), each a ratio of the systems' medians over the run's repetitions.

Run::

    .venv/bin/python bench/targets.py              # what `make bench` runs last
    .venv/bin/python bench/targets.py --no-readme  # print only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

# Run as ``python bench/targets.py``: make ``bench._common`` importable.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench._common import update_readme

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

ROOT: Final = Path(__file__).resolve().parent.parent
SOURCES: Final = ("objects", "steps", "workflows", "parked", "scaling", "peers")
#: "Flat or logarithmic": at 100x the work, an operation may cost a few times what it
#: cost at 1x (a B-tree a level deeper, caches missed), never ~100x.
FLAT_OR_LOG: Final = 3.0
# Rows scaling.py shows for information: a cost per open, not per operation.
SCALING_INFORMATION: Final = frozenset({"open runtime over N keys (per open)"})

Documents = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Measured:
    value: float
    shown: str  # the value as the table prints it
    durability: str | None  # None when the figure does not depend on it


@dataclass(frozen=True)
class Target:
    source: str  # the results file (stem) the figure comes from
    text: str
    bound: float
    at_least: bool  # True: value >= bound passes; False: value <= bound passes
    unit: str  # "x" for a ratio
    measure: Callable[[Mapping[str, Any]], Measured | None]

    def bound_text(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}{self.unit}"


def _durability(document: Mapping[str, Any]) -> str | None:
    meta = document.get("meta", {})
    return str(meta["durability"]) if "durability" in meta else None


def _ratio(value: object, durability: str | None) -> Measured | None:
    if not isinstance(value, int | float) or value != value:  # absent, or nan
        return None
    return Measured(float(value), f"{value:.2f}x", durability)


def check(name: str) -> Callable[[Mapping[str, Any]], Measured | None]:
    """The ``ratio`` of the script's own check ``name`` (its PASS/FAIL line)."""

    def measure(document: Mapping[str, Any]) -> Measured | None:
        found = [c for c in document.get("checks", []) if c.get("name") == name]
        return _ratio(found[0].get("ratio"), _durability(document)) if found else None

    return measure


def row(key: str, field: str) -> Callable[[Mapping[str, Any]], Measured | None]:
    """Field ``field`` (a median of per-run ratios) of the table row ``key``."""

    def measure(document: Mapping[str, Any]) -> Measured | None:
        found = [r for r in document.get("rows", []) if r.get("key") == key]
        return _ratio(found[0].get(field), _durability(document)) if found else None

    return measure


def parked_slope(document: Mapping[str, Any]) -> Measured | None:
    """``bench/parked.py``: VmRSS growth per parked workflow between its two counts (the
    memory phase always runs at process durability; memory does not depend on it)."""
    memory = document.get("memory", {})
    if "per_VmRSS" not in memory:
        return None
    meta = document.get("meta", {})
    value = float(memory["per_VmRSS"])
    text = f"{value:,.0f} B ({meta.get('low', 0):,} to {meta.get('high', 0):,} parked)"
    return Measured(value, text, None)


def parked_resolve(document: Mapping[str, Any]) -> Measured | None:
    """``bench/parked.py``: resolutions/s over raw commits/s of the same durability."""
    resolve = document.get("resolve")
    if not isinstance(resolve, dict):
        return None
    return _ratio(resolve.get("ratio"), _durability(document))


def worst_scaling(document: Mapping[str, Any]) -> Measured | None:
    """The largest CPU-per-operation ratio at the biggest size to the smallest, over the
    rows that are costs per operation."""
    worst: tuple[float, str] | None = None
    for entry in document.get("rows", []):
        if entry["operation"] in SCALING_INFORMATION:
            continue
        medians = [statistics.median(runs) for runs in entry["cpu"]]
        if len(medians) < 2 or not medians[0] > 0:
            continue
        ratio = medians[-1] / medians[0]
        if worst is None or ratio > worst[0]:
            worst = (ratio, f"{entry['dimension']}: {entry['operation']}")
    if worst is None:
        return None
    return Measured(worst[0], f"{worst[0]:.2f}x ({worst[1]})", None)


def peers_ratio(
    system: str, other: str, metric: str
) -> Callable[[Mapping[str, Any]], Measured | None]:
    """``bench/peers/run.py``: the median of ``metric`` over ``system``'s runs divided by
    ``other``'s, both of the same run of the script (None when either was not measured)."""

    def measure(document: Mapping[str, Any]) -> Measured | None:
        systems = document.get("systems", {})
        medians = []
        for name in (system, other):
            runs = systems.get(name, {}).get("runs", [])
            values = [run["metrics"][metric] for run in runs if metric in run.get("metrics", {})]
            if not values:
                return None
            medians.append(statistics.median(values))
        if not medians[1] > 0:
            return None
        # va-http and va-fsync commit with fsync; Restate's durability is its own.
        return _ratio(medians[0] / medians[1], "fsync")

    return measure


TARGETS: Final = (
    Target(
        "steps",
        "steps, plain `def` body, 256 concurrent: steps/s vs raw fsync'd commits/s",
        5.0,
        True,
        "x",
        check("sync_steps_vs_raw_256"),
    ),
    Target(
        "steps",
        "steps, plain `def` body, 256 concurrent: steps/s vs the `async def` body",
        0.8,
        True,
        "x",
        check("sync_steps_vs_async_256"),
    ),
    Target(
        "steps",
        "sequential 10-step invocation: p50 vs 11 raw commits (11 x one commit's p50)",
        1.5,
        False,
        "x",
        check("p50_10_steps"),
    ),
    Target(
        "objects",
        "single exclusive call (W1): p50 vs one raw commit's p50",
        1.5,
        False,
        "x",
        row("w1", "p50_ratio_median"),
    ),
    Target(
        "objects",
        "64 keys x 1 caller (W2): calls/s vs raw commits/s",
        5.0,
        True,
        "x",
        row("w2", "raw_ratio_median"),
    ),
    Target(
        "objects",
        "one key, 64 callers (W3): calls/s vs raw commits/s",
        1.5,
        True,
        "x",
        row("w3", "raw_ratio_median"),
    ),
    Target(
        "objects",
        "shared reads of one key with 16 writers alongside (W5): reads/s vs raw commits/s",
        10.0,
        True,
        "x",
        row("w5_reads", "raw_ratio_median"),
    ),
    Target(
        "objects",
        "those 16 writers (W5): writes/s vs raw commits/s",
        0.5,
        True,
        "x",
        row("w5_writes", "raw_ratio_median"),
    ),
    Target(
        "parked",
        "memory: RSS growth per workflow parked on a promise, 100,000 to 500,000",
        200.0,
        False,
        " B",
        parked_slope,
    ),
    Target(
        "parked",
        "resolving 100,000 parked workflows: resolutions/s vs raw commits/s",
        0.8,
        True,
        "x",
        parked_resolve,
    ),
    Target(
        "scaling",
        "cost per operation at 100x the work: worst CPU ratio to 1x (flat or logarithmic)",
        FLAT_OR_LOG,
        False,
        "x",
        worst_scaling,
    ),
    Target(
        "peers",
        "HTTP, 64 keys x 1 caller (W2), keep-alive: calls/s vs Restate's in the same run",
        3.0,
        True,
        "x",
        peers_ratio("va-http", "restate", "w2_rate"),
    ),
    Target(
        "peers",
        "HTTP, one key x 64 callers (W3), keep-alive: calls/s vs Restate's in the same run",
        3.0,
        True,
        "x",
        peers_ratio("va-http", "restate", "w3_rate"),
    ),
    Target(
        "peers",
        "HTTP, one call at a time (W1): p50 vs the embedded W1's p50 in the same run",
        3.0,
        False,
        "x",
        peers_ratio("va-http", "va-fsync", "w1_p50_ms"),
    ),
)


def load(results: Path) -> Documents:
    """The results files that exist, by stem."""
    found: Documents = {}
    for stem in SOURCES:
        path = results / f"{stem}.json"
        if path.exists():
            found[stem] = json.loads(path.read_text())
    return found


def verdict(target: Target, measured: Measured | None) -> str:
    if measured is None:
        return "not measured"
    if measured.durability not in (None, "fsync"):
        return f"info ({measured.durability})"
    if target.at_least:
        return "PASS" if measured.value >= target.bound else "FAIL"
    return "PASS" if measured.value <= target.bound else "FAIL"


def table(documents: Documents) -> list[str]:
    """The Markdown table: each target, its bound, the measured figure and the verdict."""
    lines = [
        "| target (issue 14) | bound | measured | verdict | from |",
        "| --- | --: | --: | --- | --- |",
    ]
    for target in TARGETS:
        document = documents.get(target.source)
        measured = None if document is None else target.measure(document)
        shown = "not measured" if measured is None else measured.shown
        lines.append(
            f"| {target.text} | {target.bound_text()} | {shown} | {verdict(target, measured)} "
            f"| `{target.source}.json` |"
        )
    return lines


def _date(document: Mapping[str, Any]) -> str:
    """When a results file was measured: its ``meta.time`` (``machine.date`` in peers.json
    files written before it had a ``meta``)."""
    when = document.get("meta", {}).get("time") or document.get("machine", {}).get("date", "?")
    return str(when)[:10]


def section(documents: Documents) -> str:
    """The README section: when each source was measured, then the table."""
    dates = ", ".join(f"`{stem}.json` {_date(doc)}" for stem, doc in documents.items())
    return "\n".join(
        [
            "Filled by `bench/targets.py` (the last step of `make bench`) from "
            f"`bench/results/*.json` ({dates or 'none found'}); ratios are to raw LMDB commits "
            "of the same durability measured in the same run; the targets are for "
            '`durability="fsync"`.',
            "",
            *table(documents),
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results", help="(bench/results)"
    )
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="(README.md)")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    documents = load(args.results)
    print("\n".join(table(documents)))
    if not args.no_readme:
        changed = update_readme(args.readme, "targets", section(documents))
        print(f"\n{args.readme}: targets table {'updated' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
