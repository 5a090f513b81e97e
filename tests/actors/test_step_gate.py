"""A plain-function ``ctx.run`` body and the output gate before it.

Under trio the body's first try is handed to the step threads by the callback that
publishes the gate's commit (``StepThreads.defer``/``release``), so the handler suspends
once per step. What must hold whichever way it goes: the body runs only once everything
before it is durable; a failed commit fails the attempt and the body never runs; a kill
while the step waits for its commit, or for a thread, means the body never runs; a body
that has started is waited for; calls sent before the step are delivered before its body
runs. Every test runs under trio and asyncio, with commits on the loop ("auto") and on
the writer thread ("thread"), some inline too; nothing sleeps: bodies and commits block
on ``threading`` events that the test sets.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import lmdb
import pytest

import actors
from actors._step_threads import StepThreads
from actors.storage import Table

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from actors.storage import CommitMode, WriteBatch

#: A safety net only: nothing waits this long unless the test is broken.
HANG = 30.0
FAST = actors.RetryPolicy(initial_interval=0.001, max_interval=0.01, max_attempts=None)
modes = pytest.mark.parametrize("commit_mode", ["auto", "thread", "inline"])


async def wait_thread_event(event: threading.Event) -> None:
    assert await anyio.to_thread.run_sync(event.wait, HANG), "never got there"


async def signal_then_release(
    signal: Callable[[str], Coroutine[Any, Any, object]],
    invocation_id: str,
    release: threading.Event,
) -> None:
    """Send ``signal`` (``rt.kill``, ``rt.cancel``) to the invocation, give it 20 passes
    of the loop to reach what it waits on, then set ``release``: whatever the invocation
    waits for goes on only after the signal has landed."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(signal, invocation_id)
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        release.set()


def journals(batch: WriteBatch, step: str) -> bool:
    """The batch journals the outcome of step ``step``."""
    return any(
        table is Table.JOURNAL and value is not None and step.encode() in value
        for _op, table, _key, value in batch.ops
    )


class Log:
    """What happened, in order, from any thread: commits the hook let through or failed,
    and bodies that ran."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def add(self, event: str) -> None:
        with self._lock:
            self.events.append(event)


class Hook:
    """A ``_fault_hook`` (it sees every commit before LMDB does): logs the commits that
    journal step ``step``; fails the first ``fail`` of them as a full disk does; holds
    the first of them until ``release`` is set when ``hold``."""

    def __init__(self, log: Log, step: str, *, fail: int = 0, hold: bool = False) -> None:
        self.log = log
        self.step = step
        self.fail = fail
        self.hold = hold
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if not any(journals(batch, self.step) for batch in batches):
            return
        if self.hold:
            self.hold = False
            self.entered.set()
            if not self.release.wait(HANG):
                raise RuntimeError("never released")
        if self.fail:
            self.fail -= 1
            self.log.add(f"commit {self.step} failed")
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")
        self.log.add(f"commit {self.step}")


class Blocker:
    """A blocking body's gate: ``entered`` when the body runs, ``release`` lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()


class Steps(actors.Service):
    def __init__(self) -> None:
        self.log = Log()
        self.blockers: dict[str, Blocker] = {}
        self.callee_ran = threading.Event()

    def blocker(self, name: str) -> Blocker:
        return self.blockers.setdefault(name, Blocker())

    def record(self, name: str) -> str:
        self.log.add(f"body {name}")
        return name

    def block(self, name: str) -> str:
        self.log.add(f"body {name}")
        blocker = self.blocker(name)
        blocker.entered.set()
        if not blocker.release.wait(HANG):
            raise RuntimeError("never released")
        return name

    async def record_async(self, name: str) -> str:
        self.log.add(f"body {name}")
        return name

    @actors.handler
    async def two_async(self, ctx: actors.Context) -> str:
        first = await ctx.run("first", self.record_async, "first")
        second = await ctx.run("second", self.record_async, "second")
        return first + second

    @actors.handler
    async def then_async(self, ctx: actors.Context, name: str) -> str:
        await ctx.run("first", self.record_async, "first")
        value = await ctx.run("second", self.record_async, name)
        await ctx.run("after", self.record_async, "after")
        return value

    @actors.handler
    async def two(self, ctx: actors.Context) -> str:
        first = await ctx.run("first", self.record, "first")
        second = await ctx.run("second", self.record, "second")
        return first + second

    @actors.handler
    async def then_block(self, ctx: actors.Context, name: str) -> str:
        await ctx.run("first", self.record, "first")
        value = await ctx.run("blocking", self.block, name)
        await ctx.run("after", self.record, "after")
        return value

    @actors.handler
    async def send_then_step(self, ctx: actors.Context) -> str:
        await ctx.run("first", self.record, "first")
        await ctx.send(Steps.callee)

        def wait_for_callee() -> str:
            # Its acceptance was in the gate's commit: it is delivered before this runs.
            if not self.callee_ran.wait(HANG):
                raise actors.TerminalError("the callee was not delivered before the body")
            return "delivered"

        return await ctx.run("second", wait_for_callee)

    @actors.handler
    async def callee(self, ctx: actors.Context) -> None:
        self.callee_ran.set()


