"""Committing on the event loop's own thread when it has nothing else to do.

A commit handed to the writer thread costs a thread round trip on top of the fsync: the
queue wakes the writer, and the writer wakes the loop (``run_sync_soon`` /
``call_soon_threadsafe``). On the 2-core VMs this project is measured on, that round trip
is ~100 us of wall clock and as much CPU (``bench/step_handoff.py``), a third of an
fsync'd commit, paid in full by a caller that waits for each commit in turn.

So a batch submitted from a loop is *held* on that loop, and the loop's
``IdleCommitter`` commits everything held (every batch this loop submitted since) on the
loop's own thread, in one transaction, and publishes it at once:

* as soon as the loop has no other runnable task: nothing else could have run
  meanwhile, so blocking the loop for the commit costs no other task anything;
* or, when the loop stays busy, after ``IDLE_WAIT``, still on the loop's thread. A busy
  loop holds the GIL, and a writer thread needs it before its commit, after its fsync
  and to wake the loop: with 64 readers keeping the loop busy, 16 writers of the same
  key got 0.06x raw commits/s through the thread and 0.66x committing on the loop
  (``bench/objects.py`` W5); calls on 64 keys went from 2.5x to 3.9x. The loop pauses
  for the fsync itself (~0.3 ms), which the batches of every task in the pass share.

A sequential caller (under trio) commits in its own task: when the last
``SEQUENTIAL_STREAK`` commits of the loop each held one batch and no other task is
runnable, a task about to wait for a held batch (``CommitTicket.wait``, or ``expedite``
before a step's gate parks) commits what is held itself (``sole_waiter``). The idle
committer would commit the same batches, a loop pass and two task switches later: for a
caller that waits for each commit in turn, that was a fifth of the CPU of a call besides
the commit. What trio cannot show a task is the rest of the pass it runs in, whose tasks
might have joined the commit; the streak stands in for it. Tasks that share a pass break
it: the first of them to wait commits alone, the next ones see it runnable (it
checkpoints after its commit) and are held; a burst after a sequential spell costs one
commit more than it would have, and the streak then takes ``SEQUENTIAL_STREAK`` single
commits to build up again. Under asyncio the committer's callback runs in the very next
pass, so this gains little there and it is left out.

The writer thread still commits for threads without a loop (``commit_blocking``), and
everything in ``commit_mode="thread"``. Order is kept: held batches have higher numbers
than any batch queued for the thread (a submit from anywhere else first queues what is
held), and they commit here only when the thread has settled everything queued to it
(otherwise they are queued behind it).

Under trio the committer is a system task waiting in ``wait_all_tasks_blocked`` (which
returns when every other task is blocked), in a cancel scope it keeps for many commits:
``arm`` sets its deadline when a first batch is held, and a commit takes it off (a scope
entered per commit, with ``move_on_after``, cost a sequential caller ~8% of its
instructions, and its deadline, counted from the last commit, often passed before the
loop went idle); under asyncio it is a callback that looks at
the loop's ready queue (``loop._ready``: a loop without one, such as uvloop, gets no
committer and every batch goes to the thread).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Final, Protocol

import trio

# The function ``trio.testing`` exports, from where trio defines it: importing
# ``trio.testing`` imports pytest when it is installed (``RaisesGroup``), which made
# ``import actors`` ~120 ms slower and loaded pytest and pygments (~12,000 objects) into
# every process that uses the runtime.
try:
    from trio._core._run import wait_all_tasks_blocked
except ImportError:  # pragma: no cover - a trio that moved it
    from trio.testing import wait_all_tasks_blocked

if TYPE_CHECKING:
    from ._ticket import Waker

#: How long held batches wait for their loop to go idle before they commit anyway (on
#: the loop): about one fsync'd commit.
IDLE_WAIT: Final = 0.0002
_NO_DEADLINE: Final = float("inf")

#: Commits of one batch each in a row, on one loop, after which a task that waits with
#: nothing else runnable commits in its own task (``sole_waiter``).
SEQUENTIAL_STREAK: Final = 4

# trio's run queue, read to tell whether any other task is runnable (private: a trio that
# moved it gets None here, and then no task commits its own).
_RUN_CONTEXT: object = getattr(getattr(trio, "_core", None), "_run", None)
_RUN_CONTEXT = getattr(_RUN_CONTEXT, "GLOBAL_RUN_CONTEXT", None)


def _trio_runq() -> collections.deque[trio.lowlevel.Task] | None:
    """The current trio run's queue of runnable tasks, or None if not where expected."""
    runq = getattr(getattr(_RUN_CONTEXT, "runner", None), "runq", None)
    return runq if isinstance(runq, collections.deque) else None


class HeldBatches(Protocol):
    """The writer, as its committers see it."""

    def commit_held(self, committer: IdleCommitter) -> None: ...

    def retire(self, committer: IdleCommitter) -> None: ...


