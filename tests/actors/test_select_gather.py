"""Combinators: ``actors.select`` (winner journaled, replay takes the recorded branch)
and ``actors.gather`` (concurrent, results in order, first failure by position); the
awakeables: test_awakeables.py."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, LoopClock, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

START = 1_700_000_000.0  # LoopClock's default wall time at loop time 0
HOUR = 3600.0
DAY = 86400.0

# --- select --------------------------------------------------------------------------------------


class Approval(actors.Workflow):
    """Waits for approval or a one-hour timeout, then (after ``pause`` hours) runs the
    step "after select", which a CrashPlan can crash on."""

    def __init__(self, pause: float = 0.0, timeout_first: bool = False) -> None:
        self.pause = pause
        self.timeout_first = timeout_first  # the order select() checks ready futures in
        self.steps: list[str] = []

    async def _after(self, branch: str) -> str:
        self.steps.append(branch)
        return branch

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> list[Any]:
        futures: dict[str, actors.DurableFuture[Any]] = {
            "approved": ctx.promise("approval", str).value(),
            "timeout": ctx.sleep(timedelta(hours=1)),
        }
        if self.timeout_first:
            futures = dict(reversed(futures.items()))
        branch, value = await actors.select(**futures)
        ctx.set("branch", branch)
        if self.pause:
            await ctx.sleep(timedelta(hours=self.pause))
        await ctx.run("after select", self._after, branch)
        return [branch, value, await ctx.time()]

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, answer: str) -> None:
        await ctx.promise("approval", str).resolve(answer)

    @actors.shared
    async def branch(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("branch", str)


async def test_select_returns_the_promise_when_it_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    approval = Approval()
    async with open_test_runtime([approval]) as rt:
        handle = await rt.send(Approval.run, key="a")
        await trio.sleep(HOUR / 2)
        await rt.call(Approval.approve, "yes", key="a")
        branch, value, at = await handle.result()
    assert (branch, value) == ("approved", "yes")
    assert START + HOUR / 2 <= at < START + HOUR
    assert approval.steps == ["approved"]


async def test_select_returns_the_timeout_when_the_sleep_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    approval = Approval()
    async with open_test_runtime([approval]) as rt:
        branch, value, at = await rt.call(Approval.run, key="a")
        # Resolving afterwards is still accepted, but changes nothing.
        await rt.call(Approval.approve, "too late", key="a")
        assert await rt.workflow_output(Approval, "a") == [branch, value, at]
    assert (branch, value) == ("timeout", None)
    assert START + HOUR <= at < START + HOUR + 60


async def test_replay_after_a_crash_takes_the_recorded_timeout_branch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # First life: the timeout wins at 1 h; the promise is resolved at 1.5 h, while the
    # workflow sleeps; at 3 h the step after the select crashes the runtime.
    approval = Approval(pause=2)
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [approval], path=tmp_path, crash=CrashPlan(in_run="after select")
        ) as rt:
            handle = await rt.send(Approval.run, key="a")
            await trio.sleep(1.5 * HOUR)
            assert await rt.call(Approval.branch, key="a") == "timeout"
            await rt.call(Approval.approve, "yes", key="a")
            await handle.result()
    assert approval.steps == []
    # Second life: the replay finds the promise resolved (ready first in select's
    # argument order) and the sleep overdue, but must take the journaled branch.
    async with open_test_runtime([approval], path=tmp_path) as rt:
        branch, value, _ = await rt.attach(handle.invocation_id)
    assert (branch, value) == ("timeout", None)
    assert approval.steps == ["timeout"]


async def test_replay_after_a_crash_takes_the_recorded_promise_branch(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    approval = Approval()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [approval], path=tmp_path, crash=CrashPlan(in_run="after select")
        ) as rt:
            handle = await rt.send(Approval.run, key="a")
            await trio.sleep(HOUR / 2)
            await rt.call(Approval.approve, "yes", key="a")
            await handle.result()
    # Reopened a day later: the select's sleep is overdue, so it is ready too, and (with
    # timeout_first) the first ready future in select's argument order.
    async with open_test_runtime(
        [Approval(timeout_first=True)], path=tmp_path, clock=LoopClock(start=START + DAY)
    ) as rt:
        branch, value, _ = await rt.attach(handle.invocation_id)
    assert (branch, value) == ("approved", "yes")


async def test_replay_after_parking_takes_the_recorded_timeout_branch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    approval = Approval(pause=2)
    async with open_test_runtime([approval], suspend_after=5) as rt:
        handle = await rt.send(Approval.run, key="a")
        await trio.sleep(1.5 * HOUR)
        assert rt.statistics().parked == 1  # sleeping after the timeout won
        await rt.call(Approval.approve, "yes", key="a")
        branch, value, at = await handle.result()  # woken at 3 h, rebuilt by replay
    assert (branch, value) == ("timeout", None)
    assert START + 3 * HOUR <= at < START + 3 * HOUR + 60
    assert approval.steps == ["timeout"]


class Racer(actors.Service):
    """select() between a two-hour step and a one-hour sleep, then awaits the losing step."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    async def _slow(self) -> int:
        self.started += 1
        await anyio.sleep(2 * HOUR)
        self.finished += 1
        return 5

    @actors.handler
    async def race(self, ctx: actors.Context) -> list[Any]:
        step = ctx.run("slow", self._slow)
        branch, value = await actors.select(step=step, timeout=ctx.sleep(timedelta(hours=1)))
        return [branch, value, await step]


