"""An inline call's cancel scope, entered at its first suspension (``actors._lazy_scope``).

The unit tests drive ``LazyScope.run`` under trio: a coroutine that never suspends gets
no scope; one that suspends is cancellable from then on, also when it opened scopes or a
nursery of its own before suspending (the scope is placed beneath them), and trio's
scope stack is intact afterwards. The runtime tests kill and close inline calls whose
handlers do that, under trio and asyncio (asyncio enters its scope up front).
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import lmdb
import pytest
import trio
import trio.testing
from writer_hold import WriterHold

import actors
from actors import _lazy_scope
from actors._lazy_scope import LAZY_SCOPES, LazyScope
from actors.storage import Table, WriteBatch
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    import types
    from collections.abc import Sequence
    from pathlib import Path

pytestmark = pytest.mark.skipif(not LAZY_SCOPES, reason="this trio has no lazy scopes")


def _status() -> object:
    return trio.lowlevel.current_task()._cancel_status


@pytest.mark.trio_only
async def test_a_call_that_never_suspends_gets_no_scope() -> None:
    lazy = LazyScope()

    async def read() -> int:
        await trio.lowlevel.checkpoint_if_cancelled()  # not a suspension
        return 7

    before = _status()
    assert await lazy.run(read()) == 7
    assert lazy._scope is None
    assert _status() is before
    assert not lazy.cancelled_caught


@pytest.mark.trio_only
async def test_a_suspended_call_is_cancelled_by_its_scope() -> None:
    lazy = LazyScope()
    reached: list[str] = []

    async def wait_forever() -> str:
        reached.append("suspending")
        try:
            await trio.sleep_forever()
        finally:
            reached.append("unwound")
        return "never"  # pragma: no cover

    before = _status()
    async with trio.open_nursery() as nursery:
        results: list[object] = []

        async def call() -> None:
            results.append(await lazy.run(wait_forever()))

        nursery.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        assert lazy._scope is not None
        lazy.cancel()
    assert results == [None]
    assert lazy.cancelled_caught
    assert lazy.cancel_called
    assert reached == ["suspending", "unwound"]
    assert _status() is before


@pytest.mark.trio_only
async def test_a_cancel_made_before_the_first_suspension_lands_at_it() -> None:
    lazy = LazyScope()
    steps: list[str] = []

    async def cancels_itself() -> str:
        lazy.cancel()  # during the first step: no scope yet
        assert lazy.cancel_called
        steps.append("still running")
        await trio.lowlevel.checkpoint()
        steps.append("after the checkpoint")  # pragma: no cover
        return "never"  # pragma: no cover

    assert await lazy.run(cancels_itself()) is None
    assert lazy.cancelled_caught
    assert steps == ["still running"]


@pytest.mark.trio_only
async def test_own_scopes_opened_before_suspending_stay_beneath_the_calls_scope() -> None:
    """The handler's ``move_on_after`` and nursery are open at its first suspension:
    the call's scope goes beneath them, so cancelling it reaches the nursery's children,
    and leaving them leaves trio's scope stack as it was."""
    lazy = LazyScope()
    children_cancelled: list[bool] = []

    async def child() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            children_cancelled.append(True)
            raise

    async def handler() -> str:
        with trio.move_on_after(math.inf):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)
                await trio.sleep_forever()
        return "never"  # pragma: no cover

    before = _status()
    results: list[object] = []
    async with trio.open_nursery() as outer:

        async def call() -> None:
            results.append(await lazy.run(handler()))

        outer.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        lazy.cancel()
    assert results == [None]
    assert lazy.cancelled_caught
    assert children_cancelled == [True]
    assert _status() is before
    with trio.CancelScope():  # the stack still works
        await trio.lowlevel.checkpoint()


@pytest.mark.trio_only
async def test_the_handlers_own_timeout_still_works_beneath_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lazy = LazyScope()

    async def handler() -> str:
        with trio.move_on_after(5) as own:
            await trio.sleep_forever()
        assert own.cancelled_caught
        await trio.sleep(1)  # suspended again, now only in the call's scope
        return "timed out, then finished"

    before = _status()
    assert await lazy.run(handler()) == "timed out, then finished"
    assert not lazy.cancelled_caught
    assert _status() is before


@pytest.mark.trio_only
async def test_the_callers_cancellation_passes_through() -> None:
    lazy = LazyScope()

    async def handler() -> str:
        with trio.move_on_after(math.inf):
            await trio.sleep_forever()
        return "never"  # pragma: no cover

    with trio.CancelScope() as callers:
        callers.cancel()
        await lazy.run(handler())
    assert callers.cancelled_caught
    assert not lazy.cancelled_caught  # not its cancellation


