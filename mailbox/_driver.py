"""The thin driver that turns ``MailboxCore`` decisions into running tasks.

This is the only mailbox module that touches the event loop, and it does so only
through the ``spawn`` callable it is given (the runtime's task group ``start_soon``).
Every state change happens in one scheduling quantum: call the core, then spawn what it
admitted, with no await in between, so no other task can observe a half-made decision.

There is no task per key: a key with nothing to do costs one small object, and a key
the runtime drops costs nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from ._state import Envelope, MailboxCore, MailboxStateError, MailboxStatistics

E = TypeVar("E", bound=Envelope)

#: Runs one envelope. It calls ``release()`` once the key may be handed on (for an
#: exclusive envelope: when its writes are queued for commit). If it did not, the driver
#: releases when the runner raises or returns, unless it returns ``HOLD``: then the
#: envelope keeps the key (a suspended or paused invocation) until ``resume``.
Runner = Callable[[E, Callable[[], None]], Awaitable[object]]

HOLD = "hold"
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class Mailbox(Generic[E]):
    """One key's mailbox. Not thread-safe: use it from its event loop only."""

    __slots__ = ("_core", "_on_admit", "_runner", "_spawn", "name")

    def __init__(
        self,
        name: str,
        runner: Runner[E],
        spawn: Spawn,
        on_admit: Callable[[E], None] | None = None,
    ) -> None:
        self.name = name
        self._core: MailboxCore[E] = MailboxCore()
        self._runner = runner
        self._spawn = spawn
        #: Told of every envelope the rules admit, at the moment they admit it (before
        #: its task exists), so the owner's own state can follow the key's.
        self._on_admit = on_admit

    def deliver(self, envelope: E) -> None:
        """Enqueue ``envelope``; start it now if the rules allow."""
        self._start(self._core.enqueue(envelope))

    def try_claim(self, envelope: E) -> Callable[[], None] | None:
        """Admit ``envelope`` if it may start now, for the caller to run in its own task
        (saving a task spawn), and return its ``release``; the caller must call it when
        the key may be handed on, or when it stops running the envelope for any reason.
        Otherwise the envelope is queued as by ``deliver`` and None is returned."""
        admitted = self._core.enqueue(envelope)
        if admitted == [envelope]:
            if self._on_admit is not None:
                self._on_admit(envelope)
            return self._releaser(envelope)
        self._start(admitted)
        return None

    def resume(self, envelope: E) -> None:
        """Run ``envelope`` again while it keeps holding the key (after ``HOLD``)."""
        if envelope.exclusive and self._core.running_exclusive is not envelope:
            raise MailboxStateError("resume() of an exclusive envelope that does not hold the key")
        if envelope.exclusive:
            self._spawn(self._make_task(envelope))
        else:
            self.deliver(envelope)

    def hand_over(self, holder: E, successor: E) -> None:
        """Run ``successor`` in a task of its own as the key's holder in place of
        ``holder``, whose runner stopped before releasing the key. ``holder``'s release
        must not be called afterwards."""
        self._core.hand_over(holder, successor)
        self._spawn(self._make_task(successor))

    def cancel_queued(self, envelope: E) -> bool:
        """Remove ``envelope`` if it has not started; True if it was removed."""
        return self._core.remove_queued(envelope)

    @property
    def running_exclusive(self) -> E | None:
        """The exclusive envelope that holds the key now, if any."""
        return self._core.running_exclusive

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return self._core.idle

    def statistics(self) -> MailboxStatistics:
        """Queued and running counts."""
        return self._core.statistics()

    def _start(self, admitted: list[E]) -> None:
        for envelope in admitted:
            if self._on_admit is not None:
                self._on_admit(envelope)
            self._spawn(self._make_task(envelope))

    def _releaser(self, envelope: E) -> Callable[[], None]:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._start(self._core.finished(envelope))

        return release

    def _make_task(self, envelope: E) -> Callable[[], Coroutine[Any, Any, None]]:
        release = self._releaser(envelope)

        async def task() -> None:
            try:
                outcome = await self._runner(envelope, release)
            except BaseException:
                release()
                raise
            if outcome != HOLD:
                release()

        return task
