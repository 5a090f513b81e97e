"""The invocation lifecycle table, tested without an event loop (like h11's test_state.py).

Three layers: every (phase, cancel, event) cell either moves as the table says or is
refused without a change; named paths through an invocation's life; and a Hypothesis
state machine that drives several invocations on one key with random events and checks
the invariants the module docstring states, against a model of the key and the journal.
"""

from __future__ import annotations

import random
import timeit
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from actors import _lifecycle
from actors._lifecycle import (
    HOLDS_KEY,
    MAY_RUN,
    TABLE,
    TERMINAL,
    Action,
    Cancel,
    Event,
    Lifecycle,
    LifecycleError,
    Phase,
)

A, C, E, P = Action, Cancel, Event, Phase
ENDING = frozenset({P.COMPLETING, P.KILLING, P.KILL_COMPLETING})


# --- the drawing ---------------------------------------------------------------------------


def draw() -> str:
    """The table, events by phases, as the module docstring draws it."""
    lines = [" " * 15 + "".join(f"{phase.value:<3}" for phase in P).rstrip()]
    for event in E:
        lines.append(f"{event.value:<15}{''.join(cell(phase, event) for phase in P)}".rstrip())
    return "\n".join(lines)


def cell(phase: Phase, event: Event) -> str:
    """The NONE cancel state's answer; ``*`` when another cancel state answers otherwise."""
    rows = [TABLE.get((phase, cancel, event)) for cancel in C]
    first = rows[0]
    text = "." if first is None else "=" if first.phase is phase else first.phase.value
    shape = None if first is None else (first.phase, first.actions)
    alike = all(shape == (None if row is None else (row.phase, row.actions)) for row in rows)
    return f"{text if alike else text + '*':<3}"


def test_the_docstring_draws_the_table() -> None:
    drawn = "\n".join("    " + line for line in draw().splitlines())
    assert drawn in (_lifecycle.__doc__ or ""), "redraw the table in the docstring:\n" + drawn


# --- every cell ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "event"),
    [pytest.param(p, e, id=f"{p.name}-{e.value}") for p in P for e in E],
)
def test_every_cell_moves_as_the_table_says_or_is_refused(phase: Phase, event: Event) -> None:
    for cancel in C:
        lifecycle = Lifecycle(phase=phase, cancel=cancel, holds_slot=True, attempt=3)
        row = TABLE.get((phase, cancel, event))
        assert lifecycle.accepts(event) == (row is not None)
        if row is None:
            with pytest.raises(LifecycleError) as refused:
                lifecycle.apply(event)
            message = str(refused.value)
            assert f"{event.value!r} is not allowed in phase {phase.name}" in message
            assert f"(cancel {cancel.value})" in message
            assert isinstance(refused.value, RuntimeError)
            assert (lifecycle.phase, lifecycle.cancel, lifecycle.attempt) == (phase, cancel, 3)
            assert lifecycle.holds_slot
            continue
        assert lifecycle.apply(event) == row.actions  # with a slot: the row's very tuple
        assert (lifecycle.phase, lifecycle.cancel) == (row.phase, row.cancel)
        assert lifecycle.attempt == 3 + (A.NEW_ATTEMPT in row.actions)
        assert lifecycle.holds_slot == (A.RELEASE_SLOT not in row.actions)
        slotless = Lifecycle(phase=phase, cancel=cancel)
        assert slotless.apply(event) == tuple(a for a in row.actions if a is not A.RELEASE_SLOT)


def test_refusals_name_what_is_allowed() -> None:
    lifecycle = Lifecycle(phase=P.COMPLETED)
    with pytest.raises(LifecycleError, match=r"'start' is not allowed in phase COMPLETED") as info:
        lifecycle.apply(E.START)
    assert str(info.value).endswith("allowed there: crash")


def test_apply_returns_prebuilt_tuples() -> None:
    one, two = Lifecycle(phase=P.RUNNING), Lifecycle(phase=P.RUNNING)
    assert one.apply(E.COMPLETE) is two.apply(E.COMPLETE)


