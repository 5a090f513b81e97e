"""``actors.wait_completed`` and ``actors.as_completed``: which futures had finished (and
in what order) is journaled like ``select``'s winner, so a replay after a crash gives the
same answer even when, this time, more futures are ready."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

HOUR = 3600.0
NAMES = ("a", "b", "c")


class Race(actors.Workflow):
    """Waits on three promises with ``wait_completed`` or ``as_completed``."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.after: list[Any] = []
        self.partitioned = anyio.Event()  # set by the step after wait_completed

    async def _after(self, seen: list[Any]) -> None:
        self.after.append(list(seen))
        self.partitioned.set()

    @actors.main
    async def partition(self, ctx: actors.WorkflowContext) -> list[Any]:
        futures = {name: ctx.promise(name, str).value() for name in NAMES}
        names = {id(future): name for name, future in futures.items()}
        done, pending = await actors.wait_completed(*futures.values())
        seen = [[names[id(f)] for f in done], [names[id(f)] for f in pending]]
        results = []
        for future in done:
            try:
                results.append(await future)
            except actors.TerminalError as exc:
                results.append(f"failed {exc.status_code}: {exc.message}")
        seen.append(results)
        ctx.set("seen", seen)
        if self.pause:
            await ctx.sleep(timedelta(hours=self.pause))  # the others may arrive meanwhile
        await ctx.run("after", self._after, seen)
        # The pending ones are still usable futures.
        seen.append([await future for future in pending])
        return seen

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).resolve(f"value {name}")

    @actors.shared
    async def reject(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).reject(f"no {name}")

    @actors.shared
    async def seen(self, ctx: actors.WorkflowSharedContext) -> list[Any] | None:
        return await ctx.get("seen", list[Any])


async def test_wait_completed_returns_once_one_future_finished() -> None:
    race = Race()
    async with open_test_runtime([race]) as rt:
        handle = await rt.send(Race.partition, key="w")
        await anyio.wait_all_tasks_blocked()
        assert await rt.call(Race.seen, key="w") is None  # nothing finished yet
        await rt.call(Race.resolve, "b", key="w")
        await race.partitioned.wait()
        assert await rt.call(Race.seen, key="w") == [["b"], ["a", "c"], ["value b"]]
        await rt.call(Race.resolve, "c", key="w")
        await rt.call(Race.resolve, "a", key="w")
        result = await handle.result()
    assert result == [["b"], ["a", "c"], ["value b"], ["value a", "value c"]]


async def test_wait_completed_returns_every_future_already_finished() -> None:
    # Promises resolved before main starts: all three are done at once, in argument order.
    race = Race()
    async with open_test_runtime([race]) as rt:
        for name in ("c", "a"):
            await rt.call(Race.resolve, name, key="w")
        handle = await rt.send(Race.partition, key="w")
        await race.partitioned.wait()
        assert await rt.call(Race.seen, key="w") == [
            ["a", "c"],
            ["b"],
            ["value a", "value c"],
        ]
        await rt.call(Race.resolve, "b", key="w")
        assert (await handle.result())[-1] == ["value b"]


async def test_a_failed_future_is_done_and_raises_when_awaited() -> None:
    race = Race()
    async with open_test_runtime([race]) as rt:
        handle = await rt.send(Race.partition, key="w")
        await anyio.wait_all_tasks_blocked()
        await rt.call(Race.reject, "a", key="w")
        await race.partitioned.wait()
        for name in ("b", "c"):
            await rt.call(Race.resolve, name, key="w")
        result = await handle.result()
    assert result[:3] == [["a"], ["b", "c"], ["failed 500: no a"]]


