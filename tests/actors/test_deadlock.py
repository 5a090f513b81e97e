"""Deadlock detection: an exclusive call that would close a wait-for cycle fails at once
with DeadlockError (a 409 TerminalError naming the cycle) instead of hanging."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import actors

if TYPE_CHECKING:
    from pathlib import Path


class Node(actors.VirtualObject):
    """``hop(path)`` calls ``hop(path[1:])`` on key ``path[0]``: a chain of exclusive calls."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.entered: dict[str, anyio.Event] = {}

    def entered_event(self, key: str) -> anyio.Event:
        return self.entered.setdefault(key, anyio.Event())

    @actors.exclusive
    async def hop(self, ctx: actors.ObjectContext, path: list[str]) -> str:
        visits = (await ctx.get("visits", int)) or 0
        ctx.set("visits", visits + 1)
        if not path:
            return ctx.key
        inner = await ctx.call(Node.hop, path[1:], key=path[0])
        return f"{ctx.key}>{inner}"

    @actors.exclusive
    async def hold_then_call(self, ctx: actors.ObjectContext, other: str) -> str:
        self.entered_event(ctx.key).set()
        await self.gate.wait()
        inner = await ctx.call(Node.hop, [], key=other)
        return f"{ctx.key}>{inner}"

    @actors.exclusive
    async def catch_deadlock(self, ctx: actors.ObjectContext, path: list[str]) -> str:
        try:
            return await ctx.call(Node.hop, path[1:], key=path[0])
        except actors.DeadlockError as exc:
            return f"caught {exc.status_code}"

    @actors.shared
    async def peek(self, ctx: actors.ObjectSharedContext, path: list[str]) -> str:
        # A shared handler holds no key: calling back into its own key is fine.
        return await ctx.call(Node.hop, path, key=ctx.key)

    @actors.exclusive
    async def call_own_shared(self, ctx: actors.ObjectContext) -> int:
        # The key is held by this invocation; a shared handler of it does not need it.
        return await ctx.call(Node.visits, key=ctx.key)

    @actors.shared
    async def relay_exclusive(self, ctx: actors.ObjectSharedContext, target: str) -> str:
        return await ctx.call(Node.hop, [], key=target)

    @actors.exclusive
    async def via_shared(self, ctx: actors.ObjectContext, relay_key: str) -> str:
        # ctx.key (held) -> relay_key.relay_exclusive (shared) -> exclusive on ctx.key
        return await ctx.call(Node.relay_exclusive, ctx.key, key=relay_key)

    @actors.shared
    async def visits(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("visits", int)) or 0


async def call_expecting_deadlock(
    rt: actors.Runtime, path: list[str], key: str
) -> actors.DeadlockError:
    with anyio.fail_after(30), pytest.raises(actors.DeadlockError) as info:
        await rt.call(Node.hop, path, key=key)
    return info.value


async def assert_keys_usable(rt: actors.Runtime, keys: list[str]) -> None:
    with anyio.fail_after(30):
        for key in keys:
            assert await rt.call(Node.hop, [], key=key) == key


