"""The ``Mailbox`` driver under a real event loop (trio and asyncio).

Each test delivers ``Job`` envelopes to a mailbox whose ``spawn`` is a task group's
``start_soon``. The runner appends to a record list and blocks on the job's ``proceed``
event, so the test decides when each job ends; ``anyio.wait_all_tasks_blocked`` steps
the loop until nothing can move, then the record says exactly what ran. No sleeps.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from actors.mailbox import MAX_RELAYS, NO_RELEASE, Mailbox, MailboxStatistics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

    from actors.mailbox import Release, Runner

    Task = Callable[[], Coroutine[Any, Any, None]]


@attrs.define(eq=False)
class Job:
    """An envelope plus the knobs the test runner reads."""

    name: str
    exclusive: bool
    release_early: bool = False  # call release() before blocking on ``proceed``
    fail: bool = False  # raise ValueError(name) after ``proceed`` is set
    proceed: anyio.Event = attrs.field(factory=anyio.Event)

    def __repr__(self) -> str:
        return f"<Job {self.name}>"


def ex(name: str, *, release_early: bool = False, fail: bool = False) -> Job:
    return Job(name, exclusive=True, release_early=release_early, fail=fail)


def sh(name: str) -> Job:
    return Job(name, exclusive=False)


def stats(queued: int, running_exclusive: bool, running_shared: int) -> MailboxStatistics:
    return MailboxStatistics(
        queued_exclusive=queued,
        running_exclusive=running_exclusive,
        running_shared=running_shared,
    )


@attrs.define
class Recorder:
    """The runner: records each step of each job, in the order they happen."""

    record: list[str] = attrs.field(factory=list)

    async def __call__(self, job: Job, release: Callable[[], None]) -> None:
        self.record.append(f"{job.name} start")
        if job.release_early:
            release()
            self.record.append(f"{job.name} released")
        await job.proceed.wait()
        if job.fail:
            self.record.append(f"{job.name} raises")
            raise ValueError(job.name)
        self.record.append(f"{job.name} end")


@asynccontextmanager
async def open_mailbox(
    runner: Runner[Job],
    *,
    spawn_wrapper: Callable[[Task], Task] | None = None,
) -> AsyncIterator[Mailbox[Job]]:
    """A mailbox whose tasks run in a task group that outlives the ``async with`` body;
    spawn is the group's ``start_soon``, optionally wrapping each task first."""
    async with anyio.create_task_group() as tg:

        def spawn(fn: Task) -> None:
            tg.start_soon(spawn_wrapper(fn) if spawn_wrapper is not None else fn)

        yield Mailbox("Counter/alice", runner, spawn)


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_Mailbox_exclusive_run_in_order_one_at_a_time() -> None:
    recorder = Recorder()
    a, b, c = ex("a"), ex("b"), ex("c")
    async with open_mailbox(recorder) as mailbox:
        for job in (a, b, c):
            mailbox.deliver(job)
        await settle()
        assert recorder.record == ["a start"]
        assert mailbox.running_exclusive is a
        assert mailbox.statistics() == stats(2, True, 0)

        a.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end", "b start"]
        assert mailbox.running_exclusive is b
        assert mailbox.statistics() == stats(1, True, 0)

        # c is allowed to go on first, but it has not started, so it has to wait for b.
        c.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end", "b start"]

        b.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end", "b start", "b end", "c start", "c end"]
        assert mailbox.idle
        assert mailbox.statistics() == stats(0, False, 0)


async def test_Mailbox_deliver_decides_at_once() -> None:
    # The decision is made inside deliver() itself; the runner starts at the next
    # checkpoint, when the task group gets to run it.
    recorder = Recorder()
    a, b = ex("a"), ex("b")
    async with open_mailbox(recorder) as mailbox:
        mailbox.deliver(a)
        mailbox.deliver(b)
        assert recorder.record == []
        assert mailbox.running_exclusive is a
        assert mailbox.statistics() == stats(1, True, 0)
        await settle()
        assert recorder.record == ["a start"]
        a.proceed.set()
        b.proceed.set()


