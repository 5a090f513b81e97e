"""The scheduler: which invocations are in memory, on which key, and when they run.

Every object key and workflow id in use has an ``Activation``: its ``Mailbox`` (the
pure per-key rules of ``actors.mailbox``) and the overlay of its writes not yet durable.
An activation exists while the key has work and is dropped when idle, so memory follows
what runs, not what exists. Exclusive invocations take their place in the key's durable
order as they enter the mailbox (``_key_order``).

Memory is bounded by ``max_in_flight`` slots: a ``call`` or ``send`` takes one and
waits when none is free. An invocation blocked in a durable wait gives its coroutine up
(suspends) after ``suspend_after``, or at once under pressure (``evict_waiters``); one
that holds no key is then *parked*: dropped from memory entirely but for an entry of
about 100 bytes in the parked index (``_parked``), and rebuilt by replay (``revive``)
when what it waits for happens (``wake``).

The scheduler decides; the executor runs. The executor's ``run`` is handed in as
``runner`` when the runtime wires its parts, because the executor is built above this
module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import attrs

from actors.mailbox import HOLD, NO_RELEASE, Mailbox, Release

from ._control_flow import PausedInline
from ._errors import InvocationPausedError, UnknownHandlerError
from ._invocation import Activation, Completion, Invocation
from ._kernel import logger
from ._key_order import parse_row
from ._lazy_scope import LAZY_SCOPES, LazyScope, driving
from ._lifecycle import Action, Event
from ._parked import revived_row
from ._slots import Slots

#: The kinds whose inline calls get a ``LazyScope``.
_LAZY_KINDS: Final = frozenset({"shared", "exclusive"})
# Read on every call: bound once, since ``Enum.MEMBER`` costs ~0.1 us a read in
# Python 3.11 (see actors/_executor.py).
_DELIVER: Final = Event.DELIVER
_ADMIT: Final = Event.ADMIT

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from actors.storage import InvocationRecord, Outcome

    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._loop_primitives import CancelScopeLike
    from ._resolution import Resolver


class Runner(Protocol):
    """Runs one invocation (``Executor.run``): the mailbox runner. ``inline``: the
    scope of the caller it runs inline in, when a kill may cancel that scope."""

    def __call__(
        self, inv: Invocation, release: Release, inline: CancelScopeLike | None = None, /
    ) -> Coroutine[Any, Any, object]: ...


class Scheduler:
    """Activations, slots, suspension and waking."""

    def __init__(
        self, kernel: Kernel, order: KeyOrder, resolver: Resolver, *, max_in_flight: int
    ) -> None:
        self._k = kernel
        self._order = order
        self._resolver = resolver
        self._invocations = kernel.invocations
        self._parked = kernel.parked
        self._store = kernel.store
        self._loop_time = kernel.loop_time
        self._idle_timeout = kernel.idle_timeout
        self.activations: dict[tuple[str, str], Activation] = {}
        self.slots = Slots(max_in_flight)
        # Coroutines blocked in durable waits cost ~10 kB each: beyond this many, they
        # are suspended early (a parked invocation costs about 100 bytes: ``_parked``).
        self.max_waiting = max(100, max_in_flight // 10)
        #: Invocations blocked in a durable wait: the ones to suspend under pressure.
        self.waiting: dict[str, Invocation] = {}
        #: Scopes of handlers running in their caller's task (closing cancels them),
        #: with the ids of their invocations.
        self.inline_scopes: dict[CancelScopeLike, str] = {}
        self.runner: Runner = _not_wired
        #: Whether inline object calls may get a ``LazyScope`` (trio, its internals
        #: as ``_lazy_scope`` expects): fixed for the runtime's life.
        self._lazy_scopes = LAZY_SCOPES and kernel.primitives.shielded_scope is not None

    def run_soon(self, inv: Invocation) -> None:
        """Run ``inv`` in a task of its own, holding no key."""
        self._k.start_soon(self.runner, inv, NO_RELEASE)

    def dispatch(self, inv: Invocation) -> None:
        """Hand ``inv`` to its key's mailbox (a service: run it now). An accepted one is
        *delivered*; a revived one was delivered before and only joins the queue."""
        if inv.life.awaits_delivery:
            inv.life.apply(_DELIVER)
        self._invocations[inv.invocation_id] = inv
        key = inv.target.key
        if key is None:
            inv.life.apply(_ADMIT)  # a service has no key to wait for
            self.run_soon(inv)
            return
        activation = self.activation(inv.target.actor, key)
        inv.activation = activation
        self._order.admit(inv)
        activation.mailbox.deliver(inv)

    @staticmethod
    def _admitted(inv: Invocation) -> None:
        """The mailbox gave ``inv`` its key (or, shared, let it in)."""
        inv.life.apply(_ADMIT)

    async def run_call(self, inv: Invocation) -> None:
        """Run a ``call`` in the caller's own task when it may start at once (no task
        to spawn, no extra switch); otherwise queue it like any invocation."""
        key = inv.target.key
        release: Release = NO_RELEASE
        if key is not None and inv.exclusive:
            inv.life.apply(_DELIVER)
            self._invocations[inv.invocation_id] = inv
            activation = self.activation(inv.target.actor, key)
            inv.activation = activation
            self._order.admit(inv)
            claimed = activation.mailbox.try_claim(inv)  # admits it, if it may start
            if claimed is None:
                return  # queued behind the key's current work
            release = claimed
        else:
            inv.life.apply_pair(_DELIVER, _ADMIT)  # admitted at once: no key to wait for
            self._invocations[inv.invocation_id] = inv
        # The handler runs in the caller's task, but belongs to the runtime: closing the
        # runtime cancels it, as it cancels the handlers in the runtime's task group.
        # Under trio an object handler's scope is entered when it first suspends
        # (``_lazy_scope``): a read usually finishes without suspending, and an
        # exclusive call's wait for its completion's commit needs none
        # (``Executor._completed``). Services and workflows nearly always suspend in
        # their steps and waits, and entering up front costs them less.
        primitives = self._k.primitives
        scope: CancelScopeLike
        if (
            self._lazy_scopes
            and inv.spec.kind in _LAZY_KINDS
            and not driving()  # (not nested in another's: see ``_lazy_scope``)
        ):
            lazy = scope = LazyScope()
        else:
            lazy = None
            scope = primitives.cancel_scope()
        self.inline_scopes[scope] = inv.invocation_id
        try:
            if lazy is not None:  # trio: kill() cancels it too (``Executor.run``)
                outcome = await lazy.run(self.runner(inv, release, lazy))
            else:
                with scope:
                    if primitives.shielded_scope is not None:  # trio: kill() cancels it too
                        outcome = await self.runner(inv, release, scope)
                    else:
                        outcome = await self.runner(inv, release)
        except BaseException as exc:
            paused = isinstance(exc, PausedInline)
            life = inv.life
            if inv.inbox_key is not None and life.accepts(Event.DETACH) and not self._k.closed:
                # The caller went away mid-run (or is answered that it paused), but the
                # invocation was recorded: it must still complete. Continue it in the
                # background from its journal, still holding its key: work queued
                # behind it must not overtake it. (Completing, it needs no new task:
                # its batch lands by itself.) A paused one was not finished, so whoever
                # else waits on its result keeps waiting on the same completion.
                actions = life.apply(Event.DETACH)
                if Action.RESPAWN in actions:
                    done = inv.done if paused else Completion()
                    successor = attrs.evolve(inv, done=done)  # the same lifecycle
                    self._invocations[inv.invocation_id] = successor
                    holding = inv.activation
                    if holding is not None and holding.mailbox.running_exclusive is inv:
                        holding.mailbox.hand_over(inv, successor)
                    else:
                        release()
                        self.run_soon(successor)
                else:
                    release()
            else:
                release()
                if paused:  # no task can take it over: the runtime is closing, or its
                    self._drop(inv)  # pause (and acceptance) could not be recorded
            if paused:
                reason = inv.paused_reason or "paused"
                if inv.inbox_key is None:
                    reason += " (its pause could not be recorded: it cannot be resumed)"
                raise InvocationPausedError(inv.invocation_id, reason) from None
            raise
        finally:
            del self.inline_scopes[scope]
        if (scope.cancelled_caught or outcome != HOLD) and release is not NO_RELEASE:
            release()

    def runs_inline(self, invocation_id: str) -> bool:
        """Whether the invocation runs in its outside caller's task (``run_call``)."""
        return invocation_id in self.inline_scopes.values()  # rare: only when it pauses

    def _drop(self, inv: Invocation) -> None:
        """End the life in memory of a paused invocation no task can take over (its
        pause was not recorded, or the runtime is closing): storage decides at open."""
        if Action.RELEASE_SLOT in inv.life.apply(Event.ABANDON):
            self.slots.release()
        if self._invocations.get(inv.invocation_id) is inv:
            del self._invocations[inv.invocation_id]
        inv.done.set()

    def activation(self, actor: str, key: str) -> Activation:
        activation = self.activations.get((actor, key))
        if activation is None:
            mailbox: Mailbox[Invocation] = Mailbox(
                f"{actor}/{key}", self.runner, self._k.spawn, self._admitted
            )
            activation = Activation(mailbox)
            self.activations[(actor, key)] = activation
        activation.last_used = self._loop_time()
        return activation

    def resume_suspended(self, inv: Invocation) -> None:
        """Run a suspended invocation again (its lifecycle said RESPAWN); it holds its key."""
        self._k.log("resumed", inv)
        if inv.target.key is None:
            self.run_soon(inv)
            return
        activation = inv.activation or self.activation(inv.target.actor, inv.target.key)
        inv.activation = activation
        activation.last_used = self._loop_time()
        activation.mailbox.resume(inv)

    def park(self, inv: Invocation) -> None:
        """Drop a suspended invocation from memory; ``wake`` rebuilds it by replay."""
        assert inv.inbox_key is not None  # _block made its acceptance durable first
        self._invocations.pop(inv.invocation_id, None)
        promises = inv.promises_waited or ()
        self._parked.park(inv.invocation_id, inv.inbox_key, inv.target, inv.done, promises)
        self._k.log("parked", inv)
        activation = inv.activation
        if activation is not None and inv.target.key is not None:
            # A workflow id whose main is parked has nothing else queued: drop it now
            # rather than at the next idle sweep, so parked workflows cost no mailbox.
            inv.activation = None
            last = activation.last_ticket
            idle = activation.mailbox.idle and activation.recommits is None
            if idle and (last is None or last.done):
                self.activations.pop((inv.target.actor, inv.target.key), None)

    def wake(
        self,
        invocation_id: str,
        inbox_key: bytes | None = None,
        promise: tuple[bytes, Outcome] | None = None,
    ) -> None:
        """Something a suspended invocation may be waiting for happened: run it again.
        A no-op for an invocation that is not suspended (a live waiter has its own
        event) or that finished. ``inbox_key``: its inbox row, if the caller read it;
        ``promise``: the durable promise row and outcome whose resolution wakes it."""
        inv = self._invocations.get(invocation_id)
        if inv is not None:
            # Blocked: its wait re-checks; unwinding: it runs again at once; suspended:
            # a new task runs it; anything else: nothing to do.
            if Action.RESPAWN in inv.life.apply(Event.WAKE):
                self.resume_suspended(inv)
            elif inv.wake_event is not None:
                inv.wake_event.set()  # a live waiter re-checks what it waits for
            return
        if invocation_id in self._parked and not self._k.closed:
            self.revive(invocation_id, inbox_key, promise)

    def revive(
        self,
        invocation_id: str,
        inbox_key: bytes | None = None,
        promise: tuple[bytes, Outcome] | None = None,
    ) -> Invocation | None:
        """Rebuild the parked ``invocation_id`` from storage and queue it to run again
        (it replays its journal); None if it finished meanwhile or cannot be rebuilt.
        ``promise``: as for ``wake`` (``Invocation.revived_by``)."""
        unparked = self._parked.unpark(invocation_id)
        assert unparked is not None, "revive() of an invocation that is not parked"
        row, done = unparked
        record = self._k.load_record(invocation_id)
        if record is None or record.outcome is not None:
            if done is not None:
                done.set()  # finished meanwhile (killed); its record has the outcome
            return None
        if inbox_key is None:
            inbox_key = revived_row(self._store, row, record.target, invocation_id)
        inv = self.rebuild(record, inbox_key, done, started=True)
        if inv is None:
            return None
        inv.revived_by = promise
        self._k.log("revived", inv)
        self.dispatch(inv)
        return inv

    def rebuild(
        self,
        record: InvocationRecord,
        inbox_key: bytes,
        done: Completion | None = None,
        *,
        started: bool,
    ) -> Invocation | None:
        """The invocation ``record`` describes, rebuilt from storage; None (logged) when
        its actor or handler is no longer registered."""
        try:
            entry, spec, tgt = self._resolver.resolve_name(
                record.target.actor, record.target.handler, record.target.key
            )
        except (UnknownHandlerError, TypeError) as exc:
            logger.error("cannot resume invocation %s: %s", record.invocation_id, exc)
            return None
        return Invocation.from_record(
            record,
            entry,
            spec,
            tgt,
            inbox_key,
            parse_row(inbox_key)[1],
            done or Completion(),
            started=started,
        )

    async def acquire_slot(self) -> None:
        # The common case takes a free slot without yielding: the call checkpoints later
        # anyway (its result is always delivered through one), and a yield here costs a
        # whole scheduler round per call.
        if self.slots.acquire_nowait():
            return
        self.evict_waiters()
        await self.slots.acquire()

    def evict_waiters(self) -> None:
        """Memory pressure (``max_in_flight`` reached, someone waits for a slot): make
        every invocation blocked in a durable wait suspend now instead of at
        ``suspend_after``."""
        waiting, self.waiting = self.waiting, {}
        for inv in waiting.values():
            if Action.INTERRUPT_WAITS in inv.life.apply(Event.EVICT):
                for scope in list(inv.wait_scopes or ()):
                    scope.cancel()

    async def reap_idle(self) -> None:
        """Drop activations idle for ``idle_timeout``: a key costs memory only while used."""
        interval = max(self._idle_timeout / 2, 0.001)
        while True:
            await anyio.sleep(interval)
            cutoff = self._loop_time() - self._idle_timeout
            durable = self._store.durable_seq
            for key, activation in list(self.activations.items()):
                last = activation.last_ticket
                if (
                    activation.mailbox.idle
                    and (last is None or last.seq <= durable)
                    and activation.last_used <= cutoff
                    and activation.recommits is None  # its failed completions still land
                ):
                    del self.activations[key]


async def _not_wired(
    inv: Invocation, release: Release, inline: CancelScopeLike | None = None, /
) -> object:
    raise AssertionError("the scheduler's runner was not wired")  # pragma: no cover
