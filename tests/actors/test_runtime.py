"""The runtime's life cycle and client API: open and close inside trio or asyncio,
cancellation, call / send / attach, idle activations, and backpressure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
import sniffio
import trio
import trio.testing

import actors

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


class Blocker(actors.VirtualObject):
    """Handlers that block on ``gate`` (never set unless the test sets it)."""

    def __init__(self, gate: anyio.Event | None = None) -> None:
        self.gate = gate if gate is not None else anyio.Event()
        self.started = 0
        self.entered = anyio.Event()
        self.finished = 0
        self.cancelled = 0

    @actors.exclusive
    async def block(self, ctx: actors.ObjectContext) -> str:
        self.started += 1
        self.entered.set()
        try:
            await self.gate.wait()
        except BaseException:
            self.cancelled += 1
            raise
        self.finished += 1
        return ctx.key


async def test_runtime_runs_under_each_backend(tmp_path: Path, async_backend: str) -> None:
    assert sniffio.current_async_library() == async_backend
    async with actors.open_runtime(tmp_path / "db", [Counter, Greeter]) as rt:
        assert await rt.call(Greeter.greet, "ann") == "hello ann"
        assert await rt.call(Counter.add, 1, key="k") == 1


async def test_call_returns_the_result(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        assert await rt.call(Counter.add, 5, key="alice") == 5
        assert await rt.call(Counter.add, 2, key="alice") == 7
        assert await rt.call(Counter.add, 1, key="bob") == 1
        assert await rt.call(Counter.value, key="alice") == 7


async def test_send_returns_an_accepted_handle(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        h = await rt.send(Counter.add, 5, key="alice")
        assert isinstance(h, actors.InvocationHandle)
        assert isinstance(h.invocation_id, str)
        assert h.invocation_id.startswith("inv_")
        assert h.status == "Accepted"
        assert await h.result() == 5
        # After completion, attach and result() give the same result again.
        assert await rt.attach(h.invocation_id) == 5
        assert await h.result() == 5
        h2 = await rt.send(Counter.add, 1, key="alice")
        assert h2.invocation_id != h.invocation_id
        assert await h2.result() == 6


async def test_attach_waits_for_a_running_invocation(tmp_path: Path) -> None:
    blocker = Blocker()
    async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
        h = await rt.send(Blocker.block, key="k")
        await blocker.entered.wait()
        results: list[str] = []
        async with anyio.create_task_group() as tg:

            async def attach() -> None:
                results.append(await rt.attach(h.invocation_id))

            tg.start_soon(attach)
            tg.start_soon(attach)
            await anyio.lowlevel.checkpoint()
            assert results == []
            blocker.gate.set()
        assert results == ["k", "k"]
        assert await h.result() == "k"


async def test_attach_after_restart_returns_the_stored_result(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with actors.open_runtime(path, [Counter]) as rt:
        h = await rt.send(Counter.add, 3, key="k")
        assert await h.result() == 3
    async with actors.open_runtime(path, [Counter]) as rt:
        assert await rt.attach(h.invocation_id) == 3


async def test_attach_unknown_invocation_raises(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        with pytest.raises(actors.UnknownHandlerError, match=r"^no invocation 'inv_nothing'$"):
            await rt.attach("inv_nothing")


async def test_runtime_exits_cleanly(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
            await rt.call(Counter.add, 1, key="k")
            assert rt.statistics().in_flight == 0
        # Reopening the same directory works: the first runtime released it.
        async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
            assert await rt.call(Counter.value, key="k") == 1


async def test_exit_cancels_a_handler_that_blocks_forever(tmp_path: Path) -> None:
    blocker = Blocker()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
            h = await rt.send(Blocker.block, key="k")
            await blocker.entered.wait()
    assert (blocker.started, blocker.cancelled, blocker.finished) == (1, 1, 0)
    with pytest.raises(actors.RuntimeClosedError):
        await rt.attach(h.invocation_id)


async def test_exit_when_surrounding_scope_is_cancelled(tmp_path: Path) -> None:
    blocker = Blocker()
    with anyio.fail_after(30), anyio.CancelScope() as scope:
        async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
            await rt.send(Blocker.block, key="k")
            await blocker.entered.wait()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert (blocker.started, blocker.cancelled) == (1, 1)
    with pytest.raises(actors.RuntimeClosedError, match=r"^the runtime is closed$"):
        await rt.call(Counter.value, key="k")


async def test_exit_on_timeout_while_call_blocks(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocker = Blocker()
    start = trio.current_time()
    with anyio.move_on_after(10) as scope:
        async with actors.open_runtime(tmp_path / "db", [blocker], commit_mode="inline") as rt:
            await rt.call(Blocker.block, key="k")
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(10)
    assert (blocker.started, blocker.cancelled, blocker.finished) == (1, 1, 0)
    with pytest.raises(actors.RuntimeClosedError):
        await rt.call(Blocker.block, key="k")


async def test_after_exit_every_operation_raises_RuntimeClosedError(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter, Greeter]) as rt:
        h = await rt.send(Counter.add, 1, key="k")
        await h.result()
    with pytest.raises(actors.RuntimeClosedError, match=r"^the runtime is closed$"):
        await rt.call(Counter.add, 1, key="k")
    with pytest.raises(actors.RuntimeClosedError, match=r"^the runtime is closed$"):
        await rt.call(Greeter.greet, "ann")
    with pytest.raises(actors.RuntimeClosedError, match=r"^the runtime is closed$"):
        await rt.send(Counter.add, 1, key="k")
    with pytest.raises(actors.RuntimeClosedError, match=r"^the runtime is closed$"):
        await rt.attach(h.invocation_id)


async def test_waiting_caller_gets_RuntimeClosedError_when_runtime_exits(tmp_path: Path) -> None:
    blocker = Blocker()
    errors: list[Exception] = []

    async def caller(rt: actors.Runtime) -> None:
        try:
            await rt.call(Blocker.block, key="k")
        except actors.RuntimeClosedError as exc:
            errors.append(exc)

    with anyio.fail_after(30):
        async with (
            anyio.create_task_group() as outer,
            actors.open_runtime(tmp_path / "db", [blocker]) as rt,
        ):
            outer.start_soon(caller, rt)  # outlives the runtime
            await blocker.entered.wait()
    assert len(errors) == 1
    assert str(errors[0]).endswith("did not finish: the runtime is shutting down")


async def test_directory_reopens_after_a_cancelled_exit_in_inline_mode(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with anyio.move_on_after(10):
        async with actors.open_runtime(tmp_path / "db", [Blocker()], commit_mode="inline") as rt:
            await rt.call(Blocker.block, key="k")
    gate = anyio.Event()
    gate.set()
    async with actors.open_runtime(tmp_path / "db", [Blocker(gate)], commit_mode="inline") as rt:
        assert await rt.call(Blocker.block, key="k") == "k"


async def test_directory_reopens_after_a_cancelled_exit(tmp_path: Path) -> None:
    blocker = Blocker()
    with anyio.CancelScope() as scope:
        async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
            await rt.send(Blocker.block, key="k")
            await blocker.entered.wait()
            scope.cancel()
            await anyio.sleep_forever()
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        assert await rt.call(Counter.add, 1, key="other") == 1


async def test_handle_result_after_exit_raises_RuntimeClosedError(tmp_path: Path) -> None:
    blocker = Blocker()
    async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
        h = await rt.send(Blocker.block, key="k")
        await blocker.entered.wait()
    with pytest.raises(actors.RuntimeClosedError):
        await h.result()


class Recorder(actors.VirtualObject):
    def __init__(self) -> None:
        self.seen: list[int] = []

    @actors.exclusive
    async def record(self, ctx: actors.ObjectContext, item: int) -> int:
        self.seen.append(item)
        return item


@pytest.mark.trio_only  # needs wait_all_tasks_blocked while the writer thread commits
async def test_cancelled_send_is_not_stranded(tmp_path: Path) -> None:
    # Whether the cancelled send was accepted is unknown to its caller; either way it
    # must not be left for the next restart. (Until fixed, the race that exposes this
    # is won by the cancellation: an fsync commit takes far longer than one scheduler
    # pass.)
    path = tmp_path / "db"
    recorder = Recorder()
    async with actors.open_runtime(path, [recorder]) as rt:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def sender() -> None:
                with scope:
                    await rt.send(Recorder.record, 1, key="k")

            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()  # committing on the writer thread
            scope.cancel()
        h = await rt.send(Recorder.record, 2, key="k")
        assert await h.result() == 2
        assert recorder.seen in ([2], [1, 2])
    async with actors.open_runtime(path, [Recorder()]) as rt:
        assert rt.statistics().in_flight == 0  # nothing was left to resume


async def test_idle_activations_are_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with actors.open_runtime(
        tmp_path / "db", [Counter], commit_mode="inline", idle_timeout=5
    ) as rt:
        assert rt.statistics().activations == 0
        await rt.call(Counter.add, 1, key="a")
        await rt.call(Counter.add, 1, key="b")
        assert rt.statistics().activations == 2
        await trio.sleep(2)
        await rt.call(Counter.add, 1, key="b")  # keeps "b" active for a while
        await trio.sleep(4)
        assert rt.statistics().activations == 1  # "a" idle 6 s, "b" only 4 s
        await trio.sleep(4)
        assert rt.statistics().activations == 0
        # A dropped key comes back with its state.
        assert await rt.call(Counter.add, 1, key="a") == 2
        assert await rt.call(Counter.add, 1, key="b") == 3
        assert rt.statistics().activations == 2


async def test_busy_activation_is_not_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocker = Blocker()
    async with actors.open_runtime(
        tmp_path / "db", [blocker], commit_mode="inline", idle_timeout=5
    ) as rt:
        h = await rt.send(Blocker.block, key="k")
        await trio.sleep(60)
        assert rt.statistics().activations == 1
        assert rt.statistics().in_flight == 1
        blocker.gate.set()
        assert await h.result() == "k"
        await trio.sleep(60)
        assert rt.statistics().activations == 0


@pytest.mark.trio_only  # needs wait_all_tasks_blocked; inline commits keep it meaningful
async def test_max_in_flight_applies_backpressure(tmp_path: Path) -> None:
    blocker = Blocker()
    results: list[str] = []

    async def via_call(rt: actors.Runtime, i: int) -> None:
        results.append(await rt.call(Blocker.block, key=f"k{i}"))

    async def via_send(rt: actors.Runtime, i: int) -> None:
        h = await rt.send(Blocker.block, key=f"k{i}")
        results.append(await h.result())

    async with actors.open_runtime(
        tmp_path / "db", [blocker], commit_mode="inline", max_in_flight=10
    ) as rt:
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(via_call if i % 2 else via_send, rt, i)
            await trio.testing.wait_all_tasks_blocked()
            stats = rt.statistics()
            assert stats.in_flight <= 10
            assert stats.in_flight == 10
            assert blocker.started == 10
            blocker.gate.set()
        assert sorted(results) == sorted(f"k{i}" for i in range(100))
        assert blocker.finished == 100
        assert rt.statistics().in_flight == 0


async def test_statistics_count_queued_exclusive_work(tmp_path: Path) -> None:
    blocker = Blocker()
    async with actors.open_runtime(tmp_path / "db", [blocker]) as rt:
        assert rt.statistics() == actors.RuntimeStatistics(
            in_flight=0, activations=0, queued_exclusive=0, suspended=0, paused=0
        )
        handles = [await rt.send(Blocker.block, key="k") for _ in range(3)]
        await blocker.entered.wait()
        stats = rt.statistics()
        assert stats.in_flight == 3
        assert stats.activations == 1
        assert stats.queued_exclusive == 2
        blocker.gate.set()
        assert [await h.result() for h in handles] == ["k", "k", "k"]
        assert rt.statistics().in_flight == 0


@pytest.mark.trio_only  # trio.testing.assert_checkpoints
async def test_public_async_operations_are_checkpoints(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter, Greeter]) as rt:
        with trio.testing.assert_checkpoints():
            await rt.call(Greeter.greet, "ann")
        with trio.testing.assert_checkpoints():
            await rt.call(Counter.add, 1, key="k")
        with trio.testing.assert_checkpoints():
            h = await rt.send(Counter.add, 1, key="k")
        with trio.testing.assert_checkpoints():
            await h.result()
        with trio.testing.assert_checkpoints():
            await h.result()  # already complete: still a checkpoint
        with trio.testing.assert_checkpoints():
            await rt.attach(h.invocation_id)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": 0}, r"^max_in_flight must be at least 1$"),
        ({"idle_timeout": 0}, r"^idle_timeout must be positive$"),
        ({"durability": "never"}, r"^durability must be 'fsync' or 'process', not 'never'$"),
        (
            {"commit_mode": "lazy"},
            r"^commit_mode must be 'auto', 'thread' or 'inline', not 'lazy'$",
        ),
    ],
)
async def test_bad_options_are_rejected(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        async with actors.open_runtime(tmp_path / "db", [Counter], **options):  # type: ignore[arg-type]
            pytest.fail("the runtime must not open")  # pragma: no cover