async def test_replay_after_a_crash_returns_the_journaled_partition(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # First life: only "b" has finished when wait_completed returns; "a" and "c" arrive
    # during the two-hour sleep; the step after it crashes the runtime.
    race = Race(pause=2)
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime([race], path=tmp_path, crash=CrashPlan(in_run="after")) as rt:
            handle = await rt.send(Race.partition, key="w")
            await trio.testing.wait_all_tasks_blocked()
            await rt.call(Race.resolve, "b", key="w")
            await trio.sleep(HOUR)
            await rt.call(Race.resolve, "a", key="w")
            await rt.call(Race.resolve, "c", key="w")
            await handle.result()
    assert race.after == []
    # Second life: every promise is resolved, so a live wait_completed would answer all
    # three; the replay answers what the first life saw.
    async with open_test_runtime([race], path=tmp_path) as rt:
        result = await rt.attach(handle.invocation_id)
    assert result == [["b"], ["a", "c"], ["value b"], ["value a", "value c"]]
    assert race.after == [[["b"], ["a", "c"], ["value b"]]]


class Arrivals(actors.Workflow):
    """Collects three promises with ``as_completed``, in the order they finish."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.noted = {name: anyio.Event() for name in NAMES}

    async def _note(self, name: str) -> None:
        self.order.append(name)
        self.noted[name].set()

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> list[str]:
        futures = [ctx.promise(name, str).value() for name in NAMES]
        arrived: list[str] = []
        async for future in actors.as_completed(*futures):
            value = await future
            arrived.append(value)
            await ctx.run(f"note {value}", self._note, value)
        return arrived

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).resolve(name)


async def test_as_completed_yields_in_completion_order() -> None:
    arrivals = Arrivals()
    async with open_test_runtime([arrivals]) as rt:
        handle = await rt.send(Arrivals.run, key="w")
        for name in ("c", "a", "b"):
            await rt.call(Arrivals.resolve, name, key="w")
            await arrivals.noted[name].wait()
        assert await handle.result() == ["c", "a", "b"]
    assert arrivals.order == ["c", "a", "b"]


async def test_as_completed_replays_the_same_order_after_a_crash(tmp_path: Path) -> None:
    # "c" then "a" arrive; "b" arrives too, and the step noting "b" crashes. On replay
    # all three are resolved (argument order would be a, b, c); the journal says c, a, b.
    arrivals = Arrivals()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [arrivals], path=tmp_path, crash=CrashPlan(in_run="note b")
        ) as rt:
            handle = await rt.send(Arrivals.run, key="w")
            for name in ("c", "a"):
                await rt.call(Arrivals.resolve, name, key="w")
                await arrivals.noted[name].wait()
            await rt.call(Arrivals.resolve, "b", key="w")
            await handle.result()
    assert arrivals.order == ["c", "a"]
    async with open_test_runtime([arrivals], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == ["c", "a", "b"]
    assert arrivals.order == ["c", "a", "b"]  # the noted steps ran once each


class Steps(actors.Service):
    """``wait_completed`` over steps and a sleep, in one service invocation."""

    @actors.handler
    async def quick_first(self, ctx: actors.Context) -> list[int]:
        async def quick() -> int:
            return 1

        slow = ctx.sleep(timedelta(hours=1))
        step = ctx.run("quick", quick)
        done, pending = await actors.wait_completed(slow, step)
        assert pending == [slow]
        await slow
        return [await future for future in done]


async def test_wait_completed_over_a_step_and_a_sleep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Steps()]) as rt:
        assert await rt.call(Steps.quick_first) == [1]


class Misuse(actors.Service):
    @actors.handler
    async def errors(self, ctx: actors.Context) -> list[str]:
        messages = []
        bad: Any = [5]
        attempts: tuple[Callable[[], Awaitable[object]], ...] = (
            lambda: actors.wait_completed(),
            lambda: actors.wait_completed(*bad),
        )
        for attempt in attempts:
            try:
                await attempt()
            except actors.TerminalError as exc:
                messages.append(f"{exc.status_code} {exc.message}")
        arguments: tuple[tuple[Any, ...], ...] = ((), (ctx.sleep(1), "x"))
        for args in arguments:
            try:
                async for _ in actors.as_completed(*args):
                    pass
            except actors.TerminalError as exc:
                messages.append(f"{exc.status_code} {exc.message}")
        return messages


async def test_wait_completed_and_as_completed_reject_bad_arguments() -> None:
    async with open_test_runtime([Misuse()]) as rt:
        messages = await rt.call(Misuse.errors)
    assert messages[0] == "400 wait_completed() needs at least one durable future"
    assert messages[1].startswith("400 wait_completed() takes durable futures")
    assert messages[1].endswith("not int")
    assert messages[2] == "400 as_completed() needs at least one durable future"
    assert messages[3].endswith("not str")


class Cancelled(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        try:
            await actors.wait_completed(ctx.promise("never", str).value())
        except actors.TerminalError as exc:
            return f"{exc.status_code} cancelled"
        return "finished"


async def test_cancel_lands_in_wait_completed() -> None:
    async with open_test_runtime([Cancelled()]) as rt:
        handle = await rt.send(Cancelled.run, key="w")
        await anyio.wait_all_tasks_blocked()
        await rt.cancel(handle.invocation_id)
        assert await handle.result() == "409 cancelled"


class Shrinking(actors.Workflow):
    """Waits on three promises in its first life, on one after a code change."""

    futures = 3

    async def _after(self) -> None:
        pass

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> int:
        futures = [ctx.promise(name, str).value() for name in NAMES]
        done, _ = await actors.wait_completed(*futures[: self.futures])
        await ctx.run("after", self._after)
        return len(done)

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).resolve(name)


async def test_replay_that_waits_on_fewer_futures_is_a_divergence(tmp_path: Path) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Shrinking()], path=tmp_path, crash=CrashPlan(in_run="after")
        ) as rt:
            handle = await rt.send(Shrinking.run, key="w")
            await anyio.wait_all_tasks_blocked()
            await rt.call(Shrinking.resolve, "c", key="w")  # position 2 is journaled
            await handle.result()
    changed = Shrinking()
    changed.futures = 1
    async with open_test_runtime([changed], path=tmp_path) as rt:
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.attach(handle.invocation_id)
    assert "wait_completed() recorded finished positions [2]" in info.value.reason
