"""Retry defaults that protect users, time limits, and pause-or-kill (issue 13, items 2
and 4): the default ``ctx.run`` and invocation retries go on until success; a transient
error becomes a ``TerminalError`` or a pause only under a policy the user set;
``max_duration`` limits retries on the runtime's clock, counted from the first attempt
across a crash; ``on_max_attempts="kill"`` ends an invocation as killed.

Under trio and asyncio, with ``JumpClock``: time stands still until every task is
blocked, then jumps to the earliest sleeper's deadline (``MockClock`` autojump, for both
backends), so hours of backoff take no real time."""

from __future__ import annotations

import heapq
import math
import re
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import actors
from actors.storage import (
    InvocationRecord,
    InvocationStatus,
    RunEntry,
    Success,
    Table,
    encode_key,
    loads,
    loads_entry,
)
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from actors._definitions import Actor
    from actors._runtime import Runtime

START = 1_700_000_000.0


class JumpClock:
    """Durable time that moves only when every task is blocked: then it jumps to the
    earliest pending ``sleep_until`` deadline and wakes that sleeper (``drive``)."""

    def __init__(self, start: float = START) -> None:
        self.time = start
        self._sleepers: list[tuple[float, int, list[Any]]] = []
        self._count = 0
        self._added = anyio.Event()

    def now(self) -> float:
        return self.time

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.time:
            await anyio.lowlevel.checkpoint()
            return
        sleeper: list[Any] = [anyio.Event(), True]  # [wake-up, still waiting]
        self._count += 1
        heapq.heappush(self._sleepers, (deadline, self._count, sleeper))
        self._added.set()
        try:
            await sleeper[0].wait()
        finally:
            sleeper[1] = False

    async def drive(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            while self._sleepers and not self._sleepers[0][2][1]:
                heapq.heappop(self._sleepers)  # a sleep that was cancelled
            if not self._sleepers:
                self._added = anyio.Event()
                await self._added.wait()
                continue
            deadline, _, sleeper = heapq.heappop(self._sleepers)
            self.time = max(self.time, deadline)
            sleeper[0].set()


@asynccontextmanager
async def runtime(
    path: Path,
    members: Sequence[type[Actor] | Actor],
    clock: JumpClock,
    crash: CrashPlan | None = None,
) -> AsyncIterator[Runtime]:
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.drive)
            try:
                async with open_test_runtime(members, path=path, clock=clock, crash=crash) as rt:
                    yield rt
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the clock's task group wraps what the block raised
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def record_of(rt: Runtime, invocation_id: str) -> InvocationRecord:
    raw = rt._store.get(Table.INVOCATIONS, invocation_id.encode())
    assert raw is not None
    return loads(InvocationRecord, raw)


def journal_of(rt: Runtime, invocation_id: str) -> list[Any]:
    rows = rt._store.scan(Table.JOURNAL, encode_key((invocation_id,)), children=True)
    return [loads_entry(value) for _, value in rows]


def default_backoff(attempts: int) -> float:
    """Seconds the default policy waits in all before attempt ``attempts``."""
    policy = actors.RetryPolicy()
    return sum(policy.delay(n) for n in range(2, attempts + 1))


