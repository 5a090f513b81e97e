"""The runtime's clock: every durable time (timers, sleeps, delays, ``ctx.time()``,
retry backoff) goes through one object, so tests can skip time.

Durable times are wall-clock seconds since the epoch (they must mean the same thing after
a restart); waiting uses the event loop's clock, so ``trio.testing.MockClock`` autojump
makes a test that sleeps for days finish at once.
"""

from __future__ import annotations

import time
from typing import Protocol, final

import anyio
import anyio.lowlevel


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

    def now(self) -> float:
        return self._start + anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline - self._start)
