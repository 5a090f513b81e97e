"""The mailbox scheduling rules, tested without an event loop (like h11's test_state.py).

``MailboxCore`` is a pure state machine: events go in as calls and decisions come out as
return values, so each test is a plain script of calls and expected answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from actors.mailbox import MailboxCore, MailboxStateError, MailboxStatistics

if TYPE_CHECKING:
    from collections.abc import Callable


@attrs.define(eq=False)
class Env:
    """The smallest envelope: a name for messages and the one flag the core reads."""

    name: str
    exclusive: bool

    def __repr__(self) -> str:
        return f"<{'X' if self.exclusive else 'S'} {self.name}>"


def ex(name: str) -> Env:
    return Env(name, exclusive=True)


def sh(name: str) -> Env:
    return Env(name, exclusive=False)


def stats(queued: int, running_exclusive: bool, running_shared: int) -> MailboxStatistics:
    return MailboxStatistics(
        queued_exclusive=queued,
        running_exclusive=running_exclusive,
        running_shared=running_shared,
    )


def assert_same(actual: list[Env], expected: list[Env]) -> None:
    """The core hands back the very envelopes it was given (identity, not equality)."""
    assert [id(e) for e in actual] == [id(e) for e in expected], (actual, expected)


def test_MailboxCore_starts_idle() -> None:
    core: MailboxCore[Env] = MailboxCore()
    assert core.idle
    assert core.running_exclusive is None
    assert core.statistics() == stats(0, False, 0)
    assert core.next_admissible() == []


def test_MailboxCore_exclusive_on_idle_key_starts_at_once() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a = ex("a")
    assert_same(core.enqueue(a), [a])
    assert core.running_exclusive is a
    assert not core.idle
    assert core.statistics() == stats(0, True, 0)


def test_MailboxCore_shared_starts_at_once_on_idle_key() -> None:
    core: MailboxCore[Env] = MailboxCore()
    s = sh("s")
    assert_same(core.enqueue(s), [s])
    assert core.running_exclusive is None
    assert core.statistics() == stats(0, False, 1)


def test_MailboxCore_shared_admitted_at_once_while_exclusive_runs() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b = ex("a"), ex("b")
    core.enqueue(a)
    core.enqueue(b)  # queued behind a
    s1, s2 = sh("s1"), sh("s2")
    assert_same(core.enqueue(s1), [s1])
    assert_same(core.enqueue(s2), [s2])
    assert core.running_exclusive is a
    assert core.statistics() == stats(1, True, 2)


def test_MailboxCore_exclusive_is_fifo() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, c = ex("a"), ex("b"), ex("c")
    assert_same(core.enqueue(a), [a])
    assert_same(core.enqueue(b), [])
    assert_same(core.enqueue(c), [])
    assert_same(core.finished(a), [b])
    assert_same(core.finished(b), [c])
    assert_same(core.finished(c), [])
    assert core.idle


def test_MailboxCore_only_one_exclusive_at_a_time() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, c = ex("a"), ex("b"), ex("c")
    for env in (a, b, c):
        core.enqueue(env)
    assert core.running_exclusive is a
    assert core.statistics() == stats(2, True, 0)
    # Asking again admits nothing: a still holds the key.
    assert core.next_admissible() == []
    assert core.running_exclusive is a
    assert core.statistics() == stats(2, True, 0)


def test_MailboxCore_exclusive_does_not_wait_for_running_shared() -> None:
    core: MailboxCore[Env] = MailboxCore()
    s1, s2 = sh("s1"), sh("s2")
    core.enqueue(s1)
    core.enqueue(s2)
    a = ex("a")
    assert_same(core.enqueue(a), [a])
    assert core.statistics() == stats(0, True, 2)
    # And when a finishes, the next exclusive starts although the shared ones still run.
    b = ex("b")
    core.enqueue(b)
    assert_same(core.finished(a), [b])
    assert core.statistics() == stats(0, True, 2)


def test_MailboxCore_finishing_shared_admits_nothing() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b = ex("a"), ex("b")
    s = sh("s")
    core.enqueue(a)
    core.enqueue(s)
    core.enqueue(b)
    assert_same(core.finished(s), [])
    assert core.running_exclusive is a
    assert core.statistics() == stats(1, True, 0)


def test_MailboxCore_finished_of_queued_exclusive_raises() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b = ex("a"), ex("b")
    core.enqueue(a)
    core.enqueue(b)
    with pytest.raises(
        MailboxStateError,
        match=r"^finished\(\) for an exclusive envelope that is not running$",
    ):
        core.finished(b)
    # The refused event changed nothing.
    assert core.running_exclusive is a
    assert core.statistics() == stats(1, True, 0)
    assert_same(core.finished(a), [b])


def test_MailboxCore_finished_of_unknown_exclusive_raises() -> None:
    core: MailboxCore[Env] = MailboxCore()
    with pytest.raises(
        MailboxStateError,
        match=r"^finished\(\) for an exclusive envelope that is not running$",
    ):
        core.finished(ex("stranger"))
    assert core.idle


def test_MailboxCore_finished_twice_raises() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, s = ex("a"), sh("s")
    core.enqueue(a)
    core.enqueue(s)
    core.finished(a)
    core.finished(s)
    with pytest.raises(
        MailboxStateError,
        match=r"^finished\(\) for an exclusive envelope that is not running$",
    ):
        core.finished(a)
    with pytest.raises(
        MailboxStateError,
        match=r"^finished\(\) for a shared envelope that is not running$",
    ):
        core.finished(s)
    assert core.idle


def test_MailboxCore_finished_of_unknown_shared_raises() -> None:
    core: MailboxCore[Env] = MailboxCore()
    running = sh("running")
    core.enqueue(running)
    with pytest.raises(
        MailboxStateError,
        match=r"^finished\(\) for a shared envelope that is not running$",
    ):
        core.finished(sh("stranger"))
    assert core.statistics() == stats(0, False, 1)


def test_MailboxCore_error_is_a_RuntimeError() -> None:
    assert issubclass(MailboxStateError, RuntimeError)


def test_MailboxCore_remove_queued() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, c, d = ex("a"), ex("b"), ex("c"), ex("d")
    for env in (a, b, c, d):
        core.enqueue(env)
    assert core.remove_queued(c) is True
    assert core.statistics() == stats(2, True, 0)
    # Removing it again, the running one, a shared one or a stranger removes nothing.
    assert core.remove_queued(c) is False
    assert core.remove_queued(a) is False
    assert core.remove_queued(sh("s")) is False
    assert core.remove_queued(ex("stranger")) is False
    assert core.running_exclusive is a
    assert core.statistics() == stats(2, True, 0)
    # The rest keep their order; c never starts.
    assert_same(core.finished(a), [b])
    assert_same(core.finished(b), [d])
    assert_same(core.finished(d), [])
    assert core.idle


def test_MailboxCore_remove_queued_does_not_admit() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, c = ex("a"), ex("b"), ex("c")
    for env in (a, b, c):
        core.enqueue(env)
    assert core.remove_queued(b)
    assert core.running_exclusive is a
    assert core.next_admissible() == []


def test_MailboxCore_remove_queued_by_identity() -> None:
    # Envelopes that compare equal are still different units of work: removing one must
    # not remove another (``finished`` already goes by identity).
    @attrs.frozen
    class ValueEnv:
        exclusive: bool

    core: MailboxCore[ValueEnv] = MailboxCore()
    running, first, second = ValueEnv(True), ValueEnv(True), ValueEnv(True)
    core.enqueue(running)
    core.enqueue(first)
    # ``running`` is not queued, so nothing is removed.
    assert core.remove_queued(running) is False
    assert core.statistics() == stats(1, True, 0)
    core.enqueue(second)
    assert core.remove_queued(second) is True
    started = core.finished(running)
    assert len(started) == 1
    assert started[0] is first


def test_MailboxCore_idle() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, s = ex("a"), ex("b"), sh("s")
    core.enqueue(s)
    assert not core.idle  # a shared one runs
    core.enqueue(a)
    core.enqueue(b)
    core.finished(s)
    assert not core.idle  # a runs, b is queued
    core.remove_queued(b)
    assert not core.idle  # a still runs
    core.finished(a)
    assert core.idle


def test_MailboxCore_statistics_follow_every_event() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b, c, s1, s2 = ex("a"), ex("b"), ex("c"), sh("s1"), sh("s2")
    steps: list[tuple[Callable[[], object], MailboxStatistics]] = [
        (lambda: core.enqueue(a), stats(0, True, 0)),
        (lambda: core.enqueue(b), stats(1, True, 0)),
        (lambda: core.enqueue(s1), stats(1, True, 1)),
        (lambda: core.enqueue(c), stats(2, True, 1)),
        (lambda: core.enqueue(s2), stats(2, True, 2)),
        (lambda: core.remove_queued(b), stats(1, True, 2)),
        (lambda: core.finished(a), stats(0, True, 2)),
        (lambda: core.finished(s1), stats(0, True, 1)),
        (lambda: core.finished(c), stats(0, False, 1)),
        (lambda: core.finished(s2), stats(0, False, 0)),
    ]
    for step, expected in steps:
        step()
        assert core.statistics() == expected


def test_MailboxStatistics_is_a_frozen_value() -> None:
    snapshot = stats(1, True, 2)
    assert snapshot == stats(1, True, 2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snapshot.queued_exclusive = 5  # type: ignore[misc]


def test_MailboxCore_statistics_is_a_snapshot() -> None:
    core: MailboxCore[Env] = MailboxCore()
    before = core.statistics()
    core.enqueue(ex("a"))
    assert before == stats(0, False, 0)


def test_MailboxCore_hand_over_keeps_the_queue_waiting() -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, a2, b = ex("a"), ex("a again"), ex("b")
    core.enqueue(a)
    core.enqueue(b)
    core.hand_over(a, a2)  # the same work goes on under a new envelope
    assert core.running_exclusive is a2
    assert core.statistics() == stats(1, True, 0)
    assert_same(core.finished(a2), [b])


@pytest.mark.parametrize("who", ["queued", "shared successor", "idle"])
def test_MailboxCore_hand_over_from_a_non_holder_raises(who: str) -> None:
    core: MailboxCore[Env] = MailboxCore()
    a, b = ex("a"), ex("b")
    holder, successor = b, ex("c")
    if who != "idle":
        core.enqueue(a)
        core.enqueue(b)
    if who == "shared successor":
        holder, successor = a, sh("s")
    with pytest.raises(
        MailboxStateError, match=r"^hand_over\(\) from an envelope that does not hold the key$"
    ):
        core.hand_over(holder, successor)
    assert core.running_exclusive is (None if who == "idle" else a)