class Flaky(actors.VirtualObject):
    """Its step body and its handler fail ``fail_for`` times, then succeed; each try's
    time is kept. ``tried`` fires once ``signal_at`` tries were made."""

    def __init__(self, clock: JumpClock, fail_for: int) -> None:
        self.clock = clock
        self.fail_for = fail_for
        self.tries: list[float] = []
        self.runs: list[float] = []
        self.signal_at = 0
        self.tried = anyio.Event()

    async def body(self) -> str:
        self.tries.append(self.clock.now())
        if len(self.tries) == self.signal_at:
            self.tried.set()
        if len(self.tries) <= self.fail_for:
            raise ConnectionError(f"dependency down (try {len(self.tries)})")
        return f"booked after {len(self.tries)} tries"

    @actors.exclusive
    async def book(self, ctx: actors.ObjectContext) -> str:
        return await ctx.run("reserve", self.body)

    @actors.exclusive
    async def book_within(self, ctx: actors.ObjectContext, seconds: float) -> str:
        policy = actors.RetryPolicy(max_duration=seconds)
        try:
            return await ctx.run("reserve", self.body, retry=policy)
        except actors.TerminalError as exc:
            return f"compensated: {exc.message}"

    @actors.exclusive
    async def book_limited(self, ctx: actors.ObjectContext, limits: tuple[int, float]) -> str:
        policy = actors.RetryPolicy(max_attempts=limits[0], max_duration=limits[1])
        try:
            return await ctx.run("reserve", self.body, retry=policy)
        except actors.TerminalError as exc:
            return f"compensated: {exc.message}"

    @actors.exclusive
    async def work(self, ctx: actors.ObjectContext) -> str:
        return self.attempt()

    @actors.exclusive(retry=actors.RetryPolicy(max_duration=60))
    async def work_within_a_minute(self, ctx: actors.ObjectContext) -> str:
        return self.attempt()

    def attempt(self) -> str:
        self.runs.append(self.clock.now())
        if len(self.runs) == self.signal_at:
            self.tried.set()
        if len(self.runs) <= self.fail_for:
            raise ConnectionError(f"dependency down (attempt {len(self.runs)})")
        return f"done after {len(self.runs)} attempts"

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return "pong"


class Bomb(actors.Service):
    """Crashes the runtime (``CrashPlan(in_run="boom")``) when the test says so."""

    @actors.handler
    async def go(self, ctx: actors.Context) -> None:
        await ctx.run("boom", lambda: None)


# --- the defaults ----------------------------------------------------------------------


def test_the_default_policy_never_gives_up() -> None:
    policy = actors.RetryPolicy()
    assert (policy.max_attempts, policy.max_duration, policy.on_max_attempts) == (
        None,
        None,
        "pause",
    )
    assert not policy.exhausted(10)
    assert not policy.exhausted(10**6, elapsed=365 * 86400.0)
    # 50 ms, doubling, capped at 30 s.
    assert [policy.delay(n) for n in range(1, 6)] == [0.0, 0.05, 0.1, 0.2, 0.4]
    assert policy.delay(11) == 25.6
    assert policy.delay(12) == policy.delay(10_000) == 30.0


async def test_a_default_step_retries_past_ten_attempts_until_it_succeeds(
    tmp_path: Path,
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=50)
    async with runtime(tmp_path, [flaky], clock) as rt:
        handle = await rt.send(Flaky.book, key="trip")
        assert await handle.result() == "booked after 51 tries"
        journal = journal_of(rt, handle.invocation_id)
    # One result in the journal, no failure; the tries followed the default backoff.
    assert journal == [RunEntry("reserve", Success(b'"booked after 51 tries"'))]
    assert len(flaky.tries) == 51
    assert flaky.tries[-1] - flaky.tries[0] == pytest.approx(default_backoff(51))
    assert flaky.tries[-1] - flaky.tries[0] > 20 * 60  # well past the old 23 s


async def test_a_default_invocation_retries_past_ten_attempts_until_it_succeeds(
    tmp_path: Path,
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=30)
    async with runtime(tmp_path, [flaky], clock) as rt:
        handle = await rt.send(Flaky.work, key="job")
        assert await handle.result() == "done after 31 attempts"
        assert record_of(rt, handle.invocation_id).status is InvocationStatus.COMPLETED
    assert flaky.runs[-1] - flaky.runs[0] == pytest.approx(default_backoff(31))


# --- limits the user set ---------------------------------------------------------------


async def test_an_explicit_max_attempts_still_raises_in_the_handler(tmp_path: Path) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    async with runtime(tmp_path, [flaky], clock) as rt:
        answer = await rt.call(Flaky.book_limited, (3, 3600), key="trip")
    assert answer.startswith("compensated: ctx.run('reserve') failed after 3 attempts in ")
    assert answer.endswith("ConnectionError: dependency down (try 3)")
    assert len(flaky.tries) == 3


