"""The invocation lifecycle table under a Hypothesis state machine, without an event
loop: several invocations on one key driven with random events, checked against the
invariants the module docstring states and a model of the key and the journal (cell by
cell and path by path: test_lifecycle.py).
"""

from __future__ import annotations

import random

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
from lifecycle_paths import ENDING

from actors._lifecycle import (
    Action,
    Cancel,
    Event,
    Lifecycle,
    LifecycleError,
    Phase,
)

A, C, E, P = Action, Cancel, Event, Phase


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
