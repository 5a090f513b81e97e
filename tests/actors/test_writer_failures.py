"""Commit failures at the runtime level, the rest (DESIGN.md invariant 13; issue 12, item
3): step commits that fail do not use up the retry policy, a failed acceptance is the
caller's ``PersistenceError`` (507 over HTTP), a writer thread that dies stops the runtime
with a ``PersistenceError`` (nothing spins, nobody hangs), and the lifecycle rows of a
failed completion (completions themselves: test_commit_failures.py).

Every test runs with inline commits and with the writer thread, under trio and asyncio
(tests/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest

import actors
import actors.testing
from actors._lifecycle import Action, Event, Lifecycle, LifecycleError, Phase
from actors.storage import Table, WriteBatch

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from actors.storage import CommitMode

from commit_failure_actors import FAST, Box, Disk, _open, acceptance, completion, modes, step

# --- steps and acceptances --------------------------------------------------------------------


@modes
async def test_step_commit_failures_do_not_use_up_the_retry_policy(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    box = Box()
    disk = Disk(step, full_for=4)
    async with actors.open_runtime(
        tmp_path / "db", [box], commit_mode=commit_mode, retry=FAST, _fault_hook=disk
    ) as rt:
        disk.full = True
        handle = await rt.send(Box.two_steps, key="s")
        # max_attempts=2, but a full disk is not the handler's failure: it is retried
        # until the store takes the step, not paused after two attempts.
        await disk.failed(4)
        assert await handle.result() == 5
        assert rt.statistics().paused == 0
    assert len(box.bodies) == 5  # the first body ran again each time its result was lost


@modes
async def test_a_send_whose_acceptance_fails_is_told_the_disk_is_full(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    disk = Disk(acceptance)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        disk.full = True
        with pytest.raises(actors.PersistenceError, match=r"failed: disk full") as info:
            await rt.send(Box.put, 1, key="a")
        assert str(tmp_path / "db") in str(info.value)
        assert rt._store.scan(Table.INVOCATIONS) == []  # nothing was accepted
        assert rt._store.scan(Table.INBOX) == []
        disk.full = False
        handle = await rt.send(Box.put, 2, key="a")
        assert await handle.result() == 2


@modes
async def test_over_http_a_full_disk_is_507_naming_no_path(
    tmp_path: Path, commit_mode: CommitMode
) -> None:
    import httpx

    from actors._ingress import IngressApp

    disk = Disk(acceptance)
    async with _open(tmp_path / "db", commit_mode, disk) as rt:
        transport = httpx.ASGITransport(app=IngressApp(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            disk.full = True
            answer = await client.post("/Box/a/put/send", content=b"1")
            assert answer.status_code == 507, answer.text
            body = answer.json()
            assert body["code"] == 507
            assert "disk full" in body["message"]
            assert str(tmp_path) not in body["message"]
            disk.full = False
            answer = await client.post("/Box/a/put", content=b"2")
            assert (answer.status_code, answer.json()) == (200, 2)


# --- a writer thread that dies ----------------------------------------------------------------


class WriterBug(BaseException):
    """Stands for anything that kills the writer thread."""


class Deadly:
    """A ``_fault_hook`` that kills the writer thread at the first commit ``kills`` picks."""

    def __init__(self, kills: Callable[[WriteBatch], bool]) -> None:
        self.kills = kills

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if any(self.kills(batch) for batch in batches):
            raise WriterBug("the writer thread dies here")


DIED = r"takes no more writes: its writer thread died of WriterBug"


async def _result_outside(
    handle: actors.InvocationHandle, errors: list[BaseException], done: anyio.Event
) -> None:
    """Wait for ``handle`` from a task outside the runtime (the runtime's stop cancels
    the block's body, not this): it must be answered."""
    try:
        await handle.result()
    except BaseException as exc:
        errors.append(exc)
    finally:
        done.set()


async def test_a_dead_writer_fails_the_waiting_caller_and_stops_the_runtime(
    tmp_path: Path,
) -> None:
    deadly = Deadly(completion)
    errors: list[BaseException] = []
    answered = anyio.Event()
    with anyio.fail_after(30):  # a safety net: the runtime must stop by itself
        async with anyio.create_task_group() as outside:
            with pytest.raises(actors.PersistenceError, match=DIED):
                async with actors.open_runtime(
                    tmp_path / "db", [Box()], commit_mode="thread", retry=FAST, _fault_hook=deadly
                ) as rt:
                    handle = await rt.send(Box.put, 1, key="a")
                    outside.start_soon(_result_outside, handle, errors, answered)
                    await anyio.sleep_forever()  # the runtime stops, and cancels this
            await answered.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], actors.PersistenceError), errors
    assert "writer thread died" in str(errors[0])
    # The store was closed cleanly: reopened, the accepted invocation completes.
    async with _open(tmp_path / "db", "inline", None) as rt:
        assert await rt.attach(handle.invocation_id) == 1
        assert await rt.call(Box.get, key="a") == 1


