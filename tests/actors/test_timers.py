"""Durable time: ``ctx.sleep`` and delayed sends, under a MockClock that skips days.

Sleeps and delays are journaled or stored as wall-clock due times, so a restart neither
restarts a wait nor loses it: a timer that came due while the runtime was down fires at
once on reopening, one not yet due fires at its original time. A sleeping workflow is
parked after ``suspend_after`` and rebuilt by replay when its timer fires.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

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


class Sleeper(actors.Service):
    """Sleeps between two journaled clock readings; notes the loop time it woke at."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.woke_at: list[float] = []

    @actors.handler
    async def nap(self, ctx: actors.Context, seconds: float) -> list[float]:
        before = await ctx.time()
        self.entered.set()
        await ctx.sleep(seconds)
        self.woke_at.append(trio.current_time())
        after = await ctx.time()
        return [before, after]

    @actors.handler
    async def nap_days(self, ctx: actors.Context, days: int) -> float:
        before = await ctx.time()
        await ctx.sleep(timedelta(days=days))
        return await ctx.time() - before


async def test_sleep_for_days_finishes_at_once_and_time_moves_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sleeper = Sleeper()
    async with open_test_runtime([sleeper]) as rt:
        elapsed = await rt.call(Sleeper.nap_days, 3)
        assert elapsed >= 3 * DAY
        assert trio.current_time() >= 3 * DAY
        before, after = await rt.call(Sleeper.nap, 90.5)
        assert after - before >= 90.5


async def test_sleep_of_zero_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_runtime([Sleeper()]) as rt:
        before, after = await rt.call(Sleeper.nap, 0.0)
        assert after == before
        assert trio.current_time() < 1


class Napper(actors.Workflow):
    """Counted steps around a three-day sleep."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.sleeping = anyio.Event()

    async def _step(self, name: str) -> str:
        self.steps.append(name)
        return name

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, days: float) -> float:
        await ctx.run("before", self._step, "before")
        ctx.set("stage", "sleeping")
        self.sleeping.set()
        await ctx.sleep(timedelta(days=days))
        woke = await ctx.time()
        await ctx.run("after", self._step, "after")
        return woke

    @actors.shared
    async def stage(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("stage", str)


async def _start_napping(rt: actors.Runtime, napper: Napper, days: float) -> str:
    handle = await rt.send(Napper.run, days, key="n")
    await napper.sleeping.wait()
    await trio.testing.wait_all_tasks_blocked()  # the sleep's journal entry is durable
    assert await rt.call(Napper.stage, key="n") == "sleeping"
    return handle.invocation_id


@pytest.mark.parametrize("parked", [False, True], ids=["sleeping", "parked"])
async def test_sleep_across_a_close_ends_at_the_original_wake_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, parked: bool
) -> None:
    napper = Napper()
    async with open_test_runtime([napper], path=tmp_path, suspend_after=5) as rt:
        invocation_id = await _start_napping(rt, napper, 3)
        if parked:
            await trio.sleep(HOUR)
            assert rt.statistics().parked == 1
        assert trio.current_time() < DAY
    await trio.sleep(DAY - trio.current_time())  # down until day 1: two days remain
    async with open_test_runtime([napper], path=tmp_path) as rt:
        woke = await rt.attach(invocation_id)
        assert 3 * DAY <= trio.current_time() < 3 * DAY + 60
    assert START + 3 * DAY <= woke < START + 3 * DAY + 60
    assert napper.steps == ["before", "after"]


async def test_overdue_sleep_fires_at_once_after_reopening(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    napper = Napper()
    async with open_test_runtime([napper], path=tmp_path) as rt:
        invocation_id = await _start_napping(rt, napper, 3)
    # Reopened with a wall clock ten days later: the sleep is long overdue.
    reopened_at = trio.current_time()
    async with open_test_runtime(
        [napper], path=tmp_path, clock=LoopClock(start=START + 10 * DAY)
    ) as rt:
        woke = await rt.attach(invocation_id)
        assert trio.current_time() - reopened_at < 60
    assert START + 10 * DAY <= woke < START + 10 * DAY + 60
    assert napper.steps == ["before", "after"]


class Bomb(actors.Service):
    """Crashes the runtime (CrashPlan in_run="boom") when it runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def _boom(self) -> None:
        self.runs += 1

    @actors.handler
    async def go(self, ctx: actors.Context) -> None:
        await ctx.run("boom", self._boom)


