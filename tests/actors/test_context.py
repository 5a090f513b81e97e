"""Contexts: which capabilities each handler kind gets, and that only the runtime makes them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import actors
from actors.testing import LoopClock

if TYPE_CHECKING:
    from pathlib import Path


OBJECT_CONTEXT_API = [
    "get",
    "set",
    "clear",
    "clear_all",
    "state_keys",
    "key",
    "invocation_id",
    "call",
    "send",
]
WRITE_METHODS = ["set", "clear", "clear_all"]


@pytest.mark.parametrize("name", OBJECT_CONTEXT_API)
def test_ObjectContext_has_the_exclusive_api(name: str) -> None:
    assert hasattr(actors.ObjectContext, name)


@pytest.mark.parametrize("name", ["get", "state_keys", "key", "invocation_id", "call", "send"])
def test_ObjectSharedContext_has_the_read_api(name: str) -> None:
    assert hasattr(actors.ObjectSharedContext, name)


@pytest.mark.parametrize("name", WRITE_METHODS)
def test_ObjectSharedContext_has_no_write_methods(name: str) -> None:
    assert not hasattr(actors.ObjectSharedContext, name)


@pytest.mark.parametrize("name", ["invocation_id", "call", "send"])
def test_Context_has_the_service_api(name: str) -> None:
    assert hasattr(actors.Context, name)


@pytest.mark.parametrize("name", ["key", "get", "state_keys", *WRITE_METHODS])
def test_Context_has_no_key_and_no_state(name: str) -> None:
    assert not hasattr(actors.Context, name)


@pytest.mark.parametrize(
    "cls",
    [actors.Context, actors.ObjectSharedContext, actors.ObjectContext, actors.InvocationHandle],
)
def test_runtime_objects_have_no_public_constructor(cls: type) -> None:
    with pytest.raises(TypeError, match=r"has no public constructor$"):
        cls()


def test_Runtime_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"^actors\._runtime\.Runtime has no public constructor$"):
        actors.Runtime()  # type: ignore[call-arg]


class Inspector(actors.VirtualObject):
    """Records the context each handler kind receives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, type, str, str]] = []

    @actors.exclusive
    async def write(self, ctx: actors.ObjectContext) -> str:
        self.seen.append(("exclusive", type(ctx), ctx.key, ctx.invocation_id))
        return ctx.invocation_id

    @actors.shared
    async def read(self, ctx: actors.ObjectSharedContext) -> str:
        self.seen.append(("shared", type(ctx), ctx.key, ctx.invocation_id))
        return ctx.invocation_id

    @actors.exclusive
    async def put(self, ctx: actors.ObjectContext, value: int) -> int:
        ctx.set("n", value)
        return value

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)

    @actors.shared(retry=actors.RetryPolicy(initial_interval=0.001, max_attempts=2))
    async def sneaky_write(self, ctx: actors.ObjectSharedContext, value: int) -> int:
        # A shared handler that ignores its type: the write method does not exist.
        ctx.set("n", value)  # type: ignore[attr-defined]
        return value


class ServiceInspector(actors.Service):
    def __init__(self) -> None:
        self.seen: list[tuple[type, str]] = []

    @actors.handler
    async def look(self, ctx: actors.Context) -> str:
        self.seen.append((type(ctx), ctx.invocation_id))
        return ctx.invocation_id


async def test_each_handler_kind_gets_its_context(tmp_path: Path) -> None:
    inspector = Inspector()
    service = ServiceInspector()
    async with actors.open_runtime(tmp_path / "db", [inspector, service]) as rt:
        h = await rt.send(Inspector.write, key="alice")
        assert await h.result() == h.invocation_id
        shared_id = await rt.call(Inspector.read, key="bob")
        service_id = await rt.call(ServiceInspector.look)
    assert inspector.seen == [
        ("exclusive", actors.ObjectContext, "alice", h.invocation_id),
        ("shared", actors.ObjectSharedContext, "bob", shared_id),
    ]
    assert service.seen == [(actors.Context, service_id)]
    assert len({h.invocation_id, shared_id, service_id}) == 3
    assert all(i.startswith("inv_") for i in (h.invocation_id, shared_id, service_id))


async def test_shared_handler_that_writes_fails_and_changes_nothing(tmp_path: Path) -> None:
    # No retry fixes a write from a shared handler: it is a TerminalError on the first
    # attempt (tests/actors/test_misuse.py), and the object stays usable.
    async with actors.open_runtime(
        tmp_path / "db", [Inspector], commit_mode="inline", clock=LoopClock()
    ) as rt:
        assert await rt.call(Inspector.put, 1, key="k") == 1
        handle = await rt.send(Inspector.sneaky_write, 2, key="k")
        with pytest.raises(actors.TerminalError, match="not available in a shared handler"):
            await handle.result()
        assert rt.statistics().paused == 0
        assert await rt.call(Inspector.value, key="k") == 1
        assert await rt.call(Inspector.put, 3, key="k") == 3
        assert await rt.call(Inspector.value, key="k") == 3
