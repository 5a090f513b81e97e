"""A Hypothesis state machine against ``MailboxCore``: "an exclusive never runs beside
another", FIFO, shared never waits, and nothing is left behind.

The machine keeps its own account of what is running, built only from what the core
*returned* (what it admitted) and what the test finished, and checks the core's answers
and properties against that account after every step.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.mailbox import MailboxCore, MailboxStateError, MailboxStatistics


@attrs.define(eq=False)
class Env:
    number: int
    exclusive: bool

    def __repr__(self) -> str:
        return f"<{'X' if self.exclusive else 'S'}{self.number}>"


class MailboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core: MailboxCore[Env] = MailboxCore()
        # Every envelope ever made stays referenced, so no two share an id() (the core
        # tracks shared envelopes by id).
        self.everything: list[Env] = []
        self.enqueued_exclusive: list[Env] = []  # in enqueue order
        self.removed: list[Env] = []
        self.started_exclusive: list[Env] = []  # in start order
        self.started_shared: list[Env] = []
        self.running: list[Env] = []  # admitted and not yet finished
        self.finished_envelopes: list[Env] = []

    # --- helpers ------------------------------------------------------------------------

    def _new(self, exclusive: bool) -> Env:
        env = Env(len(self.everything), exclusive)
        self.everything.append(env)
        return env

    def _admit(self, admitted: list[Env]) -> None:
        for env in admitted:
            assert not any(env is r for r in self.running), f"{env} admitted twice"
            self.running.append(env)
            (self.started_exclusive if env.exclusive else self.started_shared).append(env)

    def _queued(self) -> list[Env]:
        """Enqueued exclusive envelopes neither started nor removed, in enqueue order."""
        gone = {id(e) for e in self.started_exclusive} | {id(e) for e in self.removed}
        return [e for e in self.enqueued_exclusive if id(e) not in gone]

    def _running_exclusive(self) -> list[Env]:
        return [e for e in self.running if e.exclusive]

    def _running_shared(self) -> list[Env]:
        return [e for e in self.running if not e.exclusive]

    def _finish(self, env: Env) -> None:
        was_exclusive_running = bool(self._running_exclusive())
        admitted = self.core.finished(env)
        self.running = [e for e in self.running if e is not env]
        self.finished_envelopes.append(env)
        if env.exclusive:
            queued = self._queued()
            # The key passes at once to the oldest queued exclusive envelope, if any.
            assert [id(e) for e in admitted] == [id(e) for e in queued[:1]]
        else:
            # A shared one leaving never changes who holds the key.
            assert admitted == []
            assert bool(self._running_exclusive()) == was_exclusive_running
        self._admit(admitted)

    # --- rules --------------------------------------------------------------------------

    @rule()
    def enqueue_exclusive(self) -> None:
        env = self._new(exclusive=True)
        key_was_free = not self._running_exclusive()
        self.enqueued_exclusive.append(env)
        admitted = self.core.enqueue(env)
        if key_was_free:
            assert len(admitted) == 1
            assert admitted[0] is env
        else:
            assert admitted == []
        self._admit(admitted)

    @rule()
    def enqueue_shared(self) -> None:
        env = self._new(exclusive=False)
        admitted = self.core.enqueue(env)
        # Shared never waits: admitted by the very call that brought it, and alone.
        assert len(admitted) == 1
        assert admitted[0] is env
        self._admit(admitted)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def finish_running(self, data: st.DataObject) -> None:
        self._finish(data.draw(st.sampled_from(self.running), label="finish"))

    @precondition(lambda self: bool(self._queued()))
    @rule(data=st.data())
    def remove_queued(self, data: st.DataObject) -> None:
        env = data.draw(st.sampled_from(self._queued()), label="remove")
        assert self.core.remove_queued(env) is True
        self.removed.append(env)
        assert self.core.remove_queued(env) is False

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def remove_running_is_refused(self, data: st.DataObject) -> None:
        env = data.draw(st.sampled_from(self.running), label="remove running")
        before = self.core.statistics()
        assert self.core.remove_queued(env) is False
        assert self.core.statistics() == before

    @precondition(lambda self: any(not self._is_running(e) for e in self.everything))
    @rule(data=st.data())
    def finish_not_running_is_refused(self, data: st.DataObject) -> None:
        # Queued, removed or already finished: the core must refuse and change nothing.
        candidates = [e for e in self.everything if not self._is_running(e)]
        env = data.draw(st.sampled_from(candidates), label="finish not running")
        before = self.core.statistics()
        holder = self.core.running_exclusive
        with pytest.raises(MailboxStateError, match=r"^finished\(\) for an? .+ not running$"):
            self.core.finished(env)
        assert self.core.statistics() == before
        assert self.core.running_exclusive is holder

    @rule()
    def nothing_more_is_admissible(self) -> None:
        # The core admits as soon as it can, so asking again never yields anything.
        assert self.core.next_admissible() == []

    @rule(data=st.data())
    def finish_everything(self, data: st.DataObject) -> None:
        # Liveness: if every running envelope finishes, everything enqueued and not
        # removed eventually starts, and the mailbox ends idle.
        while self.running:
            self._finish(data.draw(st.sampled_from(self.running), label="drain"))
        kept = [e for e in self.enqueued_exclusive if not any(e is r for r in self.removed)]
        assert [id(e) for e in self.started_exclusive] == [id(e) for e in kept]
        assert self.core.idle
        assert self.core.statistics() == MailboxStatistics(0, False, 0)

    def _is_running(self, env: Env) -> bool:
        return any(env is r for r in self.running)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def an_exclusive_never_runs_beside_another(self) -> None:
        running = self._running_exclusive()
        assert len(running) <= 1, running
        assert self.core.running_exclusive is (running[0] if running else None)

    @invariant()
    def exclusive_start_in_enqueue_order(self) -> None:
        kept = [e for e in self.enqueued_exclusive if not any(e is r for r in self.removed)]
        started = self.started_exclusive
        assert [id(e) for e in started] == [id(e) for e in kept[: len(started)]]

    @invariant()
    def every_shared_started_at_enqueue(self) -> None:
        shared = [e for e in self.everything if not e.exclusive]
        assert [id(e) for e in self.started_shared] == [id(e) for e in shared]

    @invariant()
    def removed_never_start(self) -> None:
        started = {id(e) for e in self.started_exclusive}
        assert not any(id(e) in started for e in self.removed)

    @invariant()
    def key_is_never_free_while_work_waits(self) -> None:
        if self._queued():
            assert self.core.running_exclusive is not None

    @invariant()
    def statistics_match_the_model(self) -> None:
        assert self.core.statistics() == MailboxStatistics(
            queued_exclusive=len(self._queued()),
            running_exclusive=bool(self._running_exclusive()),
            running_shared=len(self._running_shared()),
        )

    @invariant()
    def idle_iff_nothing_queued_or_running(self) -> None:
        assert self.core.idle == (not self._queued() and not self.running)


TestMailboxCore = MailboxMachine.TestCase
