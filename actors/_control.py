"""Control: cancel, kill and resume an invocation from outside it.

*Cancel* is a request, made durable in the invocation's record before ``cancel``
returns. It is delivered inside the handler at its next durable await as a 409
``TerminalError`` (``Waits.check_cancel``), so compensations run, and it propagates to
the invocations the handler waits on. One that never started completes as cancelled
without running and without taking its key.

*Kill* ends the invocation at once: its run scope is cancelled (a ``ctx.run`` body on a
thread finishes first, its result discarded), it completes as killed, its callers get a
409, the invocations it waits on are killed too, and a key it held goes to the next
queued invocation.

*Resume* restarts a paused invocation's attempts from its journal. The command line's
offline edits (``actors cancel|kill|resume`` on a directory nobody serves) write the
same record fields, carried out at the next open (``_recovery``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from actors.storage import CallEntry, Failure, InvocationStatus, Table, WriteBatch, dumps

from ._errors import ActorsError, RuntimeClosedError, TerminalError, UnknownHandlerError
from ._kernel import logger
from ._lifecycle import Action, Event, Phase

if TYPE_CHECKING:
    from ._executor import Executor
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._results import Results
    from ._scheduler import Scheduler


class Control:
    """Cancel, kill and resume."""

    def __init__(
        self, kernel: Kernel, scheduler: Scheduler, results: Results, executor: Executor
    ) -> None:
        self._k = kernel
        self._scheduler = scheduler
        self._results = results
        self._executor = executor
        self._invocations = kernel.invocations
        self._parked = kernel.parked
        kernel.cancel_quietly = self.cancel_quietly  # for ``HandleOps.settle_cancels``
        results.cancel = functools.partial(self.cancel, kill=False)  # ``handle.cancel()``

    def cancel_later(self, invocation_id: str, kill: bool = False) -> None:
        """Cancel (or kill) ``invocation_id`` in a task of its own, quietly."""
        self._k.spawn(functools.partial(self.cancel_quietly, invocation_id, kill))

    async def cancel_quietly(self, invocation_id: str, kill: bool = False) -> None:
        try:
            await self.cancel(invocation_id, kill=kill)
        except (ActorsError, RuntimeClosedError) as exc:
            logger.debug("propagating the cancellation to %s: %s", invocation_id, exc)

    async def cancel(self, invocation_id: str, *, kill: bool) -> None:
        inv = self._invocations.get(invocation_id)
        if inv is None and invocation_id in self._parked:
            inv = self._scheduler.revive(invocation_id)
        if inv is None:
            record = self._k.load_record(invocation_id)
            if record is None:
                raise UnknownHandlerError(f"no invocation {invocation_id!r}")
            if record.outcome is not None:
                raise TerminalError(f"invocation {invocation_id} has already completed", 409)
            raise TerminalError(f"invocation {invocation_id} is not running in this runtime", 409)
        if inv.done.finished:
            raise TerminalError(f"invocation {invocation_id} has already completed", 409)
        life = inv.life
        callees = list(inv.awaiting_calls or ())
        actions = life.apply(Event.KILL if kill else Event.CANCEL)
        if Action.REJECT_COMPLETED in actions:
            raise TerminalError(f"invocation {invocation_id} has already completed", 409)
        if not actions and not kill:
            return  # asked before; it is on its way
        self._k.log("kill requested" if kill else "cancel requested", inv)
        for action in actions:
            await self._carry_out(inv, action)
        if kill and Action.PROPAGATE_KILL in actions:
            # A caller whose coroutine is gone (suspended, parked, rebuilt after a
            # restart) awaits nothing in memory: its journal knows its open calls.
            callees += [c for c in self._unanswered_calls(inv) if c not in callees]
        for callee_id in callees:
            self.cancel_later(callee_id, kill)
        if kill:
            await inv.done.wait()

    def kill_callees(self, inv: Invocation) -> None:
        """Kill the invocations ``inv`` waits on, in memory or in its journal: what a
        kill of ``inv`` propagates to (used when its retry policy kills it)."""
        callees = list(inv.awaiting_calls or ())
        callees += [c for c in self._unanswered_calls(inv) if c not in callees]
        for callee_id in callees:
            self.cancel_later(callee_id, True)

    def _unanswered_calls(self, inv: Invocation) -> list[str]:
        """Callees of ``inv``'s journaled calls that have not answered yet."""
        try:
            journal = self._executor.load_journal(inv)
        except ActorsError as exc:  # the kill goes on; only the propagation is lost
            logger.error("kill of %s: cannot read its journal: %s", inv.invocation_id, exc)
            return []
        entries = [*journal.values(), *(entry for _, entry in inv.unflushed)]
        return [e.callee_id for e in entries if isinstance(e, CallEntry) and e.outcome is None]

    async def _carry_out(self, inv: Invocation, action: Action) -> None:
        """One action of a cancel or kill, as the lifecycle table asked, in its order."""
        if action is Action.PERSIST_CANCEL_REQUEST:
            if inv.inbox_key is not None:  # make the request survive a restart
                status = InvocationStatus.RUNNING if inv.attempt else InvocationStatus.PENDING
                batch = WriteBatch()
                batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(inv.record(status)))
                await self._k.commit(batch)
        elif action is Action.INTERRUPT_WAITS:
            for scope in list(inv.wait_scopes or ()):
                scope.cancel()
        elif action is Action.CANCEL_RUN:
            if inv.run_scope is not None:
                inv.run_scope.cancel()
            for scope in inv.interruptible_scopes():
                scope.cancel()
        elif action is Action.WAKE_TASK:
            inv.paused_reason = None  # run it again, to deliver the cancellation
            inv.done.paused = None  # callers wait for how the cancellation ends it
            if inv.resume is not None:
                inv.resume.set()
        elif action is Action.RESPAWN:
            self._scheduler.resume_suspended(inv)
        elif action is Action.UNQUEUE:
            if inv.activation is not None:
                inv.activation.mailbox.cancel_queued(inv)
        elif action in (Action.END_CANCELLED, Action.END_KILLED):
            # It never started: one batch ends it, without an attempt or its key.
            what = "cancelled" if action is Action.END_CANCELLED else "killed"
            outcome = Failure(f"invocation {inv.invocation_id} was {what}", 409)
            self._invocations[inv.invocation_id] = inv
            self._k.spawn(functools.partial(self._executor.end_without_running, inv, outcome))
        # PROPAGATE_KILL: ``cancel`` passes the kill on to the calls it awaits, in
        # memory or, for a caller without its coroutine, in its journal.

    async def resume(self, invocation_id: str) -> None:
        """Resume a paused invocation: its attempts start again from its journal.

        Raises ``UnknownHandlerError`` for an unknown id and ``ValueError`` when the
        invocation is not paused."""
        inv = self._invocations.get(invocation_id)
        if inv is None:
            self._results.stored_spec(invocation_id)  # raises for an unknown id
            raise ValueError(f"invocation {invocation_id} is not paused (it is not running)")
        if inv.paused_reason is None:
            raise ValueError(f"invocation {invocation_id} is not paused")
        inv.paused_reason = None
        inv.retry_since = None  # a resume gives it its whole retry budget again
        inv.done.paused = None  # callers from now on wait for its result
        if inv.life.phase is Phase.PAUSED:  # else its task has not reached the wait yet
            inv.life.apply(Event.RESUME)
        batch = WriteBatch()
        batch.put(
            Table.INVOCATIONS,
            inv.invocation_id.encode(),
            dumps(inv.record(InvocationStatus.RUNNING)),
        )
        await self._k.commit(batch)
        if inv.resume is not None:  # else its task has not reached the wait yet
            inv.resume.set()
        self._k.log("resumed", inv)
