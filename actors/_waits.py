"""Durable waits: where a handler blocks, where a cancellation lands, and how a wait
gives up its coroutine.

Every durable await goes through here. ``block`` first passes the output gate (what
the invocation did so far is durable before it waits), then waits until the thing is
ready. After ``suspend_after`` (at once for an invocation rebuilt by replay, or under
memory pressure) the wait raises ``Suspended``, which unwinds the handler and drops
its coroutine; whoever completes what it waited for wakes it (``Scheduler.wake``).

A cancellation is *delivered* at a durable await: ``check_cancel`` journals a
``CancelledEntry`` at the current position and raises a 409 ``TerminalError`` there, so
compensations run and a replay raises it at the same place. It is delivered at most once
per attempt, and never in the middle of a replay. ``select`` journals its winner,
``wait_completed`` the positions of the futures that had finished when it returned, and
``gather`` waits for all, each by racing the futures' producers in one task group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel

from actors.storage import (
    CancelledEntry,
    CompletedEntry,
    SelectEntry,
    SleepEntry,
    Table,
    TimerKind,
    TimerRecord,
    WriteBatch,
    dumps,
)

from ._control_flow import CancelRequested, StepFailed, Suspended, check_usable
from ._errors import ActorsError, NonDeterminismError, TerminalError
from ._futures import DurableFuture
from ._lifecycle import Cancel, Event, Phase
from ._resolution import delay_seconds
from ._rows import timer_key

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import timedelta

    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._scheduler import Scheduler
    from ._timers import Timers

T = TypeVar("T")

_MAX_SLEEP_SECONDS = 100 * 365 * 86400.0
_UNWINDING = (Phase.UNWINDING, Phase.WOKEN_UNWINDING)
_NO_CANCEL = Cancel.NONE  # read at every durable await (Enum.MEMBER costs ~0.1 us in 3.11)


def _cancel_not_wired(invocation_id: str) -> None:
    raise AssertionError("cancel_later was not wired")  # pragma: no cover


class Waits:
    """Durable waits, cancellation delivery, ``select`` and ``gather``, ``ctx.sleep``.
    Also the driver of every ``DurableFuture`` (``await_future``)."""

    def __init__(
        self, kernel: Kernel, output: OutputGate, scheduler: Scheduler, timers: Timers
    ) -> None:
        self._k = kernel
        self._output = output
        self._scheduler = scheduler
        self._timers = timers
        self._clock = kernel.clock
        self._suspend_after = kernel.suspend_after
        #: Cancels an invocation this one waited on (``Control``, wired later: control
        #: is built above this module).
        self.cancel_later: Callable[[str], None] = _cancel_not_wired

    async def await_future(self, future: DurableFuture[T]) -> T:
        """``await future`` in a handler: a durable await, where cancellation lands."""
        inv = future._inv
        if future._settled or future._journaled:  # no wait: no cancellation lands here
            return await future._result()
        if inv.life.cancel is not _NO_CANCEL or inv.index < inv.replay_end:
            # A cancellation was asked for, or a recorded one may be next in the journal.
            self.check_cancel(inv, [future])
        while True:
            try:
                return await future._result(inline=True)
            except CancelRequested:
                self.check_cancel(inv, [future])

    def cancel_deliverable(self, inv: Invocation) -> bool:
        # Never in the middle of a replay: the original run did not see it there.
        return inv.life.cancel_due and inv.index >= inv.replay_end

    def check_cancel(self, inv: Invocation, futures: Sequence[DurableFuture[Any]]) -> None:
        """At a durable await: raise the cancellation if it is due here (recorded here
        in the journal, or requested and not yet delivered)."""
        recorded = inv.replay.get(inv.index)
        message = f"invocation {inv.invocation_id} was cancelled"
        if isinstance(recorded, CancelledEntry):
            inv.index += 1
            inv.life.apply(Event.REPLAY_CANCEL)
            message = recorded.message
        elif self.cancel_deliverable(inv):
            inv.append(CancelledEntry(message))
            inv.life.apply(Event.RAISE_CANCEL)
            self._k.log("cancelled", inv)
            for future in futures:  # what it was waiting on is cancelled too
                callee_id = future._callee_id
                if callee_id is not None and not future._is_ready():
                    self.cancel_later(callee_id)
        else:
            return
        raise TerminalError(message, 409)

    async def block(
        self,
        inv: Invocation,
        ready: Callable[[], bool],
        wait: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Wait until ``ready()``: on ``wait()`` if given, else until ``Scheduler.wake`` is called
        for the invocation. Everything the invocation did so far is made durable first.
        After ``suspend_after`` (at once for a rebuilt invocation, or under memory
        pressure) the invocation suspends: ``Suspended`` unwinds the handler."""
        if ready():
            await anyio.lowlevel.checkpoint()
            return
        await self._output.gate(inv)
        life = inv.life
        if life.phase in _UNWINDING:
            raise Suspended  # another branch of a select or gather is giving it up
        inv.blocked_waits += 1
        if inv.blocked_waits == 1:
            life.apply(Event.BLOCK)
        try:
            await self._wait(inv, ready, wait)
        finally:
            inv.blocked_waits -= 1
            if inv.blocked_waits == 0 and life.phase is Phase.BLOCKED:
                life.apply(Event.UNBLOCK)

    async def _wait(
        self,
        inv: Invocation,
        ready: Callable[[], bool],
        wait: Callable[[], Awaitable[object]] | None,
    ) -> None:
        life = inv.life
        suspend = life.suspends_at_once
        while not ready():
            if self.cancel_deliverable(inv):
                raise CancelRequested
            if suspend and not inv.runs_in_progress:  # a running step keeps the coroutine
                # Keep what it did meanwhile (steps that finished in a gather), then
                # drop the coroutine, unless what it waits for (or a cancel) arrived in
                # between.
                await self._output.gate(inv)
                if ready():
                    break
                if self.cancel_deliverable(inv):
                    raise CancelRequested
                if life.phase is Phase.BLOCKED:
                    life.apply(Event.UNWIND)
                raise Suspended
            waiting = wait
            if waiting is None:  # woken by _wake: one event per round, shared by branches
                if inv.wake_event is None or inv.wake_event.is_set():
                    inv.wake_event = anyio.Event()
                waiting = inv.wake_event.wait
            # The handler's ``inactivity_timeout``, else the runtime's ``suspend_after``.
            after = inv.spec.inactivity_timeout
            if after is None:
                after = self._suspend_after
            scope = anyio.CancelScope(deadline=anyio.current_time() + after)
            inv.add_wait_scope(scope)
            self._scheduler.waiting[inv.invocation_id] = inv
            if len(self._scheduler.waiting) > self._scheduler.max_waiting:
                self._scheduler.evict_waiters()  # including this one: park them all, amortized
            try:
                with scope:
                    await waiting()
            finally:
                inv.discard_wait_scope(scope)
                if not inv.wait_scopes:
                    self._scheduler.waiting.pop(inv.invocation_id, None)
            # Timed out, or evicted under memory pressure (a cancel shows up above).
            suspend = scope.cancelled_caught or life.evicting

    async def race(
        self, futures: Sequence[tuple[str, DurableFuture[Any]]], *, first: bool
    ) -> list[tuple[str, bool, Any]]:
        """Await ``futures`` concurrently; with ``first``, only until one finishes.
        Returns ``(name, ok, value or error)`` per finished future. Errors that are not
        results (suspension, a failed commit, a divergence, a cancellation) escape."""
        finished: list[tuple[str, bool, Any]] = []
        escapes: list[BaseException] = []
        if first:
            for name, future in futures:
                if future._is_ready():
                    try:
                        return [(name, True, await future._result())]
                    except ActorsError as exc:
                        if isinstance(exc, NonDeterminismError):
                            raise
                        return [(name, False, exc)]

        async with anyio.create_task_group() as group:

            async def branch(name: str, future: DurableFuture[Any]) -> None:
                try:
                    value = await future._result()
                except (NonDeterminismError, StepFailed, CancelRequested, Suspended) as exc:
                    escapes.append(exc)
                    group.cancel_scope.cancel()
                    return
                except ActorsError as exc:
                    finished.append((name, False, exc))
                else:
                    finished.append((name, True, value))
                if first:
                    group.cancel_scope.cancel()

            for name, future in futures:
                group.start_soon(branch, name, future)
        if first and finished:
            inv = futures[0][1]._inv
            if inv.life.phase in _UNWINDING:  # another branch had begun to suspend
                inv.life.apply(Event.UNBLOCK)
            return finished[:1]
        if escapes:
            real = [error for error in escapes if not isinstance(error, Suspended)]
            raise (real or escapes)[0]
        return finished

    async def select(
        self, inv: Invocation, futures: dict[str, DurableFuture[Any]]
    ) -> tuple[str, Any]:
        check_usable("select()")
        index, recorded = inv.reserve(SelectEntry, None, "select()")
        if recorded is not None:
            if recorded.winner not in futures:
                raise NonDeterminismError(
                    f"invocation {inv.invocation_id} diverged from its journal at entry "
                    f"{index}: select() recorded winner {recorded.winner!r}, which is not "
                    f"among {sorted(futures)}"
                )
            return recorded.winner, await futures[recorded.winner]._result()
        items = list(futures.items())
        self.check_cancel(inv, list(futures.values()))
        while True:
            try:
                ((winner, ok, value),) = await self.race(items, first=True)
                break
            except CancelRequested:
                self.check_cancel(inv, list(futures.values()))
        inv.record_at(index, SelectEntry(winner))
        if not ok:
            raise value
        return winner, value

    async def wait_completed(self, inv: Invocation, futures: list[DurableFuture[Any]]) -> list[int]:
        """The positions of the futures that have finished (at least one), in position
        order, journaled (``CompletedEntry``): a replay answers the same partition,
        whatever is ready this time. A future that failed has finished too."""
        check_usable("wait_completed()")
        index, recorded = inv.reserve(CompletedEntry, None, "wait_completed()")
        if recorded is not None:
            done = recorded.done
            if not done or any(not 0 <= position < len(futures) for position in done):
                raise NonDeterminismError(
                    f"invocation {inv.invocation_id} diverged from its journal at entry "
                    f"{index}: wait_completed() recorded finished positions {list(done)}, "
                    f"but it now waits on {len(futures)} futures"
                )
            await anyio.lowlevel.checkpoint()
            return list(done)
        if not all(future._settled or future._journaled for future in futures):
            self.check_cancel(inv, futures)
        if any(future._is_ready() for future in futures):
            await anyio.lowlevel.checkpoint()
        else:
            items = [(str(position), future) for position, future in enumerate(futures)]
            while True:
                try:
                    await self.race(items, first=True)
                    break
                except CancelRequested:
                    self.check_cancel(inv, futures)
        # Settle every future that has finished now (the winner already is), so each
        # result is journaled before the entry that says it was there.
        finished: list[int] = []
        for position, future in enumerate(futures):
            if future._settled:
                finished.append(position)
            elif future._is_ready():
                try:
                    await future._result()
                except NonDeterminismError:
                    raise
                except ActorsError:
                    pass  # a failure is a result: kept in the future, raised when awaited
                finished.append(position)
        inv.record_at(index, CompletedEntry(tuple(finished)))
        return finished

    async def gather(self, inv: Invocation, futures: list[DurableFuture[Any]]) -> list[Any]:
        check_usable("gather()")
        if not all(future._settled or future._journaled for future in futures):
            self.check_cancel(inv, futures)
        items = [(str(position), future) for position, future in enumerate(futures)]
        while True:
            try:
                finished = await self.race(items, first=False)
                break
            except CancelRequested:
                self.check_cancel(inv, futures)
        by_position = {int(name): (ok, value) for name, ok, value in finished}
        results: list[Any] = []
        for position in range(len(futures)):
            ok, value = by_position[position]
            if not ok:
                raise value
            results.append(value)
        return results

    def sleep(self, inv: Invocation, duration: timedelta | float) -> DurableFuture[Any]:
        check_usable("ctx.sleep()")
        try:
            seconds = delay_seconds(duration)
        except (ValueError, TypeError) as exc:
            raise TerminalError(f"ctx.sleep(): {exc}", 400) from exc
        if seconds > _MAX_SLEEP_SECONDS:
            raise TerminalError(
                f"ctx.sleep(): {seconds:.0f} s is beyond 100 years; store a date and "
                "check it instead",
                400,
            )
        index, recorded = inv.reserve(SleepEntry, None, "sleep()")
        invocation_id = inv.invocation_id
        row = None
        if recorded is not None:
            wake_at = recorded.wake_at
        else:
            wake_at = self._clock.now() + seconds
            inv.record_at(index, SleepEntry(wake_at))
        row = timer_key(wake_at, invocation_id, TimerKind.WAKE, index)
        if inv.timer_keys is None:
            inv.timer_keys = {row}
        else:
            inv.timer_keys.add(row)
        if recorded is None:
            timer = WriteBatch()
            timer.put(
                Table.TIMERS, row, dumps(TimerRecord(TimerKind.WAKE, invocation_id, wake_at, index))
            )
            inv.pending_ops.extend(timer.ops)

        def ready() -> bool:
            return self._clock.now() >= wake_at

        async def produce() -> None:
            if not ready():
                # The runtime's timer wakes it (rebuilding it if it was parked).
                self._timers.schedule(wake_at, TimerKind.WAKE, invocation_id, None)
                await self.block(inv, ready)

        return DurableFuture._create(self, inv, produce, ready)
