"""Combinators and awakeables: ``actors.select`` (winner journaled, replay takes the
recorded branch), ``actors.gather`` (concurrent, results in order, first failure by
position), and awakeables completed from outside or from another handler."""

from __future__ import annotations

import base64
import urllib.parse
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


# --- awakeables ----------------------------------------------------------------------------------


class Waiter(actors.Workflow):
    """Publishes an awakeable id in its state, then waits for the answer."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def _publish(self, awakeable_id: str) -> None:
        self.published.append(awakeable_id)

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        awakeable_id, answer = ctx.awakeable(int)
        ctx.set("awakeable", awakeable_id)
        await ctx.run("publish", self._publish, awakeable_id)
        try:
            value = await answer
        except actors.SerializationError as exc:
            return f"serialization: {exc}"
        except actors.TerminalError as exc:
            return f"rejected {exc.status_code}: {exc}"
        return f"got {value!r}"

    @actors.shared
    async def awakeable(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("awakeable", str)


async def _published_id(rt: actors.Runtime, waiter: Waiter, key: str = "w") -> str:
    """Start Waiter.run on ``key`` and read the id it publishes through its state."""
    handle = await rt.send(Waiter.run, key=key)
    await trio.testing.wait_all_tasks_blocked()
    awakeable_id = await rt.call(Waiter.awakeable, key=key)
    assert awakeable_id is not None
    assert waiter.published[-1] == awakeable_id
    assert handle.status == "Accepted"
    return awakeable_id


async def test_awakeable_resolved_from_outside(autojump_clock: trio.testing.MockClock) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        awakeable_id = await _published_id(rt, waiter)
        assert awakeable_id.startswith("awk_")
        assert urllib.parse.quote(awakeable_id, safe="") == awakeable_id
        with pytest.raises(actors.NotReadyError):
            await rt.workflow_output(Waiter, "w")
        await rt.resolve_awakeable(awakeable_id, 42)
        assert await rt.attach_workflow(Waiter, "w") == "got 42"
        with pytest.raises(actors.TerminalError) as info:  # a second completion
            await rt.resolve_awakeable(awakeable_id, 43)
        assert info.value.status_code == 409
        with pytest.raises(actors.TerminalError) as info:
            await rt.reject_awakeable(awakeable_id, "no")
        assert info.value.status_code == 409
        assert await rt.attach_workflow(Waiter, "w") == "got 42"


async def test_awakeable_rejected_from_outside(autojump_clock: trio.testing.MockClock) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        awakeable_id = await _published_id(rt, waiter)
        await rt.reject_awakeable(awakeable_id, "card declined")
        assert await rt.attach_workflow(Waiter, "w") == "rejected 500: card declined"


async def test_awakeable_ids_differ_per_awakeable(autojump_clock: trio.testing.MockClock) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        first = await _published_id(rt, waiter, "w1")
        second = await _published_id(rt, waiter, "w2")
        assert first != second
        await rt.resolve_awakeable(second, 2)
        await rt.resolve_awakeable(first, 1)
        assert await rt.attach_workflow(Waiter, "w1") == "got 1"
        assert await rt.attach_workflow(Waiter, "w2") == "got 2"


async def test_awakeable_value_of_the_wrong_type_fails_at_the_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        awakeable_id = await _published_id(rt, waiter)
        await rt.resolve_awakeable(awakeable_id, "forty-two")  # the waiter wants an int
        message = await rt.attach_workflow(Waiter, "w")
    assert message.startswith("serialization: ")
    assert "int" in message


class Plain(actors.Service):
    """Waits for an int awakeable without catching anything."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.published = anyio.Event()

    async def _publish(self, awakeable_id: str) -> None:
        self.ids.append(awakeable_id)
        self.published.set()

    @actors.handler
    async def wait(self, ctx: actors.Context) -> int:
        awakeable_id, answer = ctx.awakeable(int)
        await ctx.run("publish", self._publish, awakeable_id)
        return await answer


async def test_uncaught_wrong_type_fails_the_invocation_with_500() -> None:
    plain = Plain()
    async with open_test_runtime([plain]) as rt:
        handle = await rt.send(Plain.wait)
        await plain.published.wait()
        await rt.resolve_awakeable(plain.ids[0], "forty-two")
        with pytest.raises(actors.TerminalError, match="convert") as info:
            await handle.result()
    assert info.value.status_code == 500


def _well_formed_id(invocation_id: str, index: int) -> str:
    raw = f"{invocation_id}/{index}".encode()
    return "awk_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "awakeable_id",
    ["", "nope", "awk_", "awk_!!!", "awk_" + base64.urlsafe_b64encode(b"garbage").decode()],
)
async def test_malformed_awakeable_ids_are_400(awakeable_id: str) -> None:
    async with open_test_runtime([Plain()]) as rt:
        for complete in (
            rt.resolve_awakeable(awakeable_id, 1),
            rt.reject_awakeable(awakeable_id, "x"),
        ):
            with pytest.raises(actors.TerminalError) as info:
                await complete
            assert info.value.status_code == 400


