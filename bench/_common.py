"""What the benchmark scripts share: the raw LMDB baselines, summary statistics, temp
directories, the machine header, the common options, the report helpers and the results
files (``--out DIR``: ``DIR/<name>.md`` and ``DIR/<name>.json``, and the README's
generated sections between marker comments).

The scripts import this as ``bench._common``; run as ``python bench/X.py`` they put the
repository root on ``sys.path`` first.

Why the Markdown report is derived from what the script printed rather than built beside
it: the printed text is the one report a reader of the terminal sees, so deriving the
file from it means the two never disagree, and no script formats its table twice. The
conversion relies on the layout every script already prints: a header line whose cells
are separated by `` | `` followed by a line of dashes starts a table that runs while
lines have cells; a line starting with a verdict word (PASS, FAIL, OK, info, note) is a
target or check line; an indented line after one continues it.

When files are written: only when ``--out DIR`` is given (``make bench`` passes
``--out bench/results``), so that an ad-hoc run never dirties the tree.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TextIO, TypeVar

import lmdb
import trio

from actors.storage import encode_key

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Mapping, Sequence

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
    """--dir, --json and --out."""
    parser.add_argument("--dir", default=None, help="parent of the temp dirs (system temp)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="save results")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write DIR/<name>.md and DIR/<name>.json (make bench: bench/results); "
        "without it nothing is written",
    )


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


# --- results files: DIR/<name>.md and .json, README sections -----------------------------

VERDICT: Final = re.compile(r"^(PASS|FAIL|OK|info|note)\s+(.*)$")
TABLE_RULE: Final = re.compile(r"^-{10,}$")


class _Tee(io.StringIO):
    """Keeps what is written and passes it on to ``through``."""

    def __init__(self, through: TextIO) -> None:
        super().__init__()
        self._through = through

    def write(self, text: str) -> int:
        self._through.write(text)
        return super().write(text)

    def flush(self) -> None:
        self._through.flush()


@contextlib.contextmanager
def recording_stdout() -> Iterator[io.StringIO]:
    """Everything printed to stdout inside the block still goes to stdout, and is also
    kept in the returned buffer (``getvalue()``): the text a results file is made of."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield tee


def _cells(line: str) -> list[str]:
    # The trailing space keeps an empty last cell ("... | 3.65x |   ") a cell.
    cells = [cell.strip() for cell in (line.rstrip() + " ").split(" | ")]
    # A leading indent marks a sub-row ("  of which ..."); Markdown would drop the spaces.
    indent = len(line) - len(line.lstrip(" "))
    if indent:
        cells[0] = "&nbsp;" * indent + cells[0]
    return cells


def _markdown_table(header: str, rows: Sequence[str]) -> list[str]:
    head = _cells(header)
    body = [cells + [""] * (len(head) - len(cells)) for cells in map(_cells, rows)]
    # Right-align the columns of figures (every non-empty cell starts with a number).
    numeric = re.compile(r"^-?[\d,.]+|^nan$")
    align = [
        "--:"
        if all(numeric.match(r[i]) for r in body if r[i]) and any(r[i] for r in body)
        else "---"
        for i in range(len(head))
    ]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(r) + " |" for r in body),
    ]


def markdown_from_printed(printed: str) -> list[str]:
    """The printed report as Markdown lines: tables as tables, verdict lines as a list,
    everything else as paragraphs (see the module docstring for the layout relied on)."""
    lines: list[str] = []
    blocks = re.split(r"\n\s*\n", printed.strip("\n"))
    for block in blocks:
        rows = [row for row in block.splitlines() if not row.startswith("results saved to ")]
        i = 0
        while i < len(rows):
            row = rows[i]
            if " | " in row and i + 1 < len(rows) and TABLE_RULE.match(rows[i + 1]):
                end = i + 2
                while end < len(rows) and " | " in rows[end]:
                    end += 1
                lines += ["", *_markdown_table(row, rows[i + 2 : end]), ""]
                i = end
                continue
            verdict = VERDICT.match(row)
            if verdict:
                lines.append(f"- **{verdict[1]}** {verdict[2]}")
            elif row.startswith(" ") and lines and lines[-1].startswith("- "):
                lines[-1] += " " + row.strip()
            elif row.strip():
                lines += ["", row.strip(), ""]
            i += 1
        lines.append("")
    # Collapse the runs of blank lines the blocks leave between them.
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text.splitlines()


def machine_summary() -> str:
    """CPUs, CPU model, kernel and architecture, for a results file."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.release()}, {platform.machine()}"


def source_revision() -> str:
    """The checkout's commit (with ``+dirty`` when the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def markdown_report(script: str, printed: str, meta: Mapping[str, object]) -> str:
    """A results file: the command line, date, machine and versions, then the printed
    report (its first line, the tables and the target lines) as Markdown."""
    argv = meta.get("argv")
    command = " ".join(["python", script, *(map(str, argv) if isinstance(argv, list) else [])])
    return "\n".join(
        [
            f"# {script}",
            "",
            f"* command: `{command}` (`make bench` runs it with `--out bench/results`)",
            f"* date: {meta.get('time', time.strftime('%Y-%m-%dT%H:%M:%S%z'))}",
            f"* machine: {machine_summary()}",
            f"* versions: python {platform.python_version()}, trio {trio.__version__}, lmdb "
            f"{'.'.join(map(str, lmdb.version()))} (py-lmdb {lmdb.__version__}), "
            f"virtual-actors at {source_revision()}",
            "",
            *markdown_from_printed(printed),
            "",
        ]
    )


def save_results(
    args: argparse.Namespace, name: str, printed: str, result: Mapping[str, object]
) -> None:
    """``--json PATH``: the result as JSON; ``--out DIR``: ``DIR/<name>.json`` (the same)
    and ``DIR/<name>.md`` (``markdown_report`` of ``printed``). Neither: nothing."""
    if args.json is not None:
        save_json(args.json, result)
    if args.out is None:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    meta = result.get("meta", {})
    markdown = markdown_report(f"bench/{name}.py", printed, meta if isinstance(meta, dict) else {})
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown)
    print(f"\nresults written to {args.out / name}.md and .json")


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with what lies between the markers ``<!-- bench:NAME:begin -->`` and
    ``<!-- bench:NAME:end -->`` replaced by ``body``; every byte outside them, the markers
    included, is kept. Applying it twice with the same body changes nothing more.

    Raises:
        ValueError: the markers are missing, repeated or out of order.
    """
    begin, end = _markers(name)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"need exactly one {begin} and one {end}")
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    if stop < start:
        raise ValueError(f"{end} comes before {begin}")
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[stop:]


def update_readme(path: Path, name: str, body: str) -> bool:
    """Rewrite ``path``'s section ``name`` (see ``replace_section``); True if it changed."""
    old = path.read_bytes().decode()  # bytes: no newline translation outside the markers
    new = replace_section(old, name, body)
    if new == old:
        return False
    path.write_bytes(new.encode())
    return True
