"""The life of one invocation in memory, as a pure state machine (DESIGN.md section 5).

No awaits, no clock, no storage. The runtime reports what happened (an ``Event``);
``Lifecycle.apply`` looks (state, event) up in one table, moves to the next state and
returns what the runtime must do now (``Action``s, in order). A pair the table does not
list raises ``LifecycleError`` at once: a runtime bug, never an answer to a user (user
mistakes, like cancelling a completing invocation, are rows whose action is the answer).
As in h11's ``_state.py``, the table is the documentation: "can a killed invocation run
again?" is answered by reading it, not by grepping for flags.

The state is a *phase* and a *cancel state*, two dimensions (h11 keeps its two roles
apart the same way): folding "cancel requested" into the phases would double a dozen of
them, and an unchecked flag would lose the rule that matters, one raise per attempt.

Phases, with the ``Invocation`` flags each replaces in brackets::

    AC ACCEPTED        recorded (a ``call``: known in memory until its first flush), not
                       in its key's mailbox yet: a send committing, a delayed send not
                       due, a ``ctx.call`` waiting for its caller's batch [not dispatched]
    QU QUEUED          in its key's mailbox, never started: a cancel ends it unrun
    RV REVIVED         rebuilt after it had started (unparked, or recovered with a
                       durable step): queued like QU, but a cancel must run it, so that
                       it compensates at its journaled place                   [revived]
    RD READY           holds its key; its task is about to start an attempt (after
                       admission, a backoff, a resume, a wake)                 [running]
    RU RUNNING         an attempt runs handler code                            [running]
    BL BLOCKED         in a live durable await: where a cancel lands  [wait_scopes, ...]
    UW UNWINDING       a wait gave its coroutine up: ``Suspended`` unwinds   [suspended]
    WU WOKEN_UNWINDING woken or cancelled meanwhile: runs again at once   [wake_pending]
    BO BACKING_OFF     between attempts after a retryable failure           [not_before]
    PA PAUSED          attempts exhausted, or non-determinism            [paused_reason]
    SU SUSPENDED       an object handler without a coroutine, keeping its key [suspended]
    PK PARKED          dropped from memory (mains, shared, services)           [_parked]
    CG COMPLETING      completion queued (again, if it failed); its key handed on [completing]
    KG KILLING         its task tears the run down, then queues the killed record [killed]
    KC KILL_COMPLETING the killed record is queued, not durable     [killed, completing]
    CD COMPLETED       the completion is durable                         [done.finished]
    KD KILLED          the killed record is durable                      [done.finished]
    AB ABANDONED       no durable end, and its life in memory is over (the process died or
                       closed, the store broke, a call lost its caller): storage decides

BO, PA and SU keep the key (an object's single writer waits with it); the rest of the
old flags become answers (``keyless``: END_CANCELLED/END_KILLED write the end without a
task; ``cancel_requested``/``cancel_raised``: the cancel state; ``evicting``, ``revived``,
``holds_slot``, ``attempt``: fields below).

Cancel states: NONE; REQUESTED (asked and durable in its record, not raised in this
attempt); RAISED (raised in the handler in this attempt, as a 409 ``TerminalError``
journaled as a ``CancelledEntry``). ``start``, ``step_failed`` and ``crash`` turn RAISED
back into REQUESTED: the next attempt meets it in its journal (``replay_cancel``) or, if
that entry never became durable, has it raised live again (``raise_cancel``).

The table, events by phases: the next phase, ``=`` stays, ``.`` refused, ``*`` another
cancel state answers otherwise (the cancel rows below). Actions: ``_ROWS``, one a line::

                   AC QU RV RD RU BL UW WU BO PA SU PK CG KG KC CD KD AB
    deliver        QU .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .
    admit          .  RD RD .  .  .  .  .  .  .  .  .  .  .  .  .  .  .
    start          .  .  .  RU .  .  .  .  .  .  .  .  .  .  .  .  .  .
    block          .  .  .  .  BL .  .  .  .  .  .  .  .  =  .  .  .  .
    unblock        .  .  .  .  .  RU RU RU .  .  .  .  .  =  .  .  .  .
    raise_cancel   .  .  .  .  .* .* .* .* .  .  .  .  .  .  .  .  .  .
    replay_cancel  .  .  .  .  .* .  .  .  .  .  .  .  .  .  .  .  .  .
    wake           =  =  =  =  =  =  WU =  =  =  RD .  =  =  =  .  .  .
    evict          .  .  .  .  .  =  =  =  .  .  .  .  .  =  .  .  .  .
    unwind         .  .  .  .  .  UW .  .  .  .  .  .  .  =  .  .  .  .
    suspend        .  .  .  .  .  .  SU RD .  .  .  .  .  =  .  .  .  .
    park           .  .  .  .  .  .  PK RD .  .  .  .  .  =  .  .  .  .
    revive         .  .  .  .  .  .  .  .  .  .  .  RV .  .  .  .  .  RV
    recover        .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  AC
    cancel         CG*CG*=* =* =* =* WU*=* =* RD*RD*.  =  =  =  .  .  .
    kill           KC KC KC KG KG KG KG KG KG KG KG .  =  =  =  .  .  .
    fail           .  .  .  .  BO*.  .  .  .  .  .  .  .  =  .  .  .  .
    step_failed    .  .  .  .  BO .  .  .  .  .  .  .  .  =  .  .  .  .
    commit_failed  .  .  .  .  .  .  .  .  .  .  .  .  =  .  =  .  .  .
    retry          .  .  .  .  .  .  .  .  RD .  .  .  .  .  .  .  .  .
    pause          .  .  .  PA*PA*.  .  .  .  .  .  .  .  =  .  .  .  .
    resume         .  .  .  .  .  .  .  .  .  RD .  .  .  .  .  .  .  .
    complete       .  .  .  .* CG .  .  .  .  .  .  .  .  KC .  .  .  .
    durable        .  .  .  .  .  .  .  .  .  .  .  .  CD .  KD .  .  .
    detach         .  .  .  =  RD RD RD RD =  =  .  .  =  =  =  .  .  .
    abandon        AB AB AB AB AB AB AB AB AB AB AB .  AB AB AB .  .  .
    crash          AB AB AB AB AB AB AB AB AB AB AB AB AB AB AB =  =  =

The cancel rows (every other cell keeps the cancel state)::

    NONE  + cancel in AC, QU    -> COMPLETING, END_CANCELLED: never started (QU: UNQUEUE)
    NONE  + cancel in RV, RD, RU, BL, BO -> REQUESTED (BL, BO: INTERRUPT_WAITS, to land soon)
    NONE  + cancel in UW, WU    -> WOKEN_UNWINDING: it must run again to raise it
    NONE  + cancel in PA, SU    -> READY (WAKE_TASK, RESPAWN): run it again to raise it
    REQUESTED/RAISED + cancel   -> no-op: asked before, it is on its way
    REQUESTED + raise_cancel in RU, BL, UW, WU -> RUNNING, RAISED: RAISE_CANCEL here
    REQUESTED + replay_cancel in RU  -> RAISED: its journal raises it here again
    REQUESTED + complete in RD       -> COMPLETING: cancelled with an empty journal
    REQUESTED/RAISED + pause in RD   -> stays READY: the cancel overrides a stored pause
    REQUESTED/RAISED + fail or pause in RU -> COMPLETING, END_CANCELLED: not retried

Invariants (a Hypothesis state machine in tests/actors/test_lifecycle_machine.py checks them):

1. *Single writer*: from ``admit`` it holds its key (``holds_key``), and exactly the row
   that leaves the holding phases says RELEASE_KEY (a crash releases nothing: the process
   is gone). The mailbox admits one exclusive invocation at a time.
2. *Dead stays dead*: COMPLETED and KILLED accept only ``crash``. From COMPLETING,
   KILLING and KILL_COMPLETING no row leads to a phase that runs (``may_run``) except
   through ABANDONED, when storage says the end never became durable. Kill is taken in
   every live phase in memory (a parked one is revived first) and leaves it at once; no
   row out of KG or KC starts an attempt.
3. *Cancel at most once*: RAISE_CANCEL needs REQUESTED and leaves RAISED, so an attempt
   raises it once; only a journal entry lost with a failed batch or a crash lets a later
   attempt raise it live again.
4. *Attempts only increase*: ``attempt`` counts starts and is never reset (an epoch: a
   ``ctx.run`` body of an older attempt knows it is stale); the retry policy counts
   ``failures`` (``resume`` resets them); failed commits, ``commit_failures``, never pause.

Beside the state, plain fields that the bookkeeping actions name, done by ``apply``
itself: ``attempt`` (NEW_ATTEMPT), ``failures`` (COUNT_FAILURE, RESET_FAILURES),
``commit_failures`` (COUNT_COMMIT_FAILURE), ``evicting`` (MARK_EVICTING; NEW_ATTEMPT clears
it), ``revived`` (MARK_REVIVED), ``holds_slot`` (RELEASE_SLOT only while it holds one). Data
stays on ``Invocation``: the pause reason, the backoff deadline, the journal cursor,
cancel scopes and events, the calls it awaits.

The runtime applies ``admit`` when the mailbox admits (not when the task starts);
``block``/``unblock`` around each live durable await (not replayed ones; no ``unblock``
when the await raised the cancel or ``Suspended``); ``raise_cancel`` when ``cancel_due``
and its cursor is past the journal; ``suspend`` for an object handler, ``park`` for the
rest; ``revive`` before it acts on a parked invocation.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ._lifecycle_names import Action, Cancel, Event, Phase

__all__ = [
    "HOLDS_KEY",
    "MAY_RUN",
    "PAIRS",
    "TABLE",
    "TERMINAL",
    "Action",
    "Cancel",
    "Event",
    "Lifecycle",
    "LifecycleError",
    "Phase",
    "Transition",
]


class LifecycleError(RuntimeError):
    """A runtime bug: an event that the lifecycle table does not allow in this state."""


P, C, E, A = Phase, Cancel, Event, Action  # short names for the tables below

#: Phases whose invocation holds its key (its mailbox admission), and those with a task.
HOLDS_KEY: Final = frozenset(
    {P.READY, P.RUNNING, P.BLOCKED, P.UNWINDING, P.WOKEN_UNWINDING}
    | {P.BACKING_OFF, P.PAUSED, P.SUSPENDED, P.KILLING}
)
TERMINAL: Final = frozenset({P.COMPLETED, P.KILLED, P.ABANDONED})
MAY_RUN: Final = frozenset({P.READY, P.RUNNING, P.BLOCKED})
_CANCEL_LANDS: Final = frozenset({P.RUNNING, P.BLOCKED})

_ = ()
_REL = (A.RELEASE_KEY,)
_PERSIST = (A.PERSIST_CANCEL_REQUEST,)
_KILL_RUN = (A.CANCEL_RUN, A.PROPAGATE_KILL)
_GONE = (A.FAIL_CALLERS, A.FORGET)
#: What a killed coroutine may still report while it dies: nothing comes of it.
_DYING = (E.BLOCK, E.UNBLOCK, E.UNWIND, E.SUSPEND, E.PARK, E.FAIL, E.STEP_FAILED, E.PAUSE)

#: The cancel-independent rows: (phase, event) -> (next phase, or None to stay; actions).
_ROWS: dict[tuple[Phase, Event], tuple[Phase | None, tuple[Action, ...]]] = {
    (P.ACCEPTED, E.DELIVER): (P.QUEUED, (A.ENQUEUE,)),
    (P.ACCEPTED, E.KILL): (P.KILL_COMPLETING, (A.END_KILLED,)),
    (P.QUEUED, E.ADMIT): (P.READY, _),
    (P.QUEUED, E.KILL): (P.KILL_COMPLETING, (A.UNQUEUE, A.END_KILLED)),
    (P.REVIVED, E.ADMIT): (P.READY, _),
    (P.REVIVED, E.KILL): (P.KILL_COMPLETING, (A.UNQUEUE, A.END_KILLED, A.PROPAGATE_KILL)),
    (P.READY, E.START): (P.RUNNING, (A.NEW_ATTEMPT, A.RUN_ATTEMPT)),
    (P.READY, E.PAUSE): (P.PAUSED, _),  # recovered paused: it waits for resume again
    (P.RUNNING, E.BLOCK): (P.BLOCKED, _),
    (P.RUNNING, E.COMPLETE): (P.COMPLETING, _REL),
    (P.RUNNING, E.FAIL): (P.BACKING_OFF, (A.COUNT_FAILURE, A.SCHEDULE_RETRY)),
    (P.RUNNING, E.STEP_FAILED): (P.BACKING_OFF, (A.COUNT_COMMIT_FAILURE, A.SCHEDULE_RETRY)),
    (P.RUNNING, E.PAUSE): (P.PAUSED, (A.PERSIST_PAUSE,)),
    (P.BLOCKED, E.UNBLOCK): (P.RUNNING, _),
    (P.BLOCKED, E.WAKE): (None, (A.SIGNAL_WAIT,)),
    (P.BLOCKED, E.EVICT): (None, (A.MARK_EVICTING, A.INTERRUPT_WAITS)),
    (P.BLOCKED, E.UNWIND): (P.UNWINDING, (A.UNWIND,)),
    (P.UNWINDING, E.WAKE): (P.WOKEN_UNWINDING, _),
    (P.UNWINDING, E.UNBLOCK): (P.RUNNING, _),  # a select's other branch won meanwhile
    (P.UNWINDING, E.SUSPEND): (P.SUSPENDED, (A.RELEASE_SLOT,)),
    (P.UNWINDING, E.PARK): (P.PARKED, (A.RELEASE_SLOT, A.RELEASE_KEY, A.PARK)),
    (P.WOKEN_UNWINDING, E.UNBLOCK): (P.RUNNING, _),
    (P.WOKEN_UNWINDING, E.SUSPEND): (P.READY, _),  # runs again at once, keeps its key
    (P.WOKEN_UNWINDING, E.PARK): (P.READY, _),
    (P.BACKING_OFF, E.RETRY): (P.READY, _),
    (P.PAUSED, E.RESUME): (P.READY, (A.RESET_FAILURES, A.PERSIST_RESUME, A.WAKE_TASK)),
    (P.SUSPENDED, E.WAKE): (P.READY, (A.RESPAWN,)),
    # Its task ends it: a new one, holding the key, finds it killed before any attempt.
    (P.SUSPENDED, E.KILL): (P.KILLING, (A.RESPAWN, A.PROPAGATE_KILL)),
    (P.PARKED, E.REVIVE): (P.REVIVED, (A.MARK_REVIVED, A.ENQUEUE)),
    (P.COMPLETING, E.DURABLE): (P.COMPLETED, (A.RELEASE_SLOT, A.WAKE_CALLERS, A.FORGET)),
    (P.COMPLETING, E.CANCEL): (None, (A.REJECT_COMPLETED,)),
    (P.COMPLETING, E.KILL): (None, (A.REJECT_COMPLETED,)),
    (P.KILLING, E.COMPLETE): (P.KILL_COMPLETING, _REL),
    (P.KILLING, E.CANCEL): (None, _),  # the kill is on its way
    (P.KILL_COMPLETING, E.DURABLE): (P.KILLED, (A.RELEASE_SLOT, A.WAKE_CALLERS, A.FORGET)),
    (P.KILL_COMPLETING, E.CANCEL): (None, (A.REJECT_COMPLETED,)),
    (P.KILL_COMPLETING, E.KILL): (None, _),
    (P.ABANDONED, E.REVIVE): (P.REVIVED, (A.MARK_REVIVED, A.ENQUEUE)),
    (P.ABANDONED, E.RECOVER): (P.ACCEPTED, (A.MARK_REVIVED,)),
}

#: The rows where the cancel state decides: (phase, cancel, event) -> (phase, cancel, actions).
_CANCEL_ROWS: dict[tuple[Phase, Cancel, Event], tuple[Phase, Cancel, tuple[Action, ...]]] = {
    (P.ACCEPTED, C.NONE, E.CANCEL): (P.COMPLETING, C.REQUESTED, (A.END_CANCELLED,)),
    (P.QUEUED, C.NONE, E.CANCEL): (P.COMPLETING, C.REQUESTED, (A.UNQUEUE, A.END_CANCELLED)),
    (P.REVIVED, C.NONE, E.CANCEL): (P.REVIVED, C.REQUESTED, _PERSIST),
    (P.READY, C.NONE, E.CANCEL): (P.READY, C.REQUESTED, _PERSIST),
    (P.RUNNING, C.NONE, E.CANCEL): (P.RUNNING, C.REQUESTED, _PERSIST),
    (P.BLOCKED, C.NONE, E.CANCEL): (P.BLOCKED, C.REQUESTED, (*_PERSIST, A.INTERRUPT_WAITS)),
    (P.UNWINDING, C.NONE, E.CANCEL): (P.WOKEN_UNWINDING, C.REQUESTED, _PERSIST),
    (P.WOKEN_UNWINDING, C.NONE, E.CANCEL): (P.WOKEN_UNWINDING, C.REQUESTED, _PERSIST),
    (P.BACKING_OFF, C.NONE, E.CANCEL): (P.BACKING_OFF, C.REQUESTED, (*_PERSIST, A.INTERRUPT_WAITS)),
    (P.PAUSED, C.NONE, E.CANCEL): (P.READY, C.REQUESTED, (*_PERSIST, A.WAKE_TASK)),
    (P.SUSPENDED, C.NONE, E.CANCEL): (P.READY, C.REQUESTED, (*_PERSIST, A.RESPAWN)),
    (P.RUNNING, C.REQUESTED, E.REPLAY_CANCEL): (P.RUNNING, C.RAISED, _),
    (P.READY, C.REQUESTED, E.COMPLETE): (P.COMPLETING, C.REQUESTED, _REL),
}


def _add_families() -> None:
    """Rows that follow one rule across many cells, one rule per loop."""
    rows, cancel_rows = _ROWS, _CANCEL_ROWS
    for phase in (P.READY, P.RUNNING, P.BLOCKED, P.UNWINDING, P.WOKEN_UNWINDING):
        rows[phase, E.KILL] = (P.KILLING, _KILL_RUN)
        rows[phase, E.DETACH] = (P.READY, (A.RESPAWN,))  # a new task, from its journal
    for phase in (P.BACKING_OFF, P.PAUSED):  # its new task sleeps, or waits for resume
        rows[phase, E.KILL] = (P.KILLING, _KILL_RUN)
        rows[phase, E.DETACH] = (None, (A.RESPAWN,))
    rows[P.KILLING, E.DETACH] = (None, (A.RESPAWN,))  # its new task ends it, killed
    for phase in (P.UNWINDING, P.WOKEN_UNWINDING):
        rows[phase, E.EVICT] = (None, _)
    for event in (E.WAKE, E.EVICT, E.KILL, *_DYING):
        rows[P.KILLING, event] = (None, _)
    for phase in P:
        if phase not in TERMINAL and phase not in (P.PARKED, P.SUSPENDED, P.UNWINDING):
            rows.setdefault((phase, E.WAKE), (None, _))  # a late wake: nothing to do
        rows[phase, E.CRASH] = (None if phase in TERMINAL else P.ABANDONED, _)
    for phase in (P.ACCEPTED, P.QUEUED, P.REVIVED, *HOLDS_KEY):
        unqueue = (A.UNQUEUE,) if phase in (P.QUEUED, P.REVIVED) else _
        release = _REL if phase in HOLDS_KEY else _
        rows[phase, E.ABANDON] = (P.ABANDONED, (*unqueue, *release, A.RELEASE_SLOT, *_GONE))
    for phase in (P.COMPLETING, P.KILL_COMPLETING):
        rows[phase, E.COMMIT_FAILED] = (None, (A.RECOMMIT,))  # the same outcome, again
        rows[phase, E.DETACH] = (None, (A.WATCH_COMPLETION,))
        rows[phase, E.ABANDON] = (P.ABANDONED, (A.RELEASE_SLOT, *_GONE))
    for phase in (P.RUNNING, P.BLOCKED, P.UNWINDING, P.WOKEN_UNWINDING):
        cancel_rows[phase, C.REQUESTED, E.RAISE_CANCEL] = (
            P.RUNNING,
            C.RAISED,
            (A.RAISE_CANCEL, A.PROPAGATE_CANCEL),
        )
    asked = [phase for (phase, cancel, event) in cancel_rows if event is E.CANCEL]
    for cancel in (C.REQUESTED, C.RAISED):
        for event in (E.FAIL, E.PAUSE):  # a cancelled invocation is not retried or paused
            cancel_rows[P.RUNNING, cancel, event] = (
                P.COMPLETING,
                cancel,
                (A.END_CANCELLED, A.RELEASE_KEY),
            )
        cancel_rows[P.READY, cancel, E.PAUSE] = (P.READY, cancel, _)  # it runs to raise it
        for phase in asked:  # asked before: it is on its way
            cancel_rows[phase, cancel, E.CANCEL] = (phase, cancel, _)


_add_families()

#: A cancellation raised in this attempt is met again by the next one.
_RERAISE: Final = frozenset({E.START, E.STEP_FAILED, E.CRASH})


class Transition(NamedTuple):
    """One cell of the table."""

    phase: Phase
    cancel: Cancel
    actions: tuple[Action, ...]


def _compile() -> dict[tuple[Phase, Cancel, Event], Transition]:
    table: dict[tuple[Phase, Cancel, Event], Transition] = {}
    for (phase, event), (target, actions) in _ROWS.items():
        for cancel in C:
            after = C.REQUESTED if cancel is C.RAISED and event in _RERAISE else cancel
            table[phase, cancel, event] = Transition(target or phase, after, actions)
    for key, (phase, cancel, actions) in _CANCEL_ROWS.items():
        table[key] = Transition(phase, cancel, actions)
    return table


#: The whole table: (phase, cancel state, event) -> where it goes and what to do.
TABLE: Final = _compile()

_NEW_ATTEMPT, _COUNT_FAILURE, _RESET_FAILURES, _MARK_EVICTING, _MARK_REVIVED = 1, 2, 4, 8, 16
_COUNT_COMMIT_FAILURE = 32
_EFFECTS: Final = {
    A.NEW_ATTEMPT: _NEW_ATTEMPT,
    A.COUNT_FAILURE: _COUNT_FAILURE,
    A.COUNT_COMMIT_FAILURE: _COUNT_COMMIT_FAILURE,
    A.RESET_FAILURES: _RESET_FAILURES,
    A.MARK_EVICTING: _MARK_EVICTING,
    A.MARK_REVIVED: _MARK_REVIVED,
}


class _Step:
    """A compiled cell: the next state object, the actions, and the field effects."""

    __slots__ = ("actions", "effect", "raw", "slot_actions", "target")

    def __init__(self, target: _State, actions: tuple[Action, ...]) -> None:
        self.target = target
        self.raw = actions  # as the table says them
        self.slot_actions = actions if A.RELEASE_SLOT in actions else None
        self.actions = tuple(a for a in actions if a is not A.RELEASE_SLOT)
        self.effect = sum(_EFFECTS.get(a, 0) for a in actions)


class _State:
    __slots__ = ("cancel", "on", "pairs", "phase")

    def __init__(self, phase: Phase, cancel: Cancel) -> None:
        self.phase = phase
        self.cancel = cancel
        self.on: dict[Event, _Step] = {}
        self.pairs: dict[tuple[Event, Event], _Step] = {}  # ``PAIRS`` allowed from here


def _link() -> dict[tuple[Phase, Cancel], _State]:
    """One state object per (phase, cancel), each with its own event -> step dict, so
    ``apply`` is one attribute read and one dict lookup, allocating nothing."""
    states = {(phase, cancel): _State(phase, cancel) for phase in P for cancel in C}
    for (phase, cancel, event), cell in TABLE.items():
        states[phase, cancel].on[event] = _Step(states[cell.phase, cell.cancel], cell.actions)
    for state in states.values():
        for first, second in PAIRS:
            one = state.on.get(first)
            two = one.target.on.get(second) if one is not None else None
            if one is not None and two is not None:
                state.pairs[first, second] = _Step(two.target, one.raw + two.raw)
    return states


#: Events the runtime reports back to back, nothing in between: a call of a service or
#: shared handler is delivered and admitted at once (``Scheduler.run_call``), and a pure
#: read's completion is durable once queued (``Executor.run``). ``apply_pair`` takes
#: both with one lookup: one call of ``apply`` less (0.3 us, timed alone) per pair.
PAIRS: Final = ((E.DELIVER, E.ADMIT), (E.COMPLETE, E.DURABLE))


_STATES: Final = _link()


class Lifecycle:
    """The state of one invocation: a phase, a cancel state, and a few counters."""

    __slots__ = (
        "_state",
        "attempt",
        "cancel",
        "commit_failures",
        "evicting",
        "failures",
        "holds_slot",
        "phase",
        "revived",
    )

    def __init__(
        self,
        *,
        holds_slot: bool = False,
        phase: Phase = Phase.ACCEPTED,
        cancel: Cancel = Cancel.NONE,
        attempt: int = 0,
    ) -> None:
        self._state = _STATES[phase, cancel]
        #: Where it is, and whether a cancel or kill was asked for: copies of ``_state``'s,
        #: kept as plain attributes because the runtime reads them on every call.
        self.phase = phase
        self.cancel = cancel
        #: Attempts started, never reset: the epoch of the current attempt.
        self.attempt = attempt
        #: Failed attempts since the last resume: what the retry policy counts.
        self.failures = 0
        self.commit_failures = 0  #: failed commits: the backoff of their retries, no limit
        #: Whether it holds one of the runtime's ``max_in_flight`` slots.
        self.holds_slot = holds_slot
        #: Rebuilt from storage: its waits give their coroutine up at once.
        self.revived = False
        #: Evicted under memory pressure during this attempt.
        self.evicting = False

    @classmethod
    def rebuilt(cls, *, started: bool, cancel_requested: bool, attempt: int = 0) -> Lifecycle:
        """The lifecycle of an invocation rebuilt from its record: REVIVED if it had made
        a durable step (``started``), else ACCEPTED (deliver it, now or when due)."""
        cancel = Cancel.REQUESTED if cancel_requested else Cancel.NONE
        lifecycle = cls(phase=Phase.ABANDONED, cancel=cancel, attempt=attempt)
        lifecycle.apply(Event.REVIVE if started else Event.RECOVER)
        return lifecycle

    def apply(self, event: Event) -> tuple[Action, ...]:
        """Move on ``event``; return what the runtime must do now, in order.

        Raises ``LifecycleError`` (and changes nothing) for an event the table does not
        allow in the current state."""
        try:
            step = self._state.on[event]
        except KeyError:
            raise LifecycleError(self._refusal(event)) from None
        target = self._state = step.target
        self.phase = target.phase
        self.cancel = target.cancel
        effect = step.effect
        if effect:
            if effect == _NEW_ATTEMPT:  # the common one, on every attempt: no call
                self.attempt += 1
                self.evicting = False
            else:
                self._bookkeep(effect)
        if step.slot_actions is not None and self.holds_slot:
            self.holds_slot = False
            return step.slot_actions
        return step.actions

    def apply_pair(self, first: Event, second: Event) -> tuple[Action, ...]:
        """``apply(first)``, then ``apply(second)``: the same state and the actions of
        both, in order, for one of the ``PAIRS``; a refused event raises as there."""
        step = self._state.pairs.get((first, second))
        if step is None:  # one of them is refused: say which, as the two calls would
            return self.apply(first) + self.apply(second)
        target = self._state = step.target
        self.phase = target.phase
        self.cancel = target.cancel
        if step.effect:
            self._bookkeep(step.effect)
        if step.slot_actions is not None and self.holds_slot:
            self.holds_slot = False
            return step.slot_actions
        return step.actions

    def accepts(self, event: Event) -> bool:
        """Whether ``apply(event)`` would be allowed now (for late deliveries and tests)."""
        return event in self._state.on

    def _bookkeep(self, effect: int) -> None:
        if effect & _NEW_ATTEMPT:
            self.attempt += 1
            self.evicting = False
        if effect & _COUNT_FAILURE:
            self.failures += 1
        if effect & _COUNT_COMMIT_FAILURE:
            self.commit_failures += 1
        if effect & _RESET_FAILURES:
            self.failures = 0
        if effect & _MARK_EVICTING:
            self.evicting = True
        if effect & _MARK_REVIVED:
            self.revived = True

    def _refusal(self, event: Event) -> str:
        state = self._state
        allowed = ", ".join(sorted(e.value for e in state.on)) or "nothing"
        return (
            f"invocation lifecycle: {event.value!r} is not allowed in phase "
            f"{state.phase.name} (cancel {state.cancel.value}); allowed there: {allowed}"
        )

    # --- questions the runtime asks instead of reading flags ------------------------------

    @property
    def is_live(self) -> bool:
        """Not ended (COMPLETED, KILLED) and not abandoned."""
        return self.phase not in TERMINAL

    @property
    def holds_key(self) -> bool:
        """It holds its key's mailbox admission (for an exclusive: the key itself)."""
        return self.phase in HOLDS_KEY

    @property
    def in_memory(self) -> bool:
        """The runtime holds it in memory (live and not parked)."""
        phase = self.phase
        return phase not in TERMINAL and phase is not Phase.PARKED

    @property
    def may_run(self) -> bool:
        """An attempt is about to start (READY) or is executing (RUNNING, BLOCKED)."""
        return self.phase in MAY_RUN

    @property
    def awaits_delivery(self) -> bool:
        """Not yet handed to its mailbox: a delivery for it is still due."""
        return self.phase is Phase.ACCEPTED

    @property
    def killing(self) -> bool:
        """Killed, and its task has not queued the killed record yet."""
        return self.phase is Phase.KILLING

    @property
    def cancel_requested(self) -> bool:
        return self.cancel is not Cancel.NONE

    @property
    def cancel_due(self) -> bool:
        """A cancellation waits to be raised at its next live durable await."""
        state = self._state
        return state.cancel is Cancel.REQUESTED and state.phase in _CANCEL_LANDS

    @property
    def suspends_at_once(self) -> bool:
        """Its durable waits give their coroutine up without waiting ``suspend_after``."""
        return self.revived or self.evicting

    def __repr__(self) -> str:
        return (
            f"<Lifecycle {self.phase.name} cancel={self.cancel.value} "
            f"attempt={self.attempt} failures={self.failures}>"
        )
