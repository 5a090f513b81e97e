"""``bench/workflows.py --quick`` runs to completion and reports both measurements.

The smoke version (200 parked workflows, 100 sleeping ones restarted) takes a few
seconds; the full benchmark is ``make bench``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "workflows.py"


def test_workflows_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--dir", str(tmp_path), "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for pattern in (
        r"RSS, 200 workflows parked \(VmRSS\) +\| MB +\| [\d.]+ .*",
        r"restart: until all 100 results are in +\| s +\| [\d.]+ .*",
        r"OK +process: 0 wrong results; 0 runs where not all 200 were parked at once, .*",
        r"info  200 parked workflows: RSS [\d.]+ MB .*",
        r"info  100 sleeping workflows resumed after a restart in [\d.]+ s .*",
    ):
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, done.stdout)
    result = json.loads(out.read_text())
    assert result["correct"] is True
    (sample,) = result["results"]["process"]["samples"]
    assert sample["parked_count"] == 200
    assert sample["wrong"] == 0
    assert list(tmp_path.glob("bench-workflows-*")) == []  # temp dirs removed
