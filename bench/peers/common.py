"""What every workload driver shares: counts, timing loops and the result format.

Standard library only: the peer drivers import it from their own virtual environments
(they put the repository root on ``sys.path``), so it must not import ``actors``, ``lmdb``
or ``trio``.

A driver prints one JSON object on its last stdout line: ``{"metrics": {name: value},
"notes": {name: text}}`` with the metric names of ``METRICS``; a metric it could not
measure is absent and its reason is in ``notes``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

perf_counter = time.perf_counter

KEYS: Final = 64  # W2: callers, one key each
CALLERS: Final = 64  # W3: callers on one key
READERS: Final = 64  # W5 readers, on the W3 key
WRITERS: Final = 16  # W5 writers alongside
STEPS: Final = 10  # W4: durable steps per workflow
W4_CONCURRENCY: Final = (16, 256)
HANG_MARGIN: Final = 120.0  # seconds past a phase's deadline before it counts as hung

# name -> (workload, what, unit, higher is better)
METRICS: Final[dict[str, tuple[str, str, str, bool]]] = {
    "w1_p50_ms": ("W1", "1 exclusive increment, sequential: p50", "ms", False),
    "w1_p99_ms": ("W1", "1 exclusive increment, sequential: p99", "ms", False),
    "w2_rate": ("W2", f"increments, {KEYS} keys x 1 caller", "calls/s", True),
    "w3_rate": ("W3", f"increments, 1 key x {CALLERS} callers", "calls/s", True),
    "w4_p50_ms": ("W4", f"{STEPS}-step workflow, sequential: p50", "ms", False),
    "w4_rate_16": ("W4", f"{STEPS}-step workflows, 16 concurrent", "workflows/s", True),
    "w4_rate_256": ("W4", f"{STEPS}-step workflows, 256 concurrent", "workflows/s", True),
    "w5_reads": (
        "W5",
        f"shared reads, 1 key, {READERS} readers + {WRITERS} writers",
        "reads/s",
        True,
    ),
    "w5_writes": ("W5", "  writes alongside the reads", "calls/s", True),
    "w6_seconds": ("W6", "restart with N in-flight workflows: until all complete", "s", False),
}


@dataclass
class Settings:
    """How long and how much each phase runs."""

    seconds: float = 3.0  # per measured phase
    warmup: float = 0.5  # before each
    cap: int = 200_000  # operations per phase at most
    w6_count: int = 10_000  # in-flight workflows at the restart

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


@dataclass
class Phase:
    """Latencies of the operations of one phase, per group of callers."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[rank] * 1e3


async def asyncio_phase(
    groups: list[tuple[Phase, int, Callable[[int], Awaitable[object]]]], seconds: float, cap: int
) -> None:
    """Run ``count`` asyncio tasks per ``(phase, count, call)`` group; task ``i`` loops
    ``await call(i)`` until ``seconds`` pass or the group made ``cap`` calls."""
    start = perf_counter()
    deadline = start + seconds

    async def task(phase: Phase, call: Callable[[int], Awaitable[object]], i: int) -> None:
        record = phase.latencies.append
        while len(phase.latencies) < cap and perf_counter() < deadline:
            t0 = perf_counter()
            await call(i)
            record(perf_counter() - t0)

    tasks = [
        asyncio.ensure_future(task(phase, call, i))
        for phase, count, call in groups
        for i in range(count)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + HANG_MARGIN)
    finally:
        for t in tasks:
            t.cancel()
    elapsed = perf_counter() - start
    for phase, _, _ in groups:
        phase.elapsed = elapsed


def thread_phase(
    groups: list[tuple[Phase, int, Callable[[int], object]]], seconds: float, cap: int
) -> None:
    """``asyncio_phase`` with threads: ``count`` threads per group, thread ``i`` loops
    ``call(i)``."""
    start = perf_counter()
    deadline = start + seconds

    errors: list[BaseException] = []

    def loop(phase: Phase, call: Callable[[int], object], i: int) -> None:
        record = phase.latencies.append
        try:
            while len(phase.latencies) < cap and perf_counter() < deadline and not errors:
                t0 = perf_counter()
                call(i)
                record(perf_counter() - t0)
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=loop, args=(phase, call, i), daemon=True)
        for phase, count, call in groups
        for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + HANG_MARGIN - perf_counter()))
        if t.is_alive():
            raise RuntimeError(f"callers did not finish within {HANG_MARGIN} s of the end")
    if errors:
        raise errors[0]
    elapsed = perf_counter() - start
    for phase, _, _ in groups:
        phase.elapsed = elapsed


def emit(
    metrics: dict[str, float], notes: dict[str, str], calls: dict[str, int] | None = None
) -> None:
    """The driver's result: one JSON line on stdout. ``calls``: operations made per
    workload, warm-up included (what a server's CPU time is divided by)."""
    result: dict[str, object] = {"metrics": metrics, "notes": notes}
    if calls is not None:
        result["calls"] = calls
    print(json.dumps(result), flush=True)
