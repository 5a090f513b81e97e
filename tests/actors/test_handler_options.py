"""Per-handler and per-actor options (``_handler_options``): ``retention=`` and
``inactivity_timeout=`` on the decorators and as class keywords, what overrides what,
expiry on the runtime's clock across a restart and a crash, and every bad value refused
when the class statement runs. (``ingress_private=``: test_ingress_private.py.)"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

HOUR = 3600.0
DAY = 86400.0


class ManualClock:
    """A durable clock that moves only when the test says (``advance``), under trio
    and asyncio alike: ``sleep_until`` waits for an ``advance`` past its deadline."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self._now = now
        self._moved: anyio.Event | None = None

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        while self._now < deadline:
            if self._moved is None:
                self._moved = anyio.Event()
            await self._moved.wait()
        await anyio.lowlevel.checkpoint()

    async def advance(self, seconds: float) -> None:
        """Move on by ``seconds`` and let everything due run until all tasks block."""
        self._now += seconds
        if self._moved is not None:
            self._moved.set()
            self._moved = None
        await anyio.wait_all_tasks_blocked()


class Jobs(actors.VirtualObject):
    """Retention per handler: ``short`` keeps its result an hour, ``plain`` the
    runtime's retention."""

    @actors.exclusive(retention=timedelta(hours=1))
    async def short(self, ctx: actors.ObjectContext, n: int) -> int:
        ctx.set("n", n)
        return n * 2

    @actors.exclusive
    async def plain(self, ctx: actors.ObjectContext, n: int) -> int:
        return n * 3

    @actors.shared(retention=HOUR)
    async def peek(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)


class Batch(actors.Service, retention=timedelta(minutes=10)):
    """A class keyword: every handler keeps results ten minutes unless it says otherwise."""

    @actors.handler
    async def inherits(self, ctx: actors.Context) -> str:
        return "class"

    @actors.handler(retention=timedelta(days=2))
    async def overrides(self, ctx: actors.Context) -> str:
        return "handler"


class LaterBatch(Batch):
    """Inherits the class keyword of ``Batch``."""


class Onboard(actors.Workflow):
    """A workflow whose run-once record lasts an hour (Restate's ``workflow_retention``)."""

    def __init__(self) -> None:
        self.runs = 0

    @actors.main(retention=timedelta(hours=1))
    async def run(self, ctx: actors.WorkflowContext, name: str) -> str:
        self.runs += 1
        ctx.set("stage", "done")
        return f"welcome {name}"

    @actors.shared
    async def stage(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("stage", str)


# --- the options as declared ---------------------------------------------------------------


def test_options_resolve_decorator_over_class_keyword_over_runtime() -> None:
    assert Jobs.short.retention == HOUR
    assert Jobs.peek.retention == HOUR
    assert Jobs.plain.retention is None  # the runtime's
    assert Batch.inherits.retention == 600.0
    assert Batch.overrides.retention == 2 * DAY
    assert LaterBatch.inherits.retention == 600.0  # class keywords are inherited
    assert LaterBatch.overrides.retention == 2 * DAY
    assert Jobs.short.inactivity_timeout is None
    assert Jobs.short.ingress_private is False


def test_a_subclass_keyword_overrides_the_inherited_one() -> None:
    class Quick(Batch, retention=5):
        pass

    assert Quick.inherits.retention == 5.0
    assert Quick.overrides.retention == 2 * DAY  # the decorator still wins
    assert Batch.inherits.retention == 600.0  # the base class is unchanged


def test_zero_retention_is_allowed() -> None:
    class Forget(actors.Service):
        @actors.handler(retention=timedelta(0))
        async def once(self, ctx: actors.Context) -> None:
            return None

    assert Forget.once.retention == 0.0


# --- bad values, refused when the class statement runs --------------------------------------


async def _bad(self: object, ctx: actors.Context) -> None:
    return None


def _decorate(decorator: Any, **options: object) -> None:
    decorator(**options)(_bad)


@pytest.mark.parametrize("option", ["retention", "inactivity_timeout"])
@pytest.mark.parametrize("value", ["1h", True, object(), [5]])
def test_a_duration_of_the_wrong_type_is_a_type_error(option: str, value: object) -> None:
    with pytest.raises(
        TypeError,
        match=rf"^handler _bad: {option} must be a timedelta or a number of seconds, not ",
    ):
        _decorate(actors.exclusive, **{option: value})


@pytest.mark.parametrize(
    ("option", "value", "bound"),
    [
        ("retention", -1, "non-negative"),
        ("retention", timedelta(seconds=-1), "non-negative"),
        ("retention", math.nan, "non-negative"),
        ("retention", math.inf, "non-negative"),
        ("inactivity_timeout", 0, "positive"),
        ("inactivity_timeout", timedelta(0), "positive"),
        ("inactivity_timeout", -0.5, "positive"),
        ("inactivity_timeout", math.inf, "positive"),
    ],
)
def test_a_duration_out_of_range_is_a_value_error(option: str, value: object, bound: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^handler _bad: {option} must be a finite, {bound} duration, not "
    ):
        _decorate(actors.shared, **{option: value})


@pytest.mark.parametrize("value", ["yes", 1, 0])
def test_ingress_private_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match=r"^handler _bad: ingress_private must be True or False"):
        _decorate(actors.handler, ingress_private=value)


