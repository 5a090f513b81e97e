"""``open_runtime``: opening a data directory and running actors in it.

The store is opened (and its directory checked) before anything else; the runtime's
tasks run in a task group of the caller's program; leaving the block closes the runtime,
then the store, even when cancelled. A failure of the runtime itself (a store that
broke, a recovery that found damage) is raised alone, not inside an exception group.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

import anyio

from actors.storage import StorageError, Store

from ._clock import SystemClock
from ._definitions import expand_registrations, registration_entry
from ._errors import persistence_error
from ._files import DATA_DIR_FILES
from ._limits import MAX_BATCH_BYTES
from ._resolution import delay_seconds
from ._retry import RetryPolicy
from ._runtime import Runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from os import PathLike

    from actors.storage import WriteBatch

    from ._clock import Clock
    from ._definitions import Actor, ActorProvider
    from ._kernel import Kernel

__all__ = ["open_runtime"]


@asynccontextmanager
async def open_runtime(
    path: str | PathLike[str],
    actors: Sequence[type[Actor] | Actor | ActorProvider] | ActorProvider,
    *,
    durability: Literal["fsync", "process"] = "fsync",
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    idle_timeout: float = 60.0,
    suspend_after: float = 60.0,
    max_in_flight: int = 10_000,
    retention: timedelta | float = timedelta(days=1),
    commit_mode: Literal["auto", "thread", "inline"] = "auto",
    _fault_hook: Callable[[Sequence[WriteBatch]], None] | None = None,
    _before_run_body: Callable[[str], None] | None = None,
) -> AsyncIterator[Runtime]:
    """Open the data directory ``path`` and run ``actors`` in it, inside the calling
    trio or asyncio program.

    Args:
      actors: actor classes (created with no arguments) or instances; one instance
        serves every key of its class. What ``actors.restate.app([...])`` returns, or
        Restate services (``actors.restate``), stand for the actor classes they
        provide (``ActorProvider``).
      durability: ``"fsync"`` (survives power loss) or ``"process"`` (survives a killed
        process, not an OS crash).
      clock: where durable time comes from (``actors.testing`` has one that follows
        ``trio.testing.MockClock``); the system clock by default.
      retry: the default retry policy of invocations and ``ctx.run`` steps; when None,
        ``RetryPolicy()``: retry until success, with backoff capped at 30 s, never
        pausing an invocation or failing a step by itself.
      idle_timeout: seconds after which an idle key's activation is dropped.
      suspend_after: seconds an invocation blocks in any durable wait (a call, sleep,
        promise, awakeable, or a select/gather of them) before its coroutine is dropped;
        it resumes by replay when what it waits for completes. A handler's
        ``inactivity_timeout=`` (decorator or class keyword) overrides it.
      max_in_flight: invocations held in memory at most; ``call``/``send`` wait beyond
        (and invocations blocked in durable waits are suspended to make room). Once a
        tenth of it (at least 100) are blocked in durable waits, they are suspended
        before ``suspend_after``.
      retention: how long a completed invocation's result and journal, a workflow's
        state, promises and result, and an idempotency key are kept (default one day);
        a background task removes them afterwards. A handler's ``retention=``
        (decorator or class keyword) overrides it.
      commit_mode: ``"auto"`` (the default) commits on the event loop's own thread:
        what the loop's tasks submit is held and committed together, in one
        transaction, as soon as the loop has nothing else to run, or after 0.2 ms if
        it stays busy. The loop pauses for that commit (its fsync, ~0.3
        ms), which saves a thread round trip per commit and keeps commits going beside
        a busy loop, which would starve a writer thread of the GIL. Commits from
        threads without a loop go to a writer thread. ``"thread"`` sends every commit
        to the writer thread: the loop never pauses for a commit. ``"inline"`` commits
        in the submitting call, for tests under
        ``trio.testing.MockClock(autojump_threshold=0)``.

    On exit, running handlers are cancelled; accepted invocations resume at the next
    open. Raises ``PersistenceError`` when the directory cannot be opened and
    ``TypeError`` for a malformed actor definition or duplicate actor names.

    A commit that fails (a full disk, an I/O error) is retried, with the retry policy's
    backoff, until the store takes it: callers wait meanwhile. If the store breaks (it
    takes no more writes: its writer thread died), the runtime stops: waiting callers
    and later requests get a ``PersistenceError``, the block's body is cancelled, and
    leaving the block raises that ``PersistenceError``; the directory is closed cleanly
    and a reopen resumes what was accepted.
    """
    entries = [registration_entry(item) for item in expand_registrations(actors)]
    names = [entry.name for entry in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TypeError(f"actor names registered twice: {', '.join(duplicates)}")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be at least 1")
    if idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive")
    if suspend_after <= 0:
        raise ValueError("suspend_after must be positive")
    retention_seconds = delay_seconds(retention)
    try:
        store = Store.open(
            path,
            durability=durability,
            commit_mode=commit_mode,
            extra_files=DATA_DIR_FILES,
            max_value_size=MAX_BATCH_BYTES,
            _fault_hook=_fault_hook,
        )
    except StorageError as exc:
        raise persistence_error(exc) from exc
    body_error: BaseException | None = None
    kernel: Kernel | None = None
    try:
        async with anyio.create_task_group() as tg:
            runtime = Runtime._create(
                store,
                entries,
                tg,
                idle_timeout=idle_timeout,
                max_in_flight=max_in_flight,
                retry=retry or RetryPolicy(),
                clock=clock or SystemClock(),
                suspend_after=suspend_after,
                retention=retention_seconds,
            )
            kernel = runtime._k
            kernel.before_run_body = _before_run_body
            try:
                runtime._start(tg)
            except BaseException as exc:
                body_error = exc  # recovery failed (a damaged store): raised on its own
                raise
            try:
                yield runtime
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                runtime._close()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if kernel is not None and kernel.fatal is not None:
            fatal = kernel.fatal_error()  # the store broke: say that
            raise fatal from fatal.__cause__
        # The runtime's own tasks never fail, so a group holding only the body's (or the
        # recovery's) error is an artifact of the task group: raise that error alone.
        if body_error is not None and group.exceptions == (body_error,):
            raise body_error from None
        raise
    except BaseException:
        if kernel is not None and kernel.fatal is not None:
            fatal = kernel.fatal_error()  # the body was cancelled by the stop
            raise fatal from fatal.__cause__
        raise
    finally:
        with anyio.CancelScope(shield=True):  # release the directory even when cancelled
            if kernel is not None:  # its threads exit (a ctx.run body running is waited for)
                await kernel.step_threads.aclose()
            await store.aclose()
    if kernel is not None and kernel.fatal is not None:
        raise kernel.fatal_error()  # it stopped by itself: the body had ended meanwhile