# --- the shape of the table ------------------------------------------------------------------


def rows() -> list[tuple[Phase, Cancel, Event, Phase, Cancel, tuple[Action, ...]]]:
    return [(p, c, e, t.phase, t.cancel, t.actions) for (p, c, e), t in TABLE.items()]


def test_dead_phases_accept_only_a_crash() -> None:
    for phase in TERMINAL - {P.ABANDONED}:
        for cancel in C:
            accepted = {e for e in E if (phase, cancel, e) in TABLE}
            assert accepted == {E.CRASH}
            assert TABLE[phase, cancel, E.CRASH].phase is phase
    assert {e for (p, _, e) in TABLE if p is P.ABANDONED} == {E.CRASH, E.RECOVER, E.REVIVE}


def test_exactly_the_rows_that_leave_the_holding_phases_release_the_key() -> None:
    for phase, _, event, target, _, actions in rows():
        if event is E.CRASH:  # the process is gone, and its keys with it
            assert actions == ()
            continue
        leaves = phase in HOLDS_KEY and target not in HOLDS_KEY
        assert (A.RELEASE_KEY in actions) == leaves, (phase, event, target)
        if phase not in HOLDS_KEY and target in HOLDS_KEY:
            assert event is E.ADMIT, (phase, event)  # only the mailbox hands a key out


def test_slots_are_released_only_where_the_coroutine_is_gone() -> None:
    for phase, _, _event, target, _, actions in rows():
        if A.RELEASE_SLOT in actions:
            assert target in {P.SUSPENDED, P.PARKED, P.COMPLETED, P.KILLED, P.ABANDONED}
            assert phase not in TERMINAL


def test_a_cancel_is_raised_only_from_requested_and_leaves_it_raised() -> None:
    for _, cancel, event, _, after, actions in rows():
        if A.RAISE_CANCEL in actions:
            assert (cancel, after, event) == (C.REQUESTED, C.RAISED, E.RAISE_CANCEL)
        if cancel is C.NONE and after is not C.NONE:
            assert event is E.CANCEL  # only a request makes one


def reachable(start: set[Phase], through: frozenset[Phase] = frozenset(P)) -> set[Phase]:
    seen, todo = set(start), deque(start)
    while todo:
        phase = todo.popleft()
        for (p, _, _), row in TABLE.items():
            if p is phase and row.phase not in seen and row.phase in through:
                seen.add(row.phase)
                todo.append(row.phase)
    return seen


def test_every_phase_is_reachable_and_every_life_can_end() -> None:
    assert reachable({P.ACCEPTED}) == set(P)
    for phase in P:
        assert reachable({phase}) & {P.COMPLETED, P.KILLED, P.ABANDONED}, phase


def test_an_ending_invocation_never_runs_again_unless_storage_says_it_did_not_end() -> None:
    assert not reachable(set(ENDING), frozenset(P) - {P.ABANDONED}) & MAY_RUN
    assert not reachable({P.COMPLETED, P.KILLED}) - {P.COMPLETED, P.KILLED}
    for phase in {P.KILLING, P.KILL_COMPLETING}:
        for (p, _, _), row in TABLE.items():
            assert p is not phase or A.RUN_ATTEMPT not in row.actions


def test_kill_is_accepted_in_every_live_phase_in_memory() -> None:
    for phase in P:
        for cancel in C:
            live = phase not in TERMINAL and phase is not P.PARKED
            assert ((phase, cancel, E.KILL) in TABLE) == live, phase


# --- paths -----------------------------------------------------------------------------------