@pytest.mark.parametrize(
    "decorator", [actors.exclusive, actors.shared, actors.handler, actors.main]
)
def test_every_decorator_checks_its_options(decorator: object) -> None:
    with pytest.raises(ValueError, match=r"retention must be a finite, non-negative duration"):
        _decorate(decorator, retention=-5)
    with pytest.raises(TypeError, match=r"ingress_private must be True or False"):
        _decorate(decorator, ingress_private="true")


def test_bad_class_keywords_name_the_actor() -> None:
    with pytest.raises(
        TypeError, match=r"^actor Keep: retention must be a timedelta or a number of seconds"
    ):

        class Keep(actors.VirtualObject, retention="forever"):  # type: ignore[arg-type]
            pass

    with pytest.raises(
        ValueError, match=r"^actor Idle: inactivity_timeout must be a finite, positive duration"
    ):

        class Idle(actors.Service, inactivity_timeout=0):
            pass

    with pytest.raises(TypeError, match=r"^actor Hide: ingress_private must be True or False"):

        class Hide(actors.Workflow, ingress_private="no"):  # type: ignore[arg-type]
            @actors.main
            async def run(self, ctx: actors.WorkflowContext) -> None:
                return None


# --- retention ------------------------------------------------------------------------------


async def test_a_handler_retention_overrides_the_runtime_retention() -> None:
    clock = ManualClock()
    async with open_test_runtime([Jobs], clock=clock, retention=timedelta(days=1)) as rt:
        short = await rt.send(Jobs.short, 5, key="a")
        plain = await rt.send(Jobs.plain, 5, key="a")
        peek = await rt.send(Jobs.peek, key="a")
        assert await short.result() == 10
        assert await plain.result() == 15
        await clock.advance(HOUR - 1)
        assert await rt.attach(short.invocation_id) == 10
        assert await rt.output(peek.invocation_id) in (None, 5)
        await clock.advance(2)
        for gone in (short, peek):
            with pytest.raises(actors.UnknownHandlerError, match=r"^no invocation "):
                await rt.attach(gone.invocation_id)
            with pytest.raises(actors.UnknownHandlerError):
                await rt.output(gone.invocation_id)
        assert await rt.attach(plain.invocation_id) == 15  # the runtime's day
        assert await rt.call(Jobs.peek, key="a") == 5  # an object's state is not results
        await clock.advance(DAY)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(plain.invocation_id)


async def test_class_keyword_retention_applies_to_its_handlers() -> None:
    clock = ManualClock()
    async with open_test_runtime([Batch, LaterBatch], clock=clock) as rt:
        handles = [
            await rt.send(target)
            for target in (
                Batch.inherits,
                Batch.overrides,
                LaterBatch.inherits,
                LaterBatch.overrides,
            )
        ]
        for handle in handles:
            await handle.result()
        await clock.advance(601)
        for handle in (handles[0], handles[2]):
            with pytest.raises(actors.UnknownHandlerError):
                await rt.attach(handle.invocation_id)
        await clock.advance(DAY)  # past the runtime's day, not the handler's two
        assert await rt.attach(handles[1].invocation_id) == "handler"
        assert await rt.attach(handles[3].invocation_id) == "handler"
        await clock.advance(DAY)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(handles[1].invocation_id)


async def test_an_idempotency_key_lasts_its_handler_retention() -> None:
    clock = ManualClock()
    async with open_test_runtime([Jobs], clock=clock) as rt:
        first = await rt.send(Jobs.short, 1, key="a", idempotency_key="k")
        assert await first.result() == 2
        with pytest.raises(actors.TerminalError) as info:
            await rt.send(Jobs.short, 2, key="a", idempotency_key="k")  # another request
        assert info.value.status_code == 409
        await clock.advance(HOUR + 1)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach_idempotent(Jobs.short, "k", key="a")
        again = await rt.send(Jobs.short, 2, key="a", idempotency_key="k")
        assert again.status == "Accepted"
        assert again.invocation_id != first.invocation_id
        assert await again.result() == 4