async def test_losing_run_step_of_a_select_is_not_executed_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    racer = Racer()
    async with open_test_runtime([racer]) as rt:
        assert await rt.call(Racer.race) == ["timeout", None, 5]
    assert (racer.started, racer.finished) == (1, 1)


# --- gather --------------------------------------------------------------------------------------


class Pair(actors.Service):
    """Steps that need each other: sequential execution would deadlock."""

    def __init__(self) -> None:
        self.done = {name: anyio.Event() for name in ("slow", "fast", "a fails", "b fails")}
        self.a_started = anyio.Event()
        self.b_started = anyio.Event()
        self.finished: list[str] = []

    async def _a(self) -> str:
        self.a_started.set()
        await self.b_started.wait()
        self.finished.append("a")
        return "A"

    async def _b(self) -> int:
        self.b_started.set()
        await self.a_started.wait()
        self.finished.append("b")
        return 2

    async def _fast(self) -> int:
        self.finished.append("fast")
        self.done["fast"].set()
        return 2

    async def _after(self, name: str, wait_for: str | None, fail: bool) -> str:
        """Finish (or fail, with a TerminalError) once step ``wait_for`` has finished."""
        if wait_for is not None:
            await self.done[wait_for].wait()
        self.finished.append(name)
        self.done[name].set()
        if fail:
            raise actors.TerminalError(name, 422)
        return name

    @actors.handler
    async def both(self, ctx: actors.Context) -> list[Any]:
        return await actors.gather(ctx.run("a", self._a), ctx.run("b", self._b))

    @actors.handler
    async def in_order(self, ctx: actors.Context) -> list[Any]:
        # The first future finishes last; results still come in argument order.
        return await actors.gather(
            ctx.run("slow", self._after, "slow", "fast", False), ctx.run("fast", self._fast)
        )

    @actors.handler
    async def failures(self, ctx: actors.Context) -> str:
        # Finishing order: "b fails", then "a fails", then "slow".
        futures = [
            ctx.run("slow", self._after, "slow", "a fails", False),
            ctx.run("a fails", self._after, "a fails", "b fails", True),
            ctx.run("b fails", self._after, "b fails", None, True),
        ]
        try:
            await actors.gather(*futures)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc}"
        return "no failure"


async def test_gather_runs_bodies_concurrently_and_keeps_argument_order() -> None:
    pair = Pair()
    with anyio.fail_after(5):
        async with open_test_runtime([pair]) as rt:
            assert await rt.call(Pair.both) == ["A", 2]
    assert sorted(pair.finished) == ["a", "b"]


async def test_gather_results_follow_argument_order_not_finishing_order() -> None:
    pair = Pair()
    with anyio.fail_after(5):
        async with open_test_runtime([pair]) as rt:
            assert await rt.call(Pair.in_order) == ["slow", 2]
    assert pair.finished == ["fast", "slow"]


async def test_gather_raises_the_first_failure_by_position_after_all_finish() -> None:
    pair = Pair()
    with anyio.fail_after(5):
        async with open_test_runtime([pair]) as rt:
            assert await rt.call(Pair.failures) == "422: a fails"
    # "b fails" failed first in time; "slow" finished after both failures.
    assert pair.finished == ["b fails", "a fails", "slow"]


class Worker(actors.Service):
    """A two-minute step gathered with a one-hour sleep."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    async def _work(self) -> int:
        self.started += 1
        await anyio.sleep(120)
        self.finished += 1
        return 5

    @actors.handler
    async def work_and_wait(self, ctx: actors.Context) -> list[Any]:
        return await actors.gather(ctx.run("work", self._work), ctx.sleep(timedelta(hours=1)))


async def test_gather_of_a_step_and_a_sleep_runs_the_step_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker()
    async with open_test_runtime([worker], suspend_after=3600) as rt:
        assert await rt.call(Worker.work_and_wait) == [5, None]
        assert trio.current_time() < HOUR + 1
    assert (worker.started, worker.finished) == (1, 1)


async def test_suspension_does_not_cancel_a_running_step_of_the_same_gather(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker = Worker()
    async with open_test_runtime([worker], suspend_after=60) as rt:
        assert await rt.call(Worker.work_and_wait) == [5, None]
        assert trio.current_time() < HOUR + 1
    assert (worker.started, worker.finished) == (1, 1)


class Misuse(actors.Service):
    @actors.handler
    async def bad_select(self, ctx: actors.Context) -> str:
        try:
            await actors.select(a=ctx.sleep(1), b=42)  # type: ignore[arg-type]
        except TypeError as exc:
            return str(exc)
        return "accepted"

    @actors.handler
    async def bad_gather(self, ctx: actors.Context) -> str:
        try:
            await actors.gather(ctx.sleep(1), "soon")  # type: ignore[arg-type]
        except TypeError as exc:
            return str(exc)
        return "accepted"

    @actors.handler
    async def empty(self, ctx: actors.Context) -> list[str]:
        messages = []
        for combinator in (actors.select(), actors.gather()):
            try:
                await combinator
            except TypeError as exc:
                messages.append(str(exc))
        return messages


async def test_select_and_gather_reject_what_is_not_a_durable_future() -> None:
    async with open_test_runtime([Misuse()]) as rt:
        assert "not int" in await rt.call(Misuse.bad_select)
        assert "not str" in await rt.call(Misuse.bad_gather)
        assert await rt.call(Misuse.empty) == [
            "select() needs at least one durable future",
            "gather() needs at least one durable future",
        ]
