"""Timers: sleeps, delayed sends, retry-free wake-ups and retention expiry, in one heap.

Durable timers live in the ``timers`` table in due-time order and are loaded into the
heap a window at a time (``TIMER_WINDOW`` ahead), so a million retention timers cost no
memory until they are nearly due. A delayed send's due time lives in its invocation
record instead (its heap entry has no row). One task (``run``) sleeps until the earliest
timer or until a new earlier one is scheduled, fires everything due, and deletes the
fired rows in one batch. All time is the runtime's clock, so tests skip it.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import anyio

from actors.storage import (
    RecordDecodeError,
    StorageError,
    Table,
    TimerKind,
    TimerRecord,
    WriteBatch,
    decode_key,
    encode_key,
    loads,
)

from ._errors import PersistenceError, damaged_record_error, persistence_error
from ._kernel import logger
from ._retention import expire

if TYPE_CHECKING:
    from actors.storage import CommitTicket

    from ._kernel import Kernel
    from ._scheduler import Scheduler

#: Timers the runtime keeps in its heap: (due, sequence, kind, invocation id, row key).
HeapTimer = tuple[float, int, TimerKind, str, bytes | None]

TIMER_WINDOW = 600.0  # seconds of durable timers held in memory ahead of time


def _log_failed_timer_batch(ticket: CommitTicket) -> None:
    if ticket.error is not None:
        logger.error("cannot remove fired timers: %s", ticket.error)


class Timers:
    """The runtime's timer heap and the task that fires it."""

    def __init__(self, kernel: Kernel, scheduler: Scheduler) -> None:
        self._k = kernel
        self._scheduler = scheduler
        self._store = kernel.store
        self._clock = kernel.clock
        self._invocations = kernel.invocations
        self.heap: list[HeapTimer] = []
        self.seq = 0
        self.changed = anyio.Event()
        #: Durable timers due up to here are in the heap.
        self.loaded_until = -math.inf

    def schedule(self, due: float, kind: TimerKind, invocation_id: str, row: bytes | None) -> None:
        """Fire ``kind`` for ``invocation_id`` at ``due``. ``row`` is the timer's row in
        the ``timers`` table, deleted when it fires (None: the timer lives elsewhere,
        e.g. a delayed send's due time is in its invocation record)."""
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, kind, invocation_id, row))
        if self.heap[0][1] == self.seq:
            self.changed.set()  # a new earliest timer

    def fire(
        self, kind: TimerKind, invocation_id: str, row: bytes | None, done: WriteBatch
    ) -> None:
        if kind is TimerKind.DELIVER:
            inv = self._invocations.get(invocation_id)
            if inv is not None and inv.life.awaits_delivery:
                inv.not_before = None
                self._scheduler.dispatch(inv)
        elif kind is TimerKind.WAKE:
            self._scheduler.wake(invocation_id)
        elif kind is TimerKind.EXPIRE:
            expire(self._k, invocation_id, done)
        if row is not None:
            done.delete(Table.TIMERS, row)

    def load(self, until: float) -> None:
        """Push the durable timers due up to ``until`` (not loaded yet) into the heap."""
        if until <= self.loaded_until:
            return
        if self.loaded_until == -math.inf:
            start = b""
        else:
            start = encode_key((round(self.loaded_until * 1_000_000) + 1,))
        until_us = round(until * 1_000_000)
        try:
            while True:
                rows = self._store.scan(Table.TIMERS, start=start, limit=1000)
                for row, data in rows:
                    due_us = decode_key(row)[0]
                    assert isinstance(due_us, int)
                    if due_us > until_us:
                        break
                    timer = loads(TimerRecord, data)
                    self.schedule(timer.due, timer.kind, timer.invocation_id, row)
                else:
                    if len(rows) == 1000:
                        start = rows[-1][0] + b"\x00"  # the smallest key after the last
                        continue
                break
        except RecordDecodeError as exc:
            raise damaged_record_error(self._store.path, exc) from exc
        except (ValueError, AssertionError) as exc:  # bytes changed inside a timer's key
            raise PersistenceError(
                f"store {self._store.path} is damaged: a timer's key does not decode ({exc}) "
                "(restore the directory from a backup)"
            ) from exc
        except StorageError as exc:
            raise persistence_error(exc) from exc
        self.loaded_until = until

    async def run(self) -> None:
        while True:
            self.changed = anyio.Event()
            now = self._clock.now()
            if now + TIMER_WINDOW / 2 >= self.loaded_until:
                self.load(now + TIMER_WINDOW)
            done = WriteBatch()
            while self.heap and self.heap[0][0] <= now:
                _, _, kind, invocation_id, row = heapq.heappop(self.heap)
                self.fire(kind, invocation_id, row, done)
            if done.ops:
                try:
                    self._store.submit(done, _log_failed_timer_batch)
                except StorageError as exc:
                    logger.error("cannot remove fired timers: %s", exc)
                    self._k.write_failed(exc)  # the store broke? then the runtime stops
            # Wake for the earliest timer, or to load the next window of durable ones.
            deadline = self.loaded_until - TIMER_WINDOW / 2
            if self.heap:
                deadline = min(deadline, self.heap[0][0])
            async with anyio.create_task_group() as waiters:

                async def sleep(deadline: float, scope: anyio.CancelScope) -> None:
                    await self._clock.sleep_until(deadline)
                    scope.cancel()

                async def changed(scope: anyio.CancelScope) -> None:
                    await self.changed.wait()
                    scope.cancel()

                waiters.start_soon(sleep, deadline, waiters.cancel_scope)
                waiters.start_soon(changed, waiters.cancel_scope)
