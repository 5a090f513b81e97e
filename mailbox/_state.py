"""The scheduling rules of one key's mailbox, as a pure state machine.

No awaits, no clock, no I/O: events go in as method calls and decisions come out as
return values, so the rules are tested without an event loop (and by a Hypothesis state
machine). ``_driver`` is the only place that turns decisions into running tasks.

The rules, one row per kind of envelope::

    kind        may start when                          while running it blocks
    ---------   -------------------------------------   ------------------------
    shared      at once, always                         nothing
    exclusive   no exclusive is running, and it is      every later exclusive
                the oldest queued exclusive (FIFO)

Invariants (DESIGN.md section 3):

1. *Single writer*: at most one exclusive envelope is running.
2. *FIFO*: exclusive envelopes start in the order they were enqueued.
3. *Shared never waits*: a shared envelope is admitted by the same ``enqueue`` call that
   brought it, whatever is running. Shared handlers read committed state only, so they
   need no protection from the running exclusive one, and it none from them.

Unlike a reader-writer lock (trio's ``_parking_lot`` essay discusses the fairness trap),
exclusive envelopes never wait for shared ones, so neither side can starve the other.

"Finished" for an exclusive envelope means *released*: the runtime releases the key as
soon as the invocation's writes are handed to the storage writer, before they are
durable, so the next exclusive invocation can start on them (pipelining). Its outputs
still wait for durability; that is the runtime's output gate, not the mailbox's concern.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

import attrs


class Envelope(Protocol):
    """What the mailbox needs to know about a unit of work."""

    @property
    def exclusive(self) -> bool: ...


E = TypeVar("E", bound=Envelope)


class MailboxStateError(RuntimeError):
    """A driver bug: an event that the rules do not allow (e.g. finishing twice)."""


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one mailbox."""

    queued_exclusive: int
    running_exclusive: bool
    running_shared: int


@attrs.define(eq=False)
class MailboxCore(Generic[E]):
    """The state of one key: queued exclusive envelopes, the running exclusive one, and
    the running shared ones."""

    # Allocated on first use: most keys never queue (an empty deque costs ~600 bytes,
    # and a runtime may hold a mailbox for each of a hundred thousand keys).
    _queued: deque[E] | None = None
    _running_exclusive: E | None = None
    _running_shared: set[int] | None = None  # ids of shared envelopes

    def enqueue(self, envelope: E) -> list[E]:
        """Accept an envelope; return what may start now (possibly nothing)."""
        if envelope.exclusive:
            if self._running_exclusive is None and not self._queued:
                self._running_exclusive = envelope  # the common case: straight in
                return [envelope]
            if self._queued is None:
                self._queued = deque()
            self._queued.append(envelope)
            return self.next_admissible()
        if self._running_shared is None:
            self._running_shared = set()
        self._running_shared.add(id(envelope))
        return [envelope]

    def next_admissible(self) -> list[E]:
        """Move every envelope that may start now to running and return them."""
        if self._running_exclusive is None and self._queued:
            self._running_exclusive = self._queued.popleft()
            return [self._running_exclusive]
        return []

    def finished(self, envelope: E) -> list[E]:
        """Record that ``envelope`` released the key; return what may start now."""
        if envelope.exclusive:
            if self._running_exclusive is not envelope:
                raise MailboxStateError("finished() for an exclusive envelope that is not running")
            self._running_exclusive = None
            return self.next_admissible()
        try:
            if self._running_shared is None:
                raise KeyError(id(envelope))
            self._running_shared.remove(id(envelope))
        except KeyError:
            raise MailboxStateError(
                "finished() for a shared envelope that is not running"
            ) from None
        return []

    def hand_over(self, holder: E, successor: E) -> None:
        """Let ``successor`` hold the key in place of the running ``holder`` (the same
        work continuing under a new envelope): nothing queued may start in between."""
        if self._running_exclusive is not holder or not successor.exclusive:
            raise MailboxStateError("hand_over() from an envelope that does not hold the key")
        self._running_exclusive = successor

    def remove_queued(self, envelope: E) -> bool:
        """Drop a queued (not yet started) exclusive envelope; True if it was queued."""
        # By identity, like finished(): envelopes may compare equal by value.
        queued = self._queued
        if queued is None:
            return False
        for index, candidate in enumerate(queued):
            if candidate is envelope:
                del queued[index]
                return True
        return False

    @property
    def running_exclusive(self) -> E | None:
        """The exclusive envelope holding the key, if any."""
        return self._running_exclusive

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return self._running_exclusive is None and not self._queued and not self._running_shared

    def statistics(self) -> MailboxStatistics:
        """Counts for tests and monitoring."""
        return MailboxStatistics(
            queued_exclusive=len(self._queued or ()),
            running_exclusive=self._running_exclusive is not None,
            running_shared=len(self._running_shared or ()),
        )