def _marker(batch: WriteBatch) -> bool:
    return any(key == b"kill the writer" for _, _, key, _ in batch.ops)


@pytest.mark.timeout(30)  # the old runtime spun here, synchronously: no anyio timeout helps
async def test_a_completion_after_the_writer_died_unnoticed_does_not_spin(
    tmp_path: Path,
) -> None:
    box = Box()
    errors: list[BaseException] = []
    answered = anyio.Event()
    async with anyio.create_task_group() as outside:
        with pytest.raises(actors.PersistenceError, match=DIED):
            async with actors.open_runtime(
                tmp_path / "db", [box], commit_mode="thread", _fault_hook=Deadly(_marker)
            ) as rt:
                handle = await rt.send(Box.slow, key="w")
                outside.start_soon(_result_outside, handle, errors, answered)
                # The writer dies on a batch nobody waits for: the runtime learns of it
                # only when the running handler completes.
                batch = WriteBatch()
                batch.put(Table.META, b"kill the writer", b"1")
                rt._store.submit(batch)
                await anyio.to_thread.run_sync(rt._store._writer.join)
                box.release.set()
                await anyio.sleep_forever()  # the runtime stops, and cancels this
        await answered.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], actors.PersistenceError), errors
    assert "writer thread died" in str(errors[0])


async def test_requests_after_the_runtime_stopped_get_the_persistence_error(
    tmp_path: Path,
) -> None:
    deadly = Deadly(acceptance)
    runtime: list[actors.Runtime] = []
    with pytest.raises(actors.PersistenceError, match=DIED):
        async with actors.open_runtime(
            tmp_path / "db", [Box()], commit_mode="thread", retry=FAST, _fault_hook=deadly
        ) as rt:
            runtime.append(rt)
            with pytest.raises(actors.PersistenceError, match=DIED):
                await rt.send(Box.put, 1, key="a")
            await anyio.sleep_forever()
    with pytest.raises(actors.PersistenceError, match=DIED):
        await runtime[0].call(Box.put, 2, key="a")


# --- the lifecycle rows -----------------------------------------------------------------------


def test_a_failed_completion_is_committed_again_and_nothing_else_changes() -> None:
    for ending, durable in ((Phase.COMPLETING, Phase.COMPLETED),):
        life = Lifecycle(phase=Phase.RUNNING)
        life.apply(Event.COMPLETE)
        assert life.phase is ending
        assert life.apply(Event.COMMIT_FAILED) == (Action.RECOMMIT,)
        assert life.phase is ending  # still completing: its outcome is settled
        assert life.apply(Event.CANCEL) == (Action.REJECT_COMPLETED,)
        life.apply(Event.DURABLE)
        assert life.phase is durable
    killed = Lifecycle(phase=Phase.KILLING)
    killed.apply(Event.COMPLETE)
    assert killed.apply(Event.COMMIT_FAILED) == (Action.RECOMMIT,)
    assert killed.phase is Phase.KILL_COMPLETING
    with pytest.raises(LifecycleError):
        Lifecycle(phase=Phase.RUNNING).apply(Event.COMMIT_FAILED)


def test_step_failures_count_apart_from_handler_failures() -> None:
    life = Lifecycle(phase=Phase.RUNNING)
    assert life.apply(Event.STEP_FAILED) == (Action.COUNT_COMMIT_FAILURE, Action.SCHEDULE_RETRY)
    assert (life.failures, life.commit_failures) == (0, 1)
    life.apply(Event.RETRY)
    life.apply(Event.START)
    life.apply(Event.FAIL)
    assert (life.failures, life.commit_failures) == (1, 1)
