"""Handles of calls and sends (the callee's invocation id, ``cancel()``), and acting on
another invocation by id from a handler: ``ctx.cancel_invocation`` (journaled at the
call) and ``ctx.attach_invocation`` (its result journaled), with their error paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import actors
from actors.storage import AttachEntry, Table, loads_entry
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

LONG = 30 * 86400.0


async def _noop() -> None:
    pass


class Napper(actors.VirtualObject):
    """Reports its id, then sleeps long (to be cancelled) or answers at once."""

    @actors.exclusive
    async def nap(self, ctx: actors.ObjectContext) -> str:
        await ctx.sleep(LONG)
        return "rested"

    @actors.exclusive
    async def whoami(self, ctx: actors.ObjectContext) -> str:
        return ctx.invocation_id

    @actors.exclusive
    async def fail(self, ctx: actors.ObjectContext) -> str:
        raise actors.TerminalError("it broke", 418)


class Boss(actors.Service):
    """Calls and sends, and uses their handles."""

    @actors.handler
    async def ids(self, ctx: actors.Context) -> list[str]:
        future = ctx.call(Napper.whoami, key="a")
        handle = ctx.send(Napper.whoami, key="b")
        return [future.invocation_id, await future, handle.invocation_id]

    @actors.handler
    async def cancel_call(self, ctx: actors.Context) -> str:
        future = ctx.call(Napper.nap, key="a")
        future.cancel()  # un-awaited: journaled all the same
        try:
            return await future
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"

    @actors.handler
    async def cancel_send(self, ctx: actors.Context) -> str:
        handle = ctx.send(Napper.nap, key="b")
        await handle.cancel()
        try:
            return str(await ctx.attach_invocation(handle.invocation_id, type=str))
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"

    @actors.handler
    async def attach(self, ctx: actors.Context, invocation_id: str) -> str:
        try:
            value = await ctx.attach_invocation(invocation_id)
        except actors.TerminalError as exc:
            return f"{type(exc).__name__} {exc.status_code}: {exc.message}"
        await ctx.run("after attach", _noop)
        return f"ok {value}"

    @actors.handler
    async def cancel(self, ctx: actors.Context, invocation_id: str) -> str:
        try:
            ctx.cancel_invocation(invocation_id)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "asked"


class Looper(actors.VirtualObject):
    """Attaches to itself, or to what it sent to its own key."""

    @actors.exclusive
    async def own(self, ctx: actors.ObjectContext) -> str:
        try:
            await ctx.attach_invocation(ctx.invocation_id)
        except actors.DeadlockError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "attached"

    @actors.exclusive
    async def queued(self, ctx: actors.ObjectContext) -> str:
        handle = ctx.send(Looper.noop, key=ctx.key)
        try:
            await ctx.attach_invocation(handle.invocation_id)
        except actors.DeadlockError as exc:
            return f"{exc.status_code}"
        return "attached"

    @actors.exclusive
    async def noop(self, ctx: actors.ObjectContext) -> None:
        pass


async def test_call_and_send_handles_carry_the_callee_id() -> None:
    async with open_test_runtime([Boss, Napper]) as rt:
        call_id, reported, send_id = await rt.call(Boss.ids)
        assert call_id == reported
        assert await rt.attach(send_id) == send_id  # whoami answers its own id


async def test_cancel_of_a_call_future_cancels_the_callee(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Boss, Napper]) as rt:
        answer = await rt.call(Boss.cancel_call)
    assert answer.startswith("409: invocation inv_")
    assert answer.endswith(" was cancelled")


async def test_cancel_of_a_send_handle_cancels_the_callee(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Boss, Napper]) as rt:
        answer = await rt.call(Boss.cancel_send)
    assert answer.startswith("409: invocation inv_")
    assert answer.endswith(" was cancelled")


async def test_cancel_from_an_rt_send_handle(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_runtime([Napper]) as rt:
        handle = await rt.send(Napper.nap, key="a")
        await handle.cancel()
        with pytest.raises(actors.TerminalError, match="was cancelled"):
            await handle.result()


async def test_cancel_invocation_refusals_are_raised_at_the_call() -> None:
    async with open_test_runtime([Boss, Napper]) as rt:
        done = await rt.send(Napper.whoami, key="a")
        await done.result()
        assert await rt.call(Boss.cancel, done.invocation_id) == (
            f"409: invocation {done.invocation_id} has already completed"
        )
        assert await rt.call(Boss.cancel, "inv_nobody") == "404: no invocation 'inv_nobody'"
        assert await rt.call(Boss.cancel, "nonsense") == "400: 'nonsense' is not an invocation id"


async def test_attach_returns_the_result_or_the_terminal_error() -> None:
    async with open_test_runtime([Boss, Napper]) as rt:
        ok = await rt.send(Napper.whoami, key="a")
        failed = await rt.send(Napper.fail, key="a")
        assert await rt.call(Boss.attach, ok.invocation_id) == f"ok {ok.invocation_id}"
        assert await rt.call(Boss.attach, failed.invocation_id) == ("TerminalError 418: it broke")
        assert await rt.call(Boss.attach, "inv_nobody") == (
            "TerminalError 404: no invocation 'inv_nobody'"
        )


async def test_attach_waits_for_a_running_invocation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Boss, Napper], suspend_after=1) as rt:
        napping = await rt.send(Napper.nap, key="a")
        attacher = await rt.send(Boss.attach, napping.invocation_id)
        await anyio.sleep(10)  # the attacher gives up its coroutine meanwhile
        assert rt.statistics().parked >= 1
        assert await attacher.result() == "ok rested"


async def test_attach_deadlocks_are_refused() -> None:
    async with open_test_runtime([Looper]) as rt:
        own = await rt.call(Looper.own, key="k")
        assert own.startswith("409: deadlock: invocation inv_")
        assert "attaches to itself" in own
        assert await rt.call(Looper.queued, key="k") == "409"


async def test_an_attached_result_is_journaled_and_replayed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_test_runtime([Boss, Napper], path=tmp_path) as rt:
        target = await rt.send(Napper.whoami, key="a")
        await target.result()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Boss, Napper], path=tmp_path, crash=CrashPlan(in_run="after attach")
        ) as rt:
            attacher = await rt.send(Boss.attach, target.invocation_id)
            await attacher.result()
    async with open_test_runtime([Boss, Napper], path=tmp_path) as rt:
        entries = [loads_entry(v) for _, v in rt._store.scan(Table.JOURNAL)]
        attached = [e for e in entries if isinstance(e, AttachEntry)]
        assert [e.invocation_id for e in attached] == [target.invocation_id]
        assert attached[0].outcome is not None  # recorded before the crash
        assert await rt.attach(attacher.invocation_id) == f"ok {target.invocation_id}"


async def test_a_cancel_from_a_handler_survives_a_crash_in_the_middle(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    class Canceller(actors.Service):
        @actors.handler
        async def go(self, ctx: actors.Context, invocation_id: str) -> str:
            ctx.cancel_invocation(invocation_id)
            await ctx.run("mid", _noop)
            return "done"

    async with open_test_runtime([Canceller, Napper], path=tmp_path) as rt:
        napping = await rt.send(Napper.nap, key="a")
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Canceller, Napper], path=tmp_path, crash=CrashPlan(in_run="mid")
        ) as rt:
            handle = await rt.send(Canceller.go, napping.invocation_id)
            await handle.result()
    async with open_test_runtime([Canceller, Napper], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "done"
        with pytest.raises(actors.TerminalError, match="was cancelled"):
            await rt.attach(napping.invocation_id)
