"""Crash soak: the long version of ``tests/actors/test_crash_recovery.py``.

Runs the workload of ``tests/crash_workload.py`` (N ``Ledger.apply`` invocations over K
keys, three logged ``ctx.run`` steps and a balance update each) in *rounds*: each round
starts from an empty data directory, SIGKILLs the workload over and over and restarts it
until a life prints ``DONE``, then checks it with ``crash_workload.verify`` (exactly-once
results, state equal to an uninterrupted run, no step re-run after its result was
durable, nothing accepted left unfinished). Rounds go on until ``--kills`` kills were
made or ``--max-seconds`` passed; the round in progress then runs to the end without
kills and is checked too.

Two kinds of kill point, drawn from ``--seed``:

* after 1..``--max-lines`` progress lines (``actors.testing.run_until_killed``), as in
  the test: every such life made at least one acceptance or completion durable;
* with probability ``--timed-fraction``, after a random delay of up to
  ``--max-delay`` seconds: these also land during start-up and recovery, before a life
  printed anything.

Prints one line per round and a summary; exits 1 if any violation was found.

Run::

    .venv/bin/python bench/crash_soak.py                       # 2000 kills, process durability
    .venv/bin/python bench/crash_soak.py --kills 300 --durability fsync --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from actors.testing import run_until_killed

# crash_workload lives with the tests. Appended after ``actors`` is imported, so that the
# test folder tests/actors/ cannot shadow the package.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
import crash_workload

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_LIVES_PER_ROUND = 2000


@dataclass
class Totals:
    rounds: int = 0
    lives: int = 0
    kills: int = 0
    timed_kills: int = 0
    invocations: int = 0
    step_executions: int = 0
    reexecuted_steps: int = 0
    torn_records: int = 0
    violations: int = 0


def run_until_timed_kill(
    argv: Sequence[str], delay: float, stdout_file: Path, timeout: float = 120.0
) -> tuple[list[str], int]:
    """Run ``argv`` and SIGKILL it after ``delay`` seconds unless it exited before.
    Returns its complete stdout lines and its exit status."""
    with stdout_file.open("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.DEVNULL, text=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        out.seek(0)
        text = out.read()
    return [line for line in text.splitlines(keepends=True) if line.endswith("\n")], status


def run_round(
    args: argparse.Namespace,
    rng: random.Random,
    workdir: Path,
    totals: Totals,
    deadline: float,
) -> list[str]:
    """One round from an empty directory until DONE; returns its violations."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    data, log, stderr = workdir / "data", workdir / "effects.log", workdir / "stderr"
    argv = crash_workload.workload_argv(
        data, log, args.invocations, args.keys, durability=args.durability, stderr=stderr
    )
    observed = crash_workload.Observed()
    for _ in range(MAX_LIVES_PER_ROUND):
        totals.lives += 1
        out_of_budget = totals.kills >= args.kills or time.monotonic() >= deadline
        if out_of_budget:  # finish this round without kills
            lines, status = run_until_killed(argv, kill_after_lines=10**9, timeout=300)
        elif rng.random() < args.timed_fraction:
            delay = rng.uniform(0, args.max_delay)
            lines, status = run_until_timed_kill(argv, delay, workdir / "stdout")
            lines = [line.rstrip("\n") for line in lines]
            totals.timed_kills += status == -signal.SIGKILL
        else:
            kill_after = rng.randint(1, args.max_lines)
            lines, status = run_until_killed(argv, kill_after_lines=kill_after, timeout=120)
        observed.feed(lines)
        if observed.done:
            break
        if status != -signal.SIGKILL:
            tail = stderr.read_text(errors="replace")[-3000:] if stderr.exists() else ""
            return [f"a life exited with status {status} before DONE; stderr:\n{tail}"]
        totals.kills += 1
    else:
        return [f"no DONE after {MAX_LIVES_PER_ROUND} lives"]
    violations = crash_workload.verify(
        data, log, args.invocations, args.keys, observed=observed, durability=args.durability
    )
    effects = crash_workload.read_log(log)
    totals.step_executions += sum(len(runs) for runs in effects.executions.values())
    totals.reexecuted_steps += sum(len(runs) - 1 for runs in effects.executions.values())
    totals.torn_records += len(effects.torn)
    return violations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=2000, help="stop after this many kills")
    parser.add_argument("--invocations", type=int, default=200, help="invocations per round")
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--durability", choices=["process", "fsync"], default="process")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--max-lines", type=int, default=15, help="line kills: 1..N lines")
    parser.add_argument("--timed-fraction", type=float, default=0.2)
    parser.add_argument(
        "--max-delay",
        type=float,
        default=0.35,
        help="timed kills: seconds (a life with nothing to do takes ~0.3s on 2 cores)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the data of every round")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(
        f"crash soak: seed {seed}, {args.invocations} invocations over {args.keys} keys "
        f"per round, durability {args.durability}, target {args.kills} kills, "
        f"at most {args.max_seconds:.0f}s",
        flush=True,
    )
    base = args.workdir or Path(tempfile.mkdtemp(prefix="crash-soak-"))
    totals = Totals()
    started = time.monotonic()
    deadline = started + args.max_seconds
    failures: list[str] = []
    while totals.kills < args.kills and time.monotonic() < deadline:
        workdir = base / f"round-{totals.rounds:04d}"
        kills_before = totals.kills
        violations = run_round(args, rng, workdir, totals, deadline)
        totals.rounds += 1
        totals.invocations += args.invocations
        totals.violations += len(violations)
        print(
            f"round {totals.rounds}: {totals.kills - kills_before} kills, "
            f"{len(violations)} violations (total {totals.kills} kills, "
            f"{time.monotonic() - started:.0f}s)",
            flush=True,
        )
        if violations:
            failures.append(f"round {totals.rounds} ({workdir}):")
            failures += [f"  {v}" for v in violations[:20]]
        elif not args.keep:
            shutil.rmtree(workdir)
    if args.workdir is None and not failures and not args.keep:
        shutil.rmtree(base)
    elapsed = time.monotonic() - started
    print(
        f"summary: seed {seed}, {totals.kills} kills ({totals.timed_kills} timed), "
        f"{totals.lives} lives, {totals.rounds} rounds, {totals.invocations} invocations, "
        f"{totals.step_executions} step executions of which {totals.reexecuted_steps} "
        f"re-ran a step whose result was not durable, {totals.torn_records} torn log "
        f"records (a kill inside a step's write), {totals.violations} violations, "
        f"{elapsed:.1f}s wall time",
        flush=True,
    )
    for line in failures:
        print(line)
    return 1 if totals.violations else 0


if __name__ == "__main__":
    sys.exit(main())
