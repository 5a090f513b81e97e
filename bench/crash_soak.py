"""Crash soak: the long versions of ``tests/actors/test_crash_mixed.py`` and
``tests/actors/test_crash_recovery.py``.

Each workload runs in *rounds*: a round starts from an empty data directory, SIGKILLs the
workload over and over and restarts it until a life prints ``DONE``, then checks it.
Rounds go on until ``--kills`` kills were made or ``--max-seconds`` passed, per
durability (``--durability both``, the default, runs "process" and then "fsync"); the
round in progress then runs to the end without kills and is checked too.

``--workload mixed`` (the default; ``tests/crash_mixed.py``): several sources of
exclusive work on each of a few counter keys at once (idempotent, delayed and plain
sends and calls, ``ctx.send``/``ctx.call`` from a service, a durable timer inside an
exclusive handler, workflows with chained steps, a timer and a promise resolved from
another actor). The oracle (``crash_mixed_oracle.verify``): per key the values returned by
completed increments are exactly 1..n, once each, matching the stored counter and its
history; every accepted submission completed exactly once; every chained step saw the
durable output of the step before. Kill points: after 1..``--max-lines`` progress lines,
after a random delay (``--timed-fraction``), and bursts of kills 0.15..``--burst-delay``
seconds after starting (``--burst-fraction``), which land in start-up and recovery.
At most ``--kills-per-round`` kills per round.

``--workload ledger`` (``tests/crash_workload.py``): N ``Ledger.apply`` invocations over
K keys, sent one after the other, three logged ``ctx.run`` steps and a balance update
each; checks exactly-once results, state equal to an uninterrupted run, no step re-run
after its result was durable. Kill points: after 1..``--max-lines`` lines, or with
probability ``--timed-fraction`` after up to ``--max-delay`` seconds.

Prints one line per round and a summary; exits 1 if any violation was found.

Run::

    .venv/bin/python bench/crash_soak.py                          # mixed, 2000 kills per durability
    .venv/bin/python bench/crash_soak.py --kills 300 --durability fsync --seed 7
    .venv/bin/python bench/crash_soak.py --workload ledger --kills 500 --durability process
    .venv/bin/python bench/crash_soak.py --stop-at-first          # stop at the first bad round
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from actors.testing import run_until_killed

# The workloads live with the tests. Appended after ``actors`` is imported, so that the
# test folder tests/actors/ cannot shadow the package.
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
import crash_mixed
import crash_mixed_oracle
import crash_workload

if TYPE_CHECKING:
    from collections.abc import Callable

Durability = Literal["fsync", "process"]
MAX_LIVES_PER_ROUND = 2000


@dataclass
class Totals:
    rounds: int = 0
    lives: int = 0
    kills: int = 0
    timed_kills: int = 0
    burst_kills: int = 0
    invocations: int = 0
    step_executions: int = 0
    reexecuted_steps: int = 0
    torn_records: int = 0
    violations: int = 0
    bad_rounds: int = 0
    first_bad: str = ""


# --- the ledger workload ------------------------------------------------------------------------


def ledger_round(
    args: argparse.Namespace,
    durability: Durability,
    rng: random.Random,
    workdir: Path,
    totals: Totals,
    deadline: float,
) -> list[str]:
    """One ledger round from an empty directory until DONE; returns its violations."""
    data, log, stderr = workdir / "data", workdir / "effects.log", workdir / "stderr"
    keys = args.keys or 20
    argv = crash_workload.workload_argv(
        data, log, args.invocations, keys, durability=durability, stderr=stderr
    )
    observed = crash_workload.Observed()
    for _ in range(MAX_LIVES_PER_ROUND):
        totals.lives += 1
        out_of_budget = totals.kills >= args.kills or time.monotonic() >= deadline
        if out_of_budget:  # finish this round without kills
            lines, status = run_until_killed(argv, kill_after_lines=10**9, timeout=300)
        elif rng.random() < args.timed_fraction:
            delay = rng.uniform(0, args.max_delay)
            lines, status = crash_mixed_oracle.run_until_timed_kill(argv, delay, workdir / "stdout")
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
    totals.invocations += args.invocations
    violations = crash_workload.verify(
        data, log, args.invocations, keys, observed=observed, durability=durability
    )
    effects = crash_workload.read_log(log)
    totals.step_executions += sum(len(runs) for runs in effects.executions.values())
    totals.reexecuted_steps += sum(len(runs) - 1 for runs in effects.executions.values())
    totals.torn_records += len(effects.torn)
    return violations


# --- the mixed workload -------------------------------------------------------------------------


def mixed_config(args: argparse.Namespace) -> crash_mixed.Config:
    return crash_mixed.Config(
        jobs=args.jobs,
        keys=args.keys or 3,
        lanes=args.lanes,
        callers=args.callers,
        plain_calls=args.plain_calls,
        step_seconds=args.step_seconds,
    )


def mixed_round(
    args: argparse.Namespace,
    durability: Durability,
    rng: random.Random,
    workdir: Path,
    totals: Totals,
    deadline: float,
) -> list[str]:
    """One mixed round from an empty directory until DONE; returns its violations."""
    config = mixed_config(args)
    kills = crash_mixed_oracle.KillPlan(
        max_kills=min(args.kills_per_round, max(0, args.kills - totals.kills)),
        max_seconds=max(0.0, deadline - time.monotonic()),
        max_lines=args.max_lines,
        timed_fraction=args.timed_fraction,
        max_delay=args.max_delay,
        burst_fraction=args.burst_fraction,
        burst_delay=args.burst_delay,
        max_lives=MAX_LIVES_PER_ROUND,
    )
    observed, stats, problems = crash_mixed_oracle.run_round(
        workdir, config, rng, kills, durability=durability
    )
    totals.lives += stats.lives
    totals.kills += stats.kills
    totals.timed_kills += stats.timed_kills
    totals.burst_kills += stats.burst_kills
    if problems:
        return problems
    evidence = crash_mixed_oracle.collect(workdir, config, durability)
    totals.invocations += len(crash_mixed.make_plan(config))
    for (_, _), runs in evidence.chain_log.items():
        totals.step_executions += len(runs)
        totals.reexecuted_steps += len(runs) - 1
    return crash_mixed_oracle.verify(config, evidence, observed)


# --- the driver ---------------------------------------------------------------------------------


def soak(
    args: argparse.Namespace,
    durability: Durability,
    rng: random.Random,
    base: Path,
    failures: list[str],
) -> Totals:
    """Rounds of one workload in one durability until the kill or time budget is spent."""
    run: Callable[[argparse.Namespace, Durability, random.Random, Path, Totals, float], list[str]]
    run = mixed_round if args.workload == "mixed" else ledger_round
    totals = Totals()
    started = time.monotonic()
    deadline = started + args.max_seconds
    while totals.kills < args.kills and time.monotonic() < deadline:
        workdir = base / f"{durability}-round-{totals.rounds:04d}"
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        kills_before = totals.kills
        violations = run(args, durability, rng, workdir, totals, deadline)
        totals.rounds += 1
        totals.violations += len(violations)
        print(
            f"{durability} round {totals.rounds}: {totals.kills - kills_before} kills, "
            f"{len(violations)} violations (total {totals.kills} kills, "
            f"{time.monotonic() - started:.0f}s)",
            flush=True,
        )
        if violations:
            totals.bad_rounds += 1
            if not totals.first_bad:
                totals.first_bad = (
                    f"round {totals.rounds}, after {totals.kills} kills in "
                    f"{time.monotonic() - started:.0f}s"
                )
            failures.append(f"{durability} round {totals.rounds} ({workdir}):")
            failures += [f"  {v}" for v in violations[:20]]
            if args.stop_at_first:
                break
        elif not args.keep:
            shutil.rmtree(workdir)
    elapsed = time.monotonic() - started
    print(
        f"summary {durability}: {totals.kills} kills ({totals.timed_kills} timed, "
        f"{totals.burst_kills} in bursts), {totals.lives} lives, {totals.rounds} rounds "
        f"({totals.bad_rounds} with violations"
        + (f", the first: {totals.first_bad}" if totals.first_bad else "")
        + f"), {totals.invocations} submissions, {totals.step_executions} logged step executions "
        f"of which {totals.reexecuted_steps} re-ran a step whose result was not durable, "
        f"{totals.torn_records} torn log records, {totals.violations} violations, "
        f"{elapsed:.1f}s wall time",
        flush=True,
    )
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=["mixed", "ledger"], default="mixed")
    parser.add_argument(
        "--kills", type=int, default=2000, help="stop after this many kills (per durability)"
    )
    parser.add_argument("--durability", choices=["process", "fsync", "both"], default="both")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument(
        "--max-seconds", type=float, default=3600.0, help="time budget per durability"
    )
    parser.add_argument("--keys", type=int, default=None, help="default: mixed 3, ledger 20")
    parser.add_argument("--max-lines", type=int, default=None, help="line kills: 1..N lines")
    parser.add_argument("--timed-fraction", type=float, default=0.2)
    parser.add_argument("--max-delay", type=float, default=None, help="timed kills: seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the data of every round")
    parser.add_argument(
        "--stop-at-first", action="store_true", help="stop at the first round with violations"
    )
    mixed = parser.add_argument_group("mixed workload")
    mixed.add_argument("--jobs", type=int, default=60, help="jobs of the plan per round")
    mixed.add_argument("--lanes", type=int, default=6)
    mixed.add_argument("--callers", type=int, default=2, help="plain-call tasks per life")
    mixed.add_argument("--plain-calls", type=int, default=6, help="plain calls per caller")
    mixed.add_argument("--step-seconds", type=float, default=0.004)
    mixed.add_argument("--kills-per-round", type=int, default=40)
    mixed.add_argument("--burst-fraction", type=float, default=0.15)
    mixed.add_argument(
        "--burst-delay", type=float, default=0.6, help="burst kills: 0.15..N seconds"
    )
    ledger = parser.add_argument_group("ledger workload")
    ledger.add_argument("--invocations", type=int, default=200, help="invocations per round")
    args = parser.parse_args()
    if args.max_lines is None:
        args.max_lines = 12 if args.workload == "mixed" else 15
    if args.max_delay is None:
        # A life with nothing to do takes ~0.3s on 2 cores; mixed lives wait for delays.
        args.max_delay = 1.2 if args.workload == "mixed" else 0.35
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    durabilities: list[Durability] = (
        ["process", "fsync"] if args.durability == "both" else [args.durability]
    )
    size = (
        f"{args.jobs} jobs over {args.keys or 3} keys, {args.callers}x{args.plain_calls} "
        "plain calls per life"
        if args.workload == "mixed"
        else f"{args.invocations} invocations over {args.keys or 20} keys"
    )
    print(
        f"crash soak: workload {args.workload}, seed {seed}, {size} per round, durability "
        f"{' then '.join(durabilities)}, target {args.kills} kills and at most "
        f"{args.max_seconds:.0f}s each",
        flush=True,
    )
    base = args.workdir or Path(tempfile.mkdtemp(prefix="crash-soak-"))
    failures: list[str] = []
    violations = 0
    for durability in durabilities:
        rng = random.Random(f"{seed}-{durability}")
        violations += soak(args, durability, rng, base, failures).violations
    if args.workdir is None and not failures and not args.keep:
        shutil.rmtree(base)
    for line in failures:
        print(line)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
