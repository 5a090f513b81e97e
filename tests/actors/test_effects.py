"""Invariant 14, effects never vanish: a send, an awakeable or promise completion and a
cancel that a handler asks for happen, exactly once and in call order, whether or not
the handler awaits what the call returns; also across a crash right after the handler
returns and across a crash in the middle of it. Errors that can be known when the
effect is asked for are raised at the call."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

LONG = 30 * 86400.0


async def _noop() -> None:
    pass


class Probe:
    """Awakeable ids and arrival events, outside the journal."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self._events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        return self._events.setdefault(name, anyio.Event())

    async def publish(self, name: str, value: str) -> None:
        self.ids[name] = value
        self.event(name).set()


class Box(actors.VirtualObject):
    """Keeps what it is sent, in arrival order."""

    @actors.exclusive
    async def log(self, ctx: actors.ObjectContext, item: str) -> None:
        items = (await ctx.get("items", list[str])) or []
        ctx.set("items", [*items, item])

    @actors.shared
    async def items(self, ctx: actors.ObjectSharedContext) -> list[str]:
        return (await ctx.get("items", list[str])) or []


class Waiter(actors.Workflow):
    """Waits on an awakeable whose id it publishes, or sleeps (to be cancelled)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, kind: str) -> str:
        if kind == "sleep":
            await ctx.run("publish", self.probe.publish, ctx.key, ctx.invocation_id)
            await ctx.sleep(LONG)
            return "slept"
        awakeable_id, future = ctx.awakeable(str)
        await ctx.run("publish", self.probe.publish, ctx.key, awakeable_id)
        return await future


class Effector(actors.VirtualObject):
    """Runs a plan of effects and never awaits them: ``send:ITEM`` sends ``ITEM`` to the
    box, ``resolve:ID`` / ``reject:ID`` complete an awakeable, ``cancel:ID`` cancels an
    invocation, ``run:NAME`` is a durable step in between."""

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext, plan: list[str]) -> str:
        for step in plan:
            op, _, arg = step.partition(":")
            if op == "send":
                ctx.send(Box.log, arg, key="box")
            elif op == "resolve":
                ctx.resolve_awakeable(arg, "v")
            elif op == "reject":
                ctx.reject_awakeable(arg, "no")
            elif op == "cancel":
                ctx.cancel_invocation(arg)
            elif op == "run":
                await ctx.run(arg, _noop)
            else:  # pragma: no cover
                raise AssertionError(step)
        return "done"

    @actors.exclusive
    async def misuse(self, ctx: actors.ObjectContext, what: str) -> str:
        """Each error comes at the call, not at an await that never happens."""
        try:
            if what == "bad input":
                ctx.send(Box.log, 5, key="box")
            elif what == "no key":
                ctx.send(Box.log, "x")
            elif what == "bad delay":
                ctx.send(Box.log, "x", key="box", delay=-1)
            elif what == "malformed awakeable":
                ctx.resolve_awakeable("nope", 1)
            elif what == "unknown awakeable":
                ctx.resolve_awakeable("awk_aW52X3h4eHgvMw", 1)
            else:  # pragma: no cover
                raise AssertionError(what)
        except (actors.TerminalError, actors.SerializationError) as exc:
            return f"{exc.status_code} {type(exc).__name__}"
        return "not raised"


class Flow(actors.Workflow):
    """A workflow whose main or shared handler completes its promise "p" un-awaited."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, plan: str) -> str:
        if plan == "wait":
            return await ctx.promise("p", str).value()
        if plan == "resolve":
            ctx.promise("p", str).resolve("from main")
        elif plan == "reject":
            ctx.promise("p", str).reject("no from main")
        elif plan == "resolve twice":
            ctx.promise("p", str).resolve("first")
            try:
                ctx.promise("p", str).resolve("second")
            except actors.TerminalError as exc:
                return f"{exc.status_code}: {exc.message}"
            return "second accepted"
        elif plan == "resolve then run":
            ctx.promise("p", str).resolve("from main")
            await ctx.run("mid", _noop)
        return "ok"

    @actors.shared
    async def signal(self, ctx: actors.WorkflowSharedContext, plan: str) -> None:
        if plan == "resolve":
            ctx.promise("p", str).resolve("from shared")
        elif plan == "reject":
            ctx.promise("p", str).reject("no from shared")
        elif plan == "bad reason":
            ctx.promise("p", str).reject(5)  # type: ignore[arg-type]

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> str | None:
        try:
            return await ctx.promise("p", str).peek()
        except actors.TerminalError as exc:
            return f"rejected: {exc.message}"


async def _box_after(rt: actors.Runtime, sender_id: str) -> list[str]:
    """The box's items once the sender finished and everything it sent ran: an "end"
    call queues behind what the sender sent (it was accepted first)."""
    assert await rt.attach(sender_id) == "done"
    await rt.call(Box.log, "end", key="box")
    items: list[str] = await rt.call(Box.items, key="box")
    return items


