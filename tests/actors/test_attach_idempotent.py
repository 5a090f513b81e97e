"""Attach and output by idempotency key: ``rt.attach_idempotent`` and
``rt.idempotent_output``, the embedded side of Restate's
``/restate/invocation/{service}[/{key}]/{handler}/{idempotency key}/attach|output``.

An idempotency key names one invocation of one handler (on one key): a lookup with the
key of another handler or another object key finds nothing, as in Restate, where the
key is scoped to its target. Every test runs under trio and asyncio unless it uses the
autojump clock."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.testing

import actors
from actors._limits import MAX_IDEMPOTENCY_KEY_BYTES
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Greeter(actors.Service):
    def __init__(self) -> None:
        self.runs = 0

    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        self.runs += 1
        return f"hello {name}"

    @actors.handler
    async def fail(self, ctx: actors.Context, code: int) -> str:
        raise actors.TerminalError("declined", code)

    @actors.handler
    async def nothing(self, ctx: actors.Context) -> None:
        return None


class Tab(actors.VirtualObject):
    def __init__(self) -> None:
        self.awakeables: dict[str, str] = {}
        self.waiting = anyio.Event()

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, amount: int) -> int:
        total = (await ctx.get("total", int)) or 0
        ctx.set("total", total + amount)
        return total + amount

    @actors.exclusive
    async def settle(self, ctx: actors.ObjectContext) -> str:
        awakeable_id, decision = ctx.awakeable(str)
        self.awakeables[ctx.key] = awakeable_id
        self.waiting.set()
        return await decision

    @actors.shared
    async def total(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("total", int)) or 0


class Order(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, item: str) -> str:
        return f"ordered {item}"

    @actors.shared
    async def note(self, ctx: actors.WorkflowSharedContext, text: str) -> str:
        return f"noted {text}"


def _actors() -> list[actors.Service | actors.VirtualObject | actors.Workflow]:
    return [Greeter(), Tab(), Order()]


async def test_attach_and_output_of_an_object_invocation() -> None:
    async with open_test_runtime(_actors()) as rt:
        handle = await rt.send(Tab.add, 5, key="alice", idempotency_key="order-1")
        assert await rt.attach_idempotent(Tab.add, "order-1", key="alice") == 5
        assert await rt.idempotent_output(Tab.add, "order-1", key="alice") == 5
        assert await handle.result() == 5
        assert await rt.call(Tab.total, key="alice") == 5  # ran once


async def test_attach_and_output_of_a_service_invocation() -> None:
    greeter = Greeter()
    async with open_test_runtime([greeter]) as rt:
        assert await rt.call(Greeter.greet, "ada", idempotency_key="g") == "hello ada"
        assert await rt.attach_idempotent(Greeter.greet, "g") == "hello ada"
        assert await rt.idempotent_output(Greeter.greet, idempotency_key="g") == "hello ada"
        assert greeter.runs == 1


async def test_attach_waits_and_output_is_not_ready_while_it_runs() -> None:
    tab = Tab()
    async with open_test_runtime([tab]) as rt:
        await rt.send(Tab.settle, key="bob", idempotency_key="settle-1")
        await tab.waiting.wait()
        with pytest.raises(actors.NotReadyError):
            await rt.idempotent_output(Tab.settle, "settle-1", key="bob")
        attached: list[str] = []

        async def attach() -> None:
            attached.append(await rt.attach_idempotent(Tab.settle, "settle-1", key="bob"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(attach)
            await anyio.wait_all_tasks_blocked()
            assert attached == []  # waiting for the invocation
            await rt.resolve_awakeable(tab.awakeables["bob"], "paid")
        assert attached == ["paid"]
        assert await rt.idempotent_output(Tab.settle, "settle-1", key="bob") == "paid"


async def test_a_terminal_failure_reaches_attach_and_output() -> None:
    async with open_test_runtime(_actors()) as rt:
        handle = await rt.send(Greeter.fail, 402, idempotency_key="f")
        with pytest.raises(actors.TerminalError) as raised:
            await handle.result()
        assert (raised.value.message, raised.value.status_code) == ("declined", 402)
        for lookup in (rt.attach_idempotent, rt.idempotent_output):
            with pytest.raises(actors.TerminalError) as raised:
                await lookup(Greeter.fail, "f")
            assert (raised.value.message, raised.value.status_code) == ("declined", 402)


async def test_a_none_result_is_attachable() -> None:
    async with open_test_runtime(_actors()) as rt:
        await rt.call(Greeter.nothing, idempotency_key="n")
        attached = await rt.attach_idempotent(Greeter.nothing, "n")  # type: ignore[func-returns-value]
        output = await rt.idempotent_output(Greeter.nothing, "n")  # type: ignore[func-returns-value]
        assert (attached, output) == (None, None)


async def test_the_key_names_one_handler_on_one_object_key() -> None:
    async with open_test_runtime(_actors()) as rt:
        await rt.call(Tab.add, 1, key="alice", idempotency_key="k")
        await rt.call(Order.note, "hi", key="o1", idempotency_key="w")
        assert await rt.attach_idempotent(Order.note, "w", key="o1") == "noted hi"
        misses = [(Tab.add, "bob", "k"), (Tab.settle, "alice", "k"), (Order.note, "o2", "w")]
        for target, key, idempotency_key in misses:
            for lookup in (rt.attach_idempotent, rt.idempotent_output):
                with pytest.raises(
                    actors.UnknownHandlerError,
                    match=re.escape(
                        f"no invocation of {target.qualname} on {key!r} with idempotency "
                        f"key {idempotency_key!r}"
                    ),
                ):
                    await lookup(target, idempotency_key, key=key)
        with pytest.raises(actors.UnknownHandlerError, match=r"no invocation of Tab\.add"):
            await rt.attach_idempotent(Tab.add, "never used", key="alice")
        with pytest.raises(actors.UnknownHandlerError, match=r"no invocation of Greeter\.greet"):
            await rt.idempotent_output(Greeter.greet, "k")


async def test_it_survives_a_restart(tmp_path: Path) -> None:
    async with open_test_runtime(_actors(), path=tmp_path) as rt:
        await rt.call(Tab.add, 3, key="carol", idempotency_key="persisted")
    async with open_test_runtime(_actors(), path=tmp_path) as rt:
        assert await rt.attach_idempotent(Tab.add, "persisted", key="carol") == 3
        assert await rt.idempotent_output(Tab.add, "persisted", key="carol") == 3


async def test_it_is_forgotten_after_retention(autojump_clock: trio.testing.MockClock) -> None:
    async with open_test_runtime(_actors(), retention=timedelta(minutes=1)) as rt:
        await rt.call(Tab.add, 3, key="dan", idempotency_key="short")
        await trio.sleep(30)
        assert await rt.attach_idempotent(Tab.add, "short", key="dan") == 3
        await trio.sleep(61)
        for lookup in (rt.attach_idempotent, rt.idempotent_output):
            with pytest.raises(actors.UnknownHandlerError):
                await lookup(Tab.add, "short", key="dan")


async def test_bad_lookups_are_refused_with_a_clear_error() -> None:
    async with open_test_runtime(_actors()) as rt:
        for lookup in (rt.attach_idempotent, rt.idempotent_output):
            with pytest.raises(TypeError, match="runs once per workflow id"):
                await lookup(Order.run, "k", key="o1")
            with pytest.raises(TypeError, match="key"):
                await lookup(Tab.add, "k")  # an object needs its key
            with pytest.raises(TypeError, match="key"):
                await lookup(Greeter.greet, "k", key="x")  # a service takes none
            with pytest.raises(TypeError, match="idempotency_key must be a str"):
                await lookup(Greeter.greet, 7)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="handler"):
                await lookup("Greeter.greet", "k")  # type: ignore[arg-type]
            with pytest.raises(actors.TerminalError) as raised:
                await lookup(Greeter.greet, "x" * (MAX_IDEMPOTENCY_KEY_BYTES + 1))
            assert raised.value.status_code == 413
    with pytest.raises(actors.RuntimeClosedError):
        await rt.attach_idempotent(Greeter.greet, "k")
    with pytest.raises(actors.RuntimeClosedError):
        await rt.idempotent_output(Greeter.greet, "k")


async def test_an_unregistered_actor_is_unknown() -> None:
    async with open_test_runtime([Greeter()]) as rt:
        with pytest.raises(actors.UnknownHandlerError, match="not registered"):
            await rt.attach_idempotent(Tab.add, "k", key="a")
