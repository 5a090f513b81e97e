"""The report of ``bench/scaling.py``: rows of per-operation cost across sizes, their
verdicts (flat, grows, grows linearly), the markdown table and the notes that say where
the cost goes in each row that is not flat.

Split from ``bench/scaling.py`` (which measures) so that each reads in one sitting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bench._common import machine_text, median

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from pathlib import Path

#: The sizes of every dimension, as multiples of its 1x size.
FACTORS: Final = (1, 10, 100)


@dataclass
class Row:
    """One operation of one dimension across its sizes."""

    dimension: str
    operation: str
    sizes: list[int]
    cpu: list[list[float]] = field(default_factory=list)  # per size, per run (s/op)
    wall: list[list[float]] = field(default_factory=list)

    def medians(self, which: str) -> list[float]:
        return [median(values) for values in getattr(self, which)]

    def ratios(self, which: str) -> list[float]:
        values = self.medians(which)
        return [value / values[0] if values[0] > 0 else float("nan") for value in values]


def verdict(ratio: float, factor: int) -> str:
    if not ratio > 0:  # nan or negative: a marginal cost lost in the noise at 1x
        return "n/a (noise)"
    if ratio < 2.0:
        return "flat"
    if ratio >= factor / 3:
        return "GROWS ~linearly"
    return "grows"


def table(rows: Sequence[Row]) -> list[str]:
    head = "| dimension | operation | sizes | CPU/op at 1x | CPU 10x | CPU 100x | wall/op at 1x | wall 10x | wall 100x | CPU verdict |"
    lines = [head, "|---|---|---|--:|--:|--:|--:|--:|--:|---|"]
    for row in rows:
        cpu, wall = row.medians("cpu"), row.medians("wall")
        cr, wr = row.ratios("cpu"), row.ratios("wall")
        sizes = "/".join(f"{size:,}" for size in row.sizes)
        lines.append(
            f"| {row.dimension} | {row.operation} | {sizes} | {cpu[0] * 1e6:,.1f} us "
            f"| {cr[1]:.2f} | {cr[-1]:.2f} | {wall[0] * 1e6:,.1f} us | {wr[1]:.2f} | {wr[-1]:.2f} "
            f"| {verdict(cr[-1], FACTORS[-1])} |"
        )
    return lines


# Where the cost goes, for every row that is not flat (see the module docstring).
NOTES: Final = """\
## Notes

**Fixed: a reference cycle per suspension** (parked, "resolve one of N parked, after a
restart": 17x at 100x before the fix). ``Executor.attempt`` kept the signal that
unwinds a suspending handler (``Suspended``) in a local; that frame is in the signal's
traceback, so every suspension left a cycle of about 50 objects (8 frames, 8
tracebacks, closure cells, cancel scopes, the context) that only the cyclic GC frees.
A restart re-parks every workflow at once; the frees of older objects during recovery
decrement the youngest generation's count, so the garbage piled up there (170,000
objects for 10,000 workflows) and the first collection after the restart took 0.33 s,
paid by the first resolves: 8.2 ms per resolve right after a restart over 10,000
parked workflows, 1.25 ms after the fix (1.6-1.8 ms before any restart). The local is
now deleted before the signal propagates; ``tests/actors/test_suspension_garbage.py``
counts the cyclic garbage of parking and of re-parking (0; 507 and 450 objects before).

**Open runtime over N keys** (keys; per open, not per operation): ~0.3 us per key,
32 ms at 100,000 keys. ``storage/_check.py`` ``check_pages`` (``_tree``) walks every
B-tree page of the data file before LMDB maps it, so a damaged file is reported instead
of crashing the process; its cost is linear in the size of the file by design.
Recovery itself reads only the inbox (unfinished invocations), not the completed ones.

**Restart with N parked workflows** (parked, "restart until all re-parked"): flat per
workflow (~250 us CPU), so a restart costs O(N): ~25 s of CPU for 100,000 parked.
``_recovery.recover`` re-delivers every unfinished invocation and a parked one replays
its journal to find the wait it blocks on, then parks again. Avoiding it needs a
durable record of what each parked invocation waits on (a design change): recovery
could then rebuild ``Parked`` entries without running anything.

**Parked, ~2x at 100x** ("resolve one of N parked workflows", "restart until all
re-parked", "call one object, N workflows parked"): sub-linear, and no Python work
grows with N: a resolve makes 1,653 function calls among 1,000 parked workflows and
1,649 among 30,000 (cProfile). What grows is the time on the writer thread (seen as
``SimpleQueue.put`` waiting for the GIL: 0.4 ms against 1.7 ms per resolve): LMDB's
commit copies a B-tree path per table touched, and the tables (invocations, inbox,
journal, promises) hold N rows; plus a bigger heap for the GC and the caches. The
re-park cost is the same at 10,000 and 100,000 (2.5x and 2.45x the 1,000 cell).

**Python's cyclic GC and many callers in flight** (concurrent): flat up to 400 callers
(1.2-1.4x, noise included); at 4,000 a call costs ~3x (~320 us CPU against ~100 us at
400), and ~97 us with ``gc.disable()`` in the same script: the collector traverses the
live objects of the invocations in flight, which survive into the older generations
once thousands are in flight. It is bounded (it stops growing once every in-flight
object reaches the oldest generation), not a cost per operation that grows with N.

**Left as it is: one more cycle per invocation with steps.** A completion's
``CommitTicket`` keeps its ``on_done`` (``functools.partial(Recommits._settled, inv)``)
and the invocation keeps the ticket: 35 objects of cyclic garbage per 10-step service
call (none for a plain object call). Constant per invocation, not growing; breaking it
means clearing ``_on_done`` once run, in ``storage/_writer.py``.

The journal, state, keys (per call) and concurrent rows are flat: a ``ctx.run`` step and
a replayed entry cost the same in a 1,000-step journal as in a 10-step one (also checked
at 10,000 steps: ~150 us per live step, ~20 us per replayed entry), ``ctx.get``/``set``
the same among 1,000 keys as among 10 (and 10,000), and a call to one of 100,000 keys
the same as to one of 1,000. Ratios below 1 at 10x and 100x in the journal and state
rows are fixed costs not quite subtracted (marginal costs: see the module docstring).
"""


def report_header(args: argparse.Namespace) -> str:
    return "\n".join(
        [
            "# Cost per operation as work grows",
            "",
            f"`{' '.join(['bench/scaling.py', *args.argv])}`: durability={args.durability!r}, "
            f"median of {args.runs} runs; {machine_text(args.dir)}.",
            "",
            "Each cell is CPU time (all threads) or wall-clock time per operation; the 10x "
            "and 100x columns are ratios to the 1x cell (flat = ~1.0, linear = ~10 and "
            "~100). Verdict: flat below 2x at 100x; GROWS ~linearly from a third of the "
            "factor. The notes below say where the cost goes in every row that is not flat.",
            "",
            "",
        ]
    )


def render(path: Path) -> int:
    """Write ``path``'s .md again from its .json (after editing ``NOTES``)."""
    result = json.loads(path.with_suffix(".json").read_text())
    rows = [Row(**row) for row in result["rows"]]
    path.with_suffix(".md").write_text(result["report"] + "\n".join(table(rows)) + "\n\n" + NOTES)
    print(f"{path.with_suffix('.md')} written from {path.with_suffix('.json')}")
    return 0
