"""The executor: running an invocation's attempts, from its journal, to completion.

An attempt runs the handler from the start against the durable journal: recorded
operations return their recorded values, later ones run live (``_invocation``). A
``TerminalError`` completes the invocation with that error (Restate's semantics: state
written before it is kept). Any other exception retries the attempt from the journal
with the retry policy's backoff, holding the key (by default until it succeeds). When a
limit of the policy is reached, or a replay diverges from the journal, the invocation is
*paused*: it keeps its key, stays visible, and continues with ``resume``; or, if its
policy says ``on_max_attempts="kill"``, it is killed.

What a completion writes, and what its callers are told, is ``_completion``'s. A failed
commit is the store's failure, not the handler's: a step's retries the attempt with
backoff and never pauses it; a completion's is committed again, unchanged, until it lands
(``_recommit``); an attempt that ends after a batch it builds on failed runs again. Only a store that broke (it takes no more writes) ends this: the runtime stops.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Final

import anyio
import trio

from actors.mailbox import HOLD, NO_RELEASE
from actors.storage import (
    Failure,
    InvocationStatus,
    JournalEntry,
    Outcome,
    RunEntry,
    StorageError,
    Table,
    WriteBatch,
    dumps,
)

from ._attempt_setup import load_journal, run_attempt
from ._completion import Completions
from ._control_flow import RUN_BODY, HandlerFailed, PausedInline, StepFailed, Suspended
from ._errors import (
    NonDeterminismError,
    PersistenceError,
    TerminalError,
)
from ._failures import cut, describe
from ._invocation import NO_JOURNAL, Effect
from ._kernel import logger
from ._lazy_scope import LazyScope
from ._lifecycle import Action, Cancel, Event, Phase
from ._retry import INVOCATION_RETRIES
from ._retry_start import keep_retry_start, retry_start

# Read on every call. In Python 3.11 each ``Enum.MEMBER`` read goes through
# ``EnumType.__getattr__``'s slot and is not specialised (~0.1 us; a module global
# ~0.01 us), so the hot paths below read these names, bound once.
_KILLING: Final = Phase.KILLING
_SUSPENDED: Final = Phase.SUSPENDED
_BACKING_OFF: Final = Phase.BACKING_OFF
_START: Final = Event.START
_COMPLETE: Final = Event.COMPLETE
_DURABLE: Final = Event.DURABLE
_RELEASE_SLOT: Final = Action.RELEASE_SLOT
_NO_CANCEL: Final = Cancel.NONE
_COMPLETED: Final = InvocationStatus.COMPLETED
_KILLED: Final = InvocationStatus.KILLED


if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.mailbox import Release
    from actors.storage import CommitTicket

    from ._deadlock import Node
    from ._gate import OutputGate
    from ._invocation import Invocation
    from ._kernel import Kernel
    from ._loop_primitives import CancelScopeLike
    from ._port import HandlerPort
    from ._recommit import Recommits
    from ._scheduler import Scheduler
    from ._timers import Timers


class Executor:
    """Runs invocations: attempts, retries, pauses and completion."""

    def __init__(
        self,
        kernel: Kernel,
        output: OutputGate,
        scheduler: Scheduler,
        timers: Timers,
        port: HandlerPort,
        recommits: Recommits,
    ) -> None:
        self._k = kernel
        self._output = output
        self._recommits = recommits
        self._scheduler = scheduler
        self._timers = timers
        self._port = port
        self._store = kernel.store
        self._clock = kernel.clock
        self._retry = kernel.retry
        self._retention = kernel.retention
        self._graph = kernel.graph
        self._invocations = kernel.invocations
        self._completions = Completions(kernel, output, recommits, scheduler, timers)
        #: Kills the invocations one waits on (``Control.kill_callees``, wired by the
        #: runtime): a policy that says "kill" ends it as ``kill`` would.
        self.kill_callees: Callable[[Invocation], None] = lambda inv: None
        #: Why a policy killed an invocation, until its killed record is written.
        self._kill_reasons: dict[str, str] = {}

    @trio.lowlevel.disable_ki_protection  # as a task's code (``_lazy_scope``'s ``run`` is not)
    async def run(
        self, inv: Invocation, release: Release, inline: CancelScopeLike | None = None, /
    ) -> object:
        """Run ``inv`` to its end in memory (completed, suspended or parked), with
        ``release`` giving its key back (the mailbox runner). ``inline``: under trio,
        the scope of the call it runs inline in (a ``LazyScope`` or trio's), which a
        kill cancels (``shielded_scope``); otherwise it runs in a kill scope of its own."""
        life = inv.life
        key_node: Node | None = None
        if inv.exclusive and life.phase is not _KILLING:
            key_node = ("key", f"{inv.target.actor}/{inv.target.key}")
            self._graph.hold(key_node, ("inv", inv.invocation_id))
        finished = False
        parked = False
        taken_over = False
        status = _COMPLETED
        # A killed inline run's shield (below); None, the usual case, needs no ``with``.
        shield: CancelScopeLike | None = None
        # A call made from a step's body runs a handler of its own, in the same task.
        # (Set here, not in a wrapping coroutine: one coroutine less per invocation; and
        # only in a body: elsewhere it is None already, and a set and a reset cost.)
        token = RUN_BODY.set(None) if RUN_BODY.get() is not None else None
        try:
            if inline is None:
                with self._k.primitives.cancel_scope() as scope:  # kill() cancels it
                    inv.run_scope = scope
                    outcome = await self.attempts(inv)
            else:
                inv.run_scope = inline  # kill() cancels the caller's scope
                try:
                    outcome = await self.attempts(inv)
                except self._k.primitives.cancelled:
                    if life.phase is not _KILLING or self._k.closed:
                        raise  # not a kill: it unwinds the caller's scope
                # (A kill sets KILLING before it cancels: the phase is read first, as
                # trio's ``cancel_called`` reads the clock.)
                if life.phase is _KILLING and inline.cancel_called and not self._k.closed:
                    # Killed (maybe after its handler's last checkpoint). The caller's
                    # scope stays cancelled (trio's cancellation is level-triggered): what
                    # is left to await, its killed record, is awaited shielded, and the
                    # caller's scope ends catching nothing.
                    shielded = self._k.primitives.shielded_scope
                    assert shielded is not None
                    shield = shielded()
            inv.run_scope = None
            if life.phase is _KILLING:
                why = self._kill_reasons.pop(inv.invocation_id, None)  # killed by its policy
                killed = f"invocation {inv.invocation_id} was killed"
                outcome = Failure(f"{killed}: {why}" if why else killed, 409)
                status = _KILLED
                self._k.log("killed", inv)
            if outcome is None:  # unwound: the coroutine is gone
                # An object keeps its key while it waits; anything else is parked.
                if inv.spec.kind == "exclusive":
                    self._act(inv, Event.SUSPEND)
                    return HOLD
                self._act(inv, Event.PARK)
                parked = True
                if key_node is not None:
                    self._graph.release(key_node)
                    key_node = None
                release()  # a parked main holds no key: nothing else may run on it anyway
                self._scheduler.park(inv)
                return None
            # The call's lazy scope, if never entered: its commit waits need none.
            lazy = inline if type(inline) is LazyScope and not inline.entered else None
            if self._completions.is_pure_read(inv):
                # Nothing to record: the answer depends only on state that is committed
                # (shared, service) or on the key's queued commits (exclusive).
                ticket = self._output.chain(inv)
                settled = ticket is None or ticket.done
                if settled:  # (the usual case: durable as soon as it is complete)
                    ended = life.apply_pair(_COMPLETE, _DURABLE)
                else:
                    life.apply(_COMPLETE)  # hands the key on (below), keeps its slot
                if key_node is not None:
                    self._graph.release(key_node)
                    key_node = None
                if release is not NO_RELEASE:  # (a call of a shared handler: no call)
                    release()
                finished = True
                # (``attempts`` saw no failed batch under it: ``chain_broken``.)
                if ticket is not None and not settled:
                    if shield is None:
                        error = await self._read_settled(inv, ticket, lazy)
                    else:
                        with shield:
                            error = await self._read_settled(inv, ticket)
                    if error is not None:
                        inv.error = self._k.write_failed(error)
                        self._act(inv, Event.ABANDON)
                        return None
                    ended = life.apply(_DURABLE)
                inv.done.outcome = outcome
                if _RELEASE_SLOT in ended:
                    self._scheduler.slots.release()
                if logger.isEnabledFor(logging.INFO):  # (log's own test, without its call)
                    self._k.log("completed", inv)
                return None
            life.apply(_COMPLETE)  # hands the key on (below), keeps its slot
            try:
                # The outcome it records is the one every caller is told (maybe a 413).
                ticket, outcome = self._completions.submit(inv, outcome, status)
            except StepFailed as exc:  # the store takes no more writes
                inv.error = PersistenceError(str(exc))
                ticket = None
            if key_node is not None:
                self._graph.release(key_node)
                key_node = None
            finished = True
            if ticket is None:
                release()
                self._act(inv, Event.ABANDON)
                return None
            # The next exclusive invocation may start on our queued writes: in this very
            # task if it is queued (a relay), while a task of its own waits for ours.
            if release.relay():
                taken_over = True
                self._k.spawn(functools.partial(self._answered, inv, ticket, outcome, status))
                return None
            if shield is None:  # (the only other await after ``attempts``: above)
                await self._completed(inv, ticket, outcome, status, lazy)
            else:
                with shield:
                    await self._completed(inv, ticket, outcome, status)
            return None
        except PausedInline:
            taken_over = True  # not finished: ``run_call`` hands it to a task of its own
            raise
        finally:
            try:
                inv.run_scope = None
                if key_node is not None and life.phase is not _SUSPENDED:
                    self._graph.release(key_node)
                if parked or taken_over:
                    pass
                elif finished or life.phase is not _SUSPENDED:
                    self.finish(inv)
            finally:
                if token is not None:
                    RUN_BODY.reset(token)

    async def _answered(
        self, inv: Invocation, ticket: CommitTicket, outcome: Outcome, status: InvocationStatus
    ) -> None:
        """``_completed``, then the end of ``inv``'s life in memory: the part of a run
        that a relaying task hands to a task of its own."""
        try:
            await self._completed(inv, ticket, outcome, status)
        finally:
            self.finish(inv)

    async def _completed(
        self,
        inv: Invocation,
        ticket: CommitTicket,
        outcome: Outcome,
        status: InvocationStatus,
        lazy: LazyScope | None = None,
    ) -> None:
        """Wait for a queued completion to be durable, then answer its callers.
        ``lazy``: the inline call's scope, not entered yet: the wait needs none (a
        completing invocation refuses kill and cancel; the commit settles by the
        store's close at the latest), so it waits unscoped (``wait_unscoped``)."""
        try:
            try:
                if not ticket.done:
                    # A wait that blocks is a checkpoint: the caller's own need not be.
                    inv.done.yielded = True
                await (ticket.wait() if lazy is None else lazy.wait_unscoped(ticket.wait()))
                error = None
            except StorageError as exc:
                error = await self._recommitted(inv, exc)
            if error is not None:  # the store broke: it never will
                inv.error = self._k.write_failed(error)
                logger.error("completion of invocation %s failed: %s", inv.invocation_id, error)
                self._act(inv, Event.ABANDON)
                return
        except BaseException:
            # Whoever waited went away (a ``call``'s caller): the batch lands anyway,
            # and what it delivers and schedules must still happen then.
            if not self._k.closed:
                self._k.spawn(functools.partial(self._completed, inv, ticket, outcome, status))
            raise
        inv.done.outcome = outcome
        self._act(inv, _DURABLE)
        if status is not _KILLED and logger.isEnabledFor(logging.INFO):
            self._k.log("completed", inv)
        self._completions.after(inv)

    async def _recommitted(self, inv: Invocation, exc: StorageError) -> StorageError | None:
        """The completion's batch failed with ``exc``: wait until it is committed again
        (``_recommit``); None, or why it never will be."""
        self._act(inv, Event.COMMIT_FAILED)
        logger.warning(
            "completion of invocation %s failed, it is committed again: %s",
            inv.invocation_id,
            exc,
        )
        return await self._recommits.recommitted(inv, exc)

    async def _read_settled(
        self, inv: Invocation, ticket: CommitTicket, lazy: LazyScope | None = None
    ) -> StorageError | None:
        """A pure read answers once what it read is durable: the batch it read, or, if
        that failed, the key's failed completions committed again. None, or why not.
        ``lazy``: as ``_completed``'s (the read is completing: its wait needs no scope)."""
        try:
            await (ticket.wait() if lazy is None else lazy.wait_unscoped(ticket.wait()))
            return None
        except StorageError as exc:
            activation = inv.activation
            if activation is None:
                return exc
            await self._recommits.drained(activation)
            return self._store.broken

    async def end_without_running(self, inv: Invocation, outcome: Outcome) -> None:
        """End an invocation that never started (its lifecycle said END_CANCELLED or
        END_KILLED): one completion batch, no attempt, no key."""
        killed = inv.life.phase is Phase.KILL_COMPLETING
        status = _KILLED if killed else _COMPLETED
        try:
            try:
                ticket, outcome = self._completions.submit(inv, outcome, status)
            except StepFailed as exc:  # the store takes no more writes
                inv.error = PersistenceError(str(exc))
                ticket = None
            if ticket is None:
                self._act(inv, Event.ABANDON)
            else:
                await self._completed(inv, ticket, outcome, status)
        finally:
            self.finish(inv)

    def _act(self, inv: Invocation, event: Event) -> tuple[Action, ...]:
        """Apply ``event`` to ``inv``'s lifecycle and give back the slot if it says so."""
        actions = inv.life.apply(event)
        if _RELEASE_SLOT in actions:  # it no longer costs a coroutine
            self._scheduler.slots.release()
        return actions

    async def attempts(self, inv: Invocation) -> Outcome | None:
        """Run attempts until one completes (its outcome) or the invocation unwinds
        (None). Retries and pauses happen here, with the key held."""
        policy = inv.spec.retry or self._retry
        timed = policy.max_duration is not None  # then the start of each attempt is kept
        started = 0.0
        life = inv.life
        while True:
            phase = life.phase
            if phase is _KILLING:
                return None
            if phase is _BACKING_OFF:
                await self._back_off(inv)
                life.apply(Event.RETRY)
            if inv.paused_reason is not None:  # paused in its record: wait for resume
                if life.phase is not Phase.PAUSED:  # (a task taking it over finds it so)
                    life.apply(Event.PAUSE)
                if life.phase is Phase.PAUSED:
                    inv.done.pause(inv.paused_reason)  # callers outside are answered
                    await self.wait_resumed(inv)
                else:
                    inv.paused_reason = None  # a cancel overrides the stored pause
            inv.not_before = None
            if life.failures or life.commit_failures:
                # A retry: the failed attempt's last batch (maybe not awaited) settles first.
                head = self._output.chain(inv)
                if head is not None and not head.done:
                    try:
                        await head.wait()
                    except StorageError:
                        pass
                if inv.pending_effects:  # what the failed attempt made durable is delivered
                    inv.settle_effects()
            activation = inv.activation
            if inv.exclusive and activation is not None and activation.recommits is not None:
                # The key's failed completions land first: this attempt reads them. No
                # await from here to the start, so none can fail unseen meanwhile.
                await self._recommits.drained(activation)
            self._output.forget_failed_chain(inv)
            # (A call not yet recorded has no journal to read: no call to find so.)
            journal = load_journal(self._store, inv) if inv.inbox_key is not None else NO_JOURNAL
            if life.cancel is not _NO_CANCEL and not journal:
                # Cancelled before it did anything: nothing to compensate, do not start.
                return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
            inv.start_attempt(journal)
            life.apply(_START)
            if timed:
                started = self._clock.now()
            try:
                outcome = await run_attempt(self._port, inv)
                if inv.requested_cancels:  # durable before it completes (``_ops_handles``)
                    await self._port.settle_cancels(inv)
                if self._output.chain_broken(inv):
                    # It may have read around writes that failed and will land again.
                    raise StepFailed("a batch it builds on failed to commit")
                return outcome
            except Suspended:
                if life.phase is Phase.WOKEN_UNWINDING:
                    # What it waited for came (or a cancel) while unwinding: run again.
                    unwound = Event.SUSPEND if inv.spec.kind == "exclusive" else Event.PARK
                    life.apply(unwound)
                    continue
                if not life.killing:
                    self._k.log("suspended", inv)
                return None
            except NonDeterminismError as exc:
                self._unwound_no_more(inv)
                if life.cancel_requested:  # cancelled: it is not retried or paused again
                    return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
                await self.pause(inv, describe(exc))
            except (HandlerFailed, StepFailed) as exc:
                self._unwound_no_more(inv)
                if life.cancel_requested and isinstance(exc, HandlerFailed):
                    return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
                reason = str(exc)
                if isinstance(exc, HandlerFailed) and any(
                    isinstance(entry, RunEntry) for _, entry in inv.unflushed
                ):
                    # Keep the step results the attempt produced, so their bodies do
                    # not run again (their state writes come along, as in a journal).
                    try:
                        ticket = self._output.flush(inv)
                    except (TerminalError, StepFailed):
                        ticket = None
                    if ticket is not None:  # the calls it carries are delivered once it lands
                        for callee in inv.pending_calls:
                            effect = Effect(
                                functools.partial(self._scheduler.dispatch, callee), None
                            )
                            effect.ticket = ticket
                            inv.add_effect(effect)
                        inv.pending_calls = []
                # Otherwise the failed attempt's tail is dropped: state stays unchanged.
                inv.unflushed = []
                inv.writes = {}
                inv.cleared_all = False
                inv.pending_bytes = 0
                if inv.acceptance_ticket is not None and inv.acceptance_ticket.error is not None:
                    # The acceptance (or the move to its admitted row) never landed: the
                    # row is where it was before, and the next flush writes it again.
                    inv.inbox_key = inv.moved_from
                    inv.moved_from = None
                    inv.acceptance_ticket = None
                failures = life.failures + 1  # counting this one
                handler_failed = isinstance(exc, HandlerFailed)
                kept = retry_start(inv, INVOCATION_RETRIES) if timed else None
                since = started if kept is None else kept
                elapsed = self._clock.now() - since if timed else 0.0
                if handler_failed and policy.exhausted(failures, elapsed):
                    if life.cancel_requested:
                        return Failure(f"invocation {inv.invocation_id} was cancelled", 409)
                    within = f" in {elapsed:.3g}s" if timed else ""
                    plural = "s" if failures != 1 else ""
                    why = f"gave up after {failures} attempt{plural}{within}: {reason}"
                    if policy.on_max_attempts == "kill":
                        self._kill(inv, why)
                        return None
                    await self.pause(inv, why)
                else:
                    # A failed commit is not the handler's: retried until the store takes
                    # it (it never pauses), unless the store broke: then the runtime stops.
                    life.apply(Event.FAIL if handler_failed else Event.STEP_FAILED)
                    count = life.failures if handler_failed else life.commit_failures
                    inv.not_before = self._clock.now() + policy.delay(count + 1)
                    if not handler_failed and self._store.broken is not None:
                        self._k.stop()
                    logger.info(
                        "invocation %s (%s) attempt %d failed, retrying in %.3fs: %s",
                        inv.invocation_id,
                        inv.spec.qualname,
                        life.attempt,
                        inv.not_before - self._clock.now(),
                        reason,
                    )
                    if timed and handler_failed and kept is None:
                        # The first failure of a timed policy: its limit counts from this
                        # attempt's start, after a restart too.
                        await keep_retry_start(self._output, inv, INVOCATION_RETRIES, since)

    def _kill(self, inv: Invocation, reason: str) -> None:
        """End ``inv`` as killed, because its policy ran out and says so: as ``kill``
        would, without compensation, and the invocations it waits on are killed too.
        Called between attempts (RUNNING, nothing of the handler runs any more); its
        task then writes the killed record (``run``)."""
        logger.error("invocation %s (%s) killed: %s", inv.invocation_id, inv.spec.qualname, reason)
        self._kill_reasons[inv.invocation_id] = cut(reason)
        inv.life.apply(Event.KILL)  # CANCEL_RUN: the bodies a select left running
        for scope in inv.interruptible_scopes():
            scope.cancel()
        self.kill_callees(inv)  # PROPAGATE_KILL

    @staticmethod
    def _unwound_no_more(inv: Invocation) -> None:
        """An attempt that began to unwind (``Suspended``) ended with another error (a
        ``finally`` of the handler raised): it is running again, to fail or retry."""
        if inv.life.phase in (Phase.UNWINDING, Phase.WOKEN_UNWINDING):
            inv.life.apply(Event.UNBLOCK)

    async def _back_off(self, inv: Invocation) -> None:
        """Wait out a retry's backoff; a cancel cuts it short (the cancel then lands at
        the first durable await of the next attempt)."""
        if inv.not_before is None or inv.cancel_requested:
            return
        with anyio.CancelScope() as scope:
            inv.add_wait_scope(scope)
            try:
                await self._clock.sleep_until(inv.not_before)
            finally:
                inv.discard_wait_scope(scope)

    async def pause(self, inv: Invocation, reason: str) -> None:
        """Pause ``inv`` (durably), answer its callers outside the runtime, and wait for
        its resume. Run in an outside caller's task, it unwinds to that caller instead
        (``PausedInline``), and a task of the runtime waits."""
        reason = cut(reason)  # the record must fit in the store, whatever was raised
        inv.paused_reason = reason
        inv.life.apply(Event.PAUSE)
        logger.error("invocation %s (%s) paused: %s", inv.invocation_id, inv.spec.qualname, reason)
        batch = WriteBatch()
        batch.put(
            Table.INVOCATIONS,
            inv.invocation_id.encode(),
            dumps(inv.record(InvocationStatus.PAUSED)),
        )
        try:
            # The acceptance (if any) goes first in the batch, so the PAUSED record wins.
            ticket = self._output.flush(inv, batch)
            if ticket is not None:
                await ticket.wait()
            if inv.pending_effects:  # journaled effects (invariant 14): durable now
                inv.settle_effects()
        except (StorageError, TerminalError, StepFailed) as exc:
            logger.error("could not record the pause of %s: %s", inv.invocation_id, exc)
        if inv.life.phase is not Phase.PAUSED:
            return  # cancelled meanwhile: it runs again to deliver the cancellation
        inv.done.pause(reason)
        if self._scheduler.runs_inline(inv.invocation_id):
            raise PausedInline
        await self.wait_resumed(inv)

    async def wait_resumed(self, inv: Invocation) -> None:
        if inv.life.phase is not Phase.PAUSED:
            return  # resumed (or cancelled) before its task got here
        inv.resume = anyio.Event()
        await inv.resume.wait()
        inv.resume = None

    def load_journal(self, inv: Invocation) -> dict[int, JournalEntry]:
        """The durable journal of ``inv`` (empty if it was never accepted)."""
        return load_journal(self._store, inv)

    def finish(self, inv: Invocation) -> None:
        self._invocations.pop(inv.invocation_id, None)
        activation = inv.activation
        if (
            inv.spec.kind == "main"
            and activation is not None
            and inv.target.key is not None
            and activation.mailbox.idle
            and (activation.last_ticket is None or activation.last_ticket.done)
            and activation.recommits is None
        ):
            # A finished workflow run leaves nothing to schedule on its id: free it now.
            self._scheduler.activations.pop((inv.target.actor, inv.target.key), None)
        if inv.life.holds_slot:  # its life in memory ended some other way
            inv.life.holds_slot = False
            self._scheduler.slots.release()
        inv.done.set()
