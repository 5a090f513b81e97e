"""Hand-off cost of one plain-function body to a thread and back, by mechanism.

256 tasks each hand ``PER`` trivial bodies (``return i``) to a thread, one at a time, and
wait for the result: ``anyio.to_thread.run_sync`` (what ``ctx.run`` used before),
``trio.to_thread.run_sync`` / ``asyncio.to_thread`` (the native ones) and the runtime's
step threads (``actors._step_threads.StepThreads``). Prints CPU time per hand-off
(``time.process_time()``, every thread) and hand-offs/s of the second of two rounds.

Run::

    .venv/bin/python bench/step_handoff.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import anyio
import anyio.to_thread
import trio

from actors._step_threads import StepThreads

TASKS: Final = 256
PER: Final = 40


def body(i: int) -> int:
    return i


async def measure(kind: str, backend: str) -> None:
    pool = StepThreads() if kind == "step threads" else None

    async def one() -> None:
        for i in range(PER):
            if pool is not None:
                ok, result = await pool.run(body, (i,))
                if not ok or result != i:
                    raise SystemExit(f"a body returned {result!r}, not {i}")
            elif kind == "anyio.to_thread":
                await anyio.to_thread.run_sync(body, i)
            elif kind == "trio.to_thread":
                await trio.to_thread.run_sync(body, i)
            else:
                await asyncio.to_thread(body, i)

    cpu = wall = 0.0
    for _ in range(2):  # the first round starts the threads
        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(TASKS):
                tg.start_soon(one)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if pool is not None:
        await pool.aclose()
    n = TASKS * PER
    print(f"{backend:<8} {kind:<16} {cpu / n * 1e6:7.1f} us CPU/hand-off {n / wall:10,.0f}/s")


def main() -> None:
    for backend, native in (("trio", "trio.to_thread"), ("asyncio", "asyncio.to_thread")):
        for kind in ("anyio.to_thread", native, "step threads"):
            anyio.run(measure, kind, backend, backend=backend)


if __name__ == "__main__":
    main()
