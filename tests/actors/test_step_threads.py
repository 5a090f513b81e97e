"""Plain-function ``ctx.run`` bodies on the runtime's step threads (``actors._step_threads``):
a blocking body stalls nobody else, more blocking bodies than threads all progress up to
the limit, cancel and kill wait for a running body as before, closing waits for it and
leaves no thread behind, and a body keeps its context variables, its exceptions and
``from_thread``. Every test runs under trio and asyncio; nothing sleeps: bodies block on
``threading`` events that the test sets."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
import sniffio

import actors
from actors import _step_threads
from actors._step_threads import StepThreads
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

THREAD_NAME = "actors ctx.run body"
#: A safety net only: a body never waits this long unless the test is broken.
HANG = 30.0

USER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("user_var", default="unset")


def step_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


async def wait_thread_event(event: threading.Event) -> None:
    """Wait, off the loop, until a body sets ``event``."""
    assert await anyio.to_thread.run_sync(event.wait, HANG), "the body never got there"


class Entries:
    """The names of the gated bodies that started, in order (any thread may add)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._changed = threading.Condition()

    def add(self, name: str) -> None:
        with self._changed:
            self.names.append(name)
            self._changed.notify_all()

    async def reach(self, count: int) -> list[str]:
        """Wait, off the loop, until ``count`` bodies have started; their names."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.names) >= count, HANG)

        assert await anyio.to_thread.run_sync(wait), f"{count} bodies never started"
        with self._changed:
            return list(self.names)


class Gate:
    """One blocking body: ``entered`` when it runs, returns once ``release`` is set."""

    def __init__(self, order: Entries) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.order = order

    def body(self, value: str) -> str:
        self.runs += 1
        self.order.add(value)
        self.entered.set()
        if not self.release.wait(HANG):
            raise RuntimeError("never released")
        return value


class Blocking(actors.Service):
    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.entries = Entries()
        self.barrier: threading.Barrier | None = None
        self.after: list[str] = []

    def gate(self, name: str) -> Gate:
        if name not in self.gates:
            self.gates[name] = Gate(self.entries)
        return self.gates[name]

    @actors.handler
    async def blocked(self, ctx: actors.Context, name: str) -> str:
        value = await ctx.run("wait", self.gate(name).body, name)
        await ctx.run("after", self.after.append, name)  # the step after the body's
        return value

    @actors.handler
    async def quick(self, ctx: actors.Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run(f"step{i}", lambda i=i: i)
        return total

    @actors.handler
    async def together(self, ctx: actors.Context) -> int:
        def meet() -> int:
            assert self.barrier is not None
            return self.barrier.wait(HANG)  # breaks unless every body runs at once

        return await ctx.run("meet", meet)


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    yield
    # Closing a runtime stops its step threads (a test's own threads are joined too).
    assert step_threads() == []


# --- blocking bodies ---------------------------------------------------------------------


async def test_a_blocked_body_does_not_stall_other_invocations(tmp_path: Path) -> None:
    service = Blocking()
    gate = service.gate("slow")
    async with open_test_runtime([service], path=tmp_path) as rt:
        slow = await rt.send(Blocking.blocked, "slow")
        await wait_thread_event(gate.entered)
        # Another invocation's ten steps all run (on other threads) while it blocks.
        assert await rt.call(Blocking.quick, 10) == 45
        assert service.after == []  # still blocked
        gate.release.set()
        assert await slow.result() == "slow"
    assert gate.runs == 1


async def test_more_blocking_bodies_than_threads_at_first_all_run_at_once(
    tmp_path: Path,
) -> None:
    bodies = 12
    service = Blocking()
    service.barrier = threading.Barrier(bodies)
    async with open_test_runtime([service], path=tmp_path) as rt:
        handles = [await rt.send(Blocking.together) for _ in range(bodies)]
        results = sorted([await h.result() for h in handles])
        assert results == list(range(bodies))  # each got its own barrier slot
        assert len(step_threads()) >= bodies


async def test_at_the_thread_limit_bodies_wait_for_a_thread_to_come_free(
    tmp_path: Path,
) -> None:
    # The limit is the capacity of anyio's default thread limiter (40 by default).
    anyio.to_thread.current_default_thread_limiter().total_tokens = 2
    service = Blocking()
    names = [f"b{i}" for i in range(5)]
    async with open_test_runtime([service], path=tmp_path) as rt:
        threads = rt._k.step_threads
        handles = [await rt.send(Blocking.blocked, name) for name in names]
        first, second = await service.entries.reach(2)
        for _ in range(100):  # let every invocation reach its step
            await anyio.lowlevel.checkpoint()
        assert threads.statistics() == (2, 3)  # two threads, three bodies waiting
        assert len(service.entries.names) == 2
        # A released body frees its thread for one waiting body (its invocation's next
        # step queues behind the others).
        service.gate(first).release.set()
        third = (await service.entries.reach(3))[2]
        assert len(service.entries.names) == 3  # the other thread is still blocked
        service.gate(second).release.set()
        service.gate(third).release.set()
        await service.entries.reach(5)
        for name in names:
            service.gate(name).release.set()
        assert [await h.result() for h in handles] == names
        assert threads.statistics() == (2, 0)
    assert sorted(service.entries.names) == names


# --- cancel, kill and close while a body runs ---------------------------------------------


async def test_cancel_while_a_body_runs_waits_for_it_and_lands_at_the_next_step(
    tmp_path: Path,
) -> None:
    service = Blocking()
    gate = service.gate("c")
    async with open_test_runtime([service], path=tmp_path) as rt:
        handle = await rt.send(Blocking.blocked, "c")
        await wait_thread_event(gate.entered)
        await rt.cancel(handle.invocation_id)
        gate.release.set()  # the body is never interrupted: it returns, and is journaled
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        journal = rt._store.scan(actors.storage.Table.JOURNAL)
    assert gate.runs == 1
    assert service.after == []  # the cancel is raised by the next step, before its body
    # The body's result is in the journal (the step "wait" with the value "c").
    assert any(b"wait" in value and b'"c"' in value for _key, value in journal), journal


async def test_kill_while_a_body_runs_waits_for_it_then_ends(tmp_path: Path) -> None:
    service = Blocking()
    gate = service.gate("k")
    async with open_test_runtime([service], path=tmp_path) as rt:
        handle = await rt.send(Blocking.blocked, "k")
        await wait_thread_event(gate.entered)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.kill, handle.invocation_id)
            await anyio.lowlevel.checkpoint()
            gate.release.set()
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        assert await rt.call(Blocking.quick, 3) == 3  # the runtime goes on
    assert gate.runs == 1
    assert service.after == []  # killed: no step after the body's ran


async def test_closing_the_runtime_waits_for_a_running_body_then_stops_the_threads(
    tmp_path: Path,
) -> None:
    service = Blocking()
    gate = service.gate("z")

    async def release_once_closing(rt: actors.Runtime) -> None:
        while not rt._k.closed:
            await anyio.lowlevel.checkpoint()
        gate.release.set()

    async with anyio.create_task_group() as outer:
        async with open_test_runtime([service], path=tmp_path) as rt:
            handle = await rt.send(Blocking.blocked, "z")
            await wait_thread_event(gate.entered)
            outer.start_soon(release_once_closing, rt)
        # Closed: only after the body returned (Python cannot interrupt a thread).
        assert gate.runs == 1
        assert step_threads() == []
    # Its result was journaled on the way out (as with anyio.to_thread before), so the
    # next open finishes the invocation from the journal without running it again.
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "z"
    assert gate.runs == 1


async def test_a_crash_after_a_sync_body_runs_it_again_at_the_next_open(tmp_path: Path) -> None:
    service = Blocking()
    gate = service.gate("x")
    gate.release.set()
    invocation_id = ""
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [service], path=tmp_path, crash=CrashPlan(after_run="wait")
        ) as rt:
            handle = await rt.send(Blocking.blocked, "x")
            invocation_id = handle.invocation_id
            await handle.result()
    assert gate.runs == 1  # it ran; its result never became durable
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.attach(invocation_id) == "x"
    assert gate.runs == 2


# --- what a body sees: context variables, exceptions, from_thread ------------------------


class Bodies(actors.Service):
    def __init__(self) -> None:
        self.tries = 0
        self.loop_calls: list[str] = []

    @actors.handler
    async def context(self, ctx: actors.Context) -> list[str]:
        USER_VAR.set("from the handler")

        def look() -> list[str]:
            try:
                library = sniffio.current_async_library()
            except sniffio.AsyncLibraryNotFoundError:
                library = "none"
            return [USER_VAR.get(), library, threading.current_thread().name]

        return await ctx.run("look", look)

    @actors.handler
    async def misuse(self, ctx: actors.ObjectContext) -> str:
        def touch() -> None:
            ctx.random()  # not an effect, but a context operation all the same
            ctx.uuid()

        try:
            await ctx.run("touch", touch)
        except actors.TerminalError as exc:
            return str(exc)
        return "no error"

    @actors.handler
    async def flaky(self, ctx: actors.Context) -> int:
        def once_broken() -> int:
            self.tries += 1
            if self.tries == 1:
                raise GeneratorExit("a BaseException from the body")
            if self.tries == 2:
                raise ValueError("transient")
            return self.tries

        return await ctx.run("flaky", once_broken, retry=actors.RetryPolicy(initial_interval=0.001))

    @actors.handler
    async def terminal(self, ctx: actors.Context) -> None:
        def refuse() -> None:
            raise actors.TerminalError("no such card", 402)

        await ctx.run("refuse", refuse)

    @actors.handler
    async def back_to_the_loop(self, ctx: actors.Context) -> str:
        def call_loop() -> str:
            return anyio.from_thread.run_sync(self._on_loop, "anyio")

        return await ctx.run("call loop", call_loop)

    @actors.handler
    async def back_to_trio(self, ctx: actors.Context) -> str:
        def call_trio() -> str:
            import trio

            return trio.from_thread.run_sync(self._on_loop, "trio")

        return await ctx.run("call trio", call_trio)

    def _on_loop(self, via: str) -> str:
        self.loop_calls.append(f"{via}: {sniffio.current_async_library()}")
        return via


async def test_a_body_sees_the_handlers_context_variables_and_no_event_loop(
    tmp_path: Path,
) -> None:
    async with open_test_runtime([Bodies()], path=tmp_path) as rt:
        assert await rt.call(Bodies.context) == ["from the handler", "none", THREAD_NAME]


async def test_a_sync_body_that_uses_its_context_is_a_clear_error(tmp_path: Path) -> None:
    async with open_test_runtime([Bodies()], path=tmp_path) as rt:
        message = await rt.call(Bodies.misuse)
    assert message.startswith("ctx.random() cannot be used inside the body of ctx.run('touch')")


async def test_what_a_sync_body_raises_fails_that_try_and_is_retried(tmp_path: Path) -> None:
    service = Bodies()
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.call(Bodies.flaky) == 3
        with pytest.raises(actors.TerminalError, match=r"^no such card$") as info:
            await rt.call(Bodies.terminal)
        assert info.value.status_code == 402
    assert service.tries == 3


async def test_a_body_can_call_back_into_the_loop_with_anyio_from_thread(
    tmp_path: Path, async_backend: str
) -> None:
    service = Bodies()
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.call(Bodies.back_to_the_loop) == "anyio"
    assert service.loop_calls == [f"anyio: {async_backend}"]


@pytest.mark.trio_only
async def test_a_body_can_call_back_into_trio_with_trio_from_thread(tmp_path: Path) -> None:
    service = Bodies()
    async with open_test_runtime([service], path=tmp_path) as rt:
        assert await rt.call(Bodies.back_to_trio) == "trio"
    assert service.loop_calls == ["trio: trio"]


# --- the pool itself ---------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "while waiting"])
async def test_a_cancelled_body_that_has_not_started(async_backend: str, when: str) -> None:
    threads = StepThreads(limit=1)
    gate = Gate(Entries())
    ran: list[str] = []
    cancelled: list[bool] = []
    scope = anyio.CancelScope()
    if when == "before":
        scope.cancel()

    async def second() -> None:
        with scope:
            await threads.run(ran.append, ("second",))
            await anyio.lowlevel.checkpoint()  # where a handler's next await would be
        cancelled.append(scope.cancelled_caught)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(threads.run, gate.body, ("first",))
            await wait_thread_event(gate.entered)
            tg.start_soon(second)  # the only thread is busy: its body would wait
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            scope.cancel()
            for _ in range(50):
                await anyio.lowlevel.checkpoint()
            if when == "before" or async_backend == "trio":
                assert cancelled == [True]  # never queued, or withdrawn from the queue
                assert threads.statistics() == (1, 0)
            else:
                assert cancelled == []  # shielded, as anyio's to_thread is: it waits
                assert threads.statistics() == (1, 1)
            gate.release.set()
    finally:
        gate.release.set()
        await threads.aclose()
    withdrawn = when == "before" or async_backend == "trio"
    assert ran == ([] if withdrawn else ["second"])
    assert cancelled == [True]  # under asyncio while waiting: once the body has run
    assert threads.statistics() == (0, 0)


async def test_the_pool_returns_results_and_exceptions_as_values() -> None:
    threads = StepThreads()
    try:
        assert await threads.run(divmod, (7, 2)) == (True, (3, 1))
        ok, error = await threads.run(divmod, (1, 0))
        assert not ok
        assert isinstance(error, ZeroDivisionError)
    finally:
        await threads.aclose()


async def test_a_closed_pool_takes_no_body_and_a_pool_needs_a_thread() -> None:
    threads = StepThreads()
    await threads.aclose()
    with pytest.raises(
        actors.RuntimeClosedError, match=r"^the runtime is closed: its step threads take no body$"
    ):
        await threads.run(print, ())
    with pytest.raises(ValueError, match=r"^a step thread pool needs a limit of at least 1, "):
        StepThreads(limit=0)


async def test_an_idle_thread_exits_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_step_threads, "IDLE_SECONDS", 0.0)  # exit as soon as parked
    threads = StepThreads()
    try:
        assert await threads.run(str, (5,)) == (True, "5")
        for thread in step_threads():
            await anyio.to_thread.run_sync(thread.join, HANG)
        assert threads.statistics() == (0, 0)
        assert await threads.run(str, (6,)) == (True, "6")  # a new thread starts
    finally:
        await threads.aclose()


async def test_a_body_no_thread_can_be_started_for_fails_and_the_pool_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    threads = StepThreads()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(threading.Thread, "start", refuse)
            with pytest.raises(
                RuntimeError, match=r"^no thread could be started for a ctx.run body$"
            ):
                await threads.run(str, (1,))
            assert threads.statistics() == (0, 0)
        assert await threads.run(str, (2,)) == (True, "2")
    finally:
        await threads.aclose()
