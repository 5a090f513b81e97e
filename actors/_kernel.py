"""What every part of the runtime shares: the store, the registered actors, the clock,
the invocations held in memory, and a few services they all use.

The runtime is a set of parts, each owning one concern (``_scheduler``, ``_gate``,
``_timers``, ``_admission``, ``_executor``, ``_control``, the context operations), wired
together by ``Runtime``. A part reaches another only through the reference it is given
when it is built, and parts are built in a fixed order, so module imports stay acyclic.
The kernel holds the state that has no single owner: ``invocations`` is read by nearly
every part, ``parked`` by the scheduler, control and results, ``graph`` by calls, waits,
control and the executor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from actors.storage import InvocationRecord, RecordDecodeError, StorageError, Table, loads

from ._clock import loop_time_function
from ._deadlock import WaitForGraph
from ._errors import PersistenceError, damaged_record_error, persistence_error
from ._lifecycle import Phase
from ._loop_primitives import LoopPrimitives, loop_primitives, start_soon_of
from ._parked import ParkedInvocations
from ._step_threads import StepThreads

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import anyio.abc

    from actors.storage import Store, WriteBatch

    from ._clock import Clock
    from ._definitions import ActorEntry
    from ._invocation import Completion, Invocation
    from ._retry import RetryPolicy

logger = logging.getLogger("actors")


@attrs.define(eq=False)
class Kernel:
    """The shared state of one open runtime."""

    store: Store
    entries: dict[str, ActorEntry]
    task_group: anyio.abc.TaskGroup
    clock: Clock
    retry: RetryPolicy
    suspend_after: float
    retention: float
    idle_timeout: float
    #: The event loop's clock, usable in commit callbacks too.
    loop_time: Callable[[], float] = attrs.field(factory=loop_time_function)
    #: The running loop's cancel scope and checkpoint (trio's own under trio).
    primitives: LoopPrimitives = attrs.field(factory=loop_primitives)
    #: Invocations held in memory, by id.
    invocations: dict[str, Invocation] = attrs.field(factory=dict)
    #: Suspended invocations dropped from memory, by id: a compact index (``_parked``).
    parked: ParkedInvocations = attrs.field(factory=ParkedInvocations)
    graph: WaitForGraph = attrs.field(factory=WaitForGraph)
    #: Workflow ids whose main was accepted but is not durable yet: (actor, id) -> inv.
    workflow_claims: dict[tuple[str, str], str] = attrs.field(factory=dict)
    #: Idempotency keys whose acceptance is not durable yet: key -> (digest, invocation).
    idempotency_inflight: dict[str, tuple[bytes, str]] = attrs.field(factory=dict)
    #: Callers waiting on an invocation that does not complete into their journal (an
    #: idempotent or workflow call answered by an existing invocation), by its id: its
    #: completion wakes them (``_ops_calls``).
    call_watchers: dict[str, set[str]] = attrs.field(factory=dict)
    closed: bool = False
    #: Why the runtime stopped by itself (its store broke); ``open_runtime`` raises it.
    fatal: PersistenceError | None = None
    #: ``Control.cancel_quietly``, wired by control (built above the operations that
    #: make cancel requests durable before completing: ``HandleOps.settle_cancels``).
    cancel_quietly: Callable[[str], Coroutine[Any, Any, None]] = attrs.field(default=None)
    #: Closes the runtime (``Runtime._close``), wired by the runtime: ``stop`` calls it.
    on_stop: Callable[[], None] = attrs.field(default=lambda: None)
    #: The worker threads of plain-function ``ctx.run`` bodies; stopped by ``open_runtime``.
    step_threads: StepThreads = attrs.field(factory=StepThreads)
    #: Test hook (actors.testing): called with a ``ctx.run`` name before its body.
    before_run_body: Callable[[str], None] | None = None
    #: ``task_group.start_soon``, or what it wraps (``start_soon_of``): starts the
    #: runtime's own tasks (a revived invocation, a mailbox's next, a service call).
    start_soon: Callable[..., object] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.start_soon = start_soon_of(self.task_group)

    def spawn(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.start_soon(task)

    def load_record(self, invocation_id: str) -> InvocationRecord | None:
        try:
            data = self.store.get(Table.INVOCATIONS, invocation_id.encode())
        except StorageError as exc:
            raise persistence_error(exc) from exc
        try:
            return None if data is None else loads(InvocationRecord, data)
        except RecordDecodeError as exc:
            raise damaged_record_error(self.store.path, exc) from exc

    async def commit(self, batch: WriteBatch) -> None:
        try:
            await self.store.commit(batch)
        except StorageError as exc:
            raise self.write_failed(exc) from exc

    def write_failed(self, exc: StorageError) -> PersistenceError:
        """The ``PersistenceError`` for a write that failed with ``exc``; if the store
        broke (it takes no more writes), the runtime stops (``stop``)."""
        if self.store.broken is not None:
            self.stop()
        return persistence_error(exc)

    def stop(self) -> None:
        """The store broke: no write can succeed any more, so the runtime stops rather
        than retry forever. Everyone waiting for an invocation is answered with the
        store's ``PersistenceError`` (a completing one by its own task: it may have
        landed), the runtime's tasks are cancelled, later requests get the error, and
        ``open_runtime`` raises it. Accepted invocations resume at the next open."""
        broken = self.store.broken
        if self.fatal is not None or broken is None:
            return
        self.fatal = persistence_error(broken)
        logger.critical("the runtime stops: %s", broken)
        self.on_stop()
        completing = (Phase.COMPLETING, Phase.KILL_COMPLETING)
        dones = [inv.done for inv in self.invocations.values() if inv.life.phase not in completing]
        for done in [*dones, *self.parked.completions()]:
            if not done.finished:
                done.error = self.fatal_error()
                done.set()
        self.task_group.cancel_scope.cancel()

    def fatal_error(self) -> PersistenceError:
        """A fresh copy of ``fatal`` to raise (one instance raised again and again would
        grow its traceback)."""
        assert self.fatal is not None
        error = PersistenceError(str(self.fatal))
        error.__cause__ = self.fatal.__cause__
        return error

    def completion_of(self, invocation_id: str) -> Completion | None:
        """Where the result of an invocation held in memory or parked lands (for a
        parked one, made when first asked for: ``ParkedInvocations.completion``)."""
        inv = self.invocations.get(invocation_id)
        if inv is not None:
            return inv.done
        return self.parked.completion(invocation_id)

    def log_id(self, event: str, invocation_id: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("invocation %s %s", invocation_id, event)

    def log(self, event: str, inv: Invocation) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "invocation %s %s: actor=%s key=%s handler=%s",
                inv.invocation_id,
                event,
                inv.target.actor,
                inv.target.key,
                inv.target.handler,
            )


def noop() -> None:
    pass
