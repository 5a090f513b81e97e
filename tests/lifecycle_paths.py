"""Named paths through an invocation's life, shared by the lifecycle tests
(test_lifecycle.py, test_lifecycle_machine.py): the events that reach each phase from
ACCEPTED, and ``at(phase)``, a lifecycle brought there."""

from __future__ import annotations

from actors._lifecycle import (
    Action,
    Cancel,
    Event,
    Lifecycle,
    Phase,
)

A, C, E, P = Action, Cancel, Event, Phase

ENDING = frozenset({P.COMPLETING, P.KILLING, P.KILL_COMPLETING})


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