class IdleCommitter(Protocol):
    """Commits what its loop holds once the loop is idle (see the module essay)."""

    waker: Waker

    def arm(self) -> None:
        """Something is held: commit it at the next idle moment, or hand it on."""

    def committed(self, batches: int) -> bool:
        """The writer committed ``batches`` held batches of this loop in one commit.
        Returns whether a task of the loop may now commit its own (``sole_waiter``)."""

    def sole_waiter(self) -> bool:
        """Called by a task of this loop about to wait for what is held: True when it
        should commit now, in that task, rather than at the next idle moment (and then
        the committer is disarmed: the caller commits)."""


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
    __slots__ = ("_armed", "_parked", "_scope", "_streak", "_task", "_writer", "waker")

    def __init__(self, writer: HeldBatches, waker: Waker) -> None:
        self._writer = writer
        self.waker = waker
        self._armed = False
        #: The committer's task while it waits to be armed (parked by hand: cheaper than
        #: an Event, and this happens once per commit).
        self._parked: trio.lowlevel.Task | None = None
        #: The scope the committer waits in; its deadline is IDLE_WAIT after the first
        #: batch held (infinite while nothing is). One scope for many commits: moving a
        #: deadline costs a heap push, entering and leaving a scope several times that.
        self._scope: trio.CancelScope | None = None
        #: Commits of a single batch in a row (``sole_waiter``).
        self._streak = 0
        self._task = trio.lowlevel.spawn_system_task(self._run, name="actors-idle-commit")

    def committed(self, batches: int) -> bool:
        self._streak = streak = self._streak + 1 if batches == 1 else 0
        return streak >= SEQUENTIAL_STREAK

    def sole_waiter(self) -> bool:
        # A sequential caller: the last commits each held one batch, and no other task
        # is runnable. Waiting for the idle moment would commit the same batches after a
        # loop pass and two task switches (this task's, the committer's). What trio does
        # not show is the rest of the current pass (its run queue holds only the tasks
        # made runnable since the pass began), and those tasks might have added to this
        # commit; the streak is what says they do not: a pass whose tasks share commits
        # breaks it (after the first of them commits on its own, the next sees it
        # runnable, as it checkpoints after its commit), and it takes
        # SEQUENTIAL_STREAK single commits to build up again.
        # The committer itself may be runnable: ``arm`` wakes it when it was parked (the
        # loop went idle since its last commit), and then it will find nothing to do.
        if self._streak < SEQUENTIAL_STREAK:
            return False
        runq = _trio_runq()
        if runq is None or (runq and (len(runq) > 1 or runq[0] is not self._task)):
            return False
        if self._armed:
            self._armed = False
            scope = self._scope
            if scope is not None:
                scope.deadline = _NO_DEADLINE
        return True

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            scope = self._scope
            if scope is not None:
                # From the first batch held, not from the last commit: a batch waits at
                # most IDLE_WAIT for an idle moment, however long the loop was idle
                # before it came.
                scope.deadline = trio.current_time() + IDLE_WAIT
            parked, self._parked = self._parked, None
            if parked is not None:
                trio.lowlevel.reschedule(parked)

    async def _run(self) -> None:
        try:
            while True:
                with trio.CancelScope() as scope:
                    if self._armed:  # armed while no scope was there to take the deadline
                        scope.deadline = trio.current_time() + IDLE_WAIT
                    self._scope = scope
                    await self._commit_at_idle_moments(scope)
                # The deadline passed with the loop still busy: commit on it all the same.
                self._scope = None
                if self._armed:
                    self._armed = False
                    self._writer.commit_held(self)
        finally:
            # The run is ending (system tasks are cancelled last): the writer thread
            # takes whatever is still held, and this loop gets no more.
            self._parked = None
            self._scope = None
            self._writer.retire(self)

    async def _commit_at_idle_moments(self, scope: trio.CancelScope) -> None:
        # After a commit it waits for the next idle moment straight away: the task it
        # just answered usually submits again before the loop goes idle, and waiting
        # already saves a wake-up (one pass of the loop, ~10 us). Idle with nothing held,
        # it parks until armed (so an idle loop does not spin). Returns never: it leaves
        # by the scope's deadline (or the run's end).
        expecting = False
        while True:
            if not (self._armed or expecting):
                self._parked = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(_abort)
            await wait_all_tasks_blocked()
            expecting = self._armed
            if expecting:
                self._armed = False
                # Before the commit: publishing it may hold new batches (an ``on_done``
                # submits), and their ``arm`` sets the deadline afresh.
                scope.deadline = _NO_DEADLINE
                self._writer.commit_held(self)


def _abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.SUCCEEDED


class _AsyncioIdleCommitter:
    __slots__ = ("_armed", "_deadline", "_loop", "_ready", "_writer", "waker")

    def __init__(self, writer: HeldBatches, waker: Waker, loop: asyncio.AbstractEventLoop) -> None:
        self._writer = writer
        self.waker = waker
        self._loop = loop
        self._ready = loop._ready  # type: ignore[attr-defined]
        self._armed = False
        self._deadline = 0.0

    def committed(self, batches: int) -> bool:
        return False

    def sole_waiter(self) -> bool:
        return False

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._deadline = self._loop.time() + IDLE_WAIT
            self._loop.call_soon(self._check)

    def _check(self) -> None:
        # Callbacks queued after this one run in the next pass of the loop: if there
        # are none, nothing else is ready to run.
        if self._ready and self._loop.time() < self._deadline:
            self._loop.call_soon(self._check)
            return
        self._armed = False
        self._writer.commit_held(self)
