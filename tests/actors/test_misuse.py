"""Programming errors answer at once (issue 12, item 6): a handler that misuses the API in
a way no retry can fix (a write from a shared context, a method its context lacks, an
argument of the wrong type to a context operation) fails with a ``TerminalError`` that
says what to do, on its first attempt, instead of an ``AttributeError`` or ``TypeError``
that is retried, paused, and leaves its caller waiting. Under trio and asyncio."""

from __future__ import annotations

import collections
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

import actors
from actors.storage import Table
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


async def _noop() -> None:
    pass


class Counter(actors.VirtualObject):
    def __init__(self) -> None:
        self.tries: collections.Counter[str] = collections.Counter()

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.shared
    async def write_from_shared(self, ctx: actors.ObjectSharedContext, method: str) -> str:
        self.tries[method] += 1
        write: Callable[..., None] = getattr(ctx, method)
        write(*{"set": ("n", 99), "clear": ("n",), "clear_all": ()}[method])
        return "written"

    @actors.shared
    async def probe(self, ctx: actors.ObjectSharedContext) -> list[object]:
        # hasattr and getattr with a default still work: the error is an AttributeError.
        return [hasattr(ctx, "set"), getattr(ctx, "clear", None), hasattr(ctx, "get")]

    @actors.exclusive
    async def misuse(self, ctx: actors.ObjectContext, how: str) -> str:
        self.tries[how] += 1
        untyped: Any = ctx
        if how == "typo":
            untyped.sett("n", 1)
        elif how == "promise":
            untyped.promise("p")
        elif how == "sleep str":
            await ctx.sleep("5")  # type: ignore[arg-type]
        elif how == "sleep list":
            await ctx.sleep([5])  # type: ignore[arg-type]
        elif how == "get int":
            await ctx.get(123)  # type: ignore[call-overload]
        elif how == "set int":
            ctx.set(123, 1)  # type: ignore[arg-type]
        elif how == "clear bytes":
            ctx.clear(b"n")  # type: ignore[arg-type]
        elif how == "run unnamed":
            await ctx.run(123, _noop)  # type: ignore[call-overload]
        elif how == "run no function":
            await ctx.run("step", "not a function")  # type: ignore[call-overload]
        elif how == "run bad retry":
            await ctx.run("step", _noop, retry=3)  # type: ignore[call-overload]
        elif how == "send delay str":
            await ctx.send(Counter.add, 1, key="other", delay="soon")  # type: ignore[arg-type]
        elif how == "typo in a step":

            async def body() -> None:
                untyped.sett("n", 1)

            await ctx.run("step", body)
        elif how == "gather":
            await actors.gather(ctx.sleep(timedelta(0)), "soon")  # type: ignore[arg-type]
        return "accepted"


class Greeter(actors.Service):
    def __init__(self) -> None:
        self.tries: collections.Counter[str] = collections.Counter()

    @actors.handler
    async def misuse(self, ctx: actors.Context, how: str) -> str:
        self.tries[how] += 1
        untyped: Any = ctx
        if how == "get":
            await untyped.get("n")
        elif how == "key":
            return str(untyped.key)
        elif how == "set":
            untyped.set("n", 1)
        return "accepted"


class Job(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, how: str) -> str:
        if how == "promise name":
            ctx.promise(7)  # type: ignore[call-overload]
        elif how == "reject reason":
            await ctx.promise("p").reject(42)  # type: ignore[arg-type]
        return "accepted"

    @actors.shared
    async def write(self, ctx: actors.WorkflowSharedContext) -> str:
        ctx.set("stage", "sneaky")  # type: ignore[attr-defined]
        return "written"


def made() -> tuple[Counter, Greeter]:
    return Counter(), Greeter()