async def test_a_step_gives_up_once_max_duration_has_passed_since_its_first_try(
    tmp_path: Path,
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    async with runtime(tmp_path, [flaky], clock) as rt:
        answer = await rt.call(Flaky.book_within, 60.0, key="trip")
    assert answer.startswith("compensated: ctx.run('reserve') failed after ")
    policy = actors.RetryPolicy()
    first, last = flaky.tries[0], flaky.tries[-1]
    # No try started past the limit, and the next one would have.
    assert last - first <= 60
    assert last - first + policy.delay(len(flaky.tries) + 1) > 60
    assert len(flaky.tries) == 11  # the 11th starts at 51.15 s; a 12th would at 81.15 s
    assert clock.now() - first == pytest.approx(last - first)  # gave up at once, no last wait


async def test_whichever_limit_comes_first_ends_a_step(tmp_path: Path) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    async with runtime(tmp_path, [flaky], clock) as rt:
        assert (await rt.call(Flaky.book_limited, (4, 3600), key="a")).startswith(
            "compensated: ctx.run('reserve') failed after 4 attempts"
        )
        assert len(flaky.tries) == 4
        flaky.tries.clear()
        assert (await rt.call(Flaky.book_limited, (100, 1.0), key="b")).startswith(
            "compensated: ctx.run('reserve') failed after 5 attempts"  # 0.05+0.1+0.2+0.4 s
        )
        assert len(flaky.tries) == 5


@pytest.mark.parametrize("downtime", [0.0, 100.0])
async def test_a_steps_time_limit_counts_from_its_first_try_across_a_crash(
    tmp_path: Path, downtime: float
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    flaky.signal_at = 10  # about 25 s into the retries
    with pytest.raises(SimulatedCrash):
        async with runtime(tmp_path, [flaky, Bomb()], clock, CrashPlan(in_run="boom")) as rt:
            handle = await rt.send(Flaky.book_within, 60.0, key="trip")
            await flaky.tried.wait()
            await rt.call(Bomb.go)
    first = flaky.tries[0]
    crashed_at = clock.now()
    assert 20 < crashed_at - first < 60
    before = len(flaky.tries)

    later = JumpClock(start=crashed_at + downtime)
    flaky.clock = later
    async with runtime(tmp_path, [flaky, Bomb()], later) as rt:
        answer = await rt.attach(handle.invocation_id)
        assert answer.startswith("compensated: ctx.run('reserve') failed after ")
        assert record_of(rt, handle.invocation_id).status is InvocationStatus.COMPLETED
    after = flaky.tries[before:]
    # Counted from the first try of the first life, not from the restart.
    if downtime:
        assert len(after) == 1  # past the limit already: it runs once more, then gives up
        assert f"in {after[0] - first:.3g}s:" in answer
    else:
        assert after[-1] - first <= 60
        assert after[-1] - first + actors.RetryPolicy().delay(len(flaky.tries) + 1) > 60


async def test_an_invocation_pauses_once_max_duration_has_passed(tmp_path: Path) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    async with runtime(tmp_path, [flaky], clock) as rt:
        handle = await rt.send(Flaky.work_within_a_minute, key="job")
        with pytest.raises(actors.InvocationPausedError) as info:
            await handle.result()
        assert "gave up after 11 attempts in 51.1s: ConnectionError" in info.value.message
        assert record_of(rt, handle.invocation_id).status is InvocationStatus.PAUSED
        runs = len(flaky.runs)
        assert flaky.runs[-1] - flaky.runs[0] <= 60
        # A resume starts a fresh budget: another minute of attempts, then paused again.
        resumed_at = clock.now()
        await rt.resume(handle.invocation_id)
        with pytest.raises(actors.InvocationPausedError):
            await rt.attach(handle.invocation_id)
        assert len(flaky.runs) == 2 * runs
        assert flaky.runs[runs] >= resumed_at
        assert flaky.runs[-1] - flaky.runs[runs] <= 60


async def test_an_invocations_time_limit_counts_from_its_first_attempt_across_a_crash(
    tmp_path: Path,
) -> None:
    clock = JumpClock()
    flaky = Flaky(clock, fail_for=1000)
    flaky.signal_at = 8
    with pytest.raises(SimulatedCrash):
        async with runtime(tmp_path, [flaky, Bomb()], clock, CrashPlan(in_run="boom")) as rt:
            handle = await rt.send(Flaky.work_within_a_minute, key="job")
            await flaky.tried.wait()
            await rt.call(Bomb.go)
    first = flaky.runs[0]
    before = len(flaky.runs)

    later = JumpClock(start=clock.now() + 100)  # down for longer than the limit
    flaky.clock = later
    async with runtime(tmp_path, [flaky, Bomb()], later) as rt:
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.attach(handle.invocation_id)
        assert "gave up after 1 attempt in " in info.value.message
        record = record_of(rt, handle.invocation_id)
        assert record.status is InvocationStatus.PAUSED
        assert record.retry_since == ((-1, first),)
    assert len(flaky.runs) == before + 1


# --- on_max_attempts -------------------------------------------------------------------


class Ledger(actors.VirtualObject):
    def __init__(self) -> None:
        self.attempts = 0
        self.callee: str | None = None

    @actors.exclusive(retry=actors.RetryPolicy(initial_interval=0.01, max_attempts=3))
    async def pause_me(self, ctx: actors.ObjectContext) -> str:
        self.attempts += 1
        raise ConnectionError("still down")

    @actors.exclusive(
        retry=actors.RetryPolicy(initial_interval=0.01, max_attempts=3, on_max_attempts="kill")
    )
    async def kill_me(self, ctx: actors.ObjectContext) -> str:
        self.attempts += 1
        ctx.set("touched", True)
        raise ConnectionError("still down")

    @actors.exclusive(
        retry=actors.RetryPolicy(initial_interval=0.01, max_attempts=2, on_max_attempts="kill")
    )
    async def kill_with_a_callee(self, ctx: actors.ObjectContext) -> str:
        self.attempts += 1
        pending = ctx.call(Ledger.wait_forever, key=f"{ctx.key}-callee")
        await ctx.run("mark", lambda: None)  # the call is durable and delivered now
        del pending
        raise ConnectionError("still down")

    @actors.exclusive
    async def wait_forever(self, ctx: actors.ObjectContext) -> str:
        self.callee = ctx.invocation_id
        await ctx.sleep(timedelta(days=365))
        return "woke"

    @actors.exclusive
    async def touched(self, ctx: actors.ObjectContext) -> bool:
        return bool(await ctx.get("touched", bool))

    @actors.exclusive
    async def step_with_kill(self, ctx: actors.ObjectContext) -> str:
        policy = actors.RetryPolicy(max_attempts=2, on_max_attempts="kill")
        return await ctx.run("step", lambda: "x", retry=policy)


class Caller(actors.Service):
    @actors.handler
    async def relay(self, ctx: actors.Context, key: str) -> str:
        try:
            return await ctx.call(Ledger.kill_me, key=key)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"


async def test_an_exhausted_invocation_pauses_by_default(tmp_path: Path) -> None:
    ledger = Ledger()
    async with open_test_runtime([ledger], path=tmp_path) as rt:
        handle = await rt.send(Ledger.pause_me, key="a")
        with pytest.raises(actors.InvocationPausedError) as info:
            await handle.result()
        assert "gave up after 3 attempts: ConnectionError: still down" in info.value.message
        assert record_of(rt, handle.invocation_id).status is InvocationStatus.PAUSED
        assert ledger.attempts == 3
        await rt.cancel(handle.invocation_id)  # paused: still cancellable
        with pytest.raises(actors.TerminalError) as cancelled:
            await rt.attach(handle.invocation_id)
        assert cancelled.value.status_code == 409


async def test_on_max_attempts_kill_ends_it_as_killed(tmp_path: Path) -> None:
    ledger = Ledger()
    async with open_test_runtime([ledger, Caller()], path=tmp_path) as rt:
        handle = await rt.send(Ledger.kill_me, key="a")
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        assert info.value.message == (
            f"invocation {handle.invocation_id} was killed: gave up after 3 attempts: "
            "ConnectionError: still down"
        )
        assert not isinstance(info.value, actors.InvocationPausedError)
        record = record_of(rt, handle.invocation_id)
        assert record.status is InvocationStatus.KILLED
        assert ledger.attempts == 3
        # Not paused: nothing to resume; the key went on to the next invocation, and
        # what the failed attempts wrote was dropped with them.
        with pytest.raises(ValueError, match="not paused"):
            await rt.resume(handle.invocation_id)
        assert await rt.call(Ledger.touched, key="a") is False
        # So does a caller whose task runs it (rt.call).
        with pytest.raises(actors.TerminalError, match="was killed: gave up after 3 attempts"):
            await rt.call(Ledger.kill_me, key="c")
        # A caller inside a handler gets the failure too.
        relayed = await rt.call(Caller.relay, "b")
        assert relayed == (
            f"409: invocation {killed_id(rt, 'b')} was killed: gave up after 3 attempts: "
            "ConnectionError: still down"
        )


def killed_id(rt: Runtime, key: str) -> str:
    for _, raw in rt._store.scan(Table.INVOCATIONS):
        record = loads(InvocationRecord, raw)
        if record.target.key == key and record.target.handler == "kill_me":
            return record.invocation_id
    raise AssertionError(f"no kill_me invocation on {key}")


async def test_a_kill_by_policy_kills_the_calls_it_waits_on(tmp_path: Path) -> None:
    ledger = Ledger()
    async with open_test_runtime([ledger], path=tmp_path) as rt:
        handle = await rt.send(Ledger.kill_with_a_callee, key="a")
        with pytest.raises(actors.TerminalError, match="was killed: gave up after 2 attempts"):
            await handle.result()
        assert ledger.callee is not None
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach(ledger.callee)
        assert info.value.status_code == 409
        assert record_of(rt, ledger.callee).status is InvocationStatus.KILLED


async def test_a_step_policy_that_says_kill_is_refused_at_once(tmp_path: Path) -> None:
    ledger = Ledger()
    async with open_test_runtime([ledger], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Ledger.step_with_kill, key="a")
    assert info.value.status_code == 400
    assert info.value.message.startswith(
        "ctx.run('step', retry=...): on_max_attempts='kill' is for invocations"
    )


# --- bad values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_duration": 0}, "max_duration must be a positive, finite time"),
        ({"max_duration": -5}, "max_duration must be a positive, finite time"),
        ({"max_duration": timedelta(0)}, "max_duration must be a positive, finite time"),
        ({"max_duration": math.nan}, "max_duration must be a positive, finite time"),
        ({"max_duration": math.inf}, "max_duration must be a positive, finite time"),
        ({"max_duration": "10s"}, "max_duration must be seconds (a number) or a timedelta"),
        ({"max_duration": True}, "max_duration must be seconds (a number) or a timedelta"),
        ({"on_max_attempts": "stop"}, "on_max_attempts must be 'pause' or 'kill', not 'stop'"),
        ({"on_max_attempts": None}, "on_max_attempts must be 'pause' or 'kill', not None"),
        ({"on_max_attempts": "kill"}, "on_max_attempts='kill' needs a limit to act on"),
        ({"max_attempts": 0}, "max_attempts must be an int of at least 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an int of at least 1"),
        ({"max_attempts": True}, "max_attempts must be an int of at least 1"),
    ],
)
def test_bad_policy_values_are_refused_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        actors.RetryPolicy(**kwargs)


def test_good_policy_values_are_kept() -> None:
    policy = actors.RetryPolicy(max_duration=timedelta(minutes=2), on_max_attempts="kill")
    assert policy.max_duration == 120.0
    assert actors.RetryPolicy(max_attempts=3, on_max_attempts="kill").max_attempts == 3
    assert actors.RetryPolicy(max_duration=1.5).max_duration == 1.5
    # Under max_duration, it gives up when the next attempt would start past the limit.
    timed = actors.RetryPolicy(initial_interval=1, factor=1, max_duration=10)
    assert not timed.exhausted(1, elapsed=8.9)
    assert timed.exhausted(1, elapsed=9.5)
    assert timed.exhausted(3, elapsed=10.0)