# --- sends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plan",
    [["send:a"], ["send:a", "send:b", "send:c"], ["send:a", "run:mid", "send:b"]],
)
async def test_an_unawaited_send_is_delivered_once_in_call_order(plan: list[str]) -> None:
    async with open_test_runtime([Effector, Box]) as rt:
        handle = await rt.send(Effector.go, plan, key="e")
        expected = [step[5:] for step in plan if step.startswith("send:")]
        assert await _box_after(rt, handle.invocation_id) == [*expected, "end"]


@pytest.mark.parametrize("commits", [1, 2, 3, 4])
@pytest.mark.parametrize("plan", [["send:a", "send:b"], ["send:a", "run:mid", "send:b"]])
async def test_unawaited_sends_survive_a_crash_after_any_commit(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, plan: list[str], commits: int
) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Effector, Box], path=tmp_path, crash=CrashPlan(after_commits=commits)
        ) as rt:
            handle = await rt.send(Effector.go, plan, key="e")
            assert await handle.result() == "done"
            await rt.call(Box.log, "late", key="box")  # queued behind the sends
    async with open_test_runtime([Effector, Box], path=tmp_path) as rt:
        assert await _box_after(rt, handle.invocation_id) == ["a", "b", "end"]


async def test_unawaited_send_survives_a_crash_in_the_middle_of_the_handler(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    plan = ["send:a", "run:mid", "send:b"]
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Effector, Box], path=tmp_path, crash=CrashPlan(in_run="mid")
        ) as rt:
            handle = await rt.send(Effector.go, plan, key="e")
            await handle.result()
    async with open_test_runtime([Effector, Box], path=tmp_path) as rt:
        assert await _box_after(rt, handle.invocation_id) == ["a", "b", "end"]


@pytest.mark.parametrize(
    ("what", "answer"),
    [
        ("bad input", "400 SerializationError"),
        ("no key", "400 TerminalError"),
        ("bad delay", "400 TerminalError"),
        ("malformed awakeable", "400 TerminalError"),
        ("unknown awakeable", "404 TerminalError"),
    ],
)
async def test_an_effect_refused_at_the_call_raises_there(what: str, answer: str) -> None:
    async with open_test_runtime([Effector, Box]) as rt:
        assert await rt.call(Effector.misuse, what, key="e") == answer
        assert await rt.call(Box.items, key="box") == []


class Awaiting(actors.Service):
    """The awaited forms still answer as before."""

    @actors.handler
    async def go(self, ctx: actors.Context) -> list[str]:
        first = await ctx.send(Box.log, "a", key="box")
        pending = ctx.send(Box.log, "b", key="box")
        second = await pending
        again = await pending  # awaiting twice gives the same handle
        return [first.status, second.status, str(again is second)]


async def test_awaiting_a_send_still_gives_its_handle() -> None:
    async with open_test_runtime([Awaiting, Box]) as rt:
        assert await rt.call(Awaiting.go) == ["Accepted", "Accepted", "True"]
        await rt.call(Box.log, "end", key="box")
        assert await rt.call(Box.items, key="box") == ["a", "b", "end"]


# --- awakeables ----------------------------------------------------------------------


@pytest.mark.parametrize(("op", "expected"), [("resolve", "v"), ("reject", None)])
async def test_an_unawaited_awakeable_completion_reaches_its_waiter(
    op: str, expected: str | None
) -> None:
    probe = Probe()
    async with open_test_runtime([Effector, Box, Waiter(probe)]) as rt:
        waiter = await rt.send(Waiter.run, "awakeable", key="w")
        await probe.event("w").wait()
        assert await rt.call(Effector.go, [f"{op}:{probe.ids['w']}"], key="e") == "done"
        if expected is None:
            with pytest.raises(actors.TerminalError, match=r"^no$"):
                await waiter.result()
        else:
            assert await waiter.result() == expected


@pytest.mark.parametrize("commits", [1, 2, 3, 4])
@pytest.mark.parametrize("middle", [False, True])
async def test_an_unawaited_awakeable_completion_survives_a_crash(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, commits: int, middle: bool
) -> None:
    probe = Probe()
    async with open_test_runtime([Effector, Box, Waiter(probe)], path=tmp_path) as rt:
        waiter = await rt.send(Waiter.run, "awakeable", key="w")
        await probe.event("w").wait()
    plan = [f"resolve:{probe.ids['w']}", *(["run:mid"] if middle else []), "send:a"]
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Effector, Box, Waiter(probe)], path=tmp_path, crash=CrashPlan(after_commits=commits)
        ) as rt:
            handle = await rt.send(Effector.go, plan, key="e")
            assert await handle.result() == "done"
            assert await rt.attach(waiter.invocation_id) == "v"
            await rt.call(Box.log, "late", key="box")
    async with open_test_runtime([Effector, Box, Waiter(probe)], path=tmp_path) as rt:
        # Completed twice, the second would be refused (409) and fail the effector.
        assert await _box_after(rt, handle.invocation_id) == ["a", "end"]
        assert await rt.attach(waiter.invocation_id) == "v"