async def test_sleep_across_a_crash_ends_at_the_original_wake_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    napper, bomb = Napper(), Bomb()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [napper, bomb], path=tmp_path, crash=CrashPlan(in_run="boom")
        ) as rt:
            invocation_id = await _start_napping(rt, napper, 3)
            await rt.send(Bomb.go, delay=timedelta(days=1))  # the crash comes a day later
            await trio.sleep(2 * DAY)
    assert DAY <= trio.current_time() < DAY + 60  # the runtime died at the bomb
    async with open_test_runtime([napper, bomb], path=tmp_path) as rt:
        woke = await rt.attach(invocation_id)
        assert 3 * DAY <= trio.current_time() < 3 * DAY + 60
    assert START + 3 * DAY <= woke < START + 3 * DAY + 60
    assert napper.steps == ["before", "after"]
    assert bomb.runs == 1  # the crash came before the body ran; the second life ran it


async def test_a_sleeping_workflow_is_parked_and_resumes_by_replay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    napper = Napper()
    async with open_test_runtime([napper], suspend_after=5) as rt:
        handle = await rt.send(Napper.run, 1, key="n")
        await trio.sleep(HOUR)
        stats = rt.statistics()
        assert (stats.parked, stats.suspended, stats.in_flight) == (1, 1, 0)
        assert stats.timers >= 1
        assert await rt.call(Napper.stage, key="n") == "sleeping"
        with pytest.raises(actors.NotReadyError):
            await rt.output(handle.invocation_id)
        woke = await handle.result()
        assert rt.statistics().parked == 0
    assert START + DAY <= woke < START + DAY + 60
    assert napper.steps == ["before", "after"]  # the replay did not run "before" again


