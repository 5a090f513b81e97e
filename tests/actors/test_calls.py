"""Calls between actors: ctx.call and ctx.send, derived invocation ids, and
exactly-once delivery when a caller re-executes after a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import actors
from actors._util import derived_invocation_id

if TYPE_CHECKING:
    from pathlib import Path


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"

    @actors.handler
    async def add_via_service(self, ctx: actors.Context, key: str) -> int:
        return await ctx.call(Counter.add, 10, key=key)


class Recorder(actors.VirtualObject):
    """Counts deliveries durably (state) and in memory (``deliveries``)."""

    def __init__(self, deliveries: list[str] | None = None) -> None:
        self.deliveries = deliveries if deliveries is not None else []

    @actors.exclusive
    async def record(self, ctx: actors.ObjectContext, item: str) -> int:
        self.deliveries.append(item)
        n = (await ctx.get("count", int)) or 0
        ctx.set("count", n + 1)
        return n + 1

    @actors.shared
    async def count(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("count", int)) or 0


class Caller(actors.VirtualObject):
    @actors.exclusive
    async def call_counter(self, ctx: actors.ObjectContext, key: str) -> int:
        first = await ctx.call(Counter.add, 1, key=key)
        second = await ctx.call(Counter.add, 2, key=key)
        ctx.set("last", second)
        return first * 100 + second

    @actors.exclusive
    async def call_service(self, ctx: actors.ObjectContext, name: str) -> str:
        return await ctx.call(Greeter.greet, name)

    @actors.shared
    async def call_from_shared(self, ctx: actors.ObjectSharedContext, key: str) -> int:
        return await ctx.call(Counter.add, 5, key=key)

    @actors.exclusive
    async def send_twice(self, ctx: actors.ObjectContext, key: str) -> list[str]:
        h1 = await ctx.send(Recorder.record, "one", key=key)
        h2 = await ctx.send(Recorder.record, "two", key=key)
        assert h1.status == h2.status == "Accepted"
        return [ctx.invocation_id, h1.invocation_id, h2.invocation_id]

    @actors.exclusive
    async def call_then_send(self, ctx: actors.ObjectContext, key: str) -> list[str]:
        await ctx.call(Counter.add, 1, key=key)
        h = await ctx.send(Recorder.record, "after-call", key=key)
        return [ctx.invocation_id, h.invocation_id]


async def test_ctx_call_returns_the_callee_result(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Caller, Counter, Greeter]) as rt:
        assert await rt.call(Caller.call_counter, "c", key="x") == 1 * 100 + 3
        assert await rt.call(Counter.value, key="c") == 3
        assert await rt.call(Caller.call_service, "ann", key="x") == "hello ann"
        assert await rt.call(Greeter.add_via_service, "c") == 13
        assert await rt.call(Caller.call_from_shared, "c", key="x") == 18


async def test_ctx_call_on_same_key_from_another_object(tmp_path: Path) -> None:
    # Caller/k and Counter/k are different objects: no conflict.
    async with actors.open_runtime(tmp_path / "db", [Caller, Counter]) as rt:
        assert await rt.call(Caller.call_counter, "k", key="k") == 103


class SelfSender(actors.VirtualObject):
    def __init__(self) -> None:
        self.log: list[str] = []

    @actors.exclusive
    async def start(self, ctx: actors.ObjectContext) -> str:
        self.log.append("start begins")
        h = await ctx.send(SelfSender.follow_up, key=ctx.key)
        self.log.append("start ends")
        return h.invocation_id

    @actors.exclusive
    async def follow_up(self, ctx: actors.ObjectContext) -> str:
        self.log.append("follow_up")
        return "done"


async def test_ctx_send_to_own_key_runs_after_the_sender(tmp_path: Path) -> None:
    sender = SelfSender()
    async with actors.open_runtime(tmp_path / "db", [sender]) as rt:
        with anyio.fail_after(30):
            follow_up_id = await rt.call(SelfSender.start, key="k")
            assert await rt.attach(follow_up_id) == "done"
    assert sender.log == ["start begins", "start ends", "follow_up"]


async def test_ctx_send_returns_a_handle_with_a_derived_id(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Caller, Recorder]) as rt:
        h = await rt.send(Caller.send_twice, "r", key="x")
        caller_id, first_id, second_id = await h.result()
        assert caller_id == h.invocation_id
        assert first_id == derived_invocation_id(caller_id, 0)
        assert second_id == derived_invocation_id(caller_id, 1)
        assert first_id != second_id
        assert first_id.startswith("inv_")
        assert await rt.attach(first_id) == 1
        assert await rt.attach(second_id) == 2
        assert await rt.call(Recorder.count, key="r") == 2


async def test_calls_and_sends_share_the_child_index(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Caller, Counter, Recorder]) as rt:
        caller_id, sent_id = await rt.call(Caller.call_then_send, "r", key="x")
        assert sent_id == derived_invocation_id(caller_id, 1)
        assert await rt.attach(sent_id) == 1


async def test_each_invocation_derives_different_ids(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Caller, Recorder]) as rt:
        ids_a = await rt.call(Caller.send_twice, "r", key="x")
        ids_b = await rt.call(Caller.send_twice, "r", key="x")
        assert len(set(ids_a) | set(ids_b)) == 6
        for sent in (*ids_a[1:], *ids_b[1:]):
            await rt.attach(sent)
        assert await rt.call(Recorder.count, key="r") == 4


def test_derived_invocation_id_is_deterministic() -> None:
    assert derived_invocation_id("inv_parent", 0) == derived_invocation_id("inv_parent", 0)
    assert derived_invocation_id("inv_parent", 7) == derived_invocation_id("inv_parent", 7)
    ids = {derived_invocation_id(parent, i) for parent in ("inv_a", "inv_b") for i in range(50)}
    assert len(ids) == 100
    for derived in ids:
        assert derived.startswith("inv_")
        assert derived == derived.lower()
        assert "/" not in derived


# --- exactly-once delivery when the caller re-executes ------------------------------------


class SenderBlocking(actors.VirtualObject, name="Sender"):
    """First life: sends to the recorder, then blocks until the runtime exits."""

    def __init__(self) -> None:
        self.sent = anyio.Event()
        self.statuses: list[str] = []

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext, key: str) -> str:
        h = await ctx.send(Recorder.record, "from-sender", key=key)
        self.statuses.append(h.status)
        self.sent.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


class SenderFree(actors.VirtualObject, name="Sender"):
    """Second life: the same handler, without blocking."""

    def __init__(self) -> None:
        self.statuses: list[str] = []

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext, key: str) -> str:
        h = await ctx.send(Recorder.record, "from-sender", key=key)
        self.statuses.append(h.status)
        return h.invocation_id


class CallerBlocking(actors.VirtualObject, name="Caller2"):
    def __init__(self) -> None:
        self.called = anyio.Event()

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext, key: str) -> int:
        await ctx.call(Recorder.record, "from-caller", key=key)
        self.called.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


class CallerFree(actors.VirtualObject, name="Caller2"):
    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext, key: str) -> int:
        return await ctx.call(Recorder.record, "from-caller", key=key)


async def test_resent_message_after_restart_is_delivered_once(tmp_path: Path) -> None:
    path = tmp_path / "db"
    deliveries: list[str] = []
    first_life = SenderBlocking()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [first_life, Recorder(deliveries)]) as rt:
            h = await rt.send(SenderBlocking.go, "r", key="s")
            await first_life.sent.wait()
            sent_id = derived_invocation_id(h.invocation_id, 0)
            assert await rt.attach(sent_id) == 1  # the recorder finished (durably)
        # The sender was cancelled mid-handler: it resumes when the runtime reopens.
        second_life = SenderFree()
        async with actors.open_runtime(path, [second_life, Recorder(deliveries)]) as rt:
            assert await rt.attach(h.invocation_id) == sent_id
            assert await rt.call(Recorder.count, key="r") == 1
    # The replay returns what the first life saw (its journaled send), and the
    # message was delivered once.
    assert first_life.statuses == ["Accepted"]
    assert second_life.statuses == ["Accepted"]
    assert deliveries == ["from-sender"]


async def test_repeated_call_after_restart_is_answered_from_storage(tmp_path: Path) -> None:
    path = tmp_path / "db"
    deliveries: list[str] = []
    first_life = CallerBlocking()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [first_life, Recorder(deliveries)]) as rt:
            h = await rt.send(CallerBlocking.go, "r", key="c")
            await first_life.called.wait()
        async with actors.open_runtime(path, [CallerFree(), Recorder(deliveries)]) as rt:
            assert await rt.attach(h.invocation_id) == 1
            assert await rt.call(Recorder.count, key="r") == 1
    assert deliveries == ["from-caller"]


async def test_ctx_call_with_bad_input_raises_in_the_caller(tmp_path: Path) -> None:
    class BadCaller(actors.VirtualObject):
        @actors.exclusive
        async def go(self, ctx: actors.ObjectContext) -> str:
            try:
                await ctx.call(Counter.add, "five", key="k")
            except actors.SerializationError as exc:
                return f"caught: {exc}"
            return "no error"  # pragma: no cover

    async with actors.open_runtime(tmp_path / "db", [BadCaller, Counter]) as rt:
        message = await rt.call(BadCaller.go, key="x")
        assert message.startswith("caught: input of Counter.add does not convert to int")
        assert await rt.call(Counter.value, key="k") == 0


async def test_ctx_call_to_unregistered_actor_fails_the_caller(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Caller, Counter]) as rt:
        with pytest.raises(actors.TerminalError, match=r"Recorder") as info:
            await rt.call(Caller.send_twice, "r", key="x")
        assert not isinstance(info.value, actors.DeadlockError)


async def test_calls_alternating_keys_reach_their_own_keys(tmp_path: Path) -> None:
    # The resolver shares a handler's last Target with its next call on the same key.
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        for round_ in range(1, 3):
            for key in ("a", "a", "b", "a", "c", "c"):
                await rt.call(Counter.add, round_, key=key)
        assert [await rt.call(Counter.value, key=key) for key in "abc"] == [9, 3, 6]
        assert len(rt._resolver._last_targets) == 2  # add and value: one each