def _open(
    path: Path,
    steps: Steps,
    commit_mode: CommitMode,
    hook: Callable[[Sequence[WriteBatch]], None] | None = None,
) -> AbstractAsyncContextManager[actors.Runtime]:
    return actors.open_runtime(path, [steps], commit_mode=commit_mode, retry=FAST, _fault_hook=hook)


@modes
@pytest.mark.parametrize("body", ["plain", "async"])  # an async body: see produce_inline
async def test_a_body_runs_only_after_the_commit_before_it_and_never_after_a_failed_one(
    tmp_path: Path, commit_mode: CommitMode, body: str
) -> None:
    steps = Steps()
    hook = Hook(steps.log, "first", fail=2)
    async with _open(tmp_path, steps, commit_mode, hook) as rt:
        assert await rt.call(Steps.two if body == "plain" else Steps.two_async) == "firstsecond"
    # Each failed commit of the first step's result failed the attempt: the second body
    # did not run, and the next attempt ran the first body again (its result was lost).
    assert steps.log.events == [
        "body first",
        "commit first failed",
        "body first",
        "commit first failed",
        "body first",
        "commit first",
        "body second",
    ]


@pytest.mark.parametrize("commit_mode", ["thread"])  # the hook holds the writer thread
async def test_a_kill_while_a_step_waits_for_its_commit_never_runs_the_body(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    steps = Steps()
    hook = Hook(steps.log, "first", hold=True)
    async with _open(tmp_path, steps, commit_mode, hook) as rt:
        handle = await rt.send(Steps.then_block, "b")
        await wait_thread_event(hook.entered)  # the second step waits for this commit
        await signal_then_release(rt.kill, handle.invocation_id, hook.release)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        assert await rt.call(Steps.two) == "firstsecond"  # the runtime goes on
    assert steps.log.events[:2] == ["body first", "commit first"]
    assert "body b" not in steps.log.events


@pytest.mark.parametrize("commit_mode", ["thread"])  # the hook holds the writer thread
async def test_a_cancel_while_a_step_waits_for_its_commit_lands_at_the_next_step(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    steps = Steps()
    steps.blocker("b").release.set()
    hook = Hook(steps.log, "first", hold=True)
    async with _open(tmp_path, steps, commit_mode, hook) as rt:
        handle = await rt.send(Steps.then_block, "b")
        await wait_thread_event(hook.entered)
        # (The cancel's own commit waits for the held one too.)
        await signal_then_release(rt.cancel, handle.invocation_id, hook.release)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
    # A cancel is not a kill: the step it found waiting goes on, the next one raises it.
    assert steps.log.events == ["body first", "commit first", "body b"]


# An async body under trio: its task parks on the gate's commit itself (``produce_inline``).
@pytest.mark.parametrize("commit_mode", ["thread"])  # the hook holds the writer thread
@pytest.mark.parametrize("signal", ["kill", "cancel"])
async def test_a_signal_while_an_async_step_waits_for_its_commit(
    tmp_path: Path, commit_mode: CommitMode, signal: str
) -> None:
    steps = Steps()
    hook = Hook(steps.log, "first", hold=True)
    async with _open(tmp_path, steps, commit_mode, hook) as rt:
        handle = await rt.send(Steps.then_async, "b")
        await wait_thread_event(hook.entered)  # the second step waits for this commit
        await signal_then_release(getattr(rt, signal), handle.invocation_id, hook.release)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        assert await rt.call(Steps.two_async) == "firstsecond"  # the runtime goes on
    # A kill withdraws the waiting step: its body never runs. A cancel is not a kill:
    # the step it found waiting goes on, and the next one raises it.
    expected = ["body first", "commit first"] + (["body b"] if signal == "cancel" else [])
    assert steps.log.events[: len(expected)] == expected
    assert ("body b" in steps.log.events) == (signal == "cancel")
    assert "body after" not in steps.log.events


@modes
async def test_a_kill_while_a_body_waits_for_a_thread_never_runs_it_under_trio(
    tmp_path: Path,
    commit_mode: CommitMode,
    async_backend: str,
) -> None:
    # The limit is the capacity of anyio's default thread limiter (of this test's loop).
    anyio.to_thread.current_default_thread_limiter().total_tokens = 1
    steps = Steps()
    async with _open(tmp_path, steps, commit_mode) as rt:
        threads: StepThreads = rt._k.step_threads
        busy = await rt.send(Steps.then_block, "busy")  # its body holds the only thread
        await wait_thread_event(steps.blocker("busy").entered)
        handle = await rt.send(Steps.then_block, "queued")
        for _ in range(500):  # until its first body waits in the deque
            if threads.statistics() == (1, 1):
                break
            await anyio.lowlevel.checkpoint()
        assert threads.statistics() == (1, 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.kill, handle.invocation_id)
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            # Under trio the queued body is withdrawn; under asyncio the wait for a
            # thread is shielded (as anyio's to_thread is), so it runs once it gets one.
            assert threads.statistics() == ((1, 0) if async_backend == "trio" else (1, 1))
            steps.blocker("busy").release.set()
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        assert await busy.result() == "busy"
        assert threads.statistics() == (1, 0)
    # The killed invocation's first body: withdrawn under trio, run under asyncio.
    assert steps.log.events.count("body first") == (1 if async_backend == "trio" else 2)
    assert "body queued" not in steps.log.events


@modes
async def test_a_cancel_while_a_gated_body_runs_waits_for_it(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    steps = Steps()
    async with _open(tmp_path, steps, commit_mode) as rt:
        handle = await rt.send(Steps.then_block, "c")
        await wait_thread_event(steps.blocker("c").entered)
        await rt.cancel(handle.invocation_id)
        # The body is never interrupted: it returns once released.
        await signal_then_release(rt.kill, handle.invocation_id, steps.blocker("c").release)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.status_code == 409
        journal = rt._store.scan(Table.JOURNAL)
    assert steps.log.events == ["body first", "body c"]  # no step after it ran
    assert any(b"blocking" in value and b'"c"' in value for _key, value in journal), journal


@modes
async def test_a_call_sent_before_a_step_is_delivered_before_its_body_runs(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    steps = Steps()
    async with _open(tmp_path, steps, commit_mode) as rt:
        assert await rt.call(Steps.send_then_step) == "delivered"


@pytest.mark.trio_only
@pytest.mark.parametrize("commit_mode", ["auto", "thread"])
async def test_under_trio_a_gated_plain_body_goes_to_a_thread_from_the_commit(
    tmp_path: Path, commit_mode: CommitMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[bool] = []
    release = StepThreads.release

    def counted(self: StepThreads, job: object, go: bool) -> bool:
        queued = release(self, job, go)  # type: ignore[arg-type]
        released.append(queued)
        return queued

    monkeypatch.setattr(StepThreads, "release", counted)
    steps = Steps()
    async with _open(tmp_path, steps, commit_mode) as rt:
        assert await rt.call(Steps.two) == "firstsecond"
    # Each step's gate flushes (the invocation's acceptance, then the first's result),
    # and the commit's callback queues the body.
    assert released == [True, True]
