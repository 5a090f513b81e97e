"""The invocation lifecycle table, tested without an event loop (like h11's test_state.py).

Every (phase, cancel, event) cell either moves as the table says or is refused without a
change; the shape of the table; named paths through an invocation's life (the
Hypothesis state machine: test_lifecycle_machine.py).
"""

from __future__ import annotations

import timeit
from collections import deque

import pytest
from lifecycle_paths import ENDING, PATHS, at, run, state

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


def fields(lifecycle: Lifecycle) -> tuple[object, ...]:
    return (lifecycle.phase, lifecycle.cancel, lifecycle.attempt, lifecycle.failures)


@pytest.mark.parametrize(("first", "second"), _lifecycle.PAIRS)
def test_a_pair_moves_as_its_two_events_do_one_after_the_other(first: Event, second: Event) -> None:
    allowed = 0
    for phase in P:
        for cancel in C:
            for holds_slot in (False, True):
                paired = Lifecycle(phase=phase, cancel=cancel, holds_slot=holds_slot, attempt=2)
                stepped = Lifecycle(phase=phase, cancel=cancel, holds_slot=holds_slot, attempt=2)
                expected: tuple[Action, ...] | LifecycleError
                try:
                    expected = stepped.apply(first) + stepped.apply(second)
                except LifecycleError as refused:
                    expected = refused
                if isinstance(expected, LifecycleError):
                    with pytest.raises(LifecycleError) as raised:
                        paired.apply_pair(first, second)
                    assert str(raised.value) == str(expected)
                else:
                    allowed += 1
                    assert paired.apply_pair(first, second) == expected
                assert fields(paired) == fields(stepped)
                assert paired.holds_slot == stepped.holds_slot
                assert paired.accepts(E.CRASH) == stepped.accepts(E.CRASH)
    assert allowed >= 2  # the runtime's own uses: a call admitted at once, a pure read


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
