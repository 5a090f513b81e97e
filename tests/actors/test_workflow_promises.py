"""Workflows' durable promises: resolved before main, while it runs or waits, by many
waiters, once; rejections, peeks, wrong types, restarts and crashes, replay, timeouts,
parking while waiting, and a revived waiter taking the value from its resolution."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


from workflow_actors import Signup

# --- durable promises ----------------------------------------------------------------------


class Box(actors.Workflow):
    """main waits on a plain gate (open unless ``gated``), then returns the repr of
    promise "p" converted to ``kind``; with ``catch`` it reports a conversion error
    instead of failing."""

    def __init__(self, kind: type = object, *, gated: bool = False) -> None:
        self.kind = kind
        self.executions = 0
        self.entered = anyio.Event()
        self.gate = anyio.Event()
        if not gated:
            self.gate.set()

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, catch: bool) -> str:
        self.executions += 1
        self.entered.set()
        await self.gate.wait()
        future: actors.DurableFuture[object] = ctx.promise("p", self.kind).value()
        try:
            value = await future
        except actors.SerializationError as exc:
            if catch:
                return f"caught: {exc}"
            raise
        return repr(value)

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, value: object) -> None:
        await ctx.promise("p").resolve(value)

    @actors.shared
    async def reject(self, ctx: actors.WorkflowSharedContext, reason: str) -> None:
        await ctx.promise("p").reject(reason)

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> object:
        return await ctx.promise("p").peek()

    @actors.shared
    async def wait(self, ctx: actors.WorkflowSharedContext) -> object:
        return await ctx.promise("p").value()


async def test_promise_resolved_before_main_was_submitted(tmp_path: Path) -> None:
    box = Box()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            await rt.call(Box.resolve, "early", key="b")
            assert await rt.call(Box.peek, key="b") == "early"
            assert box.executions == 0
            handle = await rt.send(Box.run, False, key="b")
            assert handle.status == "Accepted"  # resolving did not start a run
            assert await handle.result() == "'early'"


async def test_promise_resolved_before_a_delayed_main_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup]) as rt:
        handle = await rt.send(Signup.run, "alice", key="d", delay=timedelta(hours=1))
        again = await rt.send(Signup.run, "bob", key="d")  # while it waits to start
        assert (again.status, again.invocation_id) == ("PreviouslyAccepted", handle.invocation_id)
        await rt.call(Signup.verify, "a@example.com", key="d")
        assert signup.executions == 0
        assert await rt.call(Signup.peek, key="d") == "a@example.com"
        start = trio.current_time()
        assert await handle.result() == "alice <a@example.com>"
        assert trio.current_time() - start == pytest.approx(3600)
    assert signup.executions == 1


async def test_promise_resolved_while_main_runs_but_before_it_waits(tmp_path: Path) -> None:
    box = Box(gated=True)
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            handle = await rt.send(Box.run, False, key="b")
            await box.entered.wait()
            await rt.call(Box.resolve, [1, 2], key="b")
            box.gate.set()
            assert await handle.result() == "[1, 2]"
    assert box.executions == 1


async def test_many_shared_waiters_all_get_the_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    box = Box()
    async with open_test_runtime([box]) as rt:
        waiters = [await rt.send(Box.wait, key="b") for _ in range(20)]
        main = await rt.send(Box.run, False, key="b")
        await trio.testing.wait_all_tasks_blocked()
        assert rt.statistics().in_flight == 21  # every one is waiting
        assert await rt.call(Box.peek, key="b") is None
        await rt.call(Box.resolve, {"k": "v"}, key="b")
        assert [await w.result() for w in waiters] == [{"k": "v"}] * 20
        assert await main.result() == "{'k': 'v'}"


async def test_many_shared_waiters_on_both_backends(tmp_path: Path) -> None:
    box = Box()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            results: list[object] = []

            async def wait() -> None:
                results.append(await rt.call(Box.wait, key="b"))

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(wait)
                await rt.call(Box.resolve, 7, key="b")
            assert results == [7] * 20
            assert await rt.call(Box.wait, key="b") == 7  # a late waiter too


async def test_second_completion_is_a_409_and_keeps_the_first_value(tmp_path: Path) -> None:
    box = Box()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            await rt.call(Box.resolve, "first", key="b")
            with pytest.raises(actors.TerminalError, match="already completed") as info:
                await rt.call(Box.resolve, "second", key="b")
            assert info.value.status_code == 409
            with pytest.raises(actors.TerminalError, match="already completed") as info:
                await rt.call(Box.reject, "too late", key="b")
            assert info.value.status_code == 409
            assert await rt.call(Box.peek, key="b") == "first"
            assert await rt.call(Box.run, False, key="b") == "'first'"
            with pytest.raises(actors.TerminalError) as info:  # also after main finished
                await rt.call(Box.resolve, "third", key="b")
            assert info.value.status_code == 409
            assert await rt.call(Box.wait, key="b") == "first"


async def test_concurrent_resolutions_complete_the_promise_once(tmp_path: Path) -> None:
    box = Box()
    outcomes: list[str] = []
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:

            async def resolve(value: str) -> None:
                try:
                    await rt.call(Box.resolve, value, key="b")
                except actors.TerminalError as exc:
                    outcomes.append(str(exc.status_code))
                else:
                    outcomes.append(value)

            async with anyio.create_task_group() as group:
                for i in range(10):
                    group.start_soon(resolve, f"v{i}")
            winners = [o for o in outcomes if o != "409"]
            assert len(winners) == 1
            assert outcomes.count("409") == 9
            assert await rt.call(Box.peek, key="b") == winners[0]


async def test_rejection_reaches_every_waiter_as_a_terminal_error(tmp_path: Path) -> None:
    box = Box(gated=True)
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            waiter = await rt.send(Box.wait, key="b")
            main = await rt.send(Box.run, False, key="b")
            await box.entered.wait()
            await rt.call(Box.reject, "no such user", key="b")
            box.gate.set()
            for pending in (waiter.result(), main.result(), rt.call(Box.wait, key="b")):
                with pytest.raises(actors.TerminalError, match=r"^no such user$"):
                    await pending
            with pytest.raises(actors.TerminalError, match=r"^no such user$"):
                await rt.call(Box.peek, key="b")  # peek of a rejected promise raises
            with pytest.raises(actors.TerminalError) as info:
                await rt.call(Box.resolve, "late", key="b")
            assert info.value.status_code == 409


async def test_peek_of_a_pending_promise_is_none(tmp_path: Path) -> None:
    box = Box(gated=True)
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            assert await rt.call(Box.peek, key="b") is None
            handle = await rt.send(Box.run, False, key="b")
            await box.entered.wait()
            assert await rt.call(Box.peek, key="b") is None
            box.gate.set()
            await rt.call(Box.resolve, None, key="other")  # another id's promise
            assert await rt.call(Box.peek, key="b") is None
            await rt.call(Box.resolve, "v", key="b")
            assert await handle.result() == "'v'"


async def test_value_of_the_wrong_type_fails_clearly_at_the_waiter(tmp_path: Path) -> None:
    box = Box(int)
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [box]) as rt:
            await rt.call(Box.resolve, "forty-two", key="caught")
            message = await rt.call(Box.run, True, key="caught")
            assert message.startswith("caught: value of promise 'p' of Box/caught")
            assert "does not convert to int" in message
            await rt.call(Box.resolve, "forty-two", key="uncaught")
            with pytest.raises(actors.TerminalError, match="does not convert to int") as info:
                await rt.call(Box.run, False, key="uncaught")
            assert info.value.status_code == 500
            assert await rt.call(Box.peek, key="uncaught") == "forty-two"  # value intact


async def test_promise_wait_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [signup]) as rt:
            handle = await rt.send(Signup.run, "alice", key="w")
            waiters = [await rt.send(Signup.wait_email, key="w") for _ in range(3)]
            await signup.waiting.wait()
        async with actors.open_runtime(path, [signup]) as rt:
            with pytest.raises(actors.NotReadyError):
                await rt.workflow_output(Signup, "w")
            assert await rt.call(Signup.get_stage, key="w") == "waiting"
            await rt.call(Signup.verify, "a@example.com", key="w")
            assert await rt.attach(handle.invocation_id) == "alice <a@example.com>"
            for waiter in waiters:
                assert await rt.attach(waiter.invocation_id) == "a@example.com"
            assert await rt.call(Signup.get_stage, key="w") == "verified"
    assert signup.effects == ["before", "after"]  # no step ran twice


async def test_crash_after_the_promise_resolved_resumes_with_its_value(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    signup = Signup()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [signup], path=tmp_path, crash=CrashPlan(in_run="after")
        ) as rt:
            handle = await rt.send(Signup.run, "alice", key="w")
            await signup.waiting.wait()
            await rt.call(Signup.verify, "a@example.com", key="w")
            await handle.result()
    assert signup.effects == ["before"]
    async with open_test_runtime([signup], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "alice <a@example.com>"
        with pytest.raises(actors.TerminalError) as info:  # still resolved once
            await rt.call(Signup.verify, "b@example.com", key="w")
        assert info.value.status_code == 409
    assert signup.effects == ["before", "after"]


async def test_crash_while_waiting_then_resolve_in_the_new_runtime(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    signup = Signup()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [signup], path=tmp_path, crash=CrashPlan(in_run="after")
        ) as rt:
            handle = await rt.send(Signup.run, "alice", key="w")
            await signup.waiting.wait()
            await trio.sleep(3600)  # waits an hour, then dies (the plan fires at "after")
            await rt.call(Signup.verify, "a@example.com", key="w")
            await handle.result()
    async with open_test_runtime([signup], path=tmp_path) as rt:
        assert await rt.attach_workflow(Signup, "w") == "alice <a@example.com>"
    assert signup.effects == ["before", "after"]


@pytest.mark.parametrize("commits", range(8))  # 7 commits in all: 7 does not crash
async def test_crash_after_any_commit_completes_the_workflow_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, commits: int
) -> None:
    signup = Signup()
    handle: actors.InvocationHandle | None = None
    try:
        async with open_test_runtime(
            [signup], path=tmp_path, crash=CrashPlan(after_commits=commits)
        ) as rt:
            handle = await rt.send(Signup.run, "alice", key="w")
            await signup.waiting.wait()
            await rt.call(Signup.verify, "a@example.com", key="w")
            assert await handle.result() == "alice <a@example.com>"
    except SimulatedCrash:
        pass
    async with open_test_runtime([signup], path=tmp_path) as rt:
        if handle is None:  # the acceptance never landed
            with pytest.raises(actors.UnknownHandlerError):
                await rt.attach_workflow(Signup, "w")
            return
        try:
            await rt.call(Signup.verify, "a@example.com", key="w")
        except actors.TerminalError as exc:  # the first life's resolution landed
            codes = [exc.status_code]
        else:
            codes = []
        assert codes in ([], [409])
        assert await rt.attach_workflow(Signup, "w") == "alice <a@example.com>"
        again = await rt.send(Signup.run, "bob", key="w")
        assert (again.status, again.invocation_id) == ("PreviouslyAccepted", handle.invocation_id)
        assert await rt.call(Signup.peek, key="w") == "a@example.com"
    # Each body ran, at most one of them twice (its result was in flight at the crash).
    assert sorted(set(signup.effects)) == ["after", "before"]
    assert len(signup.effects) <= 3


class Replayed(actors.Workflow):
    """main peeks, resolves and waits on its promises between steps, so a crash at
    "end" makes the next life replay every promise operation from the journal."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.marked = anyio.Event()

    async def _effect(self, name: str) -> None:
        self.effects.append(name)
        if name == "mark":
            self.marked.set()

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        seen = await ctx.promise("p", str).peek()  # pending in the first life
        await ctx.run("mark", self._effect, "mark")
        value = await ctx.promise("p", str).value()
        await ctx.promise("own", int).resolve(1)
        try:
            await ctx.promise("taken", int).resolve(2)  # resolved by a shared handler
            outcome = "resolved"
        except actors.TerminalError as exc:
            outcome = str(exc.status_code)
        await ctx.run("end", self._effect, "end")
        own = await ctx.promise("own", int).value()
        return f"{seen}/{value}/{own}/{outcome}"

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).resolve(f"{name}!")