# --- durable promises ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "expected"), [("resolve", "from main"), ("reject", "rejected: no from main")]
)
async def test_an_unawaited_promise_completion_from_main_happens(plan: str, expected: str) -> None:
    async with open_test_runtime([Flow]) as rt:
        assert await rt.call(Flow.run, plan, key="w") == "ok"
        assert await rt.call(Flow.peek, key="w") == expected


@pytest.mark.parametrize(
    ("plan", "expected"), [("resolve", "from shared"), ("reject", "no from shared")]
)
async def test_an_unawaited_promise_completion_from_a_shared_handler_happens(
    plan: str, expected: str
) -> None:
    async with open_test_runtime([Flow]) as rt:
        run = await rt.send(Flow.run, "wait", key="w")
        await rt.call(Flow.signal, plan, key="w")
        if plan == "reject":
            with pytest.raises(actors.TerminalError, match=f"^{expected}$"):
                await run.result()
        else:
            assert await run.result() == expected
        assert await rt.call(Flow.peek, key="w") == (
            expected if plan == "resolve" else f"rejected: {expected}"
        )


async def test_a_second_unawaited_promise_completion_raises_at_the_call() -> None:
    async with open_test_runtime([Flow]) as rt:
        answer = await rt.call(Flow.run, "resolve twice", key="w")
        assert answer == "409: promise 'p' of Flow/w was already completed"
        assert await rt.call(Flow.peek, key="w") == "first"


@pytest.mark.parametrize(
    ("plan", "status", "message"),
    [
        ("bad reason", 400, "a rejection reason is a str, not int"),
    ],
)
async def test_a_bad_promise_completion_raises_at_the_call(
    plan: str, status: int, message: str
) -> None:
    async with open_test_runtime([Flow]) as rt:
        with pytest.raises(actors.TerminalError, match=f"^{message}") as info:
            await rt.call(Flow.signal, plan, key="w")
        assert info.value.status_code == status
        assert await rt.call(Flow.peek, key="w") is None


@pytest.mark.parametrize("commits", [1, 2, 3])
@pytest.mark.parametrize("plan", ["resolve", "resolve then run"])
async def test_an_unawaited_promise_completion_from_main_survives_a_crash(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, plan: str, commits: int
) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Flow], path=tmp_path, crash=CrashPlan(after_commits=commits)
        ) as rt:
            handle = await rt.send(Flow.run, plan, key="w")
            assert await handle.result() == "ok"
            await rt.send(Flow.run, "wait", key="other")
            await rt.call(Flow.signal, "resolve", key="other")
    async with open_test_runtime([Flow], path=tmp_path) as rt:
        # A second completion on replay would be refused and fail main.
        assert await rt.attach(handle.invocation_id) == "ok"
        assert await rt.call(Flow.peek, key="w") == "from main"


async def test_an_unawaited_promise_completion_from_main_survives_a_crash_in_the_middle(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime([Flow], path=tmp_path, crash=CrashPlan(in_run="mid")) as rt:
            handle = await rt.send(Flow.run, "resolve then run", key="w")
            await handle.result()
    async with open_test_runtime([Flow], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "ok"
        assert await rt.call(Flow.peek, key="w") == "from main"


# --- cancel --------------------------------------------------------------------------


@pytest.mark.parametrize("commits", [None, 1, 2, 3, 4])
async def test_an_unawaited_cancel_from_a_handler_cancels_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, commits: int | None
) -> None:
    probe = Probe()
    actor_list = (Effector, Box, Waiter(probe))
    async with open_test_runtime(actor_list, path=tmp_path) as rt:
        sleeper = await rt.send(Waiter.run, "sleep", key="s")
        await probe.event("s").wait()
    plan = [f"cancel:{sleeper.invocation_id}", "send:a"]
    if commits is None:
        async with open_test_runtime(actor_list, path=tmp_path) as rt:
            handle = await rt.send(Effector.go, plan, key="e")
            assert await handle.result() == "done"
    else:
        with pytest.raises(SimulatedCrash):
            async with open_test_runtime(
                actor_list, path=tmp_path, crash=CrashPlan(after_commits=commits)
            ) as rt:
                handle = await rt.send(Effector.go, plan, key="e")
                assert await handle.result() == "done"
                with pytest.raises(actors.TerminalError):
                    await rt.attach(sleeper.invocation_id)
                await rt.call(Box.log, "late", key="box")
    async with open_test_runtime(actor_list, path=tmp_path) as rt:
        # Cancelled twice, the second would be refused (409) and fail the effector.
        assert await _box_after(rt, handle.invocation_id) == ["a", "end"]
        with pytest.raises(actors.TerminalError, match="was cancelled") as info:
            await rt.attach(sleeper.invocation_id)
        assert info.value.status_code == 409