#: From ACCEPTED, the events that reach each phase.
_RUN = [E.DELIVER, E.ADMIT, E.START]
PATHS: dict[Phase, list[Event]] = {
    P.ACCEPTED: [],
    P.QUEUED: [E.DELIVER],
    P.READY: [E.DELIVER, E.ADMIT],
    P.RUNNING: _RUN,
    P.BLOCKED: [*_RUN, E.BLOCK],
    P.UNWINDING: [*_RUN, E.BLOCK, E.UNWIND],
    P.WOKEN_UNWINDING: [*_RUN, E.BLOCK, E.UNWIND, E.WAKE],
    P.BACKING_OFF: [*_RUN, E.FAIL],
    P.PAUSED: [*_RUN, E.PAUSE],
    P.SUSPENDED: [*_RUN, E.BLOCK, E.UNWIND, E.SUSPEND],
    P.PARKED: [*_RUN, E.BLOCK, E.UNWIND, E.PARK],
    P.REVIVED: [*_RUN, E.BLOCK, E.UNWIND, E.PARK, E.REVIVE],
    P.COMPLETING: [*_RUN, E.COMPLETE],
    P.KILLING: [*_RUN, E.KILL],
    P.KILL_COMPLETING: [*_RUN, E.KILL, E.COMPLETE],
    P.COMPLETED: [*_RUN, E.COMPLETE, E.DURABLE],
    P.KILLED: [*_RUN, E.KILL, E.COMPLETE, E.DURABLE],
    P.ABANDONED: [E.CRASH],
}


def at(phase: Phase, *, holds_slot: bool = False) -> Lifecycle:
    lifecycle = Lifecycle(holds_slot=holds_slot)
    for event in PATHS[phase]:
        lifecycle.apply(event)
    assert lifecycle.phase is phase
    return lifecycle


def state(lifecycle: Lifecycle) -> tuple[Phase, Cancel]:
    """Its state, read through a call (mypy would keep a narrowed property across
    ``apply``)."""
    return lifecycle.phase, lifecycle.cancel


def run(lifecycle: Lifecycle, *events: Event) -> list[tuple[Action, ...]]:
    return [lifecycle.apply(event) for event in events]


def test_paths_cover_every_phase() -> None:
    assert set(PATHS) == set(P)


def test_happy_call() -> None:
    lifecycle = Lifecycle(holds_slot=True)
    assert lifecycle.awaits_delivery
    assert not lifecycle.holds_key
    assert run(lifecycle, E.DELIVER, E.ADMIT) == [(A.ENQUEUE,), ()]
    assert lifecycle.holds_key
    assert lifecycle.may_run
    assert lifecycle.apply(E.START) == (A.NEW_ATTEMPT, A.RUN_ATTEMPT)
    assert lifecycle.attempt == 1
    assert run(lifecycle, E.BLOCK, E.WAKE, E.UNBLOCK) == [(), (A.SIGNAL_WAIT,), ()]
    assert lifecycle.apply(E.COMPLETE) == (A.RELEASE_KEY,)
    assert lifecycle.phase is P.COMPLETING
    assert not lifecycle.holds_key
    assert lifecycle.apply(E.DURABLE) == (A.RELEASE_SLOT, A.WAKE_CALLERS, A.FORGET)
    assert lifecycle.phase is P.COMPLETED
    assert not lifecycle.is_live
    assert not lifecycle.holds_slot


def test_send_with_a_delay_waits_in_accepted_and_a_cancel_ends_it_there() -> None:
    late = Lifecycle()
    assert run(late, E.WAKE, E.DELIVER) == [(), (A.ENQUEUE,)]
    assert not late.awaits_delivery
    cancelled = Lifecycle()
    assert cancelled.apply(E.CANCEL) == (A.END_CANCELLED,)
    assert (cancelled.phase, cancelled.cancel) == (P.COMPLETING, C.REQUESTED)
    assert not cancelled.awaits_delivery  # its timer, when it fires, delivers nothing
    assert cancelled.apply(E.CANCEL) == (A.REJECT_COMPLETED,)
    cancelled.apply(E.DURABLE)
    assert cancelled.phase is P.COMPLETED
    assert cancelled.attempt == 0