async def test_promise_operations_replay_from_the_journal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    replayed = Replayed()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [replayed], path=tmp_path, crash=CrashPlan(in_run="end")
        ) as rt:
            handle = await rt.send(Replayed.run, key="r")
            await replayed.marked.wait()
            await rt.call(Replayed.resolve, "taken", key="r")
            await rt.call(Replayed.resolve, "p", key="r")
            await handle.result()
    # The next life sees p resolved at once, yet the journaled peek still says None,
    # and neither resolution runs again (no 409 for "own", the same 409 for "taken").
    async with open_test_runtime([replayed], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "None/p!/1/409"
    assert replayed.effects == ["mark", "end"]


class Deadline(actors.Workflow):
    """main waits for the "email" promise at most a day."""

    def __init__(self) -> None:
        self.executions = 0

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        self.executions += 1
        name, value = await actors.select(
            email=ctx.promise("email", str).value(), timeout=ctx.sleep(timedelta(days=1))
        )
        return f"{name}:{value}"

    @actors.shared
    async def verify(self, ctx: actors.WorkflowSharedContext, email: str) -> None:
        await ctx.promise("email", str).resolve(email)


async def test_promise_with_a_timeout_parks_and_either_side_can_win(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadline = Deadline()
    async with open_test_runtime([deadline], suspend_after=1.0) as rt:
        start = trio.current_time()
        late = await rt.send(Deadline.run, key="late")
        early = await rt.send(Deadline.run, key="early")
        await trio.sleep(3600)
        assert rt.statistics().parked == 2
        await rt.call(Deadline.verify, "e@example.com", key="early")
        assert await early.result() == "email:e@example.com"
        assert trio.current_time() - start == pytest.approx(3600)
        assert await late.result() == "timeout:None"
        assert trio.current_time() - start == pytest.approx(86400)
        await rt.call(Deadline.verify, "l@example.com", key="late")  # too late: no effect
        assert await rt.workflow_output(Deadline, "late") == "timeout:None"
    assert deadline.executions == 4  # each run: started, then rebuilt once when woken


# --- parking -------------------------------------------------------------------------------


async def test_waiting_workflow_is_parked_and_resumed_by_replay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], suspend_after=1.0) as rt:
        handle = await rt.send(Signup.run, "alice", key="w")
        await signup.waiting.wait()
        assert rt.statistics().in_flight == 1
        await trio.sleep(5)
        stats = rt.statistics()
        assert (stats.parked, stats.in_flight) == (1, 0)
        with pytest.raises(actors.NotReadyError):
            await rt.output(handle.invocation_id)
        assert await rt.call(Signup.get_stage, key="w") == "waiting"
        await rt.call(Signup.verify, "a@example.com", key="w")
        assert await handle.result() == "alice <a@example.com>"
        stats = rt.statistics()
        assert (stats.parked, stats.in_flight, stats.suspended) == (0, 0, 0)
    assert signup.effects == ["before", "after"]  # each body exactly once
    assert signup.executions == 2  # the wake-up rebuilt main by replay