async def test_A_B_A_deadlock_is_detected(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        error = await call_expecting_deadlock(rt, ["b", "a"], key="a")
        assert isinstance(error, actors.TerminalError)
        assert error.status_code == 409
        assert str(error) == error.message
        assert error.message.startswith(
            "deadlock: exclusive call Node.hop on key 'a' from Node.hop would wait forever: "
        )
        cycle = error.message.split("would wait forever: ", 1)[1]
        # b's call waits for key a, held by a's invocation, which waits for key b, held by b's.
        assert cycle == "Node/b.hop -> Node/a -> Node/a.hop -> Node/b -> Node/b.hop"
        await assert_keys_usable(rt, ["a", "b"])


async def test_A_B_C_A_deadlock_is_detected(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        error = await call_expecting_deadlock(rt, ["b", "c", "a"], key="a")
        assert error.status_code == 409
        assert "on key 'a'" in error.message
        cycle = error.message.split("would wait forever: ", 1)[1]
        assert cycle == (
            "Node/c.hop -> Node/a -> Node/a.hop -> Node/b -> Node/b.hop -> Node/c -> Node/c.hop"
        )
        await assert_keys_usable(rt, ["a", "b", "c"])


async def test_self_call_deadlock_is_detected(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        error = await call_expecting_deadlock(rt, ["a"], key="a")
        assert error.status_code == 409
        assert error.message.endswith("would wait forever: Node/a.hop -> Node/a -> Node/a.hop")
        await assert_keys_usable(rt, ["a"])


async def test_deadlock_through_a_service_is_detected(tmp_path: Path) -> None:
    # Via/a -> Hub (a service: no key) -> Back/b -> Via/a
    class Via(actors.VirtualObject):
        @actors.exclusive
        async def go(self, ctx: actors.ObjectContext) -> str:
            return await ctx.call(Hub.forward, "b")

    class Hub(actors.Service):
        @actors.handler
        async def forward(self, ctx: actors.Context, key: str) -> str:
            return await ctx.call(Back.back, key=key)

    class Back(actors.VirtualObject):
        @actors.exclusive
        async def back(self, ctx: actors.ObjectContext) -> str:
            return await ctx.call(Via.go, key="a")

    async with actors.open_runtime(tmp_path / "db", [Via, Hub, Back]) as rt:
        with anyio.fail_after(30), pytest.raises(actors.DeadlockError) as info:
            await rt.call(Via.go, key="a")
        assert info.value.status_code == 409
        assert "Via/a" in info.value.message
        assert "Back/b" in info.value.message


async def test_deadlock_between_independent_invocations(tmp_path: Path) -> None:
    node = Node()
    outcomes: dict[str, str] = {}
    errors: dict[str, actors.DeadlockError] = {}

    async def run(rt: actors.Runtime, key: str, other: str) -> None:
        try:
            outcomes[key] = await rt.call(Node.hold_then_call, other, key=key)
        except actors.DeadlockError as exc:
            errors[key] = exc
            outcomes[key] = "deadlock"

    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [node]) as rt:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, rt, "a", "b")
                tg.start_soon(run, rt, "b", "a")
                await node.entered_event("a").wait()  # each one holds its own key
                await node.entered_event("b").wait()
                node.gate.set()
            # One call closes the cycle and fails; the other then gets the key it waited for.
            assert sorted(outcomes.items()) in (
                [("a", "a>b"), ("b", "deadlock")],
                [("a", "deadlock"), ("b", "b>a")],
            )
            [(loser, error)] = errors.items()
            other = "b" if loser == "a" else "a"
            assert error.status_code == 409
            assert error.message.endswith(
                f"would wait forever: Node/{loser}.hold_then_call -> Node/{other} -> "
                f"Node/{other}.hold_then_call -> Node/{loser} -> Node/{loser}.hold_then_call"
            )
            await assert_keys_usable(rt, ["a", "b"])


async def test_no_deadlock_for_shared_callback_or_distinct_keys(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        with anyio.fail_after(30):
            assert await rt.call(Node.hop, ["b", "c", "d"], key="a") == "a>b>c>d"
            assert await rt.call(Node.peek, ["b"], key="a") == "a>b"
            assert await rt.call(Node.call_own_shared, key="a") == 2  # two hops visited "a"


async def test_deadlock_through_a_shared_handler_is_detected(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        with anyio.fail_after(30), pytest.raises(actors.DeadlockError) as info:
            await rt.call(Node.via_shared, "b", key="a")
        assert info.value.status_code == 409
        assert "Node/a" in info.value.message
        assert "Node/b.relay_exclusive" in info.value.message
        await assert_keys_usable(rt, ["a", "b"])


async def test_caught_DeadlockError_leaves_the_caller_running(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        with anyio.fail_after(30):
            assert await rt.call(Node.catch_deadlock, ["a"], key="a") == "caught 409"
            await assert_keys_usable(rt, ["a"])


async def test_deadlocked_invocation_writes_are_kept_like_any_TerminalError(
    tmp_path: Path,
) -> None:
    # A DeadlockError is a TerminalError: state written before it is kept (Restate semantics).
    async with actors.open_runtime(tmp_path / "db", [Node]) as rt:
        await call_expecting_deadlock(rt, ["b", "a"], key="a")
        assert await rt.call(Node.visits, key="a") == 1
        assert await rt.call(Node.visits, key="b") == 1


class Imitator(actors.Service):
    """Raises a TerminalError whose text looks like a deadlock's."""

    @actors.handler
    async def fail(self, ctx: actors.Context) -> None:
        raise actors.TerminalError("deadlock: not really", 409)

    @actors.handler
    async def relay(self, ctx: actors.Context) -> None:
        await ctx.call(Imitator.fail)


@pytest.mark.parametrize("handler", ["fail", "relay"])
async def test_a_users_TerminalError_that_reads_like_a_deadlock_is_not_a_DeadlockError(
    tmp_path: Path, handler: str
) -> None:
    async with actors.open_runtime(tmp_path / "db", [Imitator]) as rt:
        with pytest.raises(actors.TerminalError, match=r"^deadlock: not really$") as info:
            await rt.call(getattr(Imitator, handler))
        assert type(info.value) is actors.TerminalError
        assert info.value.status_code == 409
        handle = await rt.send(getattr(Imitator, handler))  # through the stored record
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert type(info.value) is actors.TerminalError
