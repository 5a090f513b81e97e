"""Races of the runtime before the lifecycle table drove it (fixed in 061fd83), each
forced deterministically: a cancel while a handler unwinds or flushes before it
suspends, a cancel during a retry's backoff, a resume that reset the attempt epoch,
suspensions that used up the retry budget, and a ``call`` whose caller gave up while
its completion was being committed."""

from __future__ import annotations

import functools
import math
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.testing
from writer_hold import WriterHold

import actors
from actors.storage import InvocationRecord, StoreReader, Table, loads
from actors.testing import LoopClock, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from actors.storage import WriteBatch

LONG = timedelta(days=30)
# For tests that skip months of virtual time: no expiry meanwhile, and few idle sweeps.
YEAR = timedelta(days=365)
IDLE = timedelta(days=10).total_seconds()


class Probe:
    """What handlers did, outside the journal: step bodies that ran (``effects``), how
    often a handler ran, ids, and arrival events the test and the handlers meet at."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.runs = 0
        self.ids: dict[str, str] = {}
        self.awakeables: dict[str, str] = {}
        self._events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        return self._events.setdefault(name, anyio.Event())

    def arrive(self, name: str) -> None:
        self.event(name).set()

    async def arrived(self, name: str) -> None:
        await self.event(name).wait()

    async def effect(self, name: str) -> str:
        self.effects.append(name)
        return name

    async def held(self, name: str) -> str:
        """A step body that runs until the test lets it end."""
        self.effects.append(name)
        self.arrive(f"{name} started")
        await self.arrived(f"{name} may end")
        return name


def _assert_cancelled(exc: actors.TerminalError) -> None:
    assert exc.status_code == 409
    assert "cancel" in exc.message


def stored_record(data: Path, invocation_id: str) -> InvocationRecord:
    with StoreReader.open(data) as reader, reader.read() as view:
        raw = view.get(Table.INVOCATIONS, invocation_id.encode())
    assert raw is not None
    return loads(InvocationRecord, raw)


# --- 1. a cancel while the handler unwinds, or flushes before it suspends -------------------


class SlowExit:
    """An async context manager whose exit awaits (as closing a client does) the first
    time it runs, so ``Suspended`` takes a while to unwind the handler."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: object) -> None:
        if "unwinding" not in self.probe.effects:
            self.probe.effects.append("unwinding")
            self.probe.arrive("unwinding")
            await self.probe.arrived("let go")


async def _nap(probe: Probe, ctx: actors.Context) -> str:
    try:
        async with SlowExit(probe):
            await ctx.sleep(LONG)
        return "rested"
    except actors.TerminalError:
        await ctx.run("undo", probe.effect, "undo")
        raise


