"""The hot path's cancel scope and checkpoint: trio's own under trio, anyio's under
asyncio, and the same behaviour from both."""

from __future__ import annotations

import anyio
import pytest
import sniffio
import trio

from actors._loop_primitives import checkpoint, loop_primitives, new_event


async def test_the_primitives_are_the_running_loops() -> None:
    primitives = loop_primitives()
    scope = primitives.cancel_scope()
    if sniffio.current_async_library() == "trio":
        assert type(scope) is trio.CancelScope
    else:
        assert isinstance(scope, anyio.CancelScope)


async def test_a_cancelled_scope_stops_its_body_at_the_checkpoint() -> None:
    primitives = loop_primitives()
    reached = False
    with primitives.cancel_scope() as scope:
        await primitives.checkpoint_if_cancelled()  # not cancelled: returns
        scope.cancel()
        assert scope.cancel_called
        await primitives.checkpoint_if_cancelled()
        reached = True
    assert scope.cancelled_caught
    assert not reached


async def test_the_checkpoint_does_not_yield_when_not_cancelled() -> None:
    primitives = loop_primitives()
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        for _ in range(3):
            await primitives.checkpoint_if_cancelled()
        order.append("checkpoints done")
    assert order == ["checkpoints done", "other"]


def test_outside_an_event_loop_it_says_so() -> None:
    with pytest.raises(RuntimeError, match="no event loop is running"):
        loop_primitives()


async def test_new_event_and_checkpoint_are_the_running_loops() -> None:
    event = new_event()
    if sniffio.current_async_library() == "trio":
        assert type(event) is trio.Event
    else:
        assert isinstance(event, anyio.Event)
    async with anyio.create_task_group() as tg:

        async def setter() -> None:
            await checkpoint()
            event.set()

        tg.start_soon(setter)
        await event.wait()
    assert event.is_set()
