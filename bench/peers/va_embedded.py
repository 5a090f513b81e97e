"""Workload driver: virtual-actors embedded (in-process ``rt.call``), W1-W6.

Run by ``bench/peers/run.py`` as ``python bench/peers/va_embedded.py --durability fsync
--settings JSON``; prints the result line of ``bench.peers.common``. ``--w6-submit DIR N``
is the first half of W6: submit N workflows, then SIGKILL itself.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import anyio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import actors
from bench.peers.common import (
    CALLERS,
    HANG_MARGIN,
    KEYS,
    READERS,
    STEPS,
    W4_CONCURRENCY,
    WRITERS,
    Phase,
    Settings,
    emit,
    perf_counter,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

Durability = Literal["fsync", "process"]
SUBMITTERS: Final = 64


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        n += delta
        ctx.set("n", n)
        return n

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


async def step_fn(i: int) -> int:
    return i


class Steps(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, start: int) -> int:
        total = start
        for i in range(STEPS):
            total += await ctx.run(f"step{i}", step_fn, i)
        return total


async def trio_phase(
    groups: list[tuple[Phase, int, Callable[[int], Awaitable[object]]]], seconds: float, cap: int
) -> None:
    """``common.asyncio_phase`` for any anyio backend."""
    start = perf_counter()
    deadline = start + seconds

    async def task(phase: Phase, call: Callable[[int], Awaitable[object]], i: int) -> None:
        record = phase.latencies.append
        while len(phase.latencies) < cap and perf_counter() < deadline:
            t0 = perf_counter()
            await call(i)
            record(perf_counter() - t0)

    with anyio.fail_after(seconds + HANG_MARGIN):
        async with anyio.create_task_group() as tg:
            for phase, count, call in groups:
                for i in range(count):
                    tg.start_soon(task, phase, call, i)
    elapsed = perf_counter() - start
    for phase, _, _ in groups:
        phase.elapsed = elapsed


async def measure(directory: Path, durability: Durability, s: Settings) -> dict[str, float]:
    metrics: dict[str, float] = {}
    ids = itertools.count()
    async with actors.open_runtime(directory, [Counter, Steps], durability=durability) as rt:

        async def add_key(i: int) -> int:
            return await rt.call(Counter.add, 1, key=f"k{i}")

        async def add_one(i: int) -> int:
            return await rt.call(Counter.add, 1, key="one")

        async def read_one(i: int) -> int:
            return await rt.call(Counter.value, key="one")

        async def workflow(i: int) -> int:
            return await rt.call(Steps.run, 0, key=f"wf{next(ids)}")

        async def phase(
            groups: list[tuple[int, Callable[[int], Awaitable[object]]]],
        ) -> list[Phase]:
            await trio_phase([(Phase(), n, c) for n, c in groups], s.warmup, s.cap)
            phases = [Phase() for _ in groups]
            await trio_phase(
                [(p, n, c) for p, (n, c) in zip(phases, groups, strict=True)], s.seconds, s.cap
            )
            return phases

        (w1,) = await phase([(1, add_one)])
        metrics["w1_p50_ms"], metrics["w1_p99_ms"] = w1.percentile_ms(0.5), w1.percentile_ms(0.99)
        (w2,) = await phase([(KEYS, add_key)])
        metrics["w2_rate"] = w2.rate
        (w3,) = await phase([(CALLERS, add_one)])
        metrics["w3_rate"] = w3.rate
        reads, writes = await phase([(READERS, read_one), (WRITERS, add_one)])
        metrics["w5_reads"], metrics["w5_writes"] = reads.rate, writes.rate
        (w4,) = await phase([(1, workflow)])
        metrics["w4_p50_ms"] = w4.percentile_ms(0.5)
        for c in W4_CONCURRENCY:
            (wc,) = await phase([(c, workflow)])
            metrics[f"w4_rate_{c}"] = wc.rate
    return metrics


async def w6_submit(directory: Path, durability: Durability, count: int) -> None:
    """Submit ``count`` workflows (each durable once ``send`` returns), then SIGKILL."""
    async with actors.open_runtime(directory, [Counter, Steps], durability=durability) as rt:

        async def submitter(first: int) -> None:
            for i in range(first, count, SUBMITTERS):
                await rt.send(Steps.run, 0, key=f"r{i}")

        async with anyio.create_task_group() as tg:
            for j in range(SUBMITTERS):
                tg.start_soon(submitter, j)
        os.kill(os.getpid(), signal.SIGKILL)


async def w6_recover(directory: Path, durability: Durability, count: int) -> float:
    """Reopen after the kill; seconds until every workflow has its output."""
    start = perf_counter()
    async with actors.open_runtime(directory, [Counter, Steps], durability=durability) as rt:

        async def waiter(first: int) -> None:
            for i in range(first, count, SUBMITTERS):
                if await rt.attach_workflow(Steps, f"r{i}") != sum(range(STEPS)):
                    raise RuntimeError(f"workflow r{i}: wrong output")

        with anyio.fail_after(HANG_MARGIN * 5):
            async with anyio.create_task_group() as tg:
                for j in range(SUBMITTERS):
                    tg.start_soon(waiter, j)
        return perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--settings", default=Settings().to_json())
    parser.add_argument("--w6-submit", nargs=2, metavar=("DIR", "N"))
    args = parser.parse_args()
    durability: Durability = args.durability
    if args.w6_submit:
        anyio.run(w6_submit, Path(args.w6_submit[0]), durability, int(args.w6_submit[1]))
        return
    s = Settings.from_json(args.settings)
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="peers-va-") as tmp:
        metrics = anyio.run(measure, Path(tmp) / "w", durability, s, backend="trio")
        w6_dir = Path(tmp) / "w6"
        sub = subprocess.run(
            [
                sys.executable,
                __file__,
                "--durability",
                durability,
                "--w6-submit",
                str(w6_dir),
                str(s.w6_count),
            ],
            timeout=HANG_MARGIN * 5,
            check=False,
        )
        if sub.returncode != -signal.SIGKILL:
            raise RuntimeError(f"W6 submitter exited with {sub.returncode}, not SIGKILL")
        metrics["w6_seconds"] = anyio.run(w6_recover, w6_dir, durability, s.w6_count)
        notes["w6_seconds"] = f"N={s.w6_count}"
    emit(metrics, notes)


if __name__ == "__main__":
    main()