async def test_parked_shared_waiters_and_main_all_wake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], suspend_after=1.0) as rt:
        main = await rt.send(Signup.run, "alice", key="w")
        waiters = [await rt.send(Signup.wait_email, key="w") for _ in range(20)]
        await trio.sleep(5)
        stats = rt.statistics()
        assert (stats.parked, stats.in_flight) == (21, 0)
        await rt.call(Signup.verify, "a@example.com", key="w")
        assert [await w.result() for w in waiters] == ["a@example.com"] * 20
        assert await main.result() == "alice <a@example.com>"
        assert rt.statistics().parked == 0
    assert signup.effects == ["before", "after"]


async def test_parked_workflow_resumes_after_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], path=tmp_path, suspend_after=1.0) as rt:
        handle = await rt.send(Signup.run, "alice", key="w")
        await trio.sleep(5)
        assert rt.statistics().parked == 1
    async with open_test_runtime([signup], path=tmp_path, suspend_after=1.0) as rt:
        await trio.sleep(5)
        assert rt.statistics().in_flight == 0  # recovered, blocked again, parked
        await rt.call(Signup.verify, "a@example.com", key="w")
        assert await rt.attach(handle.invocation_id) == "alice <a@example.com>"
    assert signup.effects == ["before", "after"]


class TwoSteps(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        first = await ctx.promise("a", str).value()
        second = await ctx.promise("b", str).value()
        return f"{first}+{second}"

    @actors.shared
    async def give(self, ctx: actors.WorkflowSharedContext, given: tuple[str, str]) -> None:
        name, value = given
        await ctx.promise(name, str).resolve(value)


async def test_a_revived_waiter_takes_the_promise_value_from_its_resolution(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parked on a promise, a workflow is revived by the promise's resolution, which
    # hands it the outcome it made durable: its replayed wait reads no promise row.
    from actors._ops_signals import SignalOps

    read: list[object] = []
    stored_promise = SignalOps.stored_promise

    def counted(self: SignalOps, row: bytes) -> Any:
        outcome = stored_promise(self, row)
        if outcome is not None:
            read.append(outcome)
        return outcome

    monkeypatch.setattr(SignalOps, "stored_promise", counted)
    async with open_test_runtime([TwoSteps], suspend_after=1.0) as rt:
        handle = await rt.send(TwoSteps.run, key="w")
        await trio.sleep(5)
        assert rt.statistics().parked == 1
        await rt.call(TwoSteps.give, ("a", "x"), key="w")
        await trio.sleep(5)  # revived, past "a", parked again on "b"
        assert rt.statistics().parked == 1
        await rt.call(TwoSteps.give, ("b", "y"), key="w")
        assert await handle.result() == "x+y"
        assert read == []
        # A second resolution of the same promise reads it (and refuses: 409).
        with pytest.raises(actors.TerminalError):
            await rt.call(TwoSteps.give, ("a", "z"), key="w")
        assert len(read) == 1
