"""A submitted batch's ticket, and the loop wake-up it carries.

``CommitTicket.done`` is computed from the store's ``durable_seq`` (see ``_writer``'s
essay): the writer moves the watermark, the ticket only reads it, so the two can never
disagree.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio
import anyio.lowlevel
import trio

if TYPE_CHECKING:
    from ._batch import WriteBatch
    from ._errors import StorageError

#: A thread-safe "run this callback in my event loop soon".
Waker = Callable[..., object]


class Watermark(Protocol):
    """What a ticket reads to know it is done: the writer's ``durable_seq``."""

    _durable_seq: int
    sole_waiters: bool

    def commit_before_wait(self, ticket: CommitTicket) -> None: ...


_TRIO_TOKEN: Final = trio.lowlevel.TrioToken


def current_waker() -> Waker:
    """A thread-safe 'run this callback in my event loop soon' for the calling task."""
    try:
        return trio.lowlevel.current_trio_token().run_sync_soon
    except RuntimeError:
        pass
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        raise RuntimeError("Store.submit() needs a running trio or asyncio loop") from None


class CommitTicket:
    """A submitted batch. ``await ticket.wait()`` returns once it is durable, or raises
    the ``StorageError`` that failed it. Cancelling the wait does not cancel the commit."""

    __slots__ = (
        "_event",
        "_on_done",
        "_thread_event",
        "_waker",
        "_writer",
        "batch",
        "error",
        "seq",
    )

    def __init__(
        self,
        writer: Watermark,
        seq: int,
        batch: WriteBatch,
        waker: Waker | None,
        on_done: Callable[[CommitTicket], None] | None = None,
    ) -> None:
        self._writer = writer
        self.seq = seq
        self.batch = batch
        self._waker = waker
        self._on_done = on_done
        #: The error that failed the batch, once it failed (set by the writer before the
        #: ticket is published). A plain attribute: the runtime reads it on every call.
        self.error: StorageError | None = None
        # Created by the first ``wait()``: many tickets complete before anyone awaits
        # them (or are never awaited), and an event costs a backend lookup to make.
        self._event: anyio.Event | trio.Event | None = None
        self._thread_event: threading.Event | None = None if waker else threading.Event()

    @property
    def done(self) -> bool:
        """True once the batch committed or failed and the store published it: exactly
        when the store's ``durable_seq`` has reached ``seq``."""
        return self._writer._durable_seq >= self.seq

    def expedite(self) -> None:
        """Its task is about to wait for this batch: when the loop holds it and nothing
        else could share its commit (a sequential caller, see ``_idle_commit``), commit
        it now, in this task. ``wait`` does this itself."""
        writer = self._writer
        if writer.sole_waiters and writer._durable_seq < self.seq:
            writer.commit_before_wait(self)

    async def wait(self) -> None:
        """Wait until the batch is durable. Always a checkpoint."""
        under_trio = type(getattr(self._waker, "__self__", None)) is _TRIO_TOKEN
        writer = self._writer
        if under_trio and writer.sole_waiters and writer._durable_seq < self.seq:
            writer.commit_before_wait(self)
        if writer._durable_seq >= self.seq:
            if under_trio:
                await trio.lowlevel.checkpoint()
            else:
                await anyio.lowlevel.checkpoint()
        else:
            assert self._waker is not None, "a blocking ticket cannot be awaited"
            if self._event is None:
                # trio's own event under trio: anyio's wraps it, after a backend lookup.
                self._event = trio.Event() if under_trio else anyio.Event()
            await self._event.wait()
        if self.error is not None:
            raise self.error

    def wait_blocking(self) -> None:
        """Block the calling thread until the batch is durable (sync callers): LMDB
        holds it, or it failed. ``done`` is true by then, unless a ticket submitted
        before it from an event loop is still to complete in that loop: a blocking
        caller never waits for a loop, since it may be blocking that loop's thread."""
        assert self._thread_event is not None, "an async ticket cannot block"
        self._thread_event.wait()
        if self.error is not None:
            raise self.error