class Lock(actors.VirtualObject):
    """An exclusive handler that sleeps holds its key for the whole sleep."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext, hours: float) -> None:
        await ctx.sleep(timedelta(hours=hours))
        self.log.append((f"{ctx.key} released", trio.current_time()))

    @actors.exclusive
    async def touch(self, ctx: actors.ObjectContext) -> None:
        self.log.append((f"{ctx.key} touched", trio.current_time()))


async def test_sleeping_exclusive_handler_keeps_its_key_and_suspends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lock = Lock()
    async with open_test_runtime([lock], suspend_after=5) as rt:
        held = await rt.send(Lock.hold, 2, key="k")
        await rt.call(Lock.hold, 0.5, key="other")  # other keys are not blocked
        touched = await rt.send(Lock.touch, key="k")
        await trio.sleep(HOUR)
        stats = rt.statistics()
        assert stats.suspended == 1
        assert stats.queued_exclusive == 1
        await touched.result()
        await held.result()
    assert [event for event, _ in lock.log] == ["other released", "k released", "k touched"]
    times = dict(lock.log)
    assert HOUR / 2 <= times["other released"] < HOUR / 2 + 60
    assert 2 * HOUR <= times["k released"] <= times["k touched"] < 2 * HOUR + 60


class Alarm(actors.Service):
    def __init__(self) -> None:
        self.rang: list[tuple[str, float]] = []

    @actors.handler
    async def ring(self, ctx: actors.Context, minutes: int) -> None:
        await ctx.sleep(timedelta(minutes=minutes))
        self.rang.append((f"{minutes}m", trio.current_time()))


async def test_many_sleeps_wake_in_due_order_at_their_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alarm = Alarm()
    minutes = [30, 5, 90, 1, 60, 5]
    async with open_test_runtime([alarm], suspend_after=5) as rt:
        handles = [await rt.send(Alarm.ring, m) for m in minutes]
        for handle in handles:
            await handle.result()
    assert [label for label, _ in alarm.rang] == [f"{m}m" for m in sorted(minutes)]
    for label, at in alarm.rang:
        due = int(label[:-1]) * 60
        assert due <= at < due + 1


class Careless(actors.Service):
    """Sleeps for ``duration`` (kept here: NaN and timedelta are no JSON input)."""

    def __init__(self, duration: float | timedelta) -> None:
        self.duration = duration

    @actors.handler
    async def nap(self, ctx: actors.Context) -> str:
        try:
            ctx.sleep(self.duration)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc}"
        return "accepted"

    @actors.handler
    async def nap_uncaught(self, ctx: actors.Context) -> None:
        await ctx.sleep(self.duration)


@pytest.mark.parametrize(
    "duration",
    [
        -1.0,
        timedelta(seconds=-1),
        math.nan,
        math.inf,
        -math.inf,
        timedelta(days=101 * 365),
        101 * 365 * DAY,
    ],
    ids=["negative", "negative-timedelta", "nan", "inf", "-inf", "101y-timedelta", "101y"],
)
async def test_bad_sleep_durations_are_terminal_errors_400(
    autojump_clock: trio.testing.MockClock, duration: float | timedelta
) -> None:
    async with open_test_runtime([Careless(duration)]) as rt:
        message = await rt.call(Careless.nap)
        assert message.startswith("400: ctx.sleep(")
        with pytest.raises(actors.TerminalError, match=r"^ctx\.sleep\(") as info:
            await rt.call(Careless.nap_uncaught)
        assert info.value.status_code == 400


async def test_a_sleep_of_almost_a_century_is_accepted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Careless(timedelta(days=99 * 365))]) as rt:
        assert await rt.call(Careless.nap) == "accepted"


# --- delayed sends -----------------------------------------------------------------------------


class Inbox(actors.VirtualObject):
    """Records when each message arrived (loop time) and keeps them in state."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []

    @actors.exclusive
    async def post(self, ctx: actors.ObjectContext, message: str) -> str:
        self.arrivals.append((message, trio.current_time()))
        messages = (await ctx.get("messages", list[str])) or []
        ctx.set("messages", [*messages, message])
        return message.upper()

    @actors.shared
    async def messages(self, ctx: actors.ObjectSharedContext) -> list[str]:
        return (await ctx.get("messages", list[str])) or []


class Scheduler(actors.VirtualObject):
    @actors.exclusive
    async def schedule(self, ctx: actors.ObjectContext, message: str) -> str:
        handle = await ctx.send(Inbox.post, message, key="box", delay=timedelta(hours=2))
        assert handle.status == "Accepted"
        return handle.invocation_id

    @actors.exclusive
    async def schedule_negative(self, ctx: actors.ObjectContext) -> str:
        try:
            await ctx.send(Inbox.post, "never", key="box", delay=timedelta(seconds=-1))
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc}"
        return "sent"


async def test_delayed_send_runs_after_the_delay_and_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = Inbox()
    async with open_test_runtime([inbox]) as rt:
        handle = await rt.send(Inbox.post, "hi", key="box", delay=timedelta(hours=2))
        assert handle.status == "Accepted"
        await trio.sleep(HOUR)
        assert await rt.call(Inbox.messages, key="box") == []
        assert rt.statistics().timers >= 1
        with pytest.raises(actors.NotReadyError):
            await rt.output(handle.invocation_id)
        assert await handle.result() == "HI"
        assert await rt.call(Inbox.messages, key="box") == ["hi"]
    ((message, at),) = inbox.arrivals
    assert message == "hi"
    assert 2 * HOUR <= at < 2 * HOUR + 60


async def test_delay_in_seconds_and_a_zero_delay(autojump_clock: trio.testing.MockClock) -> None:
    inbox = Inbox()
    async with open_test_runtime([inbox]) as rt:
        later = await rt.send(Inbox.post, "later", key="box", delay=90.0)
        now = await rt.send(Inbox.post, "now", key="box", delay=0)
        assert await now.result() == "NOW"
        assert await later.result() == "LATER"
    assert [m for m, _ in inbox.arrivals] == ["now", "later"]
    assert inbox.arrivals[0][1] < 1
    assert 90 <= inbox.arrivals[1][1] < 91