@pytest.mark.trio_only
async def test_errors_before_and_after_the_first_suspension_propagate() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    async def fails_later() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyError("later")

    before = _status()
    with pytest.raises(ValueError, match="at once"):
        await LazyScope().run(fails_at_once())
    with pytest.raises(KeyError, match="later"):
        await LazyScope().run(fails_later())
    assert _status() is before


@pytest.mark.trio_only
async def test_an_exception_thrown_into_the_task_reaches_the_call() -> None:
    """``run`` passes what is thrown into it on to the call (``coroutine.throw``)."""
    lazy = LazyScope()
    seen: list[str] = []

    async def handler() -> str:
        try:
            await trio.sleep_forever()
        except OverflowError as exc:
            seen.append(str(exc))
        return "recovered"

    driver = lazy.run(handler())
    driver.send(None)  # its first suspension: the scope is entered here
    with pytest.raises(StopIteration) as finished:
        driver.throw(OverflowError("thrown in"))
    assert finished.value.value == "recovered"
    assert seen == ["thrown in"]


# --- through the runtime ------------------------------------------------------------------


class Guarded(actors.VirtualObject, name="guarded"):
    """Shared handlers (the calls that get a lazy scope) that open scopes of their own
    before they first suspend."""

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self.children_cancelled = 0
        self.watcher = ""
        self.unwound_with: list[str] = []

    async def _child(self) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.children_cancelled += 1
            raise

    @actors.shared
    async def watch(self, ctx: actors.ObjectSharedContext) -> str:
        self.watcher = ctx.invocation_id
        try:
            with anyio.move_on_after(math.inf):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._child)
                    self.arrived.set()
                    await anyio.sleep_forever()
        except BaseException as exc:  # trio's "cancel scope stack corrupted", if it were
            self.unwound_with.append(type(exc).__name__)
            raise
        return "never"  # pragma: no cover

    @actors.shared
    async def peek(self, ctx: actors.ObjectSharedContext) -> str:
        with anyio.move_on_after(math.inf):
            self.arrived.set()
            await anyio.sleep_forever()
        return "never"  # pragma: no cover

    @actors.shared
    async def read(self, ctx: actors.ObjectSharedContext) -> int:
        return await ctx.get("n", int) or 0

    @actors.exclusive
    async def current(self, ctx: actors.ObjectContext) -> int:
        """An exclusive pure read: it answers once the key's queued writes are durable."""
        return await ctx.get("n", int) or 0

    @actors.exclusive
    async def bump(self, ctx: actors.ObjectContext) -> int:
        n = (await ctx.get("n", int) or 0) + 1
        ctx.set("n", n)
        return n


async def test_kill_reaches_a_handler_inside_its_own_task_group(tmp_path: Path) -> None:
    guarded = Guarded()
    errors: list[actors.TerminalError] = []
    with anyio.fail_after(10):
        async with open_test_runtime([guarded], path=tmp_path) as rt:

            async def caller() -> None:
                try:
                    await rt.call(Guarded.watch, key="k")
                except actors.TerminalError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await guarded.arrived.wait()
                await rt.kill(guarded.watcher)
            assert [e.status_code for e in errors] == [409]
            assert guarded.children_cancelled == 1
            assert guarded.unwound_with == [anyio.get_cancelled_exc_class().__name__]
            # The next call runs, and the caller's task can open scopes again.
            assert await rt.call(Guarded.read, key="k") == 0
            with anyio.CancelScope():
                await anyio.lowlevel.checkpoint()


async def test_close_reaches_a_shared_handler_inside_its_own_scope(tmp_path: Path) -> None:
    guarded = Guarded()
    errors: list[Exception] = []
    with anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tg,
            open_test_runtime([guarded], path=tmp_path) as rt,
        ):

            async def caller() -> None:
                try:
                    await rt.call(Guarded.peek, key="k")
                except actors.RuntimeClosedError as exc:
                    errors.append(exc)

            tg.start_soon(caller)  # outlives the runtime
            await guarded.arrived.wait()
    assert len(errors) == 1
    assert str(errors[0]).endswith("did not finish: the runtime is shutting down")