def test_a_cancel_before_start_completes_without_running() -> None:
    queued = at(P.QUEUED)
    assert queued.apply(E.CANCEL) == (A.UNQUEUE, A.END_CANCELLED)
    assert queued.phase is P.COMPLETING
    assert queued.attempt == 0
    # Recovered with a stored request and nothing journaled: it ends before an attempt.
    ready = Lifecycle.rebuilt(started=False, cancel_requested=True)
    run(ready, E.DELIVER, E.ADMIT)
    assert ready.apply(E.CANCEL) == ()  # asked before
    assert ready.apply(E.COMPLETE) == (A.RELEASE_KEY,)
    assert ready.attempt == 0


def test_retry_then_complete() -> None:
    lifecycle = at(P.RUNNING)
    assert lifecycle.apply(E.FAIL) == (A.COUNT_FAILURE, A.SCHEDULE_RETRY)
    assert (lifecycle.phase, lifecycle.failures) == (P.BACKING_OFF, 1)
    assert lifecycle.holds_key
    assert not lifecycle.may_run
    run(lifecycle, E.WAKE, E.RETRY, E.START, E.STEP_FAILED, E.RETRY, E.START, E.COMPLETE)
    # A failed commit is counted apart: it sets the backoff, not the retry budget.
    assert (lifecycle.phase, lifecycle.attempt, lifecycle.failures) == (P.COMPLETING, 3, 1)
    assert lifecycle.commit_failures == 1


def test_pause_and_resume_reset_the_budget_not_the_epoch() -> None:
    lifecycle = at(P.RUNNING)
    run(lifecycle, E.FAIL, E.RETRY, E.START)
    assert lifecycle.apply(E.PAUSE) == (A.PERSIST_PAUSE,)
    assert lifecycle.holds_key
    assert lifecycle.phase is P.PAUSED
    assert lifecycle.apply(E.RESUME) == (A.RESET_FAILURES, A.PERSIST_RESUME, A.WAKE_TASK)
    lifecycle.apply(E.START)
    assert (lifecycle.attempt, lifecycle.failures) == (3, 0)
    # Recovered paused: its task finds it paused again, keeping the key.
    recovered = Lifecycle.rebuilt(started=True, cancel_requested=False)
    run(recovered, E.ADMIT, E.PAUSE)
    assert recovered.phase is P.PAUSED
    assert recovered.holds_key


def test_suspend_keeps_the_key_and_a_wake_runs_it_again() -> None:
    lifecycle = at(P.BLOCKED, holds_slot=True)
    assert run(lifecycle, E.UNWIND, E.SUSPEND) == [(A.UNWIND,), (A.RELEASE_SLOT,)]
    assert lifecycle.phase is P.SUSPENDED
    assert lifecycle.holds_key
    assert lifecycle.in_memory
    assert lifecycle.apply(E.WAKE) == (A.RESPAWN,)
    run(lifecycle, E.START, E.COMPLETE)
    assert lifecycle.apply(E.DURABLE) == (A.WAKE_CALLERS, A.FORGET)  # slot given back once
    assert lifecycle.attempt == 2


def test_a_wake_while_unwinding_runs_it_again_at_once() -> None:
    lifecycle = at(P.UNWINDING, holds_slot=True)
    assert run(lifecycle, E.WAKE, E.WAKE, E.SUSPEND) == [(), (), ()]
    assert lifecycle.phase is P.READY
    assert lifecycle.holds_slot
    other = at(P.UNWINDING)
    other.apply(E.UNBLOCK)  # another branch of its select won meanwhile
    assert other.phase is P.RUNNING


def test_park_and_revive() -> None:
    lifecycle = at(P.UNWINDING, holds_slot=True)
    assert lifecycle.apply(E.PARK) == (A.RELEASE_SLOT, A.RELEASE_KEY, A.PARK)
    assert lifecycle.is_live
    assert not lifecycle.in_memory
    assert not lifecycle.holds_key
    assert lifecycle.apply(E.REVIVE) == (A.MARK_REVIVED, A.ENQUEUE)
    assert lifecycle.revived
    assert lifecycle.suspends_at_once
    assert run(lifecycle, E.ADMIT, E.START) == [(), (A.NEW_ATTEMPT, A.RUN_ATTEMPT)]
    assert lifecycle.suspends_at_once  # rebuilt ones stay eager to suspend