class Unwinder(actors.VirtualObject, name="unwinder"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def nap(self, ctx: actors.ObjectContext) -> str:
        return await _nap(self.probe, ctx)


class UnwinderFlow(actors.Workflow, name="unwinderFlow"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def nap(self, ctx: actors.WorkflowContext) -> str:
        return await _nap(self.probe, ctx)


@pytest.mark.parametrize("actor", ["object", "workflow"])
async def test_a_cancel_while_suspended_unwinds_the_handler_is_raised_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, actor: str
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Unwinder(probe), UnwinderFlow(probe)],
        path=tmp_path,
        suspend_after=1,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        if actor == "object":
            handle = await rt.send(Unwinder.nap, key="k")
        else:
            handle = await rt.send(UnwinderFlow.nap, key="k")
        # After suspend_after the sleep gives its coroutine up: Suspended unwinds the
        # handler, which is still in its context manager's exit.
        await probe.arrived("unwinding")
        await rt.cancel(handle.invocation_id)
        probe.arrive("let go")
        with anyio.fail_after(60):  # virtual time; the sleep itself ends in 30 days
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
        _assert_cancelled(info.value)
    assert probe.effects == ["unwinding", "undo"]


class Gatherer(actors.VirtualObject, name="gatherer"):
    """Gathers a step with a long sleep: the step's result, recorded while the sleep
    waits, is flushed just before the sleep gives its coroutine up."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext) -> str:
        try:
            await actors.gather(ctx.run("step", self.probe.held, "step"), ctx.sleep(LONG))
            return "done"
        except actors.TerminalError:
            await ctx.run("undo", self.probe.effect, "undo")
            raise

    @actors.exclusive
    async def noop(self, ctx: actors.ObjectContext) -> None:
        pass


async def test_a_cancel_during_the_flush_before_suspending_is_raised_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The clock moves only when told: the threaded writer keeps the flush pending
    # (autojump would fire timeouts while the writer thread works).
    autojump_clock.autojump_threshold = math.inf
    probe = Probe()
    hold = WriterHold()
    async with actors.open_runtime(
        tmp_path,
        [Gatherer(probe)],
        clock=LoopClock(),
        commit_mode="thread",
        suspend_after=10,
        retention=YEAR,
        idle_timeout=IDLE,
        _fault_hook=hold,
    ) as rt:
        try:
            handle = await rt.send(Gatherer.go, key="k")
            await probe.arrived("step started")
            await trio.testing.wait_all_tasks_blocked()  # the sleep waits
            probe.arrive("step may end")  # its result is recorded, not yet flushed
            await trio.testing.wait_all_tasks_blocked()
            async with anyio.create_task_group() as tg:
                # Hold the writer in an unrelated commit, so that what follows queues.
                hold.armed = True
                tg.start_soon(functools.partial(rt.send, Gatherer.noop, key="z", delay=YEAR))
                await hold.entered.wait()
                # suspend_after passes: the sleep flushes the step's result before it
                # suspends, and waits for that batch.
                autojump_clock.jump(10)
                await trio.testing.wait_all_tasks_blocked()
                # The cancel is recorded, and its record queued behind the flush.
                tg.start_soon(rt.cancel, handle.invocation_id)
                await trio.testing.wait_all_tasks_blocked()
                # The flush and the cancel's record land in one commit: the sleep and the
                # cancel resume in the same round, before the handler has unwound (the
                # old runtime's cancel then saw it running, with no wait to interrupt).
                hold.release.set()
            await trio.testing.wait_all_tasks_blocked()
            assert rt.statistics().suspended == 0, "suspended with the cancel pending"
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            _assert_cancelled(info.value)
        finally:
            hold.release.set()  # never leave the writer held when the runtime closes
    assert probe.effects == ["step", "undo"]


# --- 2. a cancel during a retry's backoff ----------------------------------------------------


HOUR = 3600.0


class Flaky(actors.VirtualObject, name="flaky"):
    """Books, fails once (the retry waits an hour), then waits for a month."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(
        retry=actors.RetryPolicy(initial_interval=HOUR, max_interval=HOUR, max_attempts=None)
    )
    async def book(self, ctx: actors.ObjectContext) -> str:
        self.probe.runs += 1
        try:
            await ctx.run("book", self.probe.effect, "book")
            if self.probe.runs == 1:
                self.probe.arrive("failing")
                raise RuntimeError("the first attempt fails")
            await ctx.sleep(LONG)
            return "booked"
        except actors.TerminalError:
            await ctx.run("unbook", self.probe.effect, "unbook")
            raise


async def test_a_cancel_cuts_a_retry_backoff_short(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Flaky(probe)], path=tmp_path, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        handle = await rt.send(Flaky.book, key="k")
        await probe.arrived("failing")
        await anyio.wait_all_tasks_blocked()  # in its hour of backoff
        assert probe.runs == 1
        await rt.cancel(handle.invocation_id)
        with anyio.fail_after(60):  # virtual time, well short of the backoff
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
        _assert_cancelled(info.value)
    # The next attempt started at once and the cancel landed at its first durable await.
    assert probe.runs == 2
    assert probe.effects == ["book", "unbook"]


# --- 3. resume keeps the attempt epoch -------------------------------------------------------


class Racer(actors.VirtualObject, name="racer"):
    """Races a slow step against a signal; the first run then fails (paused, since one
    attempt is all it gets). The loser step of that attempt is still running when the
    invocation is resumed."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(retry=actors.RetryPolicy(max_attempts=1))
    async def go(self, ctx: actors.ObjectContext) -> str:
        self.probe.runs += 1
        run = self.probe.runs
        slow = ctx.run("slow", self.probe.held, f"slow {run}")
        awakeable_id, signal = ctx.awakeable(str)
        self.probe.awakeables["signal"] = awakeable_id
        await actors.select(slow=slow, signal=signal)
        if run == 1:
            raise RuntimeError("broken until resumed")
        value = await slow
        await ctx.sleep(timedelta(hours=1))
        return value


async def test_a_step_of_an_attempt_before_a_resume_does_not_count_in_the_new_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Racer(probe)], path=tmp_path, suspend_after=1, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        handle = await rt.send(Racer.go, key="k")
        await probe.arrived("slow 1 started")
        await rt.resolve_awakeable(probe.awakeables["signal"], "go")  # the signal wins
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().paused == 1  # while "slow 1" still runs
        await rt.resume(handle.invocation_id)
        await probe.arrived("slow 2 started")
        probe.arrive("slow 2 may end")
        await anyio.wait_all_tasks_blocked()  # the new attempt sleeps
        # The body of the first attempt ends now. It belongs to no current attempt (a
        # resume that reset the count made its epoch the new attempt's: it took that
        # attempt's count of running steps to -1, and the sleep never suspended).
        probe.arrive("slow 1 may end")
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(10)  # past suspend_after: nothing runs, so the sleep suspends
        assert rt.statistics().suspended == 1, "a stale step kept the coroutine"
        with anyio.fail_after(timedelta(hours=2).total_seconds()):
            assert await handle.result() == "slow 2"
    assert probe.effects == ["slow 1", "slow 2"]


class Broken(actors.VirtualObject, name="broken"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(retry=actors.RetryPolicy(max_attempts=1))
    async def fail_once(self, ctx: actors.ObjectContext) -> str:
        self.probe.runs += 1
        if self.probe.runs == 1:
            raise RuntimeError("broken until resumed")
        _, never = ctx.awakeable(str)
        return await never


async def test_the_stored_attempt_count_does_not_go_back_on_resume(tmp_path: Path) -> None:
    probe = Probe()
    async with open_test_runtime([Broken(probe)], path=tmp_path) as rt:
        handle = await rt.send(Broken.fail_once, key="k")
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().paused == 1
    paused = stored_record(tmp_path, handle.invocation_id)
    assert paused.attempt == 1
    async with open_test_runtime([Broken(probe)], path=tmp_path) as rt:
        await anyio.wait_all_tasks_blocked()
        await rt.resume(handle.invocation_id)
        await anyio.wait_all_tasks_blocked()  # the next attempt waits on its awakeable
        assert probe.runs == 2
    assert stored_record(tmp_path, handle.invocation_id).attempt >= paused.attempt


# --- 4. suspensions are not failures ---------------------------------------------------------


class Sleepy(actors.VirtualObject, name="sleepy"):
    """Sleeps three times (each sleep suspends it), then fails once."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(retry=actors.RetryPolicy(initial_interval=1, max_attempts=2))
    async def go(self, ctx: actors.ObjectContext) -> str:
        for _ in range(3):
            await ctx.sleep(timedelta(hours=1))
        self.probe.runs += 1
        if self.probe.runs == 1:
            raise RuntimeError("fails once")
        return "done"