@pytest.mark.trio_only
@pytest.mark.parametrize(
    ("waits_in", "commit"),
    [
        ("its own completion", "lands"),
        ("its own completion", "fails"),
        ("an exclusive read of a write", "lands"),
    ],
)
async def test_a_close_during_an_exclusive_calls_commit_wait_ends_it_as_before(
    tmp_path: Path, waits_in: str, commit: str
) -> None:
    """An exclusive call's wait for a commit (its completion's, or, for a pure read,
    the key's queued write's) has no scope: the close does not interrupt it; the commit
    lands or fails, and then the call ends as a cancelled wait did, with
    ``RuntimeClosedError`` (a failed one is not committed again by a runtime that is
    gone); nothing hangs."""
    guarded = Guarded()
    hold = WriterHold(Table.STATE, fail=OSError(5, "I/O error") if commit == "fails" else None)
    errors: list[Exception] = []
    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            actors.open_runtime(tmp_path, [guarded], commit_mode="thread", _fault_hook=hold) as rt,
        ):
            assert await rt.call(Guarded.bump, key="k") == 1
            reader = waits_in != "its own completion"

            async def caller() -> None:
                try:
                    await rt.call(Guarded.current if reader else Guarded.bump, key="k")
                except actors.RuntimeClosedError as exc:
                    errors.append(exc)

            hold.armed = True
            if reader:  # a write queued on the key, held in its commit
                await rt.send(Guarded.bump, key="k")
                await hold.entered.wait()
                nursery.start_soon(caller)  # outlives the runtime
                await trio.testing.wait_all_tasks_blocked()
            else:
                nursery.start_soon(caller)
                await hold.entered.wait()  # its completion is in the held commit
            close = rt._close

            def close_then_let_it_land() -> None:
                close()
                hold.release.set()

            rt._close = close_then_let_it_land  # type: ignore[method-assign]
    assert len(errors) == 1
    assert str(errors[0]).endswith("did not finish: the runtime is shutting down")
    async with actors.open_runtime(tmp_path, [Guarded()]) as rt:
        assert await rt.call(Guarded.read, key="k") == (2 if commit == "lands" else 1)


class _FullOnce:
    """A ``_fault_hook``: the next commit that writes state, once ``full`` is set, fails
    as on a full disk (the runtime commits it again)."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, batches: Sequence[WriteBatch]) -> None:
        if self.full and any(op[1] is Table.STATE for batch in batches for op in batch.ops):
            self.full = False
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")


class Relay(actors.VirtualObject, name="relay"):
    """A shared handler that calls an exclusive one inline, in its own task."""

    rt: actors.Runtime | None = None

    @actors.shared
    async def forward(self, ctx: actors.ObjectSharedContext) -> int:
        assert Relay.rt is not None
        return await Relay.rt.call(Guarded.bump, key="inner")


async def test_an_inline_call_inside_another_keeps_the_scopes_nested(tmp_path: Path) -> None:
    """The inner call suspends twice (its commit fails and is committed again): had the
    outer call's scope been entered at the first and the inner one's placed at the
    second, they would be inverted, and trio would report its stack corrupted."""
    disk = _FullOnce()
    with anyio.fail_after(10):
        async with actors.open_runtime(
            tmp_path,
            [Guarded(), Relay()],
            retry=actors.RetryPolicy(initial_interval=0.001),
            _fault_hook=disk,
        ) as rt:
            Relay.rt = rt
            assert await rt.call(Relay.forward, key="outer") == 1
            disk.full = True
            assert await rt.call(Relay.forward, key="outer") == 2
            assert not disk.full  # it did fail once
            with anyio.CancelScope():  # the caller's scope stack is intact
                await anyio.lowlevel.checkpoint()
            assert await rt.call(Guarded.read, key="inner") == 2


@pytest.mark.trio_only
async def test_the_driver_is_protected_from_keyboard_interrupt_and_the_handler_is_not() -> None:
    """A ``KeyboardInterrupt`` between a step of the call and the ``yield`` that hands
    its suspension to trio would strand the call: trio delays it there. The handler's
    own code stays interruptible, as a task's code is."""
    from trio._core._ki import ki_protection_enabled

    seen: list[tuple[bool, bool]] = []

    def look() -> None:
        # (The frames are linked while they run: the handler's, then the driver's.)
        handler = sys._getframe(1)
        driver: types.FrameType | None = handler
        while driver is not None and driver.f_code.co_filename != _lazy_scope.__file__:
            driver = driver.f_back
        assert driver is not None
        seen.append((ki_protection_enabled(handler), ki_protection_enabled(driver)))

    async def handler() -> None:
        look()
        await trio.lowlevel.checkpoint()
        look()

    @trio.lowlevel.disable_ki_protection
    async def as_executor_run() -> None:  # what ``Executor.run`` is marked
        await handler()

    await LazyScope().run(as_executor_run())
    assert seen == [(False, True), (False, True)]
