"""Kill: without compensation, the object key it frees, a caller whose inline call was
killed, propagation to callees; bad ids, finished invocations, and cancelling a paused
invocation (cancel itself: test_cancel_kill.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

from cancel_actors import (
    BOOKED,
    IDLE,
    LONG,
    SAGA,
    YEAR,
    Boss,
    Desk,
    Napper,
    Probe,
    Trip,
    _assert_cancelled,
    _park,
)

# --- 5. kill -----------------------------------------------------------------------------------


async def test_kill_a_running_exclusive_handler_frees_its_key(tmp_path: Path) -> None:
    probe = Probe()
    errors: list[actors.TerminalError] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                try:
                    await rt.call(Desk.hold, key="k")
                except actors.TerminalError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                queued = await rt.send(Desk.work, "next", key="k")
                await rt.kill(probe.ids["hold"])
            assert len(errors) == 1
            assert errors[0].status_code == 409
            assert "killed" in errors[0].message
            # The next queued exclusive invocation on the key runs.
            assert await queued.result() == "worked next"
            assert await rt.call(Desk.count, key="k") == 1
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach(probe.ids["hold"])
            assert "killed" in attached.value.message
            # Its awakeable can no longer resume anything.
            late: list[int] = []
            try:
                await rt.resolve_awakeable(probe.awakeables["hold"], "late")
            except actors.TerminalError as exc:
                late.append(exc.status_code)
            assert set(late) <= {404, 409}
            with pytest.raises(actors.TerminalError) as still:
                await rt.attach(probe.ids["hold"])
            assert "killed" in still.value.message
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as after:
                await rt.attach(probe.ids["hold"])
            assert "killed" in after.value.message
            assert rt.statistics().in_flight == 0
    # Python `finally` blocks run (the task is cancelled), but no durable compensation.
    assert probe.finally_ran == ["hold"]
    assert probe.effects == ["work next"]


async def test_a_caller_whose_inline_call_was_killed_goes_on_calling(tmp_path: Path) -> None:
    # Under trio the kill cancels the caller's own scope of the inline call (one scope
    # per call), and the handler writes its killed record shielded inside it: the caller
    # gets the 409 and nothing more of that cancellation, whatever it awaits next.
    probe = Probe()
    after: list[str] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                with pytest.raises(actors.TerminalError) as killed:
                    await rt.call(Desk.hold, key="k")
                assert killed.value.status_code == 409
                await anyio.lowlevel.checkpoint()
                after.append(await rt.call(Desk.work, "after", key="k"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                await rt.kill(probe.ids["hold"])
            assert after == ["worked after"]
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach(probe.ids["hold"])
            assert "killed" in attached.value.message


class Swallower(actors.VirtualObject, name="swallower"):
    """Catches what a kill raises in it and returns at once, with no checkpoint after."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids["hold"] = ctx.invocation_id
        _, fut = ctx.awakeable(str)
        self.probe.arrive("hold")
        try:
            return await fut
        except BaseException:
            return "swallowed"

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return "pong"