async def test_a_workflow_runs_again_after_its_main_retention() -> None:
    clock = ManualClock()
    onboard = Onboard()
    async with open_test_runtime([onboard], clock=clock) as rt:
        first = await rt.send(Onboard.run, "ada", key="w")
        assert await first.result() == "welcome ada"
        await clock.advance(HOUR - 1)
        repeat = await rt.send(Onboard.run, "bob", key="w")
        assert (repeat.status, repeat.invocation_id) == ("PreviouslyAccepted", first.invocation_id)
        assert await rt.call(Onboard.stage, key="w") == "done"
        await clock.advance(2)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach_workflow(Onboard, "w")
        assert await rt.call(Onboard.stage, key="w") is None  # its state went with it
        second = await rt.send(Onboard.run, "bob", key="w")
        assert second.status == "Accepted"
        assert await second.result() == "welcome bob"
    assert onboard.runs == 2


async def test_handler_retention_expires_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    async with open_test_runtime([Jobs], path=tmp_path, clock=clock) as rt:
        short = await rt.send(Jobs.short, 5, key="a")
        plain = await rt.send(Jobs.plain, 5, key="a")
        await short.result()
        await plain.result()
    # The expiry was written with the completion: the next life keeps it, and fires it
    # once its clock says so (here: at once, it is overdue when the runtime opens).
    await clock.advance(HOUR + 1)
    async with open_test_runtime([Jobs], path=tmp_path, clock=clock) as rt:
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(short.invocation_id)
        assert await rt.attach(plain.invocation_id) == 15
        await clock.advance(DAY)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(plain.invocation_id)


async def test_a_retention_is_kept_as_it_was_when_the_invocation_finished(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with open_test_runtime([Jobs], path=tmp_path, clock=clock) as rt:
        short = await rt.send(Jobs.short, 5, key="a")
        await short.result()

    class Jobs2(actors.VirtualObject, name="Jobs"):  # the same actor, redefined
        @actors.exclusive(retention=timedelta(days=30))
        async def short(self, ctx: actors.ObjectContext, n: int) -> int:
            return n

    async with open_test_runtime([Jobs2], path=tmp_path, clock=clock) as rt:
        assert await rt.attach(short.invocation_id) == 10
        await clock.advance(HOUR + 1)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(short.invocation_id)


class Steps(actors.VirtualObject):
    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def _body(self, name: str) -> str:
        self.bodies.append(name)
        return name

    @actors.exclusive(retention=timedelta(minutes=5))
    async def quick(self, ctx: actors.ObjectContext) -> str:
        return await ctx.run("quick", self._body, "quick")

    @actors.exclusive
    async def slow(self, ctx: actors.ObjectContext) -> str:
        return await ctx.run("slow", self._body, "slow")


async def test_handler_retention_survives_a_crash(tmp_path: Path) -> None:
    clock = ManualClock()
    steps = Steps()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [steps], path=tmp_path, clock=clock, crash=CrashPlan(in_run="slow")
        ) as rt:
            quick = await rt.send(Steps.quick, key="a")
            assert await quick.result() == "quick"
            await rt.send(Steps.slow, key="a")
            await anyio.sleep_forever()  # the crash ends the runtime
    async with open_test_runtime([steps], path=tmp_path, clock=clock) as rt:
        assert await rt.attach(quick.invocation_id) == "quick"
        await clock.advance(301)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(quick.invocation_id)
    assert steps.bodies == ["quick", "slow"]


# --- inactivity timeout ------------------------------------------------------------------------


