"""The runtime's clock: every durable time (timers, sleeps, delays, ``ctx.time()``,
retry backoff) goes through one object, so tests can skip time.

Durable times are wall-clock seconds since the epoch (they must mean the same thing after
a restart); waiting uses the event loop's clock, so ``trio.testing.MockClock`` autojump
makes a test that sleeps for days finish at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol, final

import anyio
import anyio.lowlevel
import trio

if TYPE_CHECKING:
    from collections.abc import Callable


def loop_time_function() -> Callable[[], float]:
    """The running event loop's clock, as a function that also works in plain loop
    callbacks (where anyio cannot tell which backend runs: asyncio callbacks run
    outside any task)."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return asyncio.get_running_loop().time
    # ``trio.current_time`` asks the run for its clock on each read (three calls); a
    # run's clock never changes, so its own method is the same time in one call (read
    # on every call to an object: ``Activation.last_used``).
    return trio.lowlevel.current_clock().current_time


class Clock(Protocol):
    """What the runtime needs from a clock."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once if it already is)."""
        ...


@final
class SystemClock:
    """The real clock: ``time.time()`` and the event loop's sleep."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(remaining)


@final
class LoopClock:
    """Wall time derived from the event loop's clock: ``now() = start + loop time``.

    Under ``trio.testing.MockClock(autojump_threshold=0)`` this clock jumps with the
    loop, so durable timers, sleeps and retry backoffs fire without real waiting.
    ``start`` is the wall time the clock reads when the loop time is 0.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._start = start
        self._loop_time: Callable[[], float] | None = None

    def now(self) -> float:
        if self._loop_time is None:
            self._loop_time = loop_time_function()
        return self._start + self._loop_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline - self._start)