def test_evict_marks_the_attempt_and_a_new_attempt_forgets_it() -> None:
    lifecycle = at(P.BLOCKED)
    assert lifecycle.apply(E.EVICT) == (A.MARK_EVICTING, A.INTERRUPT_WAITS)
    assert lifecycle.suspends_at_once
    run(lifecycle, E.UNWIND, E.SUSPEND, E.WAKE, E.START)
    assert not lifecycle.suspends_at_once


def test_a_cancel_while_blocked_is_raised_once() -> None:
    lifecycle = at(P.BLOCKED)
    assert lifecycle.apply(E.CANCEL) == (A.PERSIST_CANCEL_REQUEST, A.INTERRUPT_WAITS)
    assert lifecycle.cancel_due
    assert lifecycle.cancel_requested
    assert lifecycle.apply(E.RAISE_CANCEL) == (A.RAISE_CANCEL, A.PROPAGATE_CANCEL)
    assert (lifecycle.phase, lifecycle.cancel) == (P.RUNNING, C.RAISED)
    assert not lifecycle.cancel_due
    with pytest.raises(LifecycleError):
        lifecycle.apply(E.RAISE_CANCEL)
    assert run(lifecycle, E.CANCEL, E.BLOCK, E.CANCEL, E.UNBLOCK) == [(), (), (), ()]
    assert lifecycle.apply(E.FAIL) == (A.END_CANCELLED, A.RELEASE_KEY)  # not retried


def test_a_cancel_while_running_lands_at_the_next_await() -> None:
    lifecycle = at(P.RUNNING)
    assert lifecycle.apply(E.CANCEL) == (A.PERSIST_CANCEL_REQUEST,)
    assert lifecycle.phase is P.RUNNING
    assert lifecycle.cancel_due
    lifecycle.apply(E.RAISE_CANCEL)
    assert lifecycle.cancel is C.RAISED


def test_a_raised_cancel_replays_in_the_next_attempt() -> None:
    lifecycle = at(P.BLOCKED)
    run(lifecycle, E.CANCEL, E.RAISE_CANCEL, E.BLOCK, E.UNWIND, E.SUSPEND)
    assert lifecycle.cancel is C.RAISED  # suspended while compensating
    run(lifecycle, E.WAKE, E.START)
    assert state(lifecycle) == (P.RUNNING, C.REQUESTED)
    assert lifecycle.apply(E.REPLAY_CANCEL) == ()
    assert lifecycle.cancel is C.RAISED
    run(lifecycle, E.STEP_FAILED)  # its journal entry may be lost: raise it again live
    assert (lifecycle.phase, lifecycle.cancel) == (P.BACKING_OFF, C.REQUESTED)


def test_a_cancel_while_unwinding_or_suspended_runs_it_again() -> None:
    unwinding = at(P.UNWINDING)
    unwinding.apply(E.CANCEL)
    assert unwinding.phase is P.WOKEN_UNWINDING
    unwinding.apply(E.SUSPEND)
    assert state(unwinding) == (P.READY, C.REQUESTED)
    suspended = at(P.SUSPENDED)
    assert suspended.apply(E.CANCEL) == (A.PERSIST_CANCEL_REQUEST, A.RESPAWN)
    paused = at(P.PAUSED)
    assert paused.apply(E.CANCEL) == (A.PERSIST_CANCEL_REQUEST, A.WAKE_TASK)
    assert paused.phase is P.READY


def test_cancel_and_kill_of_a_completing_invocation_are_answered() -> None:
    lifecycle = at(P.COMPLETING)
    assert lifecycle.apply(E.CANCEL) == (A.REJECT_COMPLETED,)
    assert lifecycle.apply(E.KILL) == (A.REJECT_COMPLETED,)
    assert lifecycle.apply(E.DETACH) == (A.WATCH_COMPLETION,)
    assert lifecycle.phase is P.COMPLETING