async def test_delayed_ctx_send_from_a_handler(autojump_clock: trio.testing.MockClock) -> None:
    inbox = Inbox()
    async with open_test_runtime([inbox, Scheduler()]) as rt:
        invocation_id = await rt.call(Scheduler.schedule, "hello", key="s")
        await trio.sleep(HOUR)
        assert await rt.call(Inbox.messages, key="box") == []
        assert await rt.attach(invocation_id) == "HELLO"
    ((message, at),) = inbox.arrivals
    assert message == "hello"
    assert 2 * HOUR <= at < 2 * HOUR + 60


async def _send_both(rt: actors.Runtime) -> list[str]:
    """A delayed rt.send and a delayed ctx.send, both due two hours from now."""
    handle = await rt.send(Inbox.post, "outer", key="box", delay=timedelta(hours=2))
    inner: str = await rt.call(Scheduler.schedule, "inner", key="s")
    return [handle.invocation_id, inner]


async def test_delayed_sends_overdue_at_reopening_are_delivered_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = Inbox()
    async with open_test_runtime([inbox, Scheduler()], path=tmp_path) as rt:
        ids = await _send_both(rt)
        await trio.sleep(HOUR)
    assert inbox.arrivals == []
    reopened_at = trio.current_time()
    async with open_test_runtime(
        [inbox, Scheduler()], path=tmp_path, clock=LoopClock(start=START + 3 * DAY)
    ) as rt:
        assert sorted([await rt.attach(i) for i in ids]) == ["INNER", "OUTER"]
        assert sorted(await rt.call(Inbox.messages, key="box")) == ["inner", "outer"]
    assert sorted(m for m, _ in inbox.arrivals) == ["inner", "outer"]
    assert all(at - reopened_at < 60 for _, at in inbox.arrivals)


async def test_delayed_sends_not_yet_due_at_reopening_wait_for_their_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    inbox = Inbox()
    async with open_test_runtime([inbox, Scheduler()], path=tmp_path) as rt:
        ids = await _send_both(rt)
        await trio.sleep(HOUR / 2)
    await trio.sleep(HOUR / 2)  # down for half an hour; an hour of the delay remains
    async with open_test_runtime([inbox, Scheduler()], path=tmp_path) as rt:
        await trio.sleep(HOUR / 2)
        assert await rt.call(Inbox.messages, key="box") == []
        assert sorted([await rt.attach(i) for i in ids]) == ["INNER", "OUTER"]
    assert sorted(m for m, _ in inbox.arrivals) == ["inner", "outer"]
    assert all(2 * HOUR <= at < 2 * HOUR + 60 for _, at in inbox.arrivals)


@pytest.mark.parametrize(
    "delay", [-1.0, timedelta(hours=-2), math.nan, math.inf], ids=["neg", "neg-td", "nan", "inf"]
)
async def test_bad_delay_of_rt_send_is_a_value_error_and_stores_nothing(
    tmp_path: Path, delay: float | timedelta
) -> None:
    async with open_test_runtime([Inbox()], path=tmp_path) as rt:
        with pytest.raises(ValueError, match="delay must be a finite, non-negative duration"):
            await rt.send(Inbox.post, "x", key="box", delay=delay)
        stats = rt.statistics()
        assert (stats.in_flight, stats.timers) == (0, 0)
    async with open_test_runtime([Inbox()], path=tmp_path) as rt:
        assert rt.statistics().in_flight == 0
        assert await rt.call(Inbox.messages, key="box") == []


async def test_negative_delay_of_ctx_send_is_a_terminal_error_400(tmp_path: Path) -> None:
    async with open_test_runtime([Inbox(), Scheduler()], path=tmp_path) as rt:
        message = await rt.call(Scheduler.schedule_negative, key="s")
        assert message.startswith("400: delay must be a finite, non-negative duration")
        assert await rt.call(Inbox.messages, key="box") == []