class Waiter(actors.VirtualObject):
    """Handlers that wait on an awakeable until the test resolves it; ``starts`` counts
    how often each began (a resume by replay starts it again)."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.ids: dict[str, str] = {}
        self._waiting: dict[str, anyio.Event] = {}

    def waiting(self, name: str) -> anyio.Event:
        return self._waiting.setdefault(name, anyio.Event())

    async def _wait(self, ctx: actors.ObjectContext, name: str) -> int:
        self.starts[name] = self.starts.get(name, 0) + 1
        awakeable_id, answer = ctx.awakeable(int)
        self.ids[name] = awakeable_id
        self.waiting(name).set()
        return await answer

    @actors.exclusive(inactivity_timeout=timedelta(seconds=10))
    async def brief(self, ctx: actors.ObjectContext) -> int:
        return await self._wait(ctx, "brief")

    @actors.exclusive(inactivity_timeout=HOUR)
    async def patient(self, ctx: actors.ObjectContext) -> int:
        return await self._wait(ctx, "patient")

    @actors.exclusive
    async def default(self, ctx: actors.ObjectContext) -> int:
        return await self._wait(ctx, "default")


class Sleeper(actors.Workflow, inactivity_timeout=5):
    """A workflow whose handlers suspend after 5 s of waiting (a class keyword)."""

    def __init__(self) -> None:
        self.starts = 0

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        self.starts += 1
        await ctx.sleep(timedelta(minutes=1))
        return "woke"


async def test_inactivity_timeout_suspends_after_its_own_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter], suspend_after=60) as rt:
        brief = await rt.send(Waiter.brief, key="b")
        default = await rt.send(Waiter.default, key="d")
        await waiter.waiting("brief").wait()
        await waiter.waiting("default").wait()
        await trio.sleep(9.5)
        assert rt.statistics().suspended == 0
        await trio.sleep(1)  # past brief's 10 s, not the runtime's 60 s
        assert rt.statistics().suspended == 1
        await trio.sleep(50)
        assert rt.statistics().suspended == 2
        await rt.resolve_awakeable(waiter.ids["brief"], 1)
        await rt.resolve_awakeable(waiter.ids["default"], 2)
        assert await brief.result() == 1
        assert await default.result() == 2
    assert waiter.starts == {"brief": 2, "default": 2}  # each resumed by replay


async def test_inactivity_timeout_longer_than_the_runtime_keeps_the_coroutine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter], suspend_after=1) as rt:
        patient = await rt.send(Waiter.patient, key="p")
        await waiter.waiting("patient").wait()
        await trio.sleep(HOUR - 1)
        assert rt.statistics().suspended == 0
        await rt.resolve_awakeable(waiter.ids["patient"], 7)
        assert await patient.result() == 7
    assert waiter.starts == {"patient": 1}  # never dropped, never replayed


async def test_inactivity_timeout_as_a_class_keyword_parks_a_workflow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sleeper = Sleeper()
    async with open_test_runtime([sleeper], suspend_after=3600) as rt:
        handle = await rt.send(Sleeper.run, key="s")
        await trio.sleep(6)
        assert (rt.statistics().parked, rt.statistics().in_flight) == (1, 0)
        assert await handle.result() == "woke"
    assert sleeper.starts == 2


async def _until_suspended(rt: actors.Runtime, count: int) -> None:
    with anyio.fail_after(10):
        while rt.statistics().suspended < count:
            await anyio.wait_all_tasks_blocked()


async def test_inactivity_timeout_overrides_suspend_after_both_ways() -> None:
    """Under trio and asyncio: a tiny timeout suspends at once, a long one overrides a
    tiny ``suspend_after``."""

    class Fast(actors.VirtualObject):
        def __init__(self) -> None:
            self.starts: dict[str, int] = {}
            self.ids: dict[str, str] = {}

        async def _wait(self, ctx: actors.ObjectContext, name: str) -> int:
            self.starts[name] = self.starts.get(name, 0) + 1
            awakeable_id, answer = ctx.awakeable(int)
            self.ids[name] = awakeable_id
            return await answer

        @actors.exclusive(inactivity_timeout=1e-9)
        async def at_once(self, ctx: actors.ObjectContext) -> int:
            return await self._wait(ctx, "at_once")

        @actors.exclusive(inactivity_timeout=HOUR)
        async def keeps(self, ctx: actors.ObjectContext) -> int:
            return await self._wait(ctx, "keeps")

    fast = Fast()
    async with open_test_runtime([fast], suspend_after=1e-9) as rt:
        keeps = await rt.send(Fast.keeps, key="k")
        at_once = await rt.send(Fast.at_once, key="a")
        await _until_suspended(rt, 1)
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().suspended == 1  # at_once; keeps holds its coroutine
        await rt.resolve_awakeable(fast.ids["keeps"], 1)
        await rt.resolve_awakeable(fast.ids["at_once"], 2)
        assert await keeps.result() == 1
        assert await at_once.result() == 2
    assert fast.starts == {"keeps": 1, "at_once": 2}


class Once(actors.Service):
    @actors.handler(retention=0)
    async def fire(self, ctx: actors.Context, n: int) -> int:
        return n

    @actors.handler(retention=0)
    async def slow(self, ctx: actors.Context, n: int) -> int:
        await ctx.sleep(timedelta(seconds=30))
        return n


async def test_zero_retention_forgets_a_result_once_it_was_answered() -> None:
    clock = ManualClock()
    async with open_test_runtime([Once], clock=clock) as rt:
        handle = await rt.send(Once.fire, 7, idempotency_key="k")
        assert await handle.result() == 7
        slow = await rt.send(Once.slow, 8)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(handle.invocation_id)
        again = await rt.send(Once.fire, 9, idempotency_key="k")  # the key is free again
        assert again.status == "Accepted"
        assert await again.result() == 9
        results: list[int] = []

        async def wait_for_slow() -> None:
            results.append(await slow.result())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_slow)
            await anyio.wait_all_tasks_blocked()
            await clock.advance(30)
        assert results == [8]  # a caller waiting when it finished is answered
        # Anyone asking after that finds nothing, as in Restate with a zero retention.
        for ask in (rt.output, rt.attach):
            with pytest.raises(actors.UnknownHandlerError):
                await ask(slow.invocation_id)
        with pytest.raises(actors.UnknownHandlerError):
            await slow.result()
