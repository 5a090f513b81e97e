"""Reminders: a durable timer (``ctx.sleep``) and a delayed send (``rt.send(...,
delay=...)``), both surviving a restart.

A reminder an hour from now is a handler that sleeps for an hour; a note two hours from
now is a send delivered two hours from now. Both are journaled in the data directory, so
closing the runtime does not lose them: at the next open, a timer that came due while
the runtime was closed fires at once, and one still in the future fires on time.

Time: this script skips hours in milliseconds. It runs under
``trio.testing.MockClock(autojump_threshold=0)`` (the clock jumps forward whenever every
task waits) and gives the runtime ``actors.testing.LoopClock()``, whose wall time follows
the loop's clock, plus ``commit_mode="inline"`` (no writer thread: the clock would jump
while a thread works). In an application, leave ``clock`` and ``commit_mode`` at their
defaults and the same code waits for real.

Run: python examples/04_reminder.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import trio.testing

import actors
import actors.testing

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager


def clock_time() -> str:
    """The (mock) time since the script started, as +H:MM."""
    minutes = round(trio.current_time()) // 60
    return f"+{minutes // 60}:{minutes % 60:02d}"


delivered: list[str] = []


async def show(text: str) -> None:
    # An async body runs on the event loop (a plain function would run on a thread).
    print(f"[{clock_time()}] {text}")
    delivered.append(text)


@dataclass(frozen=True)
class Remind:
    text: str
    minutes: int


class Reminders(actors.Service):
    @actors.handler
    async def remind_later(self, ctx: actors.Context, req: Remind) -> None:
        # The wake-up time is journaled with the timer: a replay after a restart does
        # not start the hour again. While it sleeps longer than `suspend_after`, the
        # invocation holds no coroutine; the timer rebuilds it by replay.
        await ctx.sleep(timedelta(minutes=req.minutes))
        # The print is a durable step, so it happens once even if the handler replays.
        await ctx.run("show", show, f"reminder: {req.text}")

    @actors.handler
    async def note(self, ctx: actors.Context, text: str) -> None:
        await ctx.run("show", show, f"note: {text}")


async def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")

    def runtime() -> AbstractAsyncContextManager[actors.Runtime]:  # same options, both lives
        return actors.open_runtime(
            data_dir, [Reminders], clock=actors.testing.LoopClock(), commit_mode="inline"
        )

    async with runtime() as rt:
        timer = await rt.send(Reminders.remind_later, Remind("stretch", minutes=60))
        print(f"[{clock_time()}] reminder 'stretch' set for +1:00 (a ctx.sleep)")
        delayed = await rt.send(Reminders.note, "drink water", delay=timedelta(hours=2))
        print(f"[{clock_time()}] note 'drink water' sent for +2:00 (a delayed send)")
        await trio.sleep(30 * 60)
        print(f"[{clock_time()}] closing the runtime (both still pending)")

    await trio.sleep(60 * 60)  # an hour with the runtime closed: the reminder comes due

    async with runtime() as rt:
        print(f"[{clock_time()}] reopened the runtime")
        await rt.attach(timer.invocation_id)  # the overdue reminder fires at once
        await rt.attach(delayed.invocation_id)  # the note fires on time
    assert delivered == ["reminder: stretch", "note: drink water"], delivered
    print(f"[{clock_time()}] both delivered, once each")


if __name__ == "__main__":
    clock = trio.testing.MockClock(autojump_threshold=0)
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]), clock=clock)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp) / "reminders", clock=clock)