async def test_Mailbox_early_release_pipelines_next_exclusive() -> None:
    recorder = Recorder()
    a, b, c = ex("a", release_early=True), ex("b"), ex("c")
    async with open_mailbox(recorder) as mailbox:
        for job in (a, b, c):
            mailbox.deliver(job)
        await settle()
        # a handed the key on and is still running; b holds it now; c still waits.
        assert recorder.record == ["a start", "a released", "b start"]
        assert mailbox.running_exclusive is b
        assert mailbox.statistics() == stats(1, True, 0)

        # a returning later does not release the key a second time: c still waits for b.
        a.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a released", "b start", "a end"]
        assert mailbox.running_exclusive is b
        assert mailbox.statistics() == stats(1, True, 0)

        b.proceed.set()
        await settle()
        assert recorder.record == [
            "a start",
            "a released",
            "b start",
            "a end",
            "b end",
            "c start",
        ]
        assert mailbox.running_exclusive is c
        c.proceed.set()
        await settle()
        assert mailbox.idle


async def test_Mailbox_release_runs_at_most_once() -> None:
    # The runner calls release() twice and then returns, and the driver calls it once
    # more; only the first counts. (A second finished() in the core would raise
    # MailboxStateError and fail the task group.)
    record: list[str] = []
    first, second, third = ex("first"), ex("second"), ex("third")

    async def runner(job: Job, release: Callable[[], None]) -> None:
        record.append(f"{job.name} start")
        release()
        release()
        await job.proceed.wait()
        record.append(f"{job.name} end")

    async with open_mailbox(runner) as mailbox:
        for job in (first, second, third):
            mailbox.deliver(job)
            await settle()
        # Each one released at once, so all three run side by side.
        assert record == ["first start", "second start", "third start"]
        assert mailbox.running_exclusive is None
        assert mailbox.statistics() == stats(0, False, 0)
        for job in (first, second, third):
            job.proceed.set()
            await settle()
    assert record[3:] == ["first end", "second end", "third end"]
    assert mailbox.idle


async def test_Mailbox_release_after_return_counts_once() -> None:
    # A runner that releases and then returns at once: the driver's own release() on
    # return must not finish the envelope again (nor finish the next one).
    record: list[str] = []
    a, b, c = ex("a"), ex("b"), ex("c")

    async def runner(job: Job, release: Callable[[], None]) -> None:
        record.append(f"{job.name} start")
        if job is a:
            release()
            return
        await job.proceed.wait()
        record.append(f"{job.name} end")

    async with open_mailbox(runner) as mailbox:
        for job in (a, b, c):
            mailbox.deliver(job)
        await settle()
        assert record == ["a start", "b start"]
        assert mailbox.running_exclusive is b
        assert mailbox.statistics() == stats(1, True, 0)
        b.proceed.set()
        c.proceed.set()
    assert record == ["a start", "b start", "b end", "c start", "c end"]
    assert mailbox.idle


async def test_Mailbox_runner_exception_releases_the_key() -> None:
    # The task's error is caught by the spawn wrapper here, so the task group keeps
    # running and we can watch the next exclusive envelope start normally.
    recorder = Recorder()
    errors: list[BaseException] = []

    def catching(fn: Task) -> Task:
        async def task() -> None:
            try:
                await fn()
            except ValueError as exc:
                errors.append(exc)

        return task

    boom, b = ex("boom", fail=True), ex("b")
    async with open_mailbox(recorder, spawn_wrapper=catching) as mailbox:
        mailbox.deliver(boom)
        mailbox.deliver(b)
        await settle()
        assert recorder.record == ["boom start"]
        boom.proceed.set()
        await settle()
        assert recorder.record == ["boom start", "boom raises", "b start"]
        assert [str(e) for e in errors] == ["boom"]
        assert mailbox.running_exclusive is b
        b.proceed.set()
        await settle()
        assert mailbox.idle


async def test_Mailbox_runner_exception_propagates_and_releases() -> None:
    recorder = Recorder()
    boom, b = ex("boom", fail=True), ex("b")
    boom.proceed.set()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match=r"^boom$")):
        async with open_mailbox(recorder) as mailbox:
            mailbox.deliver(boom)
            mailbox.deliver(b)
    # boom released the key on its way out, so b started before the task group's
    # cancellation reached it (b was cancelled while waiting and released in turn).
    assert recorder.record == ["boom start", "boom raises", "b start"]
    assert mailbox.running_exclusive is None
    assert mailbox.idle


