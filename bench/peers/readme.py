"""The README's table of peer figures, rendered from one run's ``peers.json``.

``bench/peers/run.py`` writes the table between ``<!-- bench:peers:begin -->`` and
``<!-- bench:peers:end -->`` in README.md after every run (unless ``--no-readme`` or
``--quick``), so the figures a reader sees are the ones in ``bench/results/peers.json``.
Columns: virtual-actors embedded with fsync, Restate, DBOS on SQLite and the raw LMDB
floor. Every cell is the median over the runs; a peer's cell says how many times slower
(for times) or fewer (for rates) it is than virtual-actors, the first peer column in words.
A system that is absent or failed shows "n/a".
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

OURS: Final = "va-fsync"
PEER_COLUMNS: Final = ("restate", "dbos-sqlite")
FLOOR: Final = "raw-lmdb-1"

# (row label, metric, unit after our figure, word for "worse" in the first peer column,
#  what the floor's figure is)
SIMPLE_ROWS: Final = (
    ("W1 one increment, p50", "w1_p50_ms", "ms", "slower", "1 commit"),
    ("W2 64 keys, 64 callers", "w2_rate", "calls/s", "fewer", "commits/s"),
    ("W3 one key, 64 callers", "w3_rate", "calls/s", "", ""),
    ("W4 10-step workflow, p50", "w4_p50_ms", "ms", "", "11 commits"),
)
W5: Final = ("W5 shared reads during writes", "w5_reads", "reads/s")


def fmt(value: float) -> str:
    """Three significant figures at most, thousands separated (as in peers.md)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_factor(factor: float) -> str:
    return f"{factor:.0f}x" if factor >= 10 else f"{factor:.1f}x"


def _median(result: Mapping[str, Any], system: str, metric: str) -> float | None:
    entry = result["systems"].get(system)
    if not entry or entry.get("error"):
        return None
    values = [run["metrics"][metric] for run in entry["runs"] if metric in run["metrics"]]
    return statistics.median(values) if values else None


def _worse(ours: float | None, theirs: float, metric: str) -> float | None:
    """How many times worse ``theirs`` is than ``ours``: times divide one way, rates the
    other, so that the factor reads "slower" or "fewer" either way."""
    if not ours or not theirs:
        return None
    return theirs / ours if metric.endswith("_ms") else ours / theirs


def _peer_cell(result: Mapping[str, Any], system: str, metric: str, word: str, unit: str) -> str:
    ours, theirs = _median(result, OURS, metric), _median(result, system, metric)
    if theirs is None:
        return "n/a"
    factor = _worse(ours, theirs, metric)
    suffix = f" {unit}" if unit == "ms" else ""
    if factor is None:
        return fmt(theirs) + suffix
    return f"{fmt(theirs)}{suffix} ({fmt_factor(factor)}{' ' + word if word else ''})"


def _row(cells: list[str]) -> str:
    return " ".join(f"| {cell}" if cell else "|" for cell in cells) + " |"


def _header(result: Mapping[str, Any]) -> str:
    versions = result.get("versions", {})
    restate = ".".join(str(versions.get("restate-server", "?")).split(".")[:2])
    dbos = ".".join(str(versions.get("dbos", "?")).split(".")[:2])
    return (
        f"| workload | virtual-actors | Restate {restate} + Python SDK | DBOS {dbos} on SQLite "
        "| raw LMDB floor |"
    )


def peers_readme_section(result: Mapping[str, Any]) -> str:
    """The date line and the table, from a ``peers.json`` document."""
    machine = result.get("machine", {})
    lines = [
        f"Medians of {result.get('runs', '?')} runs of `bench/peers/run.py` (`make bench`) on a "
        f"{machine.get('nproc', '?')}-core machine ({str(machine.get('date', '?'))[:10]}), "
        "virtual-actors embedded with fsync against each peer (the full table has min-max "
        "and every system):",
        "",
        _header(result),
        "| --- | --- | --- | --- | --- |",
    ]
    for label, metric, unit, word, floor_what in SIMPLE_ROWS:
        ours = _median(result, OURS, metric)
        floor = _median(result, FLOOR, metric)
        floor_cell = ""
        if floor is not None and floor_what:
            # A time says what it is the time of; a rate's unit is what it counts.
            floor_cell = (
                f"{fmt(floor)} ms ({floor_what})" if unit == "ms" else f"{fmt(floor)} {floor_what}"
            )
        cells = [
            label,
            "n/a" if ours is None else f"{fmt(ours)} {unit}",
            *(
                _peer_cell(result, peer, metric, word if i == 0 else "", unit)
                for i, peer in enumerate(PEER_COLUMNS)
            ),
            floor_cell,
        ]
        lines.append(_row(cells))
    lines.append(_concurrent_row(result))
    label, metric, unit = W5
    ours = _median(result, OURS, metric)
    cells = [
        label,
        "n/a" if ours is None else f"{fmt(ours)} {unit}",
        *(_peer_cell(result, peer, metric, "", unit) for peer in PEER_COLUMNS),
        "",
    ]
    lines.append(_row(cells))
    lines.append(_restart_row(result))
    return "\n".join(lines) + "\n"


def _concurrent_row(result: Mapping[str, Any]) -> str:
    """W4 at 16 and 256 concurrent: two rates and two factors in one cell."""
    metrics = ("w4_rate_16", "w4_rate_256")
    ours = [_median(result, OURS, m) for m in metrics]
    cells = [
        "W4 16 / 256 concurrent",
        "n/a" if None in ours else " / ".join(fmt(v) for v in ours if v is not None) + " wf/s",
    ]
    for peer in PEER_COLUMNS:
        theirs = [_median(result, peer, m) for m in metrics]
        if None in theirs:
            cells.append("n/a")
            continue
        text = " / ".join(fmt(v) for v in theirs if v is not None)
        factors = [_worse(o, t, m) for o, t, m in zip(ours, theirs, metrics, strict=True) if t]
        if None not in factors:
            text += " (" + " / ".join(fmt_factor(f) for f in factors if f is not None) + ")"
        cells.append(text)
    cells.append("")
    return _row(cells)


def _restart_row(result: Mapping[str, Any]) -> str:
    """W6: different N for us and the peers, so times without a factor."""
    ours_n = result.get("settings", {}).get("w6_count", "?")
    peers_n = result.get("peer_w6", "?")
    ours = _median(result, OURS, "w6_seconds")
    cells = [
        "W6 restart, in-flight workflows",
        "n/a" if ours is None else f"{ours_n:,} done in {fmt(ours)} s",
    ]
    for peer in PEER_COLUMNS:
        theirs = _median(result, peer, "w6_seconds")
        cells.append("n/a" if theirs is None else f"{peers_n:,} in {fmt(theirs)} s")
    cells.append("")
    return _row(cells)
