"""Awakeables: completed from outside (embedded and over HTTP, ids checked), from
another handler, across a restart and after parking; the combinators:
test_select_gather.py."""

from __future__ import annotations

import base64
import urllib.parse
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

DAY = 86400.0


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
