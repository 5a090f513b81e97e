"""Committing on the event loop's own thread when it has nothing else to do.

A commit handed to the writer thread costs a thread round trip on top of the fsync: the
queue wakes the writer, and the writer wakes the loop (``run_sync_soon`` /
``call_soon_threadsafe``). On the 2-core VMs this project is measured on, that round trip
is ~100 us of wall clock and as much CPU (``bench/step_handoff.py``), a third of an
fsync'd commit, paid in full by a caller that waits for each commit in turn.

So a batch submitted from a loop is first *held* on that loop, and the loop's
``IdleCommitter`` decides where it commits:

* the loop has no other runnable task and the writer thread has nothing of its own in
  flight: everything held (every batch this loop submitted since) commits here, on the
  loop's thread, in one transaction, and is published at once. Nothing else could have
  run meanwhile, so blocking the loop for the commit costs no other task anything, and
  it saves the round trip;
* the loop stays busy for ``IDLE_WAIT``: the held batches go to the writer thread, which
  commits them while the loop goes on (group commit overlapping the loop's work, the
  path every batch took before);
* the loop is busy already when the batch is submitted: its last wait for idle ran out,
  or ``BUSY_TASKS`` tasks are ready to run after this one. The batch goes to the writer
  thread at once (a pass of such a loop lasts longer than a commit, so waiting for idle
  would only add passes to the commit's latency: 64 readers of a key kept its writers'
  commits waiting three passes each), and the committer looks again for an idle moment,
  so that the next batch may be held once the loop calms down.

Order is kept: held batches have higher numbers than any batch queued for the thread
(a submit from anywhere else first queues what is held), and they commit here only when
the thread has settled everything queued to it.

Under trio the committer is a system task waiting in ``wait_all_tasks_blocked`` (which
returns when every other task is blocked); under asyncio it is a callback that looks at
the loop's ready queue (``loop._ready``: a loop without one, such as uvloop, gets no
committer and every batch goes to the thread).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Final, Protocol

import trio
import trio.testing

if TYPE_CHECKING:
    from ._ticket import Waker

#: How long held batches wait for their loop to go idle before the writer thread takes
#: them: about one fsync'd commit (waiting longer would cost more than the round trip).
IDLE_WAIT: Final = 0.0002
#: A loop with this many tasks (callbacks, under asyncio) ready to run is busy.
BUSY_TASKS: Final = 4


class HeldBatches(Protocol):
    """The writer, as its committers see it."""

    def commit_held(self, committer: IdleCommitter, *, here: bool) -> None: ...

    def retire(self, committer: IdleCommitter) -> None: ...


class IdleCommitter(Protocol):
    """Commits what its loop holds once the loop is idle (see the module essay)."""

    waker: Waker

    def busy(self) -> bool:
        """Whether the loop is busy (see the module essay); if so, look again for an
        idle moment."""

    def arm(self) -> None:
        """Something is held: commit it at the next idle moment, or hand it on."""


def idle_committer(writer: HeldBatches, waker: Waker) -> IdleCommitter | None:
    """The committer for the calling task's loop (``waker`` wakes it), or None when
    this loop cannot tell when it is idle."""
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        return _TrioIdleCommitter(writer, waker)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if not isinstance(getattr(loop, "_ready", None), collections.deque):
        return None
    return _AsyncioIdleCommitter(writer, waker, loop)


class _TrioIdleCommitter:
    __slots__ = ("_armed", "_loop_busy", "_parked", "_probing", "_writer", "waker")

    def __init__(self, writer: HeldBatches, waker: Waker) -> None:
        self._writer = writer
        self.waker = waker
        self._armed = False
        #: The last wait for idle ran out; a probe (a wait with nothing held) is on.
        self._loop_busy = False
        self._probing = False
        #: The committer's task while it waits to be armed (parked by hand: cheaper than
        #: an Event, and this happens once per commit).
        self._parked: trio.lowlevel.Task | None = None
        trio.lowlevel.spawn_system_task(self._run, name="actors-idle-commit")

    def busy(self) -> bool:
        if self._loop_busy or trio.lowlevel.current_statistics().tasks_runnable >= BUSY_TASKS:
            if not self._probing:
                self._probing = True
                self._wake()
            return True
        return False

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._wake()

    def _wake(self) -> None:
        parked, self._parked = self._parked, None
        if parked is not None:
            trio.lowlevel.reschedule(parked)

    async def _run(self) -> None:
        # After a commit it waits for the next idle moment straight away: the task it
        # just answered usually submits again before the loop goes idle, and waiting
        # already saves a wake-up (one pass of the loop, ~10 us). Idle with nothing held,
        # it parks until armed (so an idle loop does not spin).
        expecting = False
        try:
            while True:
                if not (self._armed or self._probing or expecting):
                    self._parked = trio.lowlevel.current_task()
                    await trio.lowlevel.wait_task_rescheduled(_abort)
                with trio.CancelScope(deadline=trio.current_time() + IDLE_WAIT) as waited:
                    await trio.testing.wait_all_tasks_blocked()
                idle = not waited.cancelled_caught
                self._loop_busy = not idle
                self._probing = False
                expecting = self._armed
                if expecting:
                    self._armed = False
                    self._writer.commit_held(self, here=idle)
        finally:
            # The run is ending (system tasks are cancelled last): the thread takes
            # whatever is still held, and this loop gets no more.
            self._parked = None
            self._writer.retire(self)


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


class _AsyncioIdleCommitter:
    __slots__ = (
        "_armed",
        "_deadline",
        "_loop",
        "_loop_busy",
        "_probing",
        "_ready",
        "_writer",
        "waker",
    )

    def __init__(self, writer: HeldBatches, waker: Waker, loop: asyncio.AbstractEventLoop) -> None:
        self._writer = writer
        self.waker = waker
        self._loop = loop
        self._ready = loop._ready  # type: ignore[attr-defined]
        self._armed = False
        self._deadline = 0.0
        self._loop_busy = False
        self._probing = False

    def busy(self) -> bool:
        if self._loop_busy or len(self._ready) >= BUSY_TASKS:
            if not self._probing:
                self._probing = True
                self._loop.call_soon(self._probe)
            return True
        return False

    def _probe(self) -> None:
        self._probing = False
        self._loop_busy = bool(self._ready)

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._deadline = self._loop.time() + IDLE_WAIT
            self._loop.call_soon(self._check)

    def _check(self) -> None:
        # Callbacks queued after this one run in the next pass of the loop: if there
        # are none, nothing else is ready to run.
        busy = bool(self._ready)
        if busy and self._loop.time() < self._deadline:
            self._loop.call_soon(self._check)
            return
        self._loop_busy = busy
        self._armed = False
        self._writer.commit_held(self, here=not busy)
