"""``bench/scaling.py --quick`` runs to completion and prints its table.

The smoke version (tiny sizes, one run) takes a few seconds; it asserts only that every
dimension produced its rows, never a timing. The full benchmark is ``make bench``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "scaling.py"

ROWS = (
    ("journal", "ctx.run step (per step)"),
    ("journal", "replay after restart (per journal entry)"),
    ("state", "ctx.get (per get)"),
    ("state", "ctx.set (per set)"),
    ("state", "exclusive call, get+set one key"),
    ("keys", "call one key, N keys active"),
    ("keys", "call one key, N keys in storage"),
    ("parked", "call one object, N workflows parked"),
    ("parked", "resolve one of N parked workflows"),
    ("parked", "resolve one of N parked, after a restart"),
    ("concurrent", "call, N callers in flight, a key each"),
    ("concurrent", "call, N callers on one key"),
)


def test_scaling_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "scaling"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--dir", str(tmp_path), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    number = r"-?[\d,.]+|nan"
    for dimension, operation in ROWS:
        pattern = (
            rf"\| {dimension} \| {re.escape(operation)} \| [\d,/]+ \| (?:{number}) us "
            rf"\| (?:{number}) \| (?:{number}) \| .*"
        )
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, done.stdout)
    assert out.with_suffix(".md").read_text().startswith("# Cost per operation as work grows")
    result = json.loads(out.with_suffix(".json").read_text())
    operations = {(row["dimension"], row["operation"]) for row in result["rows"]}
    assert operations >= set(ROWS)
    assert list(tmp_path.glob("bench-scaling-*")) == []  # temp dirs removed
