"""The threads that run plain-function ``ctx.run`` bodies: a pool owned by one runtime.

A plain ``def`` body may block (``requests``, a database driver, ``time.sleep``), so it
never runs on the event loop. It used to take one ``anyio.to_thread.run_sync`` per body,
which under trio costs 100-200 µs of CPU (a limiter token, a thread from trio's cache,
one wake-up of the loop per result): four times the rest of a durable step. This pool
does the same job for a fraction of that:

* **Hand-off.** The loop appends the body to a deque and, only if no worker is already
  on its way to the deque, wakes one parked worker (or starts a thread). A worker takes
  jobs one at a time until the deque is empty, so a burst of trivial bodies is run by one
  or two threads with no wake-up per body.
* **Results in batches.** A finished job goes on a ``done`` list; only the job that finds
  the list empty asks the loop to drain it (trio: ``TrioToken.run_sync_soon``; asyncio:
  ``loop.call_soon_threadsafe``), and the drain resumes every waiting task at once: one
  wake-up of the loop per batch, not per body.
* **Blocking is safe.** Invariant: while the deque is not empty, at least one worker is
  *seeking* (awake and about to take a job), unless the pool is at its limit. A worker
  that takes a job and leaves others behind recruits the next seeker before it runs its
  body, so a body that blocks holds only its own thread: the other bodies get other
  threads. Threads are started on demand up to ``limit`` (by default the capacity of
  anyio's default thread limiter, 40, which bounded these bodies before) and a thread
  parked for ``IDLE_SECONDS`` exits. At the limit, bodies wait in the deque in FIFO order
  for a thread to come free, as they waited for a limiter token before.

* **Deferred bodies** (trio). A body that must wait for a commit first (the output gate)
  is made a job with ``defer`` and queued by ``release`` from the callback that
  publishes the commit, on the loop; ``wait_deferred`` is its task's one suspension for
  both waits (the commit, then the body), instead of being woken by the commit only to
  hand the body over and suspend again. A deferred job not yet released is withdrawn by
  a cancellation, as a queued one is.

Cancellation is what ``to_thread.run_sync`` without ``abandon_on_cancel`` gave: a body
that has started is never abandoned; the task waits for it to return and the
cancellation is raised at its next checkpoint. A body still waiting in the deque is
withdrawn and never runs (under trio; under asyncio the whole wait is shielded, as in
anyio's ``to_thread``, so a queued body runs and is waited for too). Each body runs in a copy of the awaiting task's
``contextvars`` context (as ``to_thread`` did), with sniffio's library variable cleared,
so it sees ``RUN_BODY`` and the caller's context variables but does not believe it is on
an event loop. ``trio.from_thread`` and ``anyio.from_thread`` work inside a body, as in
``to_thread`` workers: each worker registers the loop's token in the thread-locals those
modules read (private names of trio and anyio; if a version renames them, ``from_thread``
needs an explicit token and nothing else changes).

``aclose`` (the runtime's exit) stops taking bodies, wakes the parked workers and waits
until every thread has exited; a body that is still running is not interrupted (Python
cannot stop a thread), so closing waits for it to return. Rejected: ``concurrent.futures``
(no batched result delivery, and its executor joins at interpreter exit); one thread per
invocation (a thread per in-flight body, thousands at 10,000 invocations); running bodies
the user marks non-blocking on the loop (a body that unexpectedly blocks stalls all).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import math
import threading
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio
import trio

from ._errors import RuntimeClosedError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

#: Seconds a parked worker waits for a job before its thread exits (trio's thread cache
#: and anyio's asyncio workers use the same).
IDLE_SECONDS: Final = 10.0

_ASYNC_LIBRARY = sniffio.current_async_library_cvar
# Bound once: the loop's side runs once per body (see _executor.py on hot paths).
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_reschedule = trio.lowlevel.reschedule
_ABORT_FAILED: Final = trio.lowlevel.Abort.FAILED
_ABORT_SUCCEEDED: Final = trio.lowlevel.Abort.SUCCEEDED

# A job's state: waiting in the deque, taken by a worker, withdrawn by a cancellation;
# a deferred job (``defer``) before it is queued: waiting for its go, or passed (its task
# resumed without it, or told so before it waited).
_QUEUED: Final = 0
_TAKEN: Final = 1
_WITHDRAWN: Final = 2
_DEFERRED: Final = 3
_PASSED: Final = 4


class _Job:
    __slots__ = ("args", "context", "fn", "outcome", "state", "waiter")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
        waiter: object,
    ) -> None:
        self.fn = fn
        self.args = args
        self.context = context
        #: ``(True, what fn returned)`` or ``(False, what it raised)``, set by the worker.
        self.outcome: tuple[bool, Any] = (False, None)
        self.state = _QUEUED
        #: What the drain resumes: a trio task, or an asyncio future.
        self.waiter: Any = waiter


def _body_context() -> contextvars.Context:
    """A copy of the caller's context for a body, without sniffio's loop marker."""
    context = contextvars.copy_context()
    if context.get(_ASYNC_LIBRARY) is not None:
        context.run(_ASYNC_LIBRARY.set, None)  # a worker thread is not on a loop
    return context


class _Worker:
    __slots__ = ("park",)

    def __init__(self) -> None:
        # Held while the worker runs; a parked worker blocks acquiring it a second time,
        # and whoever recruits it releases it.
        self.park = threading.Lock()
        self.park.acquire()


class StepThreads:
    """Worker threads for the plain-function ``ctx.run`` bodies of one runtime, bound to
    the event loop (trio or asyncio) that created it.

    ``await run(fn, args)`` is ``(True, fn(*args))`` or ``(False, what it raised)``, run
    on a worker thread; see the module docstring for the guarantees.
    """

    __slots__ = (
        "_anyio_token",
        "_closing",
        "_done",
        "_exited",
        "_idle",
        "_jobs",
        "_limit",
        "_loop_future",
        "_mutex",
        "_notify",
        "_seeking",
        "_started",
        "_threads",
        "_trio_token",
        "_wake_pending",
        "run",
    )

    def __init__(self, limit: int | None = None) -> None:
        """Bind to the running event loop. ``limit`` caps the threads; by default it is
        the capacity of anyio's default thread limiter of this loop."""
        if limit is None:
            tokens = anyio.to_thread.current_default_thread_limiter().total_tokens
            limit = 2**31 if math.isinf(tokens) else max(1, int(tokens))
        if limit < 1:
            raise ValueError(f"a step thread pool needs a limit of at least 1, not {limit}")
        self._limit = limit
        self._mutex = threading.Lock()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._idle: list[_Worker] = []  # parked workers, the most recently parked last
        self._seeking = 0  # workers awake and about to look at the deque
        self._threads = 0  # live worker threads
        self._started: list[threading.Thread] = []
        self._done: list[_Job] = []
        self._wake_pending = False  # a drain is scheduled on the loop
        self._closing = False
        self._exited = threading.Event()  # set when the last thread exits after aclose
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._anyio_token: object = None
        self.run: Callable[
            [Callable[..., Any], tuple[Any, ...]], Coroutine[Any, Any, tuple[bool, Any]]
        ]
        if sniffio.current_async_library() == "trio":
            token = trio.lowlevel.current_trio_token()
            self._trio_token = token
            self._notify: Callable[[], object] = lambda: token.run_sync_soon(self._drain_trio)
            self.run = self._run_trio
        else:
            loop = asyncio.get_running_loop()
            self._loop_future = loop.create_future
            self._notify = lambda: loop.call_soon_threadsafe(self._drain_asyncio)
            self.run = self._run_asyncio
        current_token = getattr(anyio.lowlevel, "current_token", None)
        # anyio < 4.11 has no token object: anyio.from_thread then needs trio's own.
        self._anyio_token = None if current_token is None else current_token()

    # --- the loop's side ------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], waiter: object) -> _Job:
        """Queue ``fn(*args)`` for a worker, in a copy of the caller's context; its job."""
        if self._closing:
            raise RuntimeClosedError("the runtime is closed: its step threads take no body")
        job = _Job(fn, args, _body_context(), waiter)
        self._enqueue(job)
        return job

    def _enqueue(self, job: _Job) -> None:
        """Put ``job`` in the deque, recruiting a worker if none is seeking. Raises
        ``RuntimeError`` (the job not queued) when no thread could take it."""
        with self._mutex:
            self._jobs.append(job)
            start = self._seeking == 0 and self._recruit()
        if start and not self._start_thread():
            with self._mutex:
                # No thread could start and none is coming: the body fails this try.
                if job.state == _QUEUED and self._threads == 0:
                    self._jobs.remove(job)
                    raise RuntimeError("no thread could be started for a ctx.run body")

    async def _run_trio(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        await _checkpoint_if_cancelled()  # as trio's to_thread: not run then
        job = self._submit(fn, args, _current_task())

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            # Withdraw a body that has not started; one that has is waited for.
            with self._mutex:
                if job.state != _QUEUED:
                    return _ABORT_FAILED
                job.state = _WITHDRAWN
                self._jobs.remove(job)
            return _ABORT_SUCCEEDED

        await _wait_task_rescheduled(abort)
        return job.outcome

    # --- deferred bodies (trio): queued from a loop callback, one suspension ------------

    def defer(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> _Job | None:
        """A job for ``fn(*args)``, in a copy of the caller's context, that is not queued
        yet: ``release(job)`` queues it later from a callback on the loop (when a commit
        the body must wait for is published), and ``await wait_deferred(job)`` is the
        one suspension of the task for both waits. None when this pool cannot defer a
        body (under asyncio, or closing): then use ``run``."""
        if self._trio_token is None or self._closing:
            return None
        job = _Job(fn, args, _body_context(), None)
        job.state = _DEFERRED
        return job

    def release(self, job: _Job, go: bool) -> bool:
        """On the loop's thread: if ``go``, queue the deferred ``job`` and return True;
        else (or if it cannot be queued: the task withdrew it, is not waiting yet, or no
        thread could take it) resume its waiting task without it and return False.
        Never raises (it runs in a ticket's ``on_done``)."""
        if job.state != _DEFERRED:
            return False  # withdrawn by a cancellation: nobody waits
        task = job.waiter
        if go and task is not None and not self._closing:
            job.state = _QUEUED
            try:
                self._enqueue(job)
            except RuntimeError:
                pass
            else:
                return True
        job.state = _PASSED
        if task is not None:
            _reschedule(task)
        return False

    async def wait_deferred(self, job: _Job) -> tuple[bool, Any] | None:
        """Wait for ``release(job, ...)`` and, if it queued the body, for its outcome, as
        ``run`` gives it. None: the body was not queued (and will never run); the task
        then goes its usual way. A cancellation before the body is queued, or while
        it waits in the deque, withdraws it (it never runs; ``Cancelled`` is raised);
        a body that has started is waited for, as in ``run``."""
        if job.state == _PASSED:
            return None  # released before this task waited: not a checkpoint
        job.waiter = _current_task()

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            with self._mutex:
                if job.state == _QUEUED:
                    self._jobs.remove(job)
                elif job.state != _DEFERRED:
                    return _ABORT_FAILED  # taken: waited for
                job.state = _WITHDRAWN
            return _ABORT_SUCCEEDED

        await _wait_task_rescheduled(abort)
        return None if job.state == _PASSED else job.outcome

    async def _run_asyncio(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        await anyio.lowlevel.checkpoint_if_cancelled()  # as anyio's to_thread: not run then
        future = self._loop_future()
        job = self._submit(fn, args, future)
        # Shielded, as anyio's to_thread.run_sync is under asyncio: a started body is
        # waited for, and the cancellation comes at the next checkpoint.
        with anyio.CancelScope(shield=True):
            await future
        return job.outcome

    def _drain_trio(self) -> None:
        reschedule = _reschedule
        for job in self._take_done():
            reschedule(job.waiter)

    def _drain_asyncio(self) -> None:
        for job in self._take_done():
            if not job.waiter.done():
                job.waiter.set_result(None)

    def _take_done(self) -> list[_Job]:
        with self._mutex:
            done = self._done
            self._done = []
            self._wake_pending = False
        return done

    async def aclose(self) -> None:
        """Take no more bodies, stop every thread and wait until they have exited. A
        body still running is not interrupted: this waits for it to return."""
        with self._mutex:
            self._closing = True
            idle, self._idle = self._idle, []
            self._seeking += len(idle)
            if self._threads == 0:
                self._exited.set()
        for worker in idle:
            worker.park.release()
        if not self._exited.is_set():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._exited.wait)
        for thread in self._started:
            thread.join()
        self._started.clear()

    def statistics(self) -> tuple[int, int]:
        """``(threads alive, bodies waiting for a thread)``, for tests and benchmarks."""
        with self._mutex:
            return self._threads, len(self._jobs)

    # --- the workers' side ----------------------------------------------------------------

    def _recruit(self) -> bool:
        """With the mutex held: make one more worker seek the deque. True when that
        needs a new thread (started by the caller, outside the mutex)."""
        if self._idle:
            self._seeking += 1
            self._idle.pop().park.release()
            return False
        if self._threads < self._limit:
            self._threads += 1
            self._seeking += 1
            return True
        return False  # at the limit: a worker that finishes its body takes the job

    def _start_thread(self) -> bool:
        """Start a worker counted by ``_recruit``; False (uncounted again) if the OS
        refuses a thread: the workers there are take the job when they are free."""
        thread = threading.Thread(target=self._work, name="actors ctx.run body", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread"
            with self._mutex:
                self._threads -= 1
                self._seeking -= 1
                if self._threads == 0 and self._closing:
                    self._exited.set()
            return False
        with self._mutex:  # kept for aclose to join; threads that exited are dropped
            self._started = [t for t in self._started if t.is_alive()]
            self._started.append(thread)
        return True

    def _work(self) -> None:
        self._adopt_thread()
        worker = _Worker()
        mutex = self._mutex
        jobs = self._jobs
        finished: _Job | None = None  # the body just run, whose result goes back first
        while True:  # seeking
            wake = start = leave = False
            job: _Job | None = None
            with mutex:
                if finished is not None:
                    # Hand back the last result and look for the next job in one go.
                    self._done.append(finished)
                    wake = not self._wake_pending
                    self._wake_pending = True
                    finished = None
                else:
                    self._seeking -= 1
                if jobs:
                    job = jobs.popleft()
                    job.state = _TAKEN
                    start = bool(jobs) and self._seeking == 0 and self._recruit()
                elif self._closing:
                    self._threads -= 1
                    if self._threads == 0:
                        self._exited.set()
                    leave = True
                else:
                    self._idle.append(worker)
            if wake:  # before the next body, which may block
                try:
                    self._notify()
                except (RuntimeError, trio.RunFinishedError):
                    pass  # the loop is gone: nobody is waiting for this result
            if leave:
                return
            if start:
                self._start_thread()
            if job is None:
                if not worker.park.acquire(timeout=IDLE_SECONDS):
                    with mutex:
                        if worker in self._idle:  # nobody recruited it: the thread exits
                            self._idle.remove(worker)
                            self._threads -= 1
                            if self._threads == 0 and self._closing:
                                self._exited.set()
                            return
                    worker.park.acquire()  # recruited just as it timed out
                continue
            try:
                job.outcome = (True, job.context.run(job.fn, *job.args))
            except BaseException as exc:  # handed to the task, which raises it
                job.outcome = (False, exc)
            finished = job

    def _adopt_thread(self) -> None:
        """Let ``trio.from_thread`` / ``anyio.from_thread`` find this pool's loop from a
        body, as they do in ``to_thread`` workers (their thread-locals are private)."""
        if self._trio_token is not None:
            try:
                from trio._threads import PARENT_TASK_DATA

                PARENT_TASK_DATA.token = self._trio_token
                # Calls back into trio run in its system nursery (the body's task is
                # not parked where trio.from_thread could borrow it).
                PARENT_TASK_DATA.abandon_on_cancel = True
                PARENT_TASK_DATA.cancel_register = [None]
                PARENT_TASK_DATA.task_register = [None]
            except (ImportError, AttributeError):
                pass
        if self._anyio_token is not None:
            try:
                from anyio._core._eventloop import threadlocals

                threadlocals.current_token = self._anyio_token
            except (ImportError, AttributeError):
                pass
