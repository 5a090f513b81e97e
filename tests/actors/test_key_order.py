"""One durable order per key (DESIGN.md invariant 2): after a crash, a key resumes its
exclusive work in the order it had started, whatever the source of each invocation.

Each test makes one invocation start and journal a read, crashes the runtime inside the
step that follows, and lets a second invocation that was *admitted to the key later*
(though accepted earlier, or with an earlier position in the old inbox) recover too. If
recovery ran the later one first, the replayed read of the first would be stale and one
increment would be lost: the counter would say 1 after two completed increments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, LoopClock, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Counter(actors.VirtualObject):
    """``incr`` reads, runs a step (where the crash lands), then writes: a read that a
    replay returns from the journal, so the order of invocations after a crash shows."""

    def __init__(self, hold_first: bool = False) -> None:
        self.ids: list[str] = []
        #: When set, the first incr waits on ``release`` after its read: the test makes
        #: other work arrive at that point.
        self.entered = anyio.Event()
        self.release = anyio.Event()
        self.hold_first = hold_first

    @actors.exclusive
    async def incr(self, ctx: actors.ObjectContext) -> int:
        self.ids.append(ctx.invocation_id)
        n = (await ctx.get("n", int)) or 0
        if self.hold_first and len(self.ids) == 1:
            self.entered.set()
            await self.release.wait()
        await ctx.run("step", lambda: None)
        ctx.set("n", n + 1)
        return n + 1

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


async def _recover_and_check(path: Path, clock: LoopClock, ids: list[str]) -> None:
    """Reopen ``path``: both increments complete, return 1 and 2, and the counter is 2."""
    async with open_test_runtime([Counter()], path=path, clock=clock) as rt:
        results = sorted([await rt.attach(invocation_id) for invocation_id in ids])
        value = await rt.call(Counter.value, key="k")
    assert (results, value) == ([1, 2], 2)


async def test_a_delayed_send_due_at_restart_runs_after_the_invocation_that_had_started(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = LoopClock()
    counter = Counter()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [counter], path=tmp_path, clock=clock, crash=CrashPlan(in_run="step")
        ) as rt:
            delayed = await rt.send(Counter.incr, key="k", delay=1.0)  # accepted first
            now = await rt.send(Counter.incr, key="k")  # starts first: reads 0, crashes
            await trio.sleep_forever()
    assert counter.ids == [now.invocation_id]
    await trio.sleep(5)  # the delayed send is overdue when the runtime opens again
    await _recover_and_check(tmp_path, clock, [delayed.invocation_id, now.invocation_id])


async def test_a_call_keeps_its_place_ahead_of_a_send_accepted_while_it_ran(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = LoopClock()
    counter = Counter(hold_first=True)
    sent: list[str] = []
    with pytest.raises(SimulatedCrash):
        async with (
            open_test_runtime(
                [counter], path=tmp_path, clock=clock, crash=CrashPlan(in_run="step")
            ) as rt,
            trio.open_nursery() as nursery,
        ):

            async def call() -> None:
                await rt.call(Counter.incr, key="k")  # claims the free key at once

            nursery.start_soon(call)
            await counter.entered.wait()  # the call has read n = 0
            handle = await rt.send(Counter.incr, key="k")  # durable, queued behind it
            sent.append(handle.invocation_id)
            counter.release.set()  # the call's step crashes the runtime
            await trio.sleep_forever()
    call_id = counter.ids[0]  # (the send may have begun too before the runtime died)
    await _recover_and_check(tmp_path, clock, [call_id, *sent])


async def test_a_callee_of_ctx_call_keeps_its_place_ahead_of_a_later_send(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The same with the first invocation coming from another actor's ``ctx.call``."""
    clock = LoopClock()
    counter = Counter(hold_first=True)
    with pytest.raises(SimulatedCrash):
        async with (
            open_test_runtime(
                [counter, Caller], path=tmp_path, clock=clock, crash=CrashPlan(in_run="step")
            ) as rt,
            trio.open_nursery() as nursery,
        ):
            caller = await rt.send(Caller.go)
            await counter.entered.wait()
            handle = await rt.send(Counter.incr, key="k")
            counter.release.set()
            await trio.sleep_forever()
    nursery.cancel_scope.cancel()
    async with open_test_runtime([Counter(), Caller], path=tmp_path, clock=clock) as rt:
        assert await rt.attach(caller.invocation_id) == 1
        assert await rt.attach(handle.invocation_id) == 2
        assert await rt.call(Counter.value, key="k") == 2


class Caller(actors.Service):
    @actors.handler
    async def go(self, ctx: actors.Context) -> int:
        return await ctx.call(Counter.incr, key="k")


class SteppedCounter(actors.VirtualObject, name="Counter"):
    """``incr`` with a durable step before its write, and a pause after the step."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.runs = 0

    @actors.exclusive
    async def incr(self, ctx: actors.ObjectContext) -> int:
        self.runs += 1
        n = (await ctx.get("n", int)) or 0
        await ctx.run("step", lambda: None)
        if self.runs == 1:
            self.entered.set()
            await anyio.sleep_forever()  # until its caller gives up
        ctx.set("n", n + 1)
        return n + 1

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


async def test_a_call_whose_caller_gives_up_keeps_its_key_until_it_completes() -> None:
    """The call had journaled a read and a step when its caller went away: it continues
    in the background, and a send queued behind it still runs after it."""
    counter = SteppedCounter()
    async with open_test_runtime([counter]) as rt, anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def call() -> None:
            with scope:
                await rt.call(SteppedCounter.incr, key="k")

        tg.start_soon(call)
        await counter.entered.wait()
        handle = await rt.send(SteppedCounter.incr, key="k")
        scope.cancel()
        assert await handle.result() == 2
        assert await rt.call(SteppedCounter.value, key="k") == 2
