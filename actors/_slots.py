"""The ``max_in_flight`` slots: a counting semaphore whose free case costs no call.

Every ``call`` takes a slot and gives it back. ``anyio.Semaphore`` does this through two
wrappers under trio (anyio's, then trio's semaphore and its parking lot): three calls to
take a slot and three to give it back, on every call. Here a free slot is taken by the
caller itself (``if slots.free: slots.free -= 1``), and the waiters, who exist only
when none is free, wait in FIFO order on an event each, as trio's and anyio's do.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._loop_primitives import new_event

if TYPE_CHECKING:
    from ._loop_primitives import EventLike


class Slots:
    """A semaphore of ``total`` slots. ``free`` is the number not taken; it is never
    above zero while someone waits (a slot given back goes to the first waiter)."""

    __slots__ = ("_waiters", "free")

    def __init__(self, total: int) -> None:
        self.free = total
        self._waiters: deque[EventLike] = deque()

    def acquire_nowait(self) -> bool:
        """Take a free slot; False (nothing taken) when none is."""
        if self.free:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting for one in FIFO order. (It does not yield when one is
        free: the caller checkpoints later anyway.)"""
        if self.free:
            self.free -= 1
            return
        event = new_event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # handed a slot just as it was cancelled: pass it on
                self.release()
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter if any, else to the free ones."""
        if self._waiters:
            self._waiters.popleft().set()  # the slot goes to it: ``free`` stays 0
        else:
            self.free += 1