async def test_unknown_awakeable_ids_are_404() -> None:
    plain = Plain()
    async with open_test_runtime([plain]) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.resolve_awakeable(_well_formed_id("inv_nope", 0), 1)
        assert info.value.status_code == 404
        handle = await rt.send(Plain.wait)
        await plain.published.wait()
        # A real invocation, but its entry 1 is the ctx.run step, not an awakeable.
        assert plain.ids[0] == _well_formed_id(handle.invocation_id, 0)
        for wrong in (
            _well_formed_id(handle.invocation_id, 1),
            _well_formed_id(handle.invocation_id, 7),
        ):
            with pytest.raises(actors.TerminalError) as info:
                await rt.resolve_awakeable(wrong, 1)
            assert info.value.status_code == 404
        await rt.resolve_awakeable(plain.ids[0], 5)
        assert await handle.result() == 5


class Resolver(actors.Service):
    @actors.handler
    async def resolve(self, ctx: actors.Context, args: tuple[str, int]) -> str:
        awakeable_id, value = args
        try:
            await ctx.resolve_awakeable(awakeable_id, value)
        except actors.TerminalError as exc:
            return f"{exc.status_code}"
        return "resolved"

    @actors.handler
    async def reject(self, ctx: actors.Context, awakeable_id: str) -> str:
        try:
            await ctx.reject_awakeable(awakeable_id, "refused by a handler")
        except actors.TerminalError as exc:
            return f"{exc.status_code}"
        return "rejected"


async def test_awakeable_completed_from_another_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter, Resolver()]) as rt:
        first = await _published_id(rt, waiter, "w1")
        second = await _published_id(rt, waiter, "w2")
        assert await rt.call(Resolver.resolve, (first, 7)) == "resolved"
        assert await rt.call(Resolver.reject, second) == "rejected"
        assert await rt.attach_workflow(Waiter, "w1") == "got 7"
        assert await rt.attach_workflow(Waiter, "w2") == "rejected 500: refused by a handler"
        # Errors reach the handler as TerminalErrors it may catch.
        assert await rt.call(Resolver.resolve, (first, 8)) == "409"
        assert await rt.call(Resolver.reject, second) == "409"
        assert await rt.call(Resolver.resolve, ("awk_??", 1)) == "400"
        assert await rt.call(Resolver.reject, _well_formed_id("inv_nope", 3)) == "404"
        assert await rt.attach_workflow(Waiter, "w1") == "got 7"


class ResolveThenCrash(actors.Service):
    def __init__(self) -> None:
        self.after = 0

    async def _after(self) -> None:
        self.after += 1

    @actors.handler
    async def resolve(self, ctx: actors.Context, args: tuple[str, int]) -> str:
        awakeable_id, value = args
        await ctx.resolve_awakeable(awakeable_id, value)
        await ctx.run("after resolve", self._after)
        return "resolved"


async def test_replayed_ctx_resolve_awakeable_does_not_complete_it_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    waiter, resolver = Waiter(), ResolveThenCrash()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [waiter, resolver], path=tmp_path, crash=CrashPlan(in_run="after resolve")
        ) as rt:
            awakeable_id = await _published_id(rt, waiter)
            handle = await rt.send(ResolveThenCrash.resolve, (awakeable_id, 11))
            await handle.result()
    async with open_test_runtime([waiter, resolver], path=tmp_path) as rt:
        # The replay does not resolve again (that would be a 409 failing the handler).
        assert await rt.attach(handle.invocation_id) == "resolved"
        assert await rt.attach_workflow(Waiter, "w") == "got 11"
    assert resolver.after == 1


class Holder(actors.VirtualObject):
    """An exclusive handler waiting on an awakeable; its id is read through a shared
    handler from the object's state."""

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> int:
        awakeable_id, answer = ctx.awakeable(int)
        ctx.set("awakeable", awakeable_id)
        return await answer * 2

    @actors.shared
    async def awakeable(self, ctx: actors.ObjectSharedContext) -> str | None:
        return await ctx.get("awakeable", str)


async def test_awakeable_of_an_exclusive_handler_published_in_its_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Holder()]) as rt:
        handle = await rt.send(Holder.hold, key="h")
        await trio.testing.wait_all_tasks_blocked()
        awakeable_id = await rt.call(Holder.awakeable, key="h")
        assert awakeable_id is not None
        await rt.resolve_awakeable(awakeable_id, 21)
        assert await handle.result() == 42


async def test_awakeable_wait_across_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter], path=tmp_path) as rt:
        awakeable_id = await _published_id(rt, waiter)
    await trio.sleep(DAY)
    async with open_test_runtime([waiter], path=tmp_path) as rt:
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(actors.NotReadyError):
            await rt.workflow_output(Waiter, "w")
        await rt.resolve_awakeable(awakeable_id, 9)
        assert await rt.attach_workflow(Waiter, "w") == "got 9"
    assert waiter.published == [awakeable_id]  # the publishing step ran once


async def test_parked_awakeable_waiter_is_woken_by_its_completion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter], suspend_after=5) as rt:
        awakeable_id = await _published_id(rt, waiter)
        await trio.sleep(60)
        assert rt.statistics().parked == 1
        await rt.resolve_awakeable(awakeable_id, 3)
        assert await rt.attach_workflow(Waiter, "w") == "got 3"
        assert rt.statistics().parked == 0
    assert waiter.published == [awakeable_id]
