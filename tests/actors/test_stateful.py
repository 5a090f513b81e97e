"""Hypothesis on the actors layer: random interleavings of the public API against a model.

One example is a program: a list of operations run in one ``trio.run`` under
``trio.testing.MockClock(autojump_threshold=0)`` on one data directory, through one or
more runtime "lives" (``open_test_runtime``: inline commits, a ``LoopClock``). Each
operation starts a task and the program goes on at once, so calls, sends, reads, cancels,
kills and promise resolutions overlap; trio's scheduler draws its choices from Hypothesis,
so an interleaving replays and shrinks with the program. The operations:

* ``Call`` / ``Send``: ``rt.call`` / ``rt.send`` of ``Counter.incr`` on a few keys, sends
  with or without a delay, both with or without an idempotency key. An increment reads the
  counter and its log, runs a journaled step, may ``ctx.sleep``, then writes ``n + 1`` and
  the log with its tag appended, and returns ``n + 1``.
* ``Read``: the shared ``Counter.value`` (``n`` and the log, read together).
* ``Stop``: ``rt.cancel`` or ``rt.kill`` of an invocation whose id the test holds.
* ``Conflict``: an idempotency key reused for a different request.
* ``StartFlow`` / ``Resolve``: a workflow whose ``main`` waits on a durable promise and
  then sleeps; the promise is resolved through a shared handler.
* ``Pause``: mock time passes (timers, delayed sends, idle suspension).
* ``Restart``: the runtime closes; the next life opens the same directory, after a gap,
  armed with a ``CrashPlan`` (after N commits, before or after a step body) or none. When
  a plan fires the life dies with ``SimulatedCrash`` and the next one opens at once.

After the program one more life settles everything (starts and resolves the workflows,
attaches every invocation whose id is known, lets the clock run), and a last one reopens
the directory and checks that nothing changed.

The model (``Model``, in tests/stateful_model.py with the actors and the operations) knows
only what the API answered and checks, as answers arrive and at the end (DESIGN.md
section 3):

* one request, one invocation: a non-idempotent send answers "Accepted"; sends of one
  idempotency key or one workflow id all answer the same id, "PreviouslyAccepted" once an
  acceptance was known (4, 7); a reused key with another request is refused with 409 (7);
* an invocation has one outcome: every answer for it (``result()``, ``rt.call``,
  ``attach`` before and after restarts) is the same value or the same error (4, 7);
* increments on a key never return the same number twice (the lost-update signature), and
  the final log holds each returned number's tag at that position, each tag at most once,
  no tag of an invocation that failed and none nobody submitted (1, 2, 4, 5): so the
  counter equals the number of completed increments, and the completed increments are
  exactly 1..n apart from the ones whose answer the test never received (a submission in
  flight when a life ended), which may or may not have been accepted;
* every invocation whose id the test holds completes (4, 9: delayed sends and sleeps fire
  across restarts), and no sleep or delay ends early (9);
* shared reads see ``n == len(log)`` (no partial write), only tags submitted so far, a
  history every other read agrees with (one committed history, appended to), never fewer
  increments than a read that returned before, nor than a completed increment's number
  (3, 6: a result is answered only once it is durable, and what is durable is visible);
* a ``ctx.run`` body runs at most once per life and never after its invocation's outcome
  was answered: a completed, killed or cancelled invocation does not run again (5, 6, 11);
* cancel and kill: the outcome of a stopped invocation is either its result (the
  cancellation came after its last durable await, or the stop was refused with 409 "already
  completed") or a 409 ``TerminalError`` naming the stop that was asked for; a kill that
  returned means it ended killed (11);
* a promise completes once: one resolution succeeds, the others get 409, a 409 only when
  another resolution was tried, and ``main`` returns the value that won, which ``peek``
  shows too (8).

Several runtime outcomes are allowed where they race: listed where the model accepts them.
``test_the_oracle_fails_on_an_injected_fault`` shows that the model rejects a wrong answer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import actors
from actors.testing import CrashPlan, LoopClock, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from actors import Runtime

from stateful_model import (
    FLOWS,
    IDEM_SLEEP,
    KEYS,
    MARGIN,
    RETENTION,
    SETTLE,
    Call,
    Conflict,
    Counter,
    Flow,
    Incr,
    Model,
    Op,
    Pause,
    Probe,
    Read,
    Resolve,
    Restart,
    Send,
    StartFlow,
    Stop,
    Tracked,
)

# --- the driver -------------------------------------------------------------------------------


class Driver:
    """Runs a program against the runtime and tells the model what it answered."""

    def __init__(self, path: Path, first_plan: CrashPlan | None) -> None:
        self.path = path
        self.first_plan = first_plan
        self.probe = Probe()
        self.model = Model(self.probe)
        self.clock = LoopClock()
        self.actors = [Counter(self.probe), Flow(self.probe)]
        self.resolutions = 0

    def open(self, plan: CrashPlan | None = None) -> AbstractAsyncContextManager[Runtime]:
        self.probe.life += 1
        return open_test_runtime(
            self.actors, path=self.path, clock=self.clock, crash=plan, retention=RETENTION
        )

    def _raise_violation(self, exc: BaseException | None = None) -> None:
        """Raise the first violation the model saw, or the first AssertionError inside
        ``exc``: plainly, not wrapped in the task groups', so that Hypothesis tells
        failures apart by their assertion."""
        if self.model.violations:
            raise self.model.violations[0] from None
        while isinstance(exc, BaseExceptionGroup):
            failed, _rest = exc.split(AssertionError)
            exc = None if failed is None else failed.exceptions[0]
        if isinstance(exc, AssertionError):
            raise exc from None

    async def run(self, ops: list[Op]) -> None:
        plan = self.first_plan
        index = 0
        for _life in range(2 * len(ops) + 2):  # each life takes an op or a plan
            gap = 0.0
            crashed = False
            try:
                async with self.open(plan) as rt, trio.open_nursery() as nursery:
                    plan = None
                    while index < len(ops):
                        op = ops[index]
                        index += 1
                        if isinstance(op, Restart):
                            plan, gap = op.plan, op.gap
                            break
                        await self.start(rt, nursery, op)
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
            except SimulatedCrash:
                plan = None
                crashed = True
            except BaseException as exc:
                self._raise_violation(exc)
                raise
            self._raise_violation()
            try:
                self.model.life_ended(crashed)
            except AssertionError as exc:
                self.model.violations.append(exc)
                raise
            await trio.sleep(gap)
            if index >= len(ops):
                break
        try:
            async with self.open() as rt:
                await self.settle(rt)
            self.model.life_ended(crashed=False)
            async with self.open() as rt:
                await self.settle(rt, again=True)
            self.model.life_ended(crashed=False)
        except BaseException as exc:
            self._raise_violation(exc)
            raise

    # --- operations ---

    async def start(self, rt: Runtime, nursery: trio.Nursery, op: Op) -> None:
        m = self.model

        def spawn(fn: Callable[[], Awaitable[None]]) -> None:
            async def guarded() -> None:
                try:
                    await fn()
                except AssertionError as exc:
                    m.violations.append(exc)
                    raise

            nursery.start_soon(guarded)

        if isinstance(op, Call):
            sleep = op.sleep if op.ikey is None else IDEM_SLEEP[op.ikey]
            t = m.incr(op.key, op.ikey, sleep, None)
            ikey = None if op.ikey is None else t.tag

            async def call() -> None:
                started = trio.current_time()
                try:
                    value = await rt.call(
                        Counter.incr, Incr(t.tag, sleep), key=op.key, idempotency_key=ikey
                    )
                except actors.TerminalError as exc:
                    m.failed(t, exc)
                else:
                    m.completed(t, value, started)

            spawn(call)
        elif isinstance(op, Send):
            sleep = op.sleep if op.ikey is None else IDEM_SLEEP[op.ikey]
            t = m.incr(op.key, op.ikey, sleep, op.delay)
            spawn(lambda: self.send(rt, nursery, t, sleep, op.delay, op.ikey))
        elif isinstance(op, Read):
            key = op.key

            async def read() -> None:
                floor = m.floor[key]
                m.read(key, floor, await rt.call(Counter.value, key=key))

            spawn(read)
        elif isinstance(op, Stop):
            targets = [t for t in m.tracked.values() if t.ids]
            if targets:
                t = targets[op.pick % len(targets)]
                spawn(lambda: self.stop(rt, t, "kill" if op.kill else "cancel"))
        elif isinstance(op, Conflict):
            t = m.tracked.get(f"{op.key}~{op.ikey}", Tracked("", "", "incr"))
            if t.known_accepted:  # else it could become the key's request
                spawn(lambda: self.conflict(rt, t))
        elif isinstance(op, StartFlow):
            t = m.flow(op.wid)
            spawn(lambda: self.start_flow(rt, nursery, t))
        elif isinstance(op, Resolve):
            self.resolutions += 1
            t = m.flow(op.wid)
            value = f"{op.wid}:{self.resolutions}"
            spawn(lambda: self.resolve(rt, t, value))
        elif isinstance(op, Pause):
            await trio.sleep(op.seconds)
        else:  # pragma: no cover
            raise AssertionError(op)

    async def send(
        self,
        rt: Runtime,
        nursery: trio.Nursery,
        t: Tracked,
        sleep: float,
        delay: float | None,
        ikey: int | None,
    ) -> None:
        known = t.known_accepted
        started = trio.current_time()
        handle = await rt.send(
            Counter.incr,
            Incr(t.tag, sleep),
            key=t.key,
            delay=delay,
            idempotency_key=None if ikey is None else t.tag,
        )
        self.model.accepted(t, handle.invocation_id, handle.status, known)
        await self.outcome(t, handle.result(), started)

    async def outcome(self, t: Tracked, result: Awaitable[Any], started: float | None) -> None:
        try:
            value = await result
        except actors.TerminalError as exc:
            self.model.failed(t, exc)
        else:
            self.model.completed(t, value, started)

    async def stop(self, rt: Runtime, t: Tracked, kind: str) -> None:
        (invocation_id,) = t.ids
        t.stops.append(kind)
        try:
            await (rt.kill if kind == "kill" else rt.cancel)(invocation_id)
        except actors.TerminalError as exc:
            self.model.stop_refused(t, exc)
        else:
            self.model.stop_returned(t, kind)

    async def conflict(self, rt: Runtime, t: Tracked) -> None:
        refused: actors.TerminalError | None = None
        try:
            await rt.send(Counter.incr, Incr(t.tag + "!", 0.0), key=t.key, idempotency_key=t.tag)
        except actors.TerminalError as exc:
            refused = exc
        assert refused is not None, f"idempotency key {t.tag} accepted another request"
        assert refused.status_code == 409, refused
        assert "different request" in refused.message, refused

    async def start_flow(self, rt: Runtime, nursery: trio.Nursery, t: Tracked) -> None:
        known = t.known_accepted
        handle = await rt.send(Flow.run, key=t.tag)
        self.model.accepted(t, handle.invocation_id, handle.status, known)
        await self.outcome(t, handle.result(), None)

    async def resolve(self, rt: Runtime, t: Tracked, value: str) -> None:
        t.offered.add(value)
        try:
            await rt.call(Flow.approve, value, key=t.tag)
        except actors.TerminalError as exc:
            self.model.resolve_refused(t, value, exc)
        else:
            self.model.resolved(t, value)

    # --- the end ---

    async def settle(self, rt: Runtime, again: bool = False) -> None:
        """Finish everything the test knows of, let the clock run for what it does not,
        and check the final state. ``again``: a reopened directory answers the same."""
        m = self.model
        for t in list(m.tracked.values()):
            if t.kind == "flow":
                if not again:
                    await self.start_flow_quietly(rt, t)
                    await self.resolve(rt, t, f"{t.tag}:final")
            elif not t.ids and t.tag.count("~") and not again:
                # An idempotent request whose answer was lost: the same request again
                # finds its invocation (or makes the first one).
                ikey = int(t.tag.rsplit("~", 1)[1])
                known = t.known_accepted
                handle = await rt.send(
                    Counter.incr, Incr(t.tag, IDEM_SLEEP[ikey]), key=t.key, idempotency_key=t.tag
                )
                m.accepted(t, handle.invocation_id, handle.status, known)
        # Timers fire after a restart (at once if overdue): everything completes in time.
        deadline = trio.current_time() + m.busy + MARGIN
        for t in list(m.tracked.values()):
            for invocation_id in list(t.ids):
                try:
                    with trio.fail_at(deadline):
                        await self.outcome(t, rt.attach(invocation_id), None)
                except trio.TooSlowError:
                    raise AssertionError(f"{t.tag} ({invocation_id}) never completed") from None
        await trio.sleep(SETTLE)
        logs: dict[str, tuple[str, ...]] = {}
        for key in KEYS:
            before = m.longest[key]
            snap = await rt.call(Counter.value, key=key)
            m.read(key, m.floor[key], snap)
            logs[key] = m.longest[key]
            assert snap.log == logs[key], (key, snap, before)
            assert snap.before == snap.after, (key, snap)
            if again:
                assert logs[key] == before, f"{key}: {before} became {logs[key]} on reopening"
        for t in m.tracked.values():
            if t.kind == "flow":
                peeked = await rt.call(Flow.peek, key=t.tag)
                # The resolution that succeeded, or (its answer lost) one that was tried.
                allowed = t.offered if t.resolved is None else {t.resolved}
                assert peeked in allowed, f"{t.tag}: peek {peeked!r}, resolved {allowed}"
                assert peeked == t.result or t.error is not None, (t.tag, peeked, t.result)
        m.check_final(logs)
        assert rt.statistics().in_flight == 0, rt.statistics()

    async def start_flow_quietly(self, rt: Runtime, t: Tracked) -> None:
        known = t.known_accepted
        handle = await rt.send(Flow.run, key=t.tag)
        self.model.accepted(t, handle.invocation_id, handle.status, known)


# --- strategies and tests -----------------------------------------------------------------------

keys = st.sampled_from(KEYS)
flows = st.sampled_from(FLOWS)
sleeps = st.sampled_from([0.0, 1.0, 30.0])
delays = st.sampled_from([None, 0.0, 2.0, 90.0])
ikeys = st.none() | st.integers(0, len(IDEM_SLEEP) - 1)
plans = st.one_of(
    st.none(),
    st.builds(CrashPlan, after_commits=st.integers(0, 12)),
    st.builds(CrashPlan, after_commits=st.integers(0, 30)),
    st.sampled_from([CrashPlan(in_run="step"), CrashPlan(after_run="step")]),
)
operations: st.SearchStrategy[Op] = st.one_of(
    st.builds(Call, keys, sleeps, ikeys),
    st.builds(Send, keys, sleeps, delays, ikeys),
    st.builds(Send, keys, sleeps, delays, ikeys),
    st.builds(Read, keys),
    st.builds(Stop, st.booleans(), st.integers(0, 7)),
    st.builds(Conflict, keys, st.integers(0, len(IDEM_SLEEP) - 1)),
    st.builds(StartFlow, flows),
    st.builds(Resolve, flows),
    st.builds(Pause, st.sampled_from([0.0, 0.5, 5.0, 70.0])),
    st.builds(Restart, plans, st.sampled_from([0.0, 10.0, 100.0])),
)


def programs(steps: int) -> st.SearchStrategy[tuple[CrashPlan | None, list[Op]]]:
    # Chunks of a list, so that programs are often long (a flat list averages a few
    # elements) and still shrink well, by dropping operations and chunks.
    chunks = st.lists(st.lists(operations, max_size=6), max_size=steps // 3)
    flat = chunks.map(lambda parts: [op for part in parts for op in part][:steps])
    return st.tuples(plans, flat)


def run_program(first_plan: CrashPlan | None, ops: list[Op], fault: int = 0) -> None:
    with tempfile.TemporaryDirectory(prefix="actors-stateful-") as scratch:
        driver = Driver(Path(scratch) / "data", first_plan)
        driver.model.fault = fault
        trio.run(driver.run, ops, clock=trio.testing.MockClock(autojump_threshold=0))


# About 0.1 s an example on a slow 2-core machine: the default run takes a few seconds.
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(programs(steps=25))
def test_random_interleavings_keep_the_invariants(
    program: tuple[CrashPlan | None, list[Op]],
) -> None:
    run_program(*program)


def test_the_oracle_fails_on_an_injected_fault() -> None:
    """With the model off by one (every increment counted as the next number), the
    generated programs find a contradiction: the oracle can fail."""

    @settings(
        max_examples=200,
        phases=[Phase.generate],
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(programs(steps=25))
    def faulty(program: tuple[CrashPlan | None, list[Op]]) -> None:
        run_program(*program, fault=1)

    with pytest.raises(AssertionError):
        faulty()


def _slow_selected(config: pytest.Config) -> bool:
    markexpr = str(config.getoption("markexpr") or "")
    return os.environ.get("ACTORS_SLOW") == "1" or (
        "slow" in markexpr and "not slow" not in markexpr
    )


@pytest.fixture
def slow_selected(request: pytest.FixtureRequest) -> None:
    if not _slow_selected(request.config):
        pytest.skip("slow: run with -m slow or ACTORS_SLOW=1")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(
    max_examples=3000,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(program=programs(steps=40))
def test_random_interleavings_keep_the_invariants_slow(
    slow_selected: None, program: tuple[CrashPlan | None, list[Op]]
) -> None:
    """Many more and longer programs (a few minutes): ``-m slow`` or ``ACTORS_SLOW=1``."""
    run_program(*program)
