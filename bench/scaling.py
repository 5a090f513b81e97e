"""Scaling benchmark: the cost of one operation as the work around it grows 10x and 100x.

For each dimension below the script builds the situation at 1x, 10x and 100x, then
measures one kind of operation many times in it and reports its cost per operation:
CPU time (``time.process_time()``, every thread of the process: the event loop, the
writer thread, the step threads) and wall-clock time, each as a ratio to the 1x cell.
A flat cost reads ~1.0 at 10x and 100x; a cost that grows linearly with the dimension
reads ~10 and ~100, and is a bug unless the notes at the end of the report say why.

* **journal** (steps per invocation, 10/100/1000): ``ctx.run`` steps of a ``Service``
  handler, cost per step; and replaying a ``Workflow`` after a restart, cost per journal
  entry. Both are marginal costs: the same measurement with 0 steps is subtracted, so
  the fixed cost of an invocation (or of the restart) is not spread over the steps. The
  replay measurement submits workflows that take N steps and then wait on a promise,
  waits until all are parked, closes the runtime, and times from just before
  ``open_runtime`` of the same directory until every promise is resolved and every
  result is in.
* **state** (state keys of one object, 10/100/1000): ``ctx.get`` and ``ctx.set`` of one
  key (marginal, per operation, from handlers doing 50 of them), and a whole exclusive
  call that reads and writes one key.
* **keys** (objects in the runtime, 1k/10k/100k): one call to a random existing key,
  with all N activations in memory (``idle_timeout`` is long), and after a restart,
  when they are only in storage. Opening the runtime over N keys is shown for
  information (per open, not per key).
* **parked** (workflows parked on a promise, 1k/10k/100k): one call to an unrelated
  object, and resolving one parked workflow (its promise, then its result); then a
  restart, timed until every workflow is parked again (recovery replays each to its
  wait; per workflow, measured once), and resolving one parked workflow after it.
* **concurrent** (callers in flight, 4/40/400): callers each loop calls on their own key;
  cost per call.

Every cell is the median of ``--runs`` (3) measurements in the same situation, with
``durability="process"`` (no fsync per commit, so the disk does not dominate) unless
``--durability fsync``. Sizes: ``--scale`` multiplies the 1x sizes (0.1 for a quicker
run); ``--quick`` (the smoke test in ``tests/test_bench_scaling.py``) uses tiny sizes and
one run, and writes nothing unless ``--out`` is given.

Run::

    .venv/bin/python bench/scaling.py                    # writes bench/results/scaling.{md,json}
    .venv/bin/python bench/scaling.py --only journal,state --runs 5
    .venv/bin/python bench/scaling.py --quick
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import trio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager

from bench._common import (
    HANG_MARGIN,
    Durability,
    in_fresh_dir,
    json_meta,
    machine_text,
    perf_counter,
)
from bench._scaling_report import FACTORS, Row, render, report_header, table

TEMP_PREFIX: Final = "bench-scaling-"
RESULTS: Final = Path(__file__).resolve().parent / "results"
POOL: Final = 64  # tasks that build a situation (populate keys, park workflows)
STATE_OPS: Final = 50  # ctx.get / ctx.set per handler call in the state dimension
POLL: Final = 0.05  # seconds between statistics() polls while waiting for parking
SUSPEND_AFTER: Final = 0.2  # seconds before a blocked invocation is parked
DIMENSIONS: Final = ("journal", "state", "keys", "parked", "concurrent")


@dataclass(frozen=True)
class Plan:
    """Sizes at 1x and operation counts per measurement."""

    journal: int = 10  # steps per invocation
    state: int = 10  # state keys of the object
    keys: int = 1_000  # objects in the runtime
    parked: int = 1_000  # parked workflows
    concurrent: int = 4  # callers in flight
    step_budget: int = 4_000  # ctx.run steps per measurement
    replay_budget: int = 4_000  # journal entries replayed per measurement
    replay_min: int = 4  # workflows per replay measurement at least
    calls: int = 400  # calls per measurement (state, keys, parked, concurrent)
    resolves: int = 200  # parked workflows resolved per measurement


QUICK: Final = Plan(
    journal=2,
    state=2,
    keys=10,
    parked=10,
    concurrent=1,
    step_budget=200,
    replay_budget=200,
    replay_min=2,
    calls=40,
    resolves=5,
)


# --- the actors under test -----------------------------------------------------------------


async def step_fn(i: int) -> int:
    return i


class Steps(actors.Service):
    """``n`` durable steps in one invocation."""

    @actors.handler
    async def many(self, ctx: actors.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run("step", step_fn, i)
        return total


class Journaled(actors.Workflow):
    """``n`` durable steps, then parked on a promise until ``go`` resolves it."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run("step", step_fn, i)
        return total + await ctx.promise("go", int).value()

    @actors.shared
    async def go(self, ctx: actors.WorkflowSharedContext, value: int) -> None:
        await ctx.promise("go", int).resolve(value)