async def test_Mailbox_shared_run_beside_blocked_exclusive() -> None:
    recorder = Recorder()
    x, y = ex("x"), ex("y")
    s1, s2 = sh("s1"), sh("s2")
    async with open_mailbox(recorder) as mailbox:
        for job in (x, y, s1, s2):
            mailbox.deliver(job)
            await settle()  # one at a time, so the record order is deterministic
        assert recorder.record == ["x start", "s1 start", "s2 start"]
        assert mailbox.statistics() == stats(1, True, 2)

        # Shared ones finish while x still holds the key, and free nothing for y.
        s2.proceed.set()
        await settle()
        assert recorder.record == ["x start", "s1 start", "s2 start", "s2 end"]
        assert mailbox.running_exclusive is x
        assert mailbox.statistics() == stats(1, True, 1)

        # A shared one delivered now starts at once too.
        s3 = sh("s3")
        mailbox.deliver(s3)
        await settle()
        assert recorder.record[-1] == "s3 start"
        assert mailbox.statistics() == stats(1, True, 2)

        for job in (x, y, s1, s3):
            job.proceed.set()
    assert mailbox.idle


async def test_Mailbox_exclusive_does_not_wait_for_running_shared() -> None:
    recorder = Recorder()
    s, x = sh("s"), ex("x")
    async with open_mailbox(recorder) as mailbox:
        mailbox.deliver(s)
        await settle()
        mailbox.deliver(x)
        await settle()
        assert recorder.record == ["s start", "x start"]
        assert mailbox.statistics() == stats(0, True, 1)
        x.proceed.set()
        await settle()
        assert recorder.record == ["s start", "x start", "x end"]
        assert mailbox.statistics() == stats(0, False, 1)
        assert not mailbox.idle
        s.proceed.set()
        await settle()
        assert mailbox.idle


async def test_Mailbox_idle_after_all_done() -> None:
    recorder = Recorder()
    a, b, s = ex("a"), ex("b"), sh("s")
    async with open_mailbox(recorder) as mailbox:
        assert mailbox.idle
        mailbox.deliver(a)
        assert not mailbox.idle
        await settle()
        mailbox.deliver(b)
        mailbox.deliver(s)
        await settle()

        s.proceed.set()
        await settle()
        a.proceed.set()
        await settle()
        assert not mailbox.idle  # b runs

        b.proceed.set()
        await settle()
        assert mailbox.idle
        assert mailbox.statistics() == stats(0, False, 0)
        assert recorder.record == ["a start", "s start", "s end", "a end", "b start", "b end"]


async def test_Mailbox_idle_means_released_not_returned() -> None:
    # "Finished" is "released": a runner that handed the key on and is still running
    # (waiting for its writes to be durable) no longer counts. The runtime tracks those
    # commits itself before it drops an idle activation.
    recorder = Recorder()
    a = ex("a", release_early=True)
    async with open_mailbox(recorder) as mailbox:
        mailbox.deliver(a)
        await settle()
        assert recorder.record == ["a start", "a released"]
        assert mailbox.idle
        a.proceed.set()
    assert recorder.record == ["a start", "a released", "a end"]
    assert mailbox.idle


async def test_Mailbox_cancel_queued() -> None:
    recorder = Recorder()
    a, b, c = ex("a"), ex("b"), ex("c")
    async with open_mailbox(recorder) as mailbox:
        for job in (a, b, c):
            mailbox.deliver(job)
        await settle()
        assert mailbox.cancel_queued(b) is True
        assert mailbox.statistics() == stats(1, True, 0)
        # Not queued any more, running, or never delivered: nothing to remove.
        assert mailbox.cancel_queued(b) is False
        assert mailbox.cancel_queued(a) is False
        assert mailbox.cancel_queued(ex("stranger")) is False
        assert mailbox.running_exclusive is a

        a.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end", "c start"]
        c.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end", "c start", "c end"]
        assert mailbox.idle
        assert not b.proceed.is_set()