@pytest.mark.parametrize("phase", [p for p in P if p not in TERMINAL and p is not P.PARKED])
def test_kill_from_every_live_phase(phase: Phase) -> None:
    lifecycle = at(phase, holds_slot=True)
    actions = lifecycle.apply(E.KILL)
    if phase is P.COMPLETING:
        assert actions == (A.REJECT_COMPLETED,)
        return
    assert lifecycle.phase in (P.KILLING, P.KILL_COMPLETING)
    assert not lifecycle.may_run
    for event in (E.START, E.RETRY, E.RESUME, E.ADMIT, E.DELIVER):
        assert not lifecycle.accepts(event)
    if lifecycle.phase is P.KILLING:
        assert run(lifecycle, E.WAKE, E.BLOCK, E.FAIL, E.CANCEL) == [(), (), (), ()]
        assert lifecycle.apply(E.COMPLETE) == (A.RELEASE_KEY,)
    slot = (A.RELEASE_SLOT,) if lifecycle.holds_slot else ()  # parked ones gave it back
    assert lifecycle.apply(E.DURABLE) == (*slot, A.WAKE_CALLERS, A.FORGET)
    assert state(lifecycle)[0] is P.KILLED
    assert [e for e in E if lifecycle.accepts(e)] == [E.CRASH]


@pytest.mark.parametrize("phase", list(P))
def test_crash_and_recover_from_every_phase(phase: Phase) -> None:
    lifecycle = at(phase)
    assert lifecycle.apply(E.CRASH) == ()
    if phase in (P.COMPLETED, P.KILLED):
        assert lifecycle.phase is phase  # a durable end stays the end
        return
    assert lifecycle.phase is P.ABANDONED
    assert not lifecycle.is_live
    # Storage decides: with a durable step it is revived, else it starts over.
    started, fresh = at(phase), at(phase)
    started.apply(E.CRASH)
    fresh.apply(E.CRASH)
    assert started.apply(E.REVIVE) == (A.MARK_REVIVED, A.ENQUEUE)
    assert started.phase is P.REVIVED
    assert started.revived
    assert fresh.apply(E.RECOVER) == (A.MARK_REVIVED,)
    assert fresh.phase is P.ACCEPTED
    assert fresh.awaits_delivery


def test_rebuilt_from_a_record() -> None:
    revived = Lifecycle.rebuilt(started=True, cancel_requested=True, attempt=4)
    assert (revived.phase, revived.cancel, revived.attempt) == (P.REVIVED, C.REQUESTED, 4)
    assert revived.revived
    assert not revived.holds_slot
    fresh = Lifecycle.rebuilt(started=False, cancel_requested=False)
    assert (fresh.phase, fresh.cancel) == (P.ACCEPTED, C.NONE)


def test_a_detached_run_continues_in_a_new_task() -> None:
    for phase in (P.READY, P.RUNNING, P.BLOCKED, P.UNWINDING, P.WOKEN_UNWINDING):
        lifecycle = at(phase)
        assert lifecycle.apply(E.DETACH) == (A.RESPAWN,)
        assert lifecycle.phase is P.READY
        assert lifecycle.holds_key
    for phase in (P.BACKING_OFF, P.PAUSED, P.KILLING):
        lifecycle = at(phase)
        assert lifecycle.apply(E.DETACH) == (A.RESPAWN,)
        assert lifecycle.phase is phase
    unrecorded = at(P.RUNNING, holds_slot=True)
    assert unrecorded.apply(E.ABANDON) == (
        A.RELEASE_KEY,
        A.RELEASE_SLOT,
        A.FAIL_CALLERS,
        A.FORGET,
    )


def test_apply_is_cheap() -> None:
    # A loose bound that catches an accidental slow path, not a benchmark.
    lifecycle = at(P.BLOCKED)
    apply, wake = lifecycle.apply, E.WAKE
    best = min(timeit.repeat(lambda: apply(wake), number=10_000, repeat=3)) / 10_000
    assert best < 5e-6, f"apply() took {best * 1e9:.0f} ns"


# --- the state machine -------------------------------------------------------------------------

