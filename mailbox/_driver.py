"""The thin driver that turns ``MailboxCore`` decisions into running tasks.

This is the only mailbox module that touches the event loop, and it does so only
through the ``spawn`` callable it is given (the runtime's task group ``start_soon``).
Every state change happens in one scheduling quantum: call the core, then spawn what it
admitted, with no await in between, so no other task can observe a half-made decision.

There is no task per key: a key with nothing to do costs one small object, and a key
the runtime drops costs nothing.

*Relay.* Exclusive envelopes queued on a busy key would each start in a task of their
own, one scheduling round after the one before released the key. Under load a round is
long (every other runnable task runs once in it), so a key's queue would move one
envelope per round however cheap its handlers are: 64 callers of a shared handler held
16 writers on the same key to ~130 writes/s. So a runner that is about to return can
``relay()`` instead of releasing: the next admitted envelope then runs in the same task
as soon as the runner returns, with no spawn and no round in between. The runner hands
whatever it still had to wait for (its commit) to a task of its own. A task relays at
most ``MAX_RELAYS`` envelopes in a row without a checkpoint of its own, then spawns the
next one as usual, so a long queue of handlers that never await cannot hold the loop.
Handlers relayed in one task share that task's context variables, as handlers run in
their caller's task (``try_claim``) already do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Generic, Protocol, TypeVar

from ._state import Envelope, MailboxCore, MailboxStateError, MailboxStatistics

E = TypeVar("E", bound=Envelope)


class Release(Protocol):
    """How a runner hands its envelope's key on (see ``Runner``)."""

    def __call__(self) -> None:
        """Release the key: the next admitted envelope starts in a task of its own.
        Idempotent."""

    def relay(self) -> bool:
        """Release the key; if the next exclusive envelope may start now, it runs in the
        calling task once the runner returns. True if one will: the runner must then
        return without waiting for anything (see *Relay* in the module essay)."""


#: Runs one envelope. It calls its ``Release`` once the key may be handed on (for an
#: exclusive envelope: when its writes are queued for commit). If it did not, the driver
#: releases when the runner raises or returns, unless it returns ``HOLD``: then the
#: envelope keeps the key (a suspended or paused invocation) until ``resume``.
Runner = Callable[[E, Release], Awaitable[object]]

HOLD = "hold"
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
#: Envelopes a task runs in a row by relay before the next one gets a task of its own.
MAX_RELAYS: Final = 64


class NoRelease:
    """The ``Release`` of an envelope that holds no key: nothing to hand on."""

    __slots__ = ()

    def __call__(self) -> None:
        pass

    def relay(self) -> bool:
        return False


NO_RELEASE: Final = NoRelease()


class _Release(Generic[E]):
    """The ``Release`` of one envelope that holds (or may hold) its key."""

    __slots__ = ("_envelope", "_mailbox", "_relayed", "_relaying", "_released")

    def __init__(self, mailbox: Mailbox[E], envelope: E, relaying: bool) -> None:
        self._mailbox = mailbox
        self._envelope = envelope
        self._released = False
        #: Whether a task is there to run a relayed successor (False in a caller's task).
        self._relaying = relaying
        self._relayed: E | None = None

    def __call__(self) -> None:
        if not self._released:
            self._released = True
            self._mailbox._start(self._mailbox._core.finished(self._envelope))

    def relay(self) -> bool:
        if self._released:
            return False
        self._released = True
        admitted = self._mailbox._core.finished(self._envelope)
        if self._relaying and admitted and admitted[0].exclusive:
            successor, admitted = admitted[0], admitted[1:]
            on_admit = self._mailbox._on_admit
            if on_admit is not None:
                on_admit(successor)
            self._relayed = successor
        self._mailbox._start(admitted)
        return self._relayed is not None

    def take_relayed(self) -> E | None:
        relayed, self._relayed = self._relayed, None
        return relayed


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

    def try_claim(self, envelope: E) -> Release | None:
        """Admit ``envelope`` if it may start now, for the caller to run in its own task
        (saving a task spawn), and return its ``release``; the caller must call it when
        the key may be handed on, or when it stops running the envelope for any reason.
        Otherwise the envelope is queued as by ``deliver`` and None is returned."""
        admitted = self._core.enqueue(envelope)
        if admitted == [envelope]:
            if self._on_admit is not None:
                self._on_admit(envelope)
            return _Release(self, envelope, relaying=False)  # its caller's task goes on
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

    def _make_task(self, envelope: E) -> Callable[[], Coroutine[Any, Any, None]]:
        async def task() -> None:
            current: E | None = envelope
            relays = 0
            while current is not None:
                release = _Release(self, current, relaying=relays < MAX_RELAYS)
                try:
                    outcome = await self._runner(current, release)
                except BaseException:
                    release()
                    self._spawn_relayed(release)
                    raise
                if outcome != HOLD:
                    release()
                current = release.take_relayed()
                relays += 1

        return task

    def _spawn_relayed(self, release: _Release[E]) -> None:
        """A runner that relayed raised after all: its successor gets a task of its own."""
        relayed = release.take_relayed()
        if relayed is not None:
            self._spawn(self._make_task(relayed))