async def test_suspensions_do_not_use_up_the_retry_budget(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Sleepy(probe)], path=tmp_path, suspend_after=1, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        handle = await rt.send(Sleepy.go, key="k")
        await anyio.sleep(10)
        assert rt.statistics().suspended == 1  # each sleep suspends it, a wake runs it again
        await anyio.sleep(timedelta(hours=4).total_seconds())
        assert rt.statistics().paused == 0, "paused after failing once"
        with anyio.fail_after(60):
            assert await handle.result() == "done"
    assert probe.runs == 2


# --- 5. a caller that gives up while the completion commits ----------------------------------


class Worker(actors.VirtualObject, name="worker"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def work(self, ctx: actors.ObjectContext, job: str) -> str:
        self.probe.effects.append(f"work {job}")
        return job


class Dispatcher(actors.VirtualObject, name="dispatcher"):
    """Makes a call it does not await: the call is delivered with the completion."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.completing = False
        self.caller: anyio.CancelScope | None = None

    @actors.exclusive
    async def fire(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids["fire"] = ctx.invocation_id
        await ctx.run("prepare", self.probe.effect, "prepare")  # recorded: it has a record
        ctx.call(Worker.work, "job", key="w")
        self.completing = True  # the next commit is the completion
        return "fired"

    def commit_hook(self, batches: Sequence[WriteBatch]) -> None:
        """Inline commits: runs in the committing task. The caller gives up while its
        completion is being committed, before it learns that it is durable."""
        if self.completing and self.caller is not None:
            self.completing = False
            self.caller.cancel()


@asynccontextmanager
async def _dispatching(
    path: Path, probe: Probe, retention: timedelta
) -> AsyncIterator[tuple[actors.Runtime, Dispatcher]]:
    dispatcher = Dispatcher(probe)
    async with actors.open_runtime(
        path,
        [dispatcher, Worker(probe)],
        clock=LoopClock(),
        commit_mode="inline",
        retention=retention,
        idle_timeout=IDLE,
        _fault_hook=dispatcher.commit_hook,
    ) as rt:
        yield rt, dispatcher


async def _give_up_during_completion(rt: actors.Runtime, dispatcher: Dispatcher) -> None:
    with anyio.CancelScope() as scope:
        dispatcher.caller = scope
        await rt.call(Dispatcher.fire, key="d")
    assert scope.cancelled_caught


async def test_a_call_whose_caller_gives_up_during_completion_delivers_its_calls(
    tmp_path: Path,
) -> None:
    probe = Probe()
    async with _dispatching(tmp_path, probe, retention=YEAR) as (rt, dispatcher):
        await _give_up_during_completion(rt, dispatcher)
        await anyio.wait_all_tasks_blocked()
        assert probe.effects == ["prepare", "work job"]
        assert await rt.attach(probe.ids["fire"]) == "fired"
        assert rt.statistics().in_flight == 0


async def test_a_call_whose_caller_gives_up_during_completion_still_expires(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    retention = timedelta(minutes=1)
    async with _dispatching(tmp_path, probe, retention=retention) as (rt, dispatcher):
        await _give_up_during_completion(rt, dispatcher)
        await anyio.wait_all_tasks_blocked()
        assert await rt.attach(probe.ids["fire"]) == "fired"
        await anyio.sleep(2 * retention.total_seconds())
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(probe.ids["fire"])