#: Events that may lose journal entries not yet durable (a CancelledEntry among them).
LOSSY = frozenset({E.STEP_FAILED, E.CRASH, E.DETACH, E.ABANDON})
#: How often the machine picks an event when it may (default 8): ending ones seldom.
WEIGHTS = {E.CRASH: 1, E.ABANDON: 1, E.KILL: 1, E.DETACH: 1, E.CANCEL: 2, E.WAKE: 2}
WEIGHTS |= {E.EVICT: 2, E.FAIL: 3, E.STEP_FAILED: 2, E.PAUSE: 2, E.COMPLETE: 3, E.UNBLOCK: 4}


class KeyMachine(RuleBasedStateMachine):
    """Up to four invocations of one key, driven by random events.

    The machine plays an honest runtime where the table cannot know better: its mailbox
    admits one invocation at a time, an object handler suspends and a workflow main
    parks, and a cancel whose entry is in the journal is replayed, not raised again.
    Events the table refuses must raise and change nothing.

    Hypothesis picks a seed and the number of steps (and shrinks the steps); each step's
    choice comes from the seeded ``rng``, weighted (``WEIGHTS``), because choices drawn
    from Hypothesis lean hard on the first option and rarely get past the first wait."""

    def __init__(self) -> None:
        super().__init__()
        self.lives: list[Lifecycle] = []
        self.parks: list[bool] = []  # a workflow main (parks), else an object handler
        self.holder: int | None = None  # who holds the key, per the mailbox
        self.ended: list[bool] = []  # reached an ending phase in this process life
        self.attempts: list[int] = []
        self.slots: list[int] = []  # RELEASE_SLOT seen since its slot was taken
        self.slot_tracked: list[bool] = []
        self.raised: list[int] = []  # live raises since the journal could last lose one
        self.journaled: list[bool] = []  # its journal holds the raised cancellation
        self.requested: list[bool] = []  # a cancel was requested at some point
        self.rng = random.Random(0)

    @initialize(seed=st.integers(0, 2**32 - 1))
    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    @rule()
    def step(self) -> None:
        """One step of the runtime: a new invocation, a refused event, a crash (seldom:
        it ends every life at once), or most often an event of a life going on."""
        roll = self.rng.random()
        if not self.lives or (roll < 0.05 and len(self.lives) < 4):
            self.accept(parks=self.rng.random() < 0.3, holds_slot=self.rng.random() < 0.5)
        elif roll < 0.15:
            self.refuse()
        elif roll < 0.17:
            self.crash()
        else:
            self.advance()

    def accept(self, *, parks: bool, holds_slot: bool) -> None:
        self.lives.append(Lifecycle(holds_slot=holds_slot))
        self.parks.append(parks)
        self.ended.append(False)
        self.attempts.append(0)
        self.slots.append(0)
        self.slot_tracked.append(holds_slot)
        self.raised.append(0)
        self.journaled.append(False)
        self.requested.append(False)

    def honest(self, i: int, event: Event) -> bool:
        """Whether a runtime would report ``event`` now (not: whether the table allows it)."""
        if event is E.ADMIT:
            return self.holder is None
        if event in (E.SUSPEND, E.PARK):
            return (event is E.PARK) == self.parks[i]
        if event is E.RAISE_CANCEL:
            return not self.journaled[i]
        if event is E.REPLAY_CANCEL:
            return self.journaled[i]
        return True

    def advance(self) -> None:
        choices = [
            (i, e)
            for i, lifecycle in enumerate(self.lives)
            for e in E
            if e is not E.CRASH and lifecycle.accepts(e) and self.honest(i, e)
        ]
        if not choices:
            return
        weights = [WEIGHTS.get(e, 8) for _, e in choices]
        ((i, event),) = self.rng.choices(choices, weights)
        lifecycle = self.lives[i]
        held, ending = lifecycle.holds_key, lifecycle.phase in (P.KILLING, P.KILL_COMPLETING)
        actions = lifecycle.apply(event)
        if event is E.CANCEL and A.REJECT_COMPLETED not in actions and not ending:
            assert lifecycle.cancel_requested, "a cancel request was dropped"
        if A.END_CANCELLED in actions:
            assert lifecycle.cancel_requested
        if event is E.START and self.journaled[i]:  # it must meet it again, replaying
            assert lifecycle.accepts(E.REPLAY_CANCEL)
        elif event is E.START and lifecycle.cancel_requested:
            assert lifecycle.cancel_due, "a new attempt must raise the requested cancel"
        self.requested[i] = self.requested[i] or lifecycle.cancel_requested
        if not held and lifecycle.holds_key:
            assert event is E.ADMIT
            assert self.holder is None
            self.holder = i
        if A.RELEASE_KEY in actions:
            assert self.holder == i
            self.holder = None
        if A.RELEASE_SLOT in actions:
            self.slots[i] += 1
        if event in LOSSY:
            self.raised[i], self.journaled[i] = 0, False
        if A.RAISE_CANCEL in actions:
            self.raised[i] += 1
            self.journaled[i] = True
        self.after_event(i)

    def refuse(self) -> None:
        lifecycle = self.rng.choice(self.lives)
        refused = [e for e in E if not lifecycle.accepts(e)]
        if not refused:
            return
        event = self.rng.choice(refused)
        before = (lifecycle.phase, lifecycle.cancel, lifecycle.attempt, lifecycle.holds_slot)
        with pytest.raises(LifecycleError):
            lifecycle.apply(event)
        assert (lifecycle.phase, lifecycle.cancel, lifecycle.attempt, lifecycle.holds_slot) == (
            before
        )

    def crash(self) -> None:
        for i, lifecycle in enumerate(self.lives):
            assert lifecycle.apply(E.CRASH) == ()
            self.slot_tracked[i] = False  # the process and its slots are gone
            self.raised[i], self.journaled[i] = 0, False
            self.after_event(i)
        self.holder = None

    def after_event(self, i: int) -> None:
        lifecycle = self.lives[i]
        if lifecycle.phase in ENDING:
            self.ended[i] = True
        elif lifecycle.phase is P.ABANDONED:
            self.ended[i] = False  # storage decides whether it ended
        assert not (self.ended[i] and lifecycle.may_run), "an ending invocation ran again"
        assert lifecycle.attempt >= self.attempts[i], "attempts went backwards"
        self.attempts[i] = lifecycle.attempt

    @invariant()
    def one_holder_per_key(self) -> None:
        holders = [i for i, lifecycle in enumerate(self.lives) if lifecycle.holds_key]
        assert holders == ([] if self.holder is None else [self.holder])
        running = [lc for lc in self.lives if lc.phase in (P.RUNNING, P.BLOCKED)]
        assert len(running) <= 1

    @invariant()
    def a_cancel_is_raised_at_most_once(self) -> None:
        assert all(count <= 1 for count in self.raised)
        for i, lifecycle in enumerate(self.lives):
            assert lifecycle.cancel_requested or not self.requested[i], "a request vanished"

    @invariant()
    def a_slot_is_given_back_once_when_the_coroutine_is_gone(self) -> None:
        for i, lifecycle in enumerate(self.lives):
            assert self.slots[i] <= 1
            if self.slot_tracked[i]:
                assert self.slots[i] == (not lifecycle.holds_slot)
                if lifecycle.phase in (P.SUSPENDED, P.PARKED, P.COMPLETED, P.KILLED):
                    assert not lifecycle.holds_slot

    @invariant()
    def the_dead_stay_dead(self) -> None:
        for lifecycle in self.lives:
            if lifecycle.phase in (P.COMPLETED, P.KILLED):
                assert [e for e in E if lifecycle.accepts(e)] == [E.CRASH]


KeyMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=80, deadline=None)
TestKeyMachine = KeyMachine.TestCase


@pytest.mark.slow
def test_key_machine_thoroughly(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a long run: select it with -m slow")
    run_state_machine_as_test(
        KeyMachine, settings=settings(max_examples=5000, stateful_step_count=120, deadline=None)
    )
