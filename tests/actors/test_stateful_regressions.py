"""Runtime bugs the stateful test (``test_stateful.py``) found, each as a small test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import actors
from actors.testing import LoopClock, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Waiting(actors.Workflow):
    """``main`` waits on a promise nobody resolves."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        await ctx.run("step", _noop)
        return await ctx.promise("p", str).value()


async def _noop() -> None:
    pass


async def test_a_cancel_racing_the_parking_of_a_recovered_main_is_delivered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A recovered ``main`` that waits on a promise suspends and parks at once. A cancel
    made just before it parks committed its request while the main parked, then resumed
    the stale in-memory invocation: ``rt.cancel`` raised ``MailboxStateError`` ("resume()
    of an exclusive envelope that does not hold the key"), or returned, and either way the
    cancellation never reached the parked main, whose callers then waited forever
    (invariants 4, 11, 13). Found on c719447, where about 4 in 5 rounds of this sweep
    failed; fixed by 061fd83 ("a cancel while unwinding or during the pre-suspend flush is
    no longer lost"). Where in the recovery the cancel lands depends on trio's scheduling,
    so the test sweeps the number of checkpoints before it, several times."""
    for attempt in range(8):
        for checkpoints in range(1, 8):
            path = tmp_path / f"{attempt}-{checkpoints}"
            clock = LoopClock()
            async with open_test_runtime([Waiting()], path=path, clock=clock) as rt:
                handle = await rt.send(Waiting.run, key="w")
                await trio.sleep(1)  # main waits on the promise; the runtime closes
            async with open_test_runtime([Waiting()], path=path, clock=clock) as rt:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                await rt.cancel(handle.invocation_id)
                with trio.fail_after(600), pytest.raises(actors.TerminalError) as info:
                    await rt.attach(handle.invocation_id)
                assert info.value.status_code == 409, (attempt, checkpoints, info.value)
                assert "was cancelled" in info.value.message, (attempt, checkpoints)
