"""Workflow benchmark: parked workflows' memory, resolving them, and resuming sleeping
workflows after a restart.

The workflow under test waits on a durable promise, or sleeps::

    class Wf(actors.Workflow):
        @actors.main
        async def run(self, ctx: actors.WorkflowContext, i: int) -> str:
            return await ctx.promise("p", str).value()     # parked until resolved

        @actors.shared
        async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
            await ctx.promise("p", str).resolve(value)

    class Sleeper(actors.Workflow):
        @actors.main
        async def run(self, ctx: actors.WorkflowContext, seconds: float) -> float:
            await ctx.sleep(seconds)                       # a durable timer
            return seconds

Measured in every run, for each durability asked for, each in a fresh temporary
directory and, for the workflows, in a fresh child process (so its RSS is its own):

* **raw LMDB, 1 record/commit** (baseline): one thread, one ``sync=True`` write
  transaction per ~100-byte record (``sync=False`` for ``"process"``); commits/s. The
  rates below are also shown as a ratio to it.
* **(a) parked**: ``rt.send(Wf.run, i, key=f"wf-{i}")`` for ``--parked`` ids (100,000)
  from 256 submitting tasks, then wait until ``rt.statistics().parked`` counts them all.
  Reported: the process's VmRSS (split into anonymous memory and LMDB's file-backed map
  pages) and VmHWM from ``/proc/self/status``, against the RSS of the same process with
  the runtime open and nothing submitted; bytes per parked workflow. The figure
  includes the benchmark's own list of 100,000 ``InvocationHandle`` objects. Then every
  promise is resolved through ``rt.call(Wf.approve, ...)`` from 256 tasks, each also
  waiting for its workflow's result (``handle.result()``); the time until all results
  are in is the resolve time. Each resolve is at least two commits (the promise, then the revived
  workflow's completion).
* **(b) resume after restart**: a child process submits ``--sleeping`` (10,000)
  ``Sleeper`` workflows sleeping ``--sleep`` seconds, waits until all are parked on their
  timers (none finished), and exits the runtime and the process. Once every timer is due,
  a new child process opens the same directory and attaches to all of them; the resume
  time runs from just before ``open_runtime`` (recovery included) until the last result.

The runtimes are opened with ``suspend_after=1`` s: the runtime suspends waiters early
only once a tenth of ``max_in_flight`` (10,000) are blocked, so with the default (60 s)
the last thousand would wait a minute before parking. The whole set is repeated
``--runs`` times; the tables show the median with [min-max]. ``--quick`` (the smoke
test in ``tests/test_bench_workflows.py``) uses ``suspend_after=0.2`` s and 1 s sleeps.

Targets (``"fsync"``): 100,000 parked workflows in under 300 MB RSS, and all 10,000
sleeping workflows resumed within 10 s of the restart. They are printed as PASS/FAIL
lines; a wrong result, or a workflow that finished before the restart, fails the script.

A full run is long: on the 2-core machine of the issue one fsync run took about 5
minutes (115 s to submit 100,000 workflows, 170 s to resolve them, 20 s of sleepers
waiting to be due), so the default (both durabilities, 3 runs) takes about half an hour.

Run::

    .venv/bin/python bench/workflows.py                         # fsync and process, 3 runs
    .venv/bin/python bench/workflows.py --durability fsync --runs 1
    .venv/bin/python bench/workflows.py --quick                 # 200 parked, 100 sleeping
    .venv/bin/python bench/workflows.py --out bench/results   # also workflows.md and .json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

from bench._common import (
    HANG_MARGIN,
    Durability,
    add_output_args,
    in_fresh_dir,
    json_meta,
    machine_text,
    perf_counter,
    recording_stdout,
    run_raw,
    save_results,
)
from bench._workflows_report import (
    PARKED_TARGET,
    RESUME_COUNT,
    SUBMITTERS,
    Sample,
    correctness,
    print_table,
    target_checks,
)

TEMP_PREFIX: Final = "bench-workflows-"
SUSPEND_AFTER: Final = 1.0  # seconds (--suspend-after); see the module docstring
POLL: Final = 0.05  # seconds between statistics() polls while waiting for parking


# --- the workflows under test --------------------------------------------------------------


class Wf(actors.Workflow):
    """Parks on a durable promise until ``approve`` resolves it."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, i: int) -> str:
        return await ctx.promise("p", str).value()

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
        await ctx.promise("p", str).resolve(value)