async def test_an_inline_call_killed_after_its_last_checkpoint_is_killed(tmp_path: Path) -> None:
    probe = Probe()
    after: list[str] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Swallower(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                with pytest.raises(actors.TerminalError) as killed:
                    await rt.call(Swallower.hold, key="k")
                assert killed.value.status_code == 409
                after.append(await rt.call(Swallower.ping, key="k"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                await rt.kill(probe.ids["hold"])
            assert after == ["pong"]
            assert rt.statistics().in_flight == 0


async def test_kill_a_running_workflow_runs_no_compensation(tmp_path: Path) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            handle = await rt.send(Trip.run, "promise reraise", key="t")
            await probe.arrived("waiting")
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await rt.attach_workflow(Trip, "t")
            assert info.value.status_code == 409
            assert "killed" in info.value.message
            await rt.call(Trip.confirm, "too late", key="t")
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as again:
                await rt.workflow_output(Trip, "t")
            assert "killed" in again.value.message
    assert probe.effects == BOOKED
    assert probe.caught == []


async def test_kill_a_parked_workflow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Trip(probe)], path=tmp_path, suspend_after=1, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        handle = await rt.send(Trip.run, "sleep reraise", key="t")
        await probe.arrived("waiting")
        await _park(rt)
        await rt.kill(handle.invocation_id)
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach_workflow(Trip, "t")
        assert info.value.status_code == 409
        assert "killed" in info.value.message
        await anyio.sleep(LONG.total_seconds() * 2)  # its timer fires into nothing
        assert rt.statistics().parked == 0
        assert rt.statistics().in_flight == 0
    async with open_test_runtime(
        [Trip(probe)], path=tmp_path, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        await anyio.sleep(LONG.total_seconds() * 2)
        with pytest.raises(actors.TerminalError) as again:
            await rt.attach_workflow(Trip, "t")
        assert "killed" in again.value.message
    assert probe.effects == BOOKED
    assert probe.caught == []


async def test_kill_propagates_to_the_callee_without_compensation(tmp_path: Path) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Napper(probe), Boss(probe)], path=tmp_path) as rt:
            handle = await rt.send(Boss.delegate, "n", key="boss")
            await probe.arrived("nap n")
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            assert "killed" in info.value.message
            with pytest.raises(actors.TerminalError) as callee:
                await rt.attach(probe.ids["nap n"])
            assert callee.value.status_code == 409
            assert "killed" in callee.value.message
            assert await rt.call(Napper.ping, key="n") == "pong n"
    assert probe.effects == []
    assert probe.caught == []


@pytest.mark.parametrize("how", ["suspended", "restarted"])
async def test_kill_of_a_caller_without_its_coroutine_reaches_the_callee(
    tmp_path: Path, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A caller whose coroutine is gone (suspended while it waits, or rebuilt after a
    restart) knows its unanswered calls only from its journal: a kill finds them there."""
    probe = Probe()
    suspend_after = 1.0 if how == "suspended" else 60.0
    async with open_test_runtime(
        [Napper(probe), Boss(probe)],
        path=tmp_path,
        suspend_after=suspend_after,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        handle = await rt.send(Boss.delegate, "n", key="boss")
        await probe.arrived("nap n")
        if how == "suspended":
            await anyio.sleep(10)  # past suspend_after: both coroutines are dropped
            assert rt.statistics().suspended == 2
            await _kill_and_check(rt, handle.invocation_id, probe)
            return
    probe.reset("nap n")
    async with open_test_runtime(
        [Napper(probe), Boss(probe)],
        path=tmp_path,
        suspend_after=suspend_after,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        await probe.arrived("nap n")  # the callee runs again; the boss is rebuilt, waiting
        await _kill_and_check(rt, handle.invocation_id, probe)


async def _kill_and_check(rt: actors.Runtime, boss_id: str, probe: Probe) -> None:
    await rt.kill(boss_id)
    with pytest.raises(actors.TerminalError) as boss:
        await rt.attach(boss_id)
    assert "killed" in boss.value.message
    with anyio.fail_after(60):
        with pytest.raises(actors.TerminalError) as callee:
            await rt.attach(probe.ids["nap n"])
    assert callee.value.status_code == 409
    assert "killed" in callee.value.message
    assert await rt.call(Napper.ping, key="n") == "pong n"
    assert probe.effects == []  # killed: no compensation anywhere


class SlowUndo(actors.VirtualObject, name="slowUndo"):
    """Its compensation takes a month."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids["go"] = ctx.invocation_id
        try:
            self.probe.arrive("waiting")
            await ctx.sleep(LONG)
            return "done"
        except actors.TerminalError as exc:
            self.probe.caught.append((exc.status_code, exc.message))
            self.probe.arrive("compensating")
            await ctx.sleep(LONG)  # not interrupted by a second cancel
            await ctx.run("undo", self.probe.effect, "undo")
            raise


async def test_cancel_twice_is_harmless_and_kill_ends_a_slow_compensation(
    tmp_path: Path,
) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([SlowUndo(probe)], path=tmp_path) as rt:
            handle = await rt.send(SlowUndo.go, key="k")
            await probe.arrived("waiting")
            await rt.cancel(handle.invocation_id)
            await rt.cancel(handle.invocation_id)
            await probe.arrived("compensating")
            await rt.cancel(handle.invocation_id)
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            assert "killed" in info.value.message
    assert [code for code, _ in probe.caught] == [409]
    assert probe.effects == []


# --- 6. bad ids and finished invocations ---------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "kill"])
@pytest.mark.parametrize("invocation_id", ["inv_doesnotexist", "", "awk_nope", "not an id"])
async def test_unknown_ids(tmp_path: Path, how: str, invocation_id: str) -> None:
    async with open_test_runtime([Desk(Probe())], path=tmp_path) as rt:
        with pytest.raises(actors.UnknownHandlerError):
            if how == "cancel":
                await rt.cancel(invocation_id)
            else:
                await rt.kill(invocation_id)


@pytest.mark.parametrize("how", ["cancel", "kill"])
async def test_finished_invocations_answer_409(tmp_path: Path, how: str) -> None:
    probe = Probe()

    async def end(rt: actors.Runtime, invocation_id: str) -> None:
        if how == "cancel":
            await rt.cancel(invocation_id)
        else:
            await rt.kill(invocation_id)

    async with open_test_runtime([Desk(probe), Trip(probe)], path=tmp_path) as rt:
        done = await rt.send(Desk.work, "once", key="k")
        assert await done.result() == "worked once"
        with pytest.raises(actors.TerminalError) as info:
            await end(rt, done.invocation_id)
        assert info.value.status_code == 409
        # A cancelled one is finished too: a second cancel or kill answers 409.
        trip = await rt.send(Trip.run, "awakeable reraise", key="t")
        await probe.arrived("waiting")
        await rt.cancel(trip.invocation_id)
        with pytest.raises(actors.TerminalError):
            await trip.result()
        with pytest.raises(actors.TerminalError) as again:
            await end(rt, trip.invocation_id)
        assert again.value.status_code == 409
    async with open_test_runtime([Desk(probe), Trip(probe)], path=tmp_path) as rt:
        for invocation_id in (done.invocation_id, trip.invocation_id):
            with pytest.raises(actors.TerminalError) as stored:
                await end(rt, invocation_id)
            assert stored.value.status_code == 409
    assert probe.effects == ["work once", *SAGA]


# --- a paused invocation is cancellable ------------------------------------------------------


class Broken(actors.VirtualObject, name="broken"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(retry=actors.RetryPolicy(max_attempts=1))
    async def fail(self, ctx: actors.ObjectContext, steps: int) -> str:
        self.probe.ids["fail"] = ctx.invocation_id
        for n in range(steps):
            await ctx.run(f"step {n}", self.probe.effect, f"step {n}")
        self.probe.arrive("failing")
        raise RuntimeError("always broken")


@pytest.mark.parametrize("steps", [0, 1])
async def test_cancel_a_paused_invocation(tmp_path: Path, steps: int) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Broken(probe), Desk(probe)], path=tmp_path) as rt:
            handle = await rt.send(Broken.fail, steps, key="k")
            await probe.arrived("failing")
            await anyio.wait_all_tasks_blocked()
            assert rt.statistics().paused == 1
            await rt.cancel(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            _assert_cancelled(info.value)
    assert probe.effects == [f"step {n}" for n in range(steps)]
