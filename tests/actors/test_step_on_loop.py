"""``ctx.run(..., blocking=False)``: a plain-function body declared non-blocking runs on
the event loop, in the handler's own task, with no step thread; everything else about the
step is as for any body (journaled, replayed, retried, ``TerminalError`` at once). A body
without the keyword still runs on a step thread, so one that blocks stalls nobody (the
blocking tests of ``test_step_threads.py``). Under trio and asyncio."""

from __future__ import annotations

import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any

import pytest
import sniffio

import actors
from actors._ops_steps import _awaitable, _is_async
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

THREAD_NAME = "actors ctx.run body"


def where() -> list[str]:
    """The thread a body runs on and the async library it sees there."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "none"
    return [threading.current_thread().name, library]


class OnLoop(actors.Service):
    def __init__(self) -> None:
        self.runs = 0
        self.tries = 0

    @actors.handler
    async def look(self, ctx: actors.Context, blocking: bool) -> list[str]:
        return await ctx.run("look", where, blocking=blocking)

    @actors.handler
    async def steps(self, ctx: actors.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run(f"step{i}", self.count, i, blocking=False)
        return total

    def count(self, i: int) -> int:
        self.runs += 1
        return i

    @actors.handler
    async def flaky(self, ctx: actors.Context) -> int:
        def once_broken() -> int:
            self.tries += 1
            if self.tries == 1:
                raise GeneratorExit("a BaseException from the body")
            if self.tries == 2:
                raise ValueError("transient")
            return self.tries

        policy = actors.RetryPolicy(initial_interval=0.001)
        return await ctx.run("flaky", once_broken, retry=policy, blocking=False)

    @actors.handler
    async def terminal(self, ctx: actors.Context) -> None:
        def refuse() -> None:
            raise actors.TerminalError("no such card", 402)

        await ctx.run("refuse", refuse, blocking=False)

    @actors.handler
    async def coroutine(self, ctx: actors.Context) -> str:
        async def body() -> str:
            return "async"

        return await ctx.run("async body", body, blocking=False)

    @actors.handler
    async def bad(self, ctx: actors.Context, blocking: Any) -> None:
        await ctx.run("step", where, blocking=blocking)


async def test_a_non_blocking_body_runs_on_the_loop_and_no_step_thread_starts(
    tmp_path: Path, async_backend: str
) -> None:
    loop_thread = threading.current_thread().name
    async with open_test_runtime([OnLoop()], path=tmp_path) as rt:
        assert await rt.call(OnLoop.look, False) == [loop_thread, async_backend]
        assert rt._k.step_threads.statistics() == (0, 0)  # no thread was ever started
        # Without the keyword (or with blocking=True) the same body runs on a step thread.
        assert await rt.call(OnLoop.look, True) == [THREAD_NAME, "none"]
        assert rt._k.step_threads.statistics()[0] == 1


async def test_non_blocking_steps_are_journaled_and_not_run_again_on_replay(
    tmp_path: Path,
) -> None:
    service = OnLoop()
    invocation_id = ""
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [service], path=tmp_path, crash=CrashPlan(after_run="step2")
        ) as rt:
            handle = await rt.send(OnLoop.steps, 5)
            invocation_id = handle.invocation_id
            await handle.result()
    assert service.runs == 3  # steps 0 and 1 durable; step 2 ran, its result was not
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.attach(invocation_id) == 10
    assert service.runs == 6  # steps 2, 3 and 4: the journaled ones were not run again


async def test_what_a_non_blocking_body_raises_fails_that_try_and_is_retried(
    tmp_path: Path,
) -> None:
    service = OnLoop()
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.call(OnLoop.flaky) == 3
        with pytest.raises(actors.TerminalError, match=r"^no such card$") as info:
            await rt.call(OnLoop.terminal)
        assert info.value.status_code == 402
        assert await rt.call(OnLoop.coroutine) == "async"  # an async def body is awaited
    assert service.tries == 3


@pytest.mark.parametrize("blocking", ["no", 0, None])
async def test_blocking_takes_a_bool_only(tmp_path: Path, blocking: object) -> None:
    async with open_test_runtime([OnLoop()], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(OnLoop.bad, blocking)
    assert info.value.status_code == 400
    assert info.value.message == (
        f"ctx.run('step', blocking=...) takes True or False, not {type(blocking).__name__}"
    )


class _Methods:
    async def coro(self) -> None:
        pass

    def plain(self) -> None:
        pass

    async def __call__(self) -> None:
        pass


def test_the_quick_body_checks_agree_with_inspect() -> None:
    async def coro() -> None:
        pass

    def plain() -> None:
        pass

    def with_attribute() -> None:
        pass

    with_attribute.note = "an attribute of its own"  # type: ignore[attr-defined]
    functions: list[Any] = [coro, plain, with_attribute, lambda: None, print, _Methods()]
    functions += [functools.partial(coro), functools.partial(plain)]
    functions += [_Methods().coro, _Methods().plain, _Methods.coro, _Methods.plain]
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12+: a plain function marked as a coroutine function
        functions.append(mark(lambda: None))
    for fn in functions:
        assert _is_async(fn) == inspect.iscoroutinefunction(fn), fn
    running = coro()
    values: list[Any] = [1, "s", b"b", 1.5, True, None, {}, [], (), running, _Methods()()]
    values += [type("Int", (int,), {"__await__": lambda self: iter(())})(3)]
    for value in values:
        assert _awaitable(value) == inspect.isawaitable(value), value
    running.close()
    values[-2].close()
