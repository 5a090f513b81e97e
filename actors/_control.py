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

from actors.storage import InvocationStatus, Table, WriteBatch, dumps

from ._errors import ActorsError, RuntimeClosedError, TerminalError, UnknownHandlerError
from ._kernel import logger

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._results import Results
    from ._scheduler import Scheduler


class Control:
    """Cancel, kill and resume."""

    def __init__(self, kernel: Kernel, scheduler: Scheduler, results: Results) -> None:
        self._k = kernel
        self._scheduler = scheduler
        self._results = results
        self._invocations = kernel.invocations
        self._parked = kernel.parked

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
        if inv.completing or inv.done.finished:
            raise TerminalError(f"invocation {invocation_id} has already completed", 409)
        callees = list(inv.awaiting_calls)
        if kill:
            inv.killed = True
        elif inv.cancel_requested:
            return  # asked before; it is on its way
        else:
            inv.cancel_requested = True
            if inv.inbox_key is not None:  # make the request survive a restart
                status = InvocationStatus.RUNNING if inv.attempt else InvocationStatus.PENDING
                batch = WriteBatch()
                batch.put(Table.INVOCATIONS, invocation_id.encode(), dumps(inv.record(status)))
                await self._k.commit(batch)
        self._k.log("kill requested" if kill else "cancel requested", inv)
        if inv.running:
            if kill and inv.run_scope is not None:
                inv.run_scope.cancel()
                for scope in list(inv.body_scopes):
                    scope.cancel()
            elif inv.paused_reason is not None and inv.resume is not None:
                inv.paused_reason = None  # run it again, to deliver the cancellation
                inv.resume.set()
            for scope in list(inv.wait_scopes):
                scope.cancel()
        elif inv.suspended:
            self._scheduler.resume_suspended(inv)
        elif not inv.dispatched:  # accepted but not delivered yet, or delayed
            inv.not_before = None
            if kill or inv.attempt == 0:  # never started: it ends without taking its key
                inv.dispatched = True
                inv.keyless = True
                self._invocations[invocation_id] = inv
                self._scheduler.run_soon(inv)
            else:
                self._scheduler.dispatch(inv)
        elif (
            inv.activation is not None
            and (kill or inv.attempt == 0)
            and inv.activation.mailbox.cancel_queued(inv)
        ):
            # It was queued behind the key's current work: it finishes without the key.
            inv.keyless = True
            self._scheduler.run_soon(inv)
        for callee_id in callees:
            self.cancel_later(callee_id, kill)
        if kill:
            await inv.done.wait()

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
        inv.attempt = 0
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