class Bag(actors.VirtualObject):
    """An object with many state keys ``k0``, ``k1``, ..."""

    @actors.exclusive
    async def fill(self, ctx: actors.ObjectContext, n: int) -> None:
        for i in range(n):
            ctx.set(f"k{i}", i)

    @actors.exclusive
    async def gets(self, ctx: actors.ObjectContext, n: int) -> int:
        total = 0
        for i in range(n):
            total += (await ctx.get(f"k{i}", int)) or 0
        return total

    @actors.exclusive
    async def sets(self, ctx: actors.ObjectContext, n: int) -> None:
        for i in range(n):
            ctx.set(f"k{i}", -i)

    @actors.exclusive
    async def touch(self, ctx: actors.ObjectContext) -> int:
        n = (await ctx.get("k0", int)) or 0
        ctx.set("k0", n + 1)
        return n + 1


class Counter(actors.VirtualObject):
    """A durable counter per key: one state get and one set per ``add``."""

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta


class Wf(actors.Workflow):
    """Parks on a durable promise until ``approve`` resolves it."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, i: int) -> int:
        return await ctx.promise("p", int).value()

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: int) -> None:
        await ctx.promise("p", int).resolve(value)


ACTORS: Final = [Steps, Journaled, Bag, Counter, Wf]


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Cost:
    """One measurement: seconds per operation."""

    cpu: float
    wall: float


@dataclass
class Timer:
    """CPU and wall clock since ``start()``."""

    cpu0: float = 0.0
    wall0: float = 0.0

    def start(self) -> Timer:
        self.cpu0 = time.process_time()
        self.wall0 = perf_counter()
        return self

    def cost(self, ops: int) -> Cost:
        return Cost((time.process_time() - self.cpu0) / ops, (perf_counter() - self.wall0) / ops)


def marginal(with_work: Cost, without: Cost, per: int) -> Cost:
    """The cost of one of ``per`` units of work, fixed costs subtracted."""
    return Cost((with_work.cpu - without.cpu) / per, (with_work.wall - without.wall) / per)


async def timed(ops: int, work: Callable[[], Awaitable[None]]) -> Cost:
    timer = Timer().start()
    await work()
    return timer.cost(ops)


async def pool(count: int, work: Callable[[int], Awaitable[None]], tasks: int = POOL) -> None:
    """Run ``work(i)`` for ``i < count`` from ``tasks`` tasks."""
    items = iter(range(count))

    async def worker() -> None:
        for i in items:
            await work(i)

    async with trio.open_nursery() as nursery:
        for _ in range(min(tasks, count)):
            nursery.start_soon(worker)


async def wait_parked(rt: actors.Runtime, count: int) -> None:
    with trio.fail_after(HANG_MARGIN + count / 100):
        # statistics() is a snapshot with no event to wait on: poll it.
        while rt.statistics().parked < count:  # noqa: ASYNC110
            await trio.sleep(POLL)


def runtime(directory: Path, durability: Durability) -> AbstractAsyncContextManager[actors.Runtime]:
    # An hour of idle time: the "active" measurements need every activation kept.
    return actors.open_runtime(
        directory,
        ACTORS,
        durability=durability,
        idle_timeout=3600.0,
        suspend_after=SUSPEND_AFTER,
    )


Cells = dict[str, list[Cost]]  # operation -> one Cost per run


def add(cells: Cells, operation: str, cost: Cost) -> None:
    cells.setdefault(operation, []).append(cost)


# --- the dimensions ------------------------------------------------------------------------


async def measure_journal(
    base: Path, durability: Durability, n: int, plan: Plan, runs: int
) -> Cells:
    cells: Cells = {}
    invocations = max(2, plan.step_budget // n)
    async with runtime(base / "steps", durability) as rt:

        async def steps_of(count: int) -> Cost:
            async def one(_: int) -> None:
                await rt.call(Steps.many, count)

            return await timed(invocations, lambda: pool(invocations, one, tasks=4))

        await steps_of(1)  # warm up
        for _ in range(runs):
            add(cells, "ctx.run step (per step)", marginal(await steps_of(n), await steps_of(0), n))

    workflows = max(plan.replay_min, plan.replay_budget // n)
    for run in range(runs):
        by_steps = {
            count: await replay_after_restart(
                base / f"replay-{run}-{count}", durability, count, workflows
            )
            for count in (n, 0)
        }
        add(
            cells, "replay after restart (per journal entry)", marginal(by_steps[n], by_steps[0], n)
        )
    return cells


async def replay_after_restart(
    directory: Path, durability: Durability, n: int, workflows: int
) -> Cost:
    """Per workflow: reopen ``directory`` with ``workflows`` parked after ``n`` steps,
    resolve each and wait for its result."""
    async with runtime(directory, durability) as rt:

        async def submit(i: int) -> None:
            await rt.send(Journaled.run, n, key=f"j{i}")

        await pool(workflows, submit)
        await wait_parked(rt, workflows)
    wrong = 0
    timer = Timer().start()
    async with runtime(directory, durability) as rt:

        async def resolve(i: int) -> None:
            nonlocal wrong
            await rt.call(Journaled.go, i, key=f"j{i}")
            if await rt.attach_workflow(Journaled, f"j{i}") != i + n * (n - 1) // 2:
                wrong += 1

        await pool(workflows, resolve)
        cost = timer.cost(workflows)
    if wrong:
        raise RuntimeError(f"replay: {wrong} wrong results")
    return cost


async def measure_state(base: Path, durability: Durability, n: int, plan: Plan, runs: int) -> Cells:
    cells: Cells = {}
    per_call = min(STATE_OPS, n)
    async with runtime(base, durability) as rt:
        await rt.call(Bag.fill, n, key="bag")

        async def calls(call: Callable[[], Awaitable[object]]) -> Cost:
            async def work() -> None:
                for _ in range(plan.calls):
                    await call()

            return await timed(plan.calls, work)

        def gets(count: int) -> Callable[[], Awaitable[object]]:
            return lambda: rt.call(Bag.gets, count, key="bag")

        def sets(count: int) -> Callable[[], Awaitable[object]]:
            return lambda: rt.call(Bag.sets, count, key="bag")

        async def touch() -> object:
            return await rt.call(Bag.touch, key="bag")

        await calls(touch)  # warm up
        for _ in range(runs):
            add(
                cells,
                "ctx.get (per get)",
                marginal(await calls(gets(per_call)), await calls(gets(0)), per_call),
            )
            add(
                cells,
                "ctx.set (per set)",
                marginal(await calls(sets(per_call)), await calls(sets(0)), per_call),
            )
            add(cells, "exclusive call, get+set one key", await calls(touch))
    return cells


async def call_keys(rt: actors.Runtime, keys: Sequence[int]) -> Cost:
    async def work() -> None:
        for i in keys:
            await rt.call(Counter.add, 1, key=f"c{i}")

    return await timed(len(keys), work)


async def measure_keys(base: Path, durability: Durability, n: int, plan: Plan, runs: int) -> Cells:
    cells: Cells = {}
    rng = random.Random(n)
    sample = min(plan.calls, n)
    async with runtime(base, durability) as rt:

        async def create(i: int) -> None:
            await rt.call(Counter.add, 1, key=f"c{i}")

        await pool(n, create)
        for _ in range(runs):
            add(
                cells,
                "call one key, N keys active",
                await call_keys(rt, rng.sample(range(n), sample)),
            )
    for _ in range(runs):
        timer = Timer().start()
        async with runtime(base, durability) as rt:
            add(cells, "open runtime over N keys (per open)", timer.cost(1))
            add(
                cells,
                "call one key, N keys in storage",
                await call_keys(rt, rng.sample(range(n), sample)),
            )
    return cells


async def resolve_parked(rt: actors.Runtime, chosen: Sequence[int]) -> Cost:
    """Per workflow: resolve each of ``chosen`` and wait for its result."""
    timer = Timer().start()
    for i in chosen:
        await rt.call(Wf.approve, i, key=f"w{i}")
        if await rt.attach_workflow(Wf, f"w{i}") != i:
            raise RuntimeError(f"parked: workflow w{i} answered a wrong result")
    return timer.cost(len(chosen))


async def measure_parked(
    base: Path, durability: Durability, n: int, plan: Plan, runs: int
) -> Cells:
    cells: Cells = {}
    unresolved = iter(range(n))
    per_run = min(plan.resolves, n // (2 * runs))
    async with runtime(base, durability) as rt:

        async def submit(i: int) -> None:
            await rt.send(Wf.run, i, key=f"w{i}")

        await pool(n, submit)
        await wait_parked(rt, n)
        await call_keys(rt, [0] * 10)  # warm up
        for _ in range(runs):
            add(cells, "call one object, N workflows parked", await call_keys(rt, [0] * plan.calls))
            chosen = [next(unresolved) for _ in range(per_run)]
            add(cells, "resolve one of N parked workflows", await resolve_parked(rt, chosen))
    # Recovery re-delivers every unfinished invocation: each parked workflow replays to
    # its wait and parks again. Measured up to that point (once: a restart over 100,000
    # takes a minute), then the resolves.
    remaining = n - per_run * runs
    timer = Timer().start()
    async with runtime(base, durability) as rt:
        await wait_parked(rt, remaining)
        add(cells, "restart until all re-parked (per parked workflow)", timer.cost(remaining))
        for _ in range(runs):
            chosen = [next(unresolved) for _ in range(per_run)]
            add(cells, "resolve one of N parked, after a restart", await resolve_parked(rt, chosen))
    return cells


async def measure_concurrent(
    base: Path, durability: Durability, n: int, plan: Plan, runs: int
) -> Cells:
    cells: Cells = {}
    rounds = max(2, plan.calls * 10 // n)
    async with runtime(base, durability) as rt:

        async def caller(i: int) -> None:
            for _ in range(rounds):
                await rt.call(Counter.add, 1, key=f"c{i}")

        await pool(n, caller, tasks=n)  # warm up: every key active

        async def one_key(_: int) -> None:
            for _ in range(rounds):
                await rt.call(Counter.add, 1, key="shared")

        await one_key(0)  # warm up
        for _ in range(runs):
            add(
                cells,
                "call, N callers in flight, a key each",
                await timed(n * rounds, lambda: pool(n, caller, tasks=n)),
            )
            add(
                cells,
                "call, N callers on one key",
                await timed(n * rounds, lambda: pool(n, one_key, tasks=n)),
            )
    return cells


Measure: TypeAlias = "Callable[[Path, Durability, int, Plan, int], Awaitable[Cells]]"
MEASURES: Final[dict[str, tuple[Measure, str]]] = {
    "journal": (measure_journal, "steps per invocation"),
    "state": (measure_state, "state keys of the object"),
    "keys": (measure_keys, "objects in the runtime"),
    "parked": (measure_parked, "parked workflows"),
    "concurrent": (measure_concurrent, "callers in flight"),
}


def run_dimension(dimension: str, plan: Plan, args: argparse.Namespace) -> list[Row]:
    measure, _ = MEASURES[dimension]
    base_size: int = getattr(plan, dimension)
    sizes = [base_size * factor for factor in FACTORS]
    rows: dict[str, Row] = {}
    for size in sizes:
        start = perf_counter()

        def in_dir(directory: Path, size: int = size) -> Cells:
            return trio.run(measure, directory, args.durability, size, plan, args.runs)

        cells = in_fresh_dir(args.dir, TEMP_PREFIX, in_dir)
        for operation, costs in cells.items():
            row = rows.setdefault(operation, Row(dimension, operation, sizes))
            row.cpu.append([cost.cpu for cost in costs])
            row.wall.append([cost.wall for cost in costs])
        print(f"  {dimension} {size:,}: {perf_counter() - start:.1f} s", flush=True)
    return list(rows.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durability", choices=["fsync", "process"], default="process")
    parser.add_argument("--runs", type=int, default=3, help="measurements per cell (3)")
    parser.add_argument("--only", default=",".join(DIMENSIONS), help="dimensions, comma-separated")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run, a few seconds")
    parser.add_argument("--dir", default=None, help="parent of the temp dirs (system temp)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="write PATH.md and PATH.json (default bench/results/scaling, none with --quick)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="PATH",
        help="measure nothing: write PATH.md again from PATH.json (after editing NOTES in bench/_scaling_report.py)",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = set(args.only.split(",")) - set(DIMENSIONS)
    if unknown:
        parser.error(f"unknown dimensions {sorted(unknown)}; choose from {DIMENSIONS}")
    if args.quick:
        args.runs = 1
    elif args.out is None and args.render is None:
        args.out = RESULTS / "scaling"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        return render(args.render)
    plan = QUICK if args.quick else Plan()
    print(machine_text(args.dir), flush=True)
    rows: list[Row] = []
    for dimension in DIMENSIONS:
        if dimension in args.only.split(","):
            rows.extend(run_dimension(dimension, plan, args))
    header = report_header(args)
    print()
    print(header + "\n".join(table(rows)))
    if args.out is not None:
        result = {
            "meta": json_meta(args.argv, durability=args.durability, runs=args.runs),
            "plan": asdict(plan),
            "report": header,
            "rows": [asdict(row) for row in rows],
        }
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        render(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