@pytest.mark.parametrize("method", ["set", "clear", "clear_all"])
async def test_a_write_from_a_shared_handler_is_a_terminal_error_at_once(
    tmp_path: Path, method: str
) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        assert await rt.call(Counter.add, 1, key="k") == 1
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Counter.write_from_shared, method, key="k")
        assert info.value.status_code == 500
        assert info.value.message.startswith(
            f"ctx.{method}() is not available in a shared handler (ObjectSharedContext of "
            "Counter.write_from_shared): shared handlers only read committed state. Write "
            "it from an @actors.exclusive handler"
        )
        assert counter.tries[method] == 1  # not retried
        assert rt.statistics().paused == 0
        assert await rt.call(Counter.value, key="k") == 1  # nothing written
        with pytest.raises(actors.TerminalError, match="not available in a shared handler"):
            await rt.call(Job.write, key="w")


async def test_misuse_errors_are_still_attribute_errors_for_hasattr(tmp_path: Path) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        assert await rt.call(Counter.probe, key="k") == [False, None, True]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("get", "ctx.get is not available in a service handler (Context of Greeter.misuse)"),
        ("key", "ctx.key is not available in a service handler"),
        ("set", "ctx.set is not available in a service handler"),
    ],
)
async def test_state_in_a_service_is_a_terminal_error_at_once(
    tmp_path: Path, how: str, message: str
) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Greeter.misuse, how)
        assert (info.value.status_code, info.value.message[: len(message)]) == (500, message)
        assert "Keep state in a VirtualObject or Workflow" in info.value.message
        assert greeter.tries[how] == 1


@pytest.mark.parametrize(
    ("how", "status", "message"),
    [
        ("typo", 500, "ObjectContext has no attribute 'sett' (ObjectContext of Counter.misuse)"),
        ("promise", 500, "ctx.promise() is not available here"),
        ("typo in a step", 500, "ObjectContext has no attribute 'sett'"),
        ("sleep str", 400, "ctx.sleep(): a duration is a timedelta or a number of seconds"),
        ("sleep list", 400, "ctx.sleep(): a duration is a timedelta or a number of seconds"),
        ("get int", 400, "state names are str, not int"),
        ("set int", 400, "state names are str, not int"),
        ("clear bytes", 400, "state names are str, not bytes"),
        ("run unnamed", 400, "ctx.run() needs a non-empty str name for its step, not 123"),
        ("run no function", 400, "ctx.run('step') needs a function to run, not str"),
        ("run bad retry", 400, "ctx.run('step', retry=...) takes an actors.RetryPolicy"),
        ("send delay str", 400, "a duration is a timedelta or a number of seconds, not str"),
        ("gather", 400, "gather() takes durable futures"),
    ],
)
async def test_misusing_a_context_operation_is_a_terminal_error_at_once(
    tmp_path: Path, how: str, status: int, message: str
) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Counter.misuse, how, key="k")
        assert (info.value.status_code, info.value.message[: len(message)]) == (status, message)
        assert counter.tries[how] == 1  # failed on its first attempt, not retried
        assert rt.statistics().paused == 0
        assert not rt._store.scan(Table.STATE)  # nothing it buffered was written
        if how.startswith("typo"):  # the message lists what the context has
            assert "it has: " in info.value.message
            assert "clear_all" in info.value.message


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("promise name", "a promise needs a non-empty str name"),
        ("reject reason", "a rejection reason is a str, not int"),
    ],
)
async def test_misusing_a_promise_is_a_terminal_error_at_once(
    tmp_path: Path, how: str, message: str
) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Job.run, how, key=how.replace(" ", "-"))
        assert (info.value.status_code, info.value.message) == (400, message)


async def test_outside_a_handler_a_wrong_delay_type_is_a_TypeError_and_stores_nothing(
    tmp_path: Path,
) -> None:
    counter, greeter = made()
    async with open_test_runtime([counter, greeter, Job], path=tmp_path) as rt:
        with pytest.raises(TypeError, match="a duration is a timedelta or a number of seconds"):
            await rt.send(Counter.add, 1, key="k", delay="5")  # type: ignore[arg-type]
        assert not rt._store.scan(Table.INVOCATIONS)
        handle = await rt.send(Counter.add, 1, key="k", delay=0)
        assert await handle.result() == 1
