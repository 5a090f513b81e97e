"""CPU cost per call, counted in instructions: a comparison that noise cannot move.

On a shared 2-core machine, calls/s of the same code move by 1.2-1.8x between two
back-to-back runs, so a 3% change in the cost of a call cannot be seen in timings.
``valgrind --tool=callgrind`` counts the instructions a program executes instead: for
the same code and inputs the count repeats to within a fraction of a percent, whatever
else the machine is doing. This script counts them for the object workloads of
``bench/objects.py``, run with a fixed number of calls:

* **W2**: 64 tasks, task ``i`` calls ``Counter.add`` on key ``k{i}``.
* **W3**: 64 tasks calling ``Counter.add`` on one key.
* **W5**: 64 tasks reading ``Counter.value`` on one key while 16 tasks call ``add`` on it.
* **W1**: one task calling ``add`` sequentially.
* **S16** / **S1**: 16 tasks (one task) calling a service handler of ten ``ctx.run``
  steps with an ``async def`` body, as ``bench/steps.py``; the cost is per invocation.
* **S256**: the same with 256 tasks, each making a fifth of the calls.
* **T16** / **T256**: S16 / S256 with a plain ``def`` body, which runs on the runtime's
  step threads: the cost of the thread hand-off is T minus S (callgrind counts the
  instructions of every thread).
* **R64**: resolving parked workflows, as ``bench/parked.py``'s resolve phase: ``3n``
  workflows per task are parked on a durable promise (as ``bench.workflows.Wf``), then 64
  tasks each resolve ``n`` of them (``rt.call(Wf.approve, ...)``) and wait for each
  result (``rt.attach_workflow``). Both runs park the same number, so the difference
  is the cost of a resolution alone.
* **L16** / **L256**: T16 / T256 with the body declared ``blocking=False``, so it runs on
  the loop (no thread): what the opt-in saves (a revision before it cannot run these).

Each workload runs twice under callgrind, with ``n`` and ``3n`` calls per task; the
difference divided by the extra calls is the cost of one call in steady state, without
the interpreter's start-up, imports and the runtime's open and close. Commits are
``"process"`` durability (no fsync: a count of the CPU's work, not of the disk's) with
the runtime's default ``commit_mode="auto"`` (commits on the loop's thread, as in the
benchmarks); ``--commit-mode thread`` counts the writer thread's hand-off instead, the
default of this script until 2026-12-01 (and ``inline`` commits in the submitting call).
The garbage collector runs as usual; ``--no-gc`` turns it off, which shows the code's
own cost without the collector's thresholds (a collection that happens to fall in one
run and not in the other moves the count by a few percent).

``--against REV`` builds the git revision ``REV`` of this repository into a temporary
virtualenv and counts both, alternately, printing new/old per workload: the check that a
change costs no speed. Exit status 0 unless valgrind is missing or a workload fails.

Run::

    .venv/bin/python bench/instructions.py                      # this checkout
    .venv/bin/python bench/instructions.py --against fc49931    # vs another revision
    .venv/bin/python bench/instructions.py --workloads w2 w5 --no-gc
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final, Literal, cast

ROOT: Final = Path(__file__).resolve().parent.parent
WORKLOADS: Final = (
    "w2",
    "w3",
    "w5",
    "w1",
    "s16",
    "s1",
    "t16",
    "s256",
    "t256",
    "r64",
    "l16",
    "l256",
)
#: R64: workflows parked per task, in both runs of the workload (``count_instructions``).
_PARK_ENV: Final = "ACTORS_BENCH_PARK_PER_TASK"
_TASKS: Final = 64


def calls_made(workload: str, per_task: int) -> int:
    """Calls of one run: what the workload's tasks do with ``per_task`` each."""
    if workload == "w5":
        return _TASKS * per_task + 16 * (per_task // 4)
    if workload in ("s16", "t16", "l16"):
        return 16 * per_task
    if workload in ("s256", "t256", "l256"):
        return 256 * max(1, per_task // 5)
    if workload == "s1":
        return 4 * per_task
    return _TASKS * per_task


CommitMode = Literal["auto", "thread", "inline"]


def run_workload(workload: str, per_task: int, commit_mode: CommitMode) -> None:
    """The measured program (run under callgrind, in the virtualenv being measured)."""
    import tempfile as _tempfile

    import trio

    import actors

    if workload == "r64":
        trio.run(resolve_parked, per_task, int(os.environ.get(_PARK_ENV, per_task)))
        return

    class Counter(actors.VirtualObject):
        @actors.exclusive
        async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
            n = (await ctx.get("n", int)) or 0
            ctx.set("n", n + delta)
            return n + delta

        @actors.shared
        async def value(self, ctx: actors.ObjectSharedContext) -> int:
            return (await ctx.get("n", int)) or 0

    async def step(i: int) -> int:
        return i

    def step_sync(i: int) -> int:
        return i

    class Steps(actors.Service):
        @actors.handler
        async def ten(self, ctx: actors.Context) -> int:
            total = 0
            for i in range(10):
                total += await ctx.run(f"step{i}", step, i)
            return total

        @actors.handler
        async def ten_sync(self, ctx: actors.Context) -> int:
            total = 0
            for i in range(10):
                total += await ctx.run(f"step{i}", step_sync, i)
            return total

        @actors.handler
        async def ten_on_loop(self, ctx: actors.Context) -> int:
            total = 0
            for i in range(10):
                total += await ctx.run(f"step{i}", step_sync, i, blocking=False)
            return total

    async def main() -> None:
        with _tempfile.TemporaryDirectory() as tmp:
            async with actors.open_runtime(
                Path(tmp) / "db", [Counter, Steps], durability="process", commit_mode=commit_mode
            ) as rt:

                async def adds(key: str, count: int) -> None:
                    for _ in range(count):
                        await rt.call(Counter.add, 1, key=key)

                ten = {"t": Steps.ten_sync, "l": Steps.ten_on_loop}.get(workload[0], Steps.ten)

                async def tens(count: int) -> None:
                    for _ in range(count):
                        if await rt.call(ten) != 45:
                            raise SystemExit("a ten-step handler did not return 45")

                async def reads(count: int) -> None:
                    for _ in range(count):
                        await rt.call(Counter.value, key="one")

                async with trio.open_nursery() as nursery:
                    if workload[0] in "stl":
                        tasks = int(workload[1:])
                        count = {1: 4 * per_task, 16: per_task}.get(tasks, max(1, per_task // 5))
                        for _ in range(tasks):
                            nursery.start_soon(tens, count)
                        return
                    if workload == "w1":
                        nursery.start_soon(adds, "one", _TASKS * per_task)
                    for i in range(_TASKS if workload != "w1" else 0):
                        if workload == "w2":
                            nursery.start_soon(adds, f"k{i}", per_task)
                        elif workload == "w3":
                            nursery.start_soon(adds, "one", per_task)
                        else:
                            nursery.start_soon(reads, per_task)
                    if workload == "w5":
                        for _ in range(16):
                            nursery.start_soon(adds, "one", per_task // 4)
                if workload != "w2":
                    total = await rt.call(Counter.value, key="one")
                    expected = {"w1": _TASKS * per_task, "w3": _TASKS * per_task}.get(
                        workload, 16 * (per_task // 4)
                    )
                    if total != expected:
                        raise SystemExit(f"{workload}: counter is {total}, expected {expected}")

    trio.run(main)


async def resolve_parked(per_task: int, park_per_task: int) -> None:
    """R64: park ``park_per_task`` workflows per task, then resolve ``per_task`` each."""
    import tempfile as _tempfile

    import trio

    import actors

    class Wf(actors.Workflow):  # as bench.workflows.Wf
        @actors.main
        async def run(self, ctx: actors.WorkflowContext, i: int) -> str:
            return await ctx.promise("p", str).value()

        @actors.shared
        async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
            await ctx.promise("p", str).resolve(value)

    parked = _TASKS * park_per_task
    with _tempfile.TemporaryDirectory() as tmp:
        async with actors.open_runtime(
            Path(tmp) / "db", [Wf], durability="process", suspend_after=0.2
        ) as rt:

            async def park(first: int) -> None:
                for i in range(first, parked, _TASKS):
                    await rt.send(Wf.run, i, key=f"wf-{i}")

            async def resolve(first: int) -> None:
                for i in range(first, _TASKS * per_task, _TASKS):
                    await rt.call(Wf.approve, f"v{i}", key=f"wf-{i}")
                    if await rt.attach_workflow(Wf, f"wf-{i}") != f"v{i}":
                        raise SystemExit(f"wrong result for wf-{i}")

            async with trio.open_nursery() as nursery:
                for first in range(_TASKS):
                    nursery.start_soon(park, first)
            # statistics() is a snapshot with no event to wait on: poll it.
            while rt.statistics().parked < parked:  # noqa: ASYNC110
                await trio.sleep(0.05)
            async with trio.open_nursery() as nursery:
                for first in range(_TASKS):
                    nursery.start_soon(resolve, first)


def count_instructions(python: str, workload: str, per_task: int, args: argparse.Namespace) -> int:
    """Instructions callgrind counts for one run of ``workload``."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "callgrind.log"
        env = dict(os.environ, PYTHONHASHSEED="0")
        # This checkout's python counts this checkout (not whatever an editable install
        # or an inherited PYTHONPATH points at); a revision's venv counts its install.
        if python == sys.executable:
            env["PYTHONPATH"] = str(ROOT)
        else:
            env.pop("PYTHONPATH", None)
        if args.no_gc:
            env["ACTORS_BENCH_NO_GC"] = "1"
        if workload == "r64":
            env[_PARK_ENV] = str(3 * args.calls)
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            f"--log-file={log}",
            python,
            str(Path(__file__).resolve()),
            "--run",
            workload,
            str(per_task),
            args.commit_mode,
        ]
        subprocess.run(command, check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        found = re.search(r"Collected : (\d+)", log.read_text())
        if found is None:
            raise SystemExit(f"callgrind printed no count for {workload}: see {log}")
        return int(found.group(1))


def per_call(python: str, workload: str, args: argparse.Namespace) -> float:
    """Steady-state instructions per call: the count of the 3n run minus the n run."""
    small, large = args.calls, 3 * args.calls
    extra = calls_made(workload, large) - calls_made(workload, small)
    low = count_instructions(python, workload, small, args)
    high = count_instructions(python, workload, large, args)
    return (high - low) / extra


def build_revision(revision: str, where: Path) -> str:
    """A virtualenv with ``revision`` of this repository installed; its python."""
    tree = where / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(tree)], capture_output=True, text=True
    )
    if installed.returncode != 0:
        raise SystemExit(f"installing {revision} failed:\n{installed.stderr}")
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--calls", type=int, default=10, help="calls per task in the small run")
    parser.add_argument("--commit-mode", choices=("auto", "thread", "inline"), default="auto")
    parser.add_argument("--no-gc", action="store_true", help="run with the collector off")
    parser.add_argument("--against", metavar="REV", help="also count git revision REV")
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        if os.environ.get("ACTORS_BENCH_NO_GC"):
            import gc

            gc.disable()
        workload, per_task, commit_mode = args.run
        run_workload(workload, int(per_task), cast("CommitMode", commit_mode))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    mode = f"commit_mode={args.commit_mode}, gc {'off' if args.no_gc else 'on'}"
    print(
        f"instructions per call (callgrind; {mode}; {args.calls} and {3 * args.calls} calls/task)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        old_python = build_revision(args.against, Path(tmp)) if args.against else None
        try:
            header = f"{'workload':<9}{'this checkout':>15}"
            if old_python:
                header += f"{args.against:>15}{'ratio':>8}"
            print(header)
            for workload in args.workloads:
                new = per_call(sys.executable, workload, args)
                line = f"{workload.upper():<9}{new:>15,.0f}"
                if old_python:
                    old = per_call(old_python, workload, args)
                    line += f"{old:>15,.0f}{new / old:>8.3f}"
                print(line, flush=True)
        finally:
            if old_python:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", f"{tmp}/tree"],
                    check=False,
                )


if __name__ == "__main__":
    main()