class Sleeper(actors.Workflow):
    """Sleeps on a durable timer, then returns how long."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, seconds: float) -> float:
        await ctx.sleep(seconds)
        return seconds


# --- memory --------------------------------------------------------------------------------


def memory_mb() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process in MB (``/proc/self/status``;
    elsewhere only the peak, from ``getrusage``)."""
    fields = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    values = dict.fromkeys(fields, float("nan"))
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0]) / 1024  # kB
    except OSError:
        values["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return values


# --- child processes: the measurements themselves ------------------------------------------


async def pool(count: int, work: Callable[[int], Awaitable[None]]) -> None:
    """Run ``work(i)`` for ``i < count`` from ``SUBMITTERS`` tasks: a fixed pool, not one
    task per item, so the benchmark's own tasks do not inflate the memory measured."""
    items = iter(range(count))

    async def worker() -> None:
        for i in items:
            await work(i)

    async with trio.open_nursery() as nursery:
        for _ in range(min(SUBMITTERS, count)):
            nursery.start_soon(worker)


async def wait_parked(rt: actors.Runtime, count: int, what: str) -> None:
    """Poll until ``count`` invocations are parked (bounded)."""
    with trio.move_on_after(HANG_MARGIN) as scope:
        # statistics() is a snapshot with no event to wait on: poll it.
        while rt.statistics().parked < count:  # noqa: ASYNC110
            await trio.sleep(POLL)
    if scope.cancelled_caught:
        raise RuntimeError(f"{what}: not all parked after {HANG_MARGIN} s: {rt.statistics()}")


async def child_parked(
    directory: Path, durability: Durability, count: int, suspend_after: float
) -> dict[str, object]:
    async with actors.open_runtime(
        directory, [Wf], durability=durability, suspend_after=suspend_after
    ) as rt:
        empty = memory_mb()
        handles: list[actors.InvocationHandle | None] = [None] * count

        async def submit(i: int) -> None:
            handles[i] = await rt.send(Wf.run, i, key=f"wf-{i}")

        start = perf_counter()
        with trio.fail_after(HANG_MARGIN + count / 100):
            await pool(count, submit)
        submitted = perf_counter()
        await wait_parked(rt, count, "parked")
        parked_at = perf_counter()
        parked = memory_mb()
        stats = rt.statistics()
        wrong = 0

        async def resolve(i: int) -> None:
            nonlocal wrong
            await rt.call(Wf.approve, f"v{i}", key=f"wf-{i}")
            handle = handles[i]
            assert handle is not None
            if await handle.result() != f"v{i}":
                wrong += 1

        with trio.fail_after(HANG_MARGIN + count / 100):
            await pool(count, resolve)
        resolved = perf_counter()
        after = memory_mb()
    return {
        "empty": empty,
        "parked": parked,
        "after": after,
        "stats": asdict_stats(stats),
        "submit_s": submitted - start,
        "park_s": parked_at - submitted,
        "resolve_s": resolved - parked_at,
        "data_mb": (directory / "data.mdb").stat().st_size / 2**20,
        "wrong": wrong,
    }


def asdict_stats(stats: actors.RuntimeStatistics) -> dict[str, int]:
    return {
        "in_flight": stats.in_flight,
        "parked": stats.parked,
        "suspended": stats.suspended,
        "activations": stats.activations,
        "timers": stats.timers,
    }


async def child_sleepers(
    directory: Path, durability: Durability, count: int, sleep: float, suspend_after: float
) -> dict[str, object]:
    async with actors.open_runtime(
        directory, [Sleeper], durability=durability, suspend_after=suspend_after
    ) as rt:

        async def submit(i: int) -> None:
            await rt.send(Sleeper.run, sleep, key=f"sleep-{i}")

        start = perf_counter()
        with trio.fail_after(HANG_MARGIN + count / 100):
            await pool(count, submit)
        await wait_parked(rt, count, "sleepers")
        # All parked: every one journaled its sleep, and none has finished. Each is due
        # at most ``sleep`` seconds from now.
        due_by = time.time() + sleep
        elapsed = perf_counter() - start
        stats = rt.statistics()
    # Exiting open_runtime closed the runtime while they sleep; the process ends next.
    return {"submit_park_s": elapsed, "due_by": due_by, "stats": asdict_stats(stats)}


async def child_resume(
    directory: Path, durability: Durability, count: int, sleep: float
) -> dict[str, object]:
    wrong = 0
    start = perf_counter()
    async with actors.open_runtime(directory, [Sleeper], durability=durability) as rt:
        opened = perf_counter()

        async def attach(i: int) -> None:
            nonlocal wrong
            if await rt.attach_workflow(Sleeper, f"sleep-{i}") != sleep:
                wrong += 1

        with trio.fail_after(HANG_MARGIN + count / 100):
            await pool(count, attach)
        done = perf_counter()
    return {"open_s": opened - start, "resume_s": done - start, "wrong": wrong}


def child_main(args: argparse.Namespace) -> int:
    directory = Path(args.child_dir)
    result: dict[str, object]
    if args.child == "parked":
        result = trio.run(
            child_parked, directory, args.durability_one, args.parked, args.suspend_after
        )
    elif args.child == "sleepers":
        result = trio.run(
            child_sleepers,
            directory,
            args.durability_one,
            args.sleeping,
            args.sleep,
            args.suspend_after,
        )
    else:
        result = trio.run(child_resume, directory, args.durability_one, args.sleeping, args.sleep)
    print(json.dumps(result), flush=True)
    return 0


def run_child(
    args: argparse.Namespace, kind: str, directory: Path, durability: str
) -> dict[str, object]:
    """Run this script as a ``--child kind`` process; its last stdout line is JSON."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        kind,
        "--child-dir",
        str(directory),
        "--durability-one",
        durability,
        "--parked",
        str(args.parked),
        "--sleeping",
        str(args.sleeping),
        "--sleep",
        repr(args.sleep),
        "--suspend-after",
        repr(args.suspend_after),
    ]
    budget = HANG_MARGIN * 2 + (args.parked + args.sleeping) / 100 + args.sleep
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=budget, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the parent: runs, table, checks --------------------------------------------------------


def mb(value: object, name: str) -> float:
    assert isinstance(value, dict)
    result = value[name]
    assert isinstance(result, float | int)
    return float(result)


def num(result: dict[str, object], name: str) -> float:
    value = result[name]
    assert isinstance(value, float | int)
    return float(value)


def measure_raw(directory: Path, durability: Durability, args: argparse.Namespace) -> float:
    units, elapsed, _ = run_raw(
        directory, durability, seconds=args.seconds, warmup=args.warmup, cap=1_000_000
    )
    return units / elapsed if elapsed > 0 else 0.0


def measure_resume(
    directory: Path, durability: Durability, args: argparse.Namespace
) -> tuple[dict[str, object], float, dict[str, object]]:
    sleepers = run_child(args, "sleepers", directory, durability)
    # Restart once every timer is due (the process is down meanwhile).
    wait = max(0.0, num(sleepers, "due_by") - time.time())
    time.sleep(wait)
    resumed = run_child(args, "resume", directory, durability)
    return sleepers, wait, resumed


def measure(args: argparse.Namespace, durability: Durability) -> Sample:
    raw = in_fresh_dir(args.dir, TEMP_PREFIX, lambda d: measure_raw(d, durability, args))
    parked = in_fresh_dir(args.dir, TEMP_PREFIX, lambda d: run_child(args, "parked", d, durability))
    sleepers, wait, resumed = in_fresh_dir(
        args.dir, TEMP_PREFIX, lambda d: measure_resume(d, durability, args)
    )
    empty, at_parked, after = parked["empty"], parked["parked"], parked["after"]
    stats = parked["stats"]
    assert isinstance(stats, dict)
    return Sample(
        raw_commits_per_s=raw,
        rss_empty_mb=mb(empty, "VmRSS"),
        rss_parked_mb=mb(at_parked, "VmRSS"),
        hwm_parked_mb=mb(at_parked, "VmHWM"),
        anon_parked_mb=mb(at_parked, "RssAnon"),
        file_parked_mb=mb(at_parked, "RssFile"),
        data_mb=num(parked, "data_mb"),
        bytes_per_parked=(mb(at_parked, "VmRSS") - mb(empty, "VmRSS")) * 2**20 / args.parked,
        submit_s=num(parked, "submit_s"),
        park_s=num(parked, "park_s"),
        resolve_s=num(parked, "resolve_s"),
        hwm_end_mb=mb(after, "VmHWM"),
        sleepers_submit_park_s=num(sleepers, "submit_park_s"),
        restart_wait_s=wait,
        open_s=num(resumed, "open_s"),
        resume_s=num(resumed, "resume_s"),
        parked_count=int(stats["parked"]),
        wrong=int(num(parked, "wrong") + num(resumed, "wrong")),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Memory of parked workflows, resolving them, and resuming sleeping "
        "workflows after a restart, against raw LMDB commits."
    )
    parser.add_argument(
        "--durability",
        choices=["fsync", "process", "both"],
        default="both",
        help="both: fsync (the targets), then process",
    )
    parser.add_argument("--parked", type=int, default=PARKED_TARGET, help="workflows parked")
    parser.add_argument("--sleeping", type=int, default=RESUME_COUNT, help="sleeping workflows")
    parser.add_argument(
        "--sleep",
        type=float,
        default=None,
        help="seconds each sleeper sleeps; must outlast submitting them all (default 20, quick 1)",
    )
    parser.add_argument(
        "--suspend-after",
        type=float,
        default=None,
        help=f"open_runtime's suspend_after (default {SUSPEND_AFTER:g} s, quick 0.2 s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; median shown (3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="raw baseline (2 s)")
    parser.add_argument("--warmup", type=float, default=0.3, help="before it (0.3 s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 200 parked, 100 sleeping, 1 run, process durability",
    )
    add_output_args(parser)
    # Internal: one measurement in a child process.
    parser.add_argument("--child", choices=["parked", "sleepers", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    parser.add_argument("--durability-one", choices=["fsync", "process"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.parked, args.sleeping, args.runs = 200, 100, 1
        args.seconds, args.warmup = 0.2, 0.05
        if args.durability == "both":
            args.durability = "process"
    if args.sleep is None:
        args.sleep = 1.0 if args.quick else 20.0
    if args.suspend_after is None:
        args.suspend_after = 0.2 if args.quick else SUSPEND_AFTER
    if min(args.runs, args.parked, args.sleeping) < 1 or min(args.sleep, args.suspend_after) <= 0:
        parser.error("need --runs, --parked, --sleeping >= 1, --sleep and --suspend-after > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(args)
    modes: list[Durability] = (
        ["fsync", "process"] if args.durability == "both" else [args.durability]
    )
    with recording_stdout() as printed:
        print(
            f"bench/workflows.py: {args.runs} runs, {args.parked:,} parked, {args.sleeping:,} "
            f"sleeping {args.sleep:g} s, durability {', '.join(modes)}, suspend_after="
            f"{args.suspend_after:g} s; {machine_text(args.dir)}",
            flush=True,
        )
        ok = True
        results: dict[str, object] = {}
        for durability in modes:
            samples: list[Sample] = []
            for run in range(args.runs):
                print(
                    f"  {durability} run {run + 1}/{args.runs} ...",
                    end="",
                    flush=True,
                    file=sys.stderr,
                )
                samples.append(measure(args, durability))
                print(" done", file=sys.stderr)
            print_table(args, durability, samples)
            ok = correctness(durability, args, samples) and ok
            checks = target_checks(args, durability, samples)
            results[durability] = {"samples": [asdict(s) for s in samples], "checks": checks}
            sys.stdout.flush()
    meta = json_meta(
        sys.argv[1:],
        parked=args.parked,
        sleeping=args.sleeping,
        sleep=args.sleep,
        suspend_after=args.suspend_after,
        pid=os.getpid(),
    )
    result = {"meta": meta, "results": results, "correct": ok}
    save_results(args, "workflows", printed.getvalue(), result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