async def test_Mailbox_cancel_every_queued_envelope() -> None:
    # Cancelling all that waits leaves only the running envelope; once it ends the
    # mailbox is idle, and no cancelled envelope ever started.
    recorder = Recorder()
    a, b, c = ex("a"), ex("b"), ex("c")
    async with open_mailbox(recorder) as mailbox:
        for job in (a, b, c):
            mailbox.deliver(job)
        assert mailbox.cancel_queued(c)
        assert mailbox.cancel_queued(b)
        assert mailbox.statistics() == stats(0, True, 0)
        assert not mailbox.idle  # a is running
        a.proceed.set()
        await settle()
        assert recorder.record == ["a start", "a end"]
        assert mailbox.idle


@attrs.define
class Relayer:
    """A runner that relays: each job records the task it ran in, then hands the key on
    with ``relay()`` and returns at once (as the executor does once its commit is queued)."""

    tasks: dict[str, object] = attrs.field(factory=dict)
    relayed: dict[str, bool] = attrs.field(factory=dict)
    spawned: int = 0
    fail: set[str] = attrs.field(factory=set)

    async def __call__(self, job: Job, release: Release) -> None:
        await job.proceed.wait()
        self.tasks[job.name] = anyio.get_current_task().id
        self.relayed[job.name] = release.relay()
        if job.name in self.fail:
            raise ValueError(job.name)


async def test_Mailbox_relay_runs_the_queued_successors_in_the_same_task() -> None:
    relayer = Relayer()
    spawned: list[Task] = []

    def counting(fn: Task) -> Task:
        spawned.append(fn)
        return fn

    jobs = [ex(name) for name in "abcd"]
    async with open_mailbox(relayer, spawn_wrapper=counting) as mailbox:
        for job in jobs:
            mailbox.deliver(job)
        for job in jobs:
            job.proceed.set()
        await settle()
        # One task ran the four, in order; no task was spawned for b, c or d.
        assert len(spawned) == 1
        assert len(set(relayer.tasks.values())) == 1
        assert list(relayer.tasks) == ["a", "b", "c", "d"]
        assert relayer.relayed == {"a": True, "b": True, "c": True, "d": False}
        assert mailbox.idle


async def test_Mailbox_relay_is_bounded_then_the_next_envelope_gets_a_task() -> None:
    relayer = Relayer()
    spawned: list[Task] = []

    def counting(fn: Task) -> Task:
        spawned.append(fn)
        return fn

    jobs = [ex(f"j{i}") for i in range(MAX_RELAYS + 3)]
    async with open_mailbox(relayer, spawn_wrapper=counting) as mailbox:
        for job in jobs:
            job.proceed.set()
            mailbox.deliver(job)
        await settle()
        # The first task runs its own envelope and relays MAX_RELAYS more; the next one
        # is spawned as usual, so a long queue cannot hold the loop.
        assert len(spawned) == 2
        assert relayer.relayed[jobs[MAX_RELAYS - 1].name] is True
        assert relayer.relayed[jobs[MAX_RELAYS].name] is False
        assert list(relayer.tasks) == [job.name for job in jobs]
        assert mailbox.idle


async def test_Mailbox_a_runner_that_raises_after_relaying_still_starts_its_successor() -> None:
    relayer = Relayer(fail={"a"})
    errors: list[str] = []

    def catching(fn: Task) -> Task:
        async def task() -> None:
            try:
                await fn()
            except ValueError as exc:
                errors.append(str(exc))

        return task

    a, b = ex("a"), ex("b")
    a.proceed.set()
    b.proceed.set()
    async with open_mailbox(relayer, spawn_wrapper=catching) as mailbox:
        mailbox.deliver(a)
        mailbox.deliver(b)
        await settle()
        assert errors == ["a"]  # a's error reached its task
        assert relayer.relayed["a"] is True
        assert "b" in relayer.tasks  # and b still ran, in a task of its own
        assert mailbox.idle


async def test_Mailbox_relay_from_a_claimed_envelope_spawns_the_successor() -> None:
    relayer = Relayer()
    a, b = ex("a"), ex("b")
    b.proceed.set()
    async with open_mailbox(relayer) as mailbox:
        release = mailbox.try_claim(a)
        assert release is not None
        mailbox.deliver(b)
        # The caller's task runs a and goes on with its own work: it cannot take b over.
        assert release.relay() is False
        await settle()
        assert "b" in relayer.tasks
        assert release.relay() is False  # released once only
        assert mailbox.idle


def test_NO_RELEASE_has_nothing_to_hand_on() -> None:
    NO_RELEASE()
    assert NO_RELEASE.relay() is False
