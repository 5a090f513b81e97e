"""The runtime starts its own tasks (revived invocations, a mailbox's next, service
calls) through ``Kernel.start_soon``: under trio straight on the task group's nursery,
without anyio's per-task ``TaskHandle`` (a coroutine, cancel scope and event more per
task, alive as long as it), with the task group's structure kept: a task's failure
cancels its siblings and leaves the group, and cancelling the group cancels the task."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
import sniffio
import trio
import trio.lowlevel

from actors._loop_primitives import start_soon_of


async def test_tasks_run_with_their_arguments_in_the_group(async_backend: str) -> None:
    seen: list[int] = []

    async def task(value: int) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(value)

    async with anyio.create_task_group() as tg:
        start_soon = start_soon_of(tg)
        start_soon(task, 1)
        start_soon(task, 2)
    assert sorted(seen) == [1, 2]
    assert sniffio.current_async_library() == async_backend


@pytest.mark.trio_only
async def test_under_trio_the_task_is_the_coroutine_itself() -> None:
    codes: list[object] = []

    async def task() -> None:
        codes.append(trio.lowlevel.current_task().coro.cr_code)

    async with anyio.create_task_group() as tg:
        start_soon_of(tg)(task)
    # anyio's own start_soon would run TaskHandle._run_coro, which awaits ``task``.
    assert codes == [task.__code__]


async def test_a_failing_task_cancels_its_siblings_and_leaves_the_group() -> None:
    cancelled = anyio.Event()

    async def sibling() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("boom")

    with pytest.raises(ExceptionGroup) as caught:
        async with anyio.create_task_group() as tg:
            start_soon = start_soon_of(tg)
            start_soon(sibling)
            start_soon(failing)
    assert caught.group_contains(ValueError, match="boom")
    assert cancelled.is_set()


async def test_cancelling_the_group_cancels_the_task() -> None:
    ended = anyio.Event()

    async def task() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.set()

    async with anyio.create_task_group() as tg:
        start_soon_of(tg)(task)
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert ended.is_set()
