"""Cancel and kill: where the cancellation lands, compensations (sagas), propagation to
callees, invocations that never started, durability across a restart, kill without
compensation (and the object key it frees), and bad ids."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

import actors
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

    import trio.testing

LONG = timedelta(days=30)
# For tests that skip months of virtual time: no expiry meanwhile, and few idle sweeps.
YEAR = timedelta(days=365)
IDLE = timedelta(days=10).total_seconds()


class Probe:
    """What handlers did, outside the journal: step bodies that ran (``effects``),
    Python-level ``finally`` blocks, invocation ids, and arrival events."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.finally_ran: list[str] = []
        self.ids: dict[str, str] = {}
        self.awakeables: dict[str, str] = {}
        self.caught: list[tuple[int, str]] = []
        self._events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        return self._events.setdefault(name, anyio.Event())

    def reset(self, name: str) -> None:
        self._events.pop(name, None)

    def arrive(self, name: str) -> None:
        self.event(name).set()

    async def arrived(self, name: str) -> None:
        await self.event(name).wait()

    async def effect(self, name: str) -> str:
        self.effects.append(name)
        return name


async def _long_wait(ctx: actors.Context, kind: str) -> None:
    """Wait on something that does not happen by itself."""
    if kind == "sleep":
        await ctx.sleep(LONG)
    elif kind == "awakeable":
        _, fut = ctx.awakeable(str)
        await fut
    elif kind == "promise":
        assert isinstance(ctx, actors.WorkflowSharedContext)
        await ctx.promise("confirm", str).value()
    elif kind == "select":
        _, fut = ctx.awakeable(str)
        await actors.select(nap=ctx.sleep(LONG), signal=fut)
    elif kind == "gather":
        _, fut = ctx.awakeable(str)
        await actors.gather(ctx.sleep(LONG), fut)
    else:  # pragma: no cover
        raise AssertionError(kind)


async def _saga(probe: Probe, ctx: actors.Context, plan: str) -> str:
    """Book a flight and a hotel, then wait; on a TerminalError undo the bookings in
    reverse order with durable steps, then re-raise / absorb / convert it."""
    kind, mode = plan.split()
    booked: list[str] = []
    try:
        for item in ("flight", "hotel"):
            await ctx.run(f"book {item}", probe.effect, f"book {item}")
            booked.append(item)
        probe.arrive("waiting")
        await _long_wait(ctx, kind)
        return "confirmed"
    except actors.TerminalError as exc:
        probe.caught.append((exc.status_code, exc.message))
        for item in reversed(booked):
            await ctx.run(f"cancel {item}", probe.effect, f"cancel {item}")
        if mode == "absorb":
            return "rolled back"
        if mode == "convert":
            raise actors.TerminalError("trip rolled back", 422) from exc
        raise


class Trip(actors.Workflow, name="trip"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, plan: str) -> str:
        self.probe.ids["trip"] = ctx.invocation_id
        return await _saga(self.probe, ctx, plan)

    @actors.shared
    async def confirm(self, ctx: actors.WorkflowSharedContext, answer: str) -> None:
        await ctx.promise("confirm", str).resolve(answer)


class Booking(actors.VirtualObject, name="booking"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def book(self, ctx: actors.ObjectContext, plan: str) -> str:
        self.probe.ids["booking"] = ctx.invocation_id
        return await _saga(self.probe, ctx, plan)


SAGA = ["book flight", "book hotel", "cancel hotel", "cancel flight"]
BOOKED = ["book flight", "book hotel"]


def _assert_cancelled(exc: actors.TerminalError) -> None:
    assert exc.status_code == 409
    assert "cancel" in exc.message


# --- 1. cancel lands at the durable await; compensations run ----------------------------------


@pytest.mark.parametrize(
    ("actor", "kind"),
    [
        ("workflow", "promise"),
        ("workflow", "sleep"),
        ("workflow", "awakeable"),
        ("workflow", "select"),
        ("workflow", "gather"),
        ("object", "sleep"),
        ("object", "awakeable"),
        ("object", "select"),
        ("object", "gather"),
    ],
)
async def test_cancel_runs_the_saga_compensations_in_reverse_once(
    tmp_path: Path, actor: str, kind: str
) -> None:
    probe = Probe()
    registered = [Trip(probe), Booking(probe)]
    with anyio.fail_after(10):
        async with open_test_runtime(registered, path=tmp_path) as rt:
            if actor == "workflow":
                handle = await rt.send(Trip.run, f"{kind} reraise", key="t1")
            else:
                handle = await rt.send(Booking.book, f"{kind} reraise", key="b1")
            await probe.arrived("waiting")
            assert probe.effects == BOOKED
            await rt.cancel(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as caller:
                await handle.result()
            _assert_cancelled(caller.value)
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach(handle.invocation_id)
            _assert_cancelled(attached.value)
            if actor == "workflow":
                with pytest.raises(actors.TerminalError) as output:
                    await rt.workflow_output(Trip, "t1")
                _assert_cancelled(output.value)
        assert probe.effects == SAGA
        # The handler saw the cancellation as a 409 TerminalError, once.
        assert len(probe.caught) == 1
        assert probe.caught[0][0] == 409
        # Journaled: a restart does not run any step again and keeps the outcome.
        async with open_test_runtime(registered, path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as again:
                await rt.attach(handle.invocation_id)
            _assert_cancelled(again.value)
            assert rt.statistics().in_flight == 0
    assert probe.effects == SAGA


@pytest.mark.parametrize("actor", ["workflow", "object"])
async def test_the_caller_gets_what_the_handler_made_of_the_cancellation(
    tmp_path: Path, actor: str
) -> None:
    probe = Probe()
    async with open_test_runtime([Trip(probe), Booking(probe)], path=tmp_path) as rt:
        results: dict[str, object] = {}
        for mode in ("absorb", "convert"):
            probe.reset("waiting")
            if actor == "workflow":
                handle = await rt.send(Trip.run, f"awakeable {mode}", key=mode)
            else:
                handle = await rt.send(Booking.book, f"awakeable {mode}", key=mode)
            await probe.arrived("waiting")
            await rt.cancel(handle.invocation_id)
            try:
                results[mode] = await handle.result()
            except actors.TerminalError as exc:
                results[mode] = (exc.status_code, exc.message)
        assert results == {"absorb": "rolled back", "convert": (422, "trip rolled back")}
        assert probe.effects == SAGA + SAGA
        if actor == "workflow":
            assert await rt.attach_workflow(Trip, "absorb") == "rolled back"
            assert await rt.call(Trip.run, "sleep reraise", key="absorb") == "rolled back"
            with pytest.raises(actors.TerminalError) as info:
                await rt.workflow_output(Trip, "convert")
            assert info.value.status_code == 422


async def test_cancel_while_waiting_on_a_promise_then_resolving_it_changes_nothing(
    tmp_path: Path,
) -> None:
    probe = Probe()
    async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
        handle = await rt.send(Trip.run, "promise reraise", key="t")
        await probe.arrived("waiting")
        await rt.cancel(handle.invocation_id)
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach_workflow(Trip, "t")
        _assert_cancelled(info.value)
        # Too late: the promise may still be completed, the run's outcome stays.
        await rt.call(Trip.confirm, "yes", key="t")
        with pytest.raises(actors.TerminalError) as again:
            await rt.attach_workflow(Trip, "t")
        _assert_cancelled(again.value)
    assert probe.effects == SAGA


# --- 2. cancellation propagates to the invocation being waited on --------------------------


class Napper(actors.VirtualObject, name="napper"):
    """An exclusive handler that sleeps for a month, compensating if cancelled."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def nap(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids[f"nap {ctx.key}"] = ctx.invocation_id
        try:
            self.probe.arrive(f"nap {ctx.key}")
            await ctx.sleep(LONG)
            return "rested"
        except actors.TerminalError:
            await ctx.run(f"wake {ctx.key}", self.probe.effect, f"wake {ctx.key}")
            raise
        finally:
            self.probe.finally_ran.append(f"nap {ctx.key}")

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return f"pong {ctx.key}"


async def _delegate(probe: Probe, ctx: actors.Context, keys: str) -> str:
    calls = [ctx.call(Napper.nap, key=key) for key in keys.split()]
    try:
        if len(calls) == 1:
            return await calls[0]
        return " ".join(await actors.gather(*calls))
    except actors.TerminalError as exc:
        probe.caught.append((exc.status_code, exc.message))
        await ctx.run("boss compensates", probe.effect, "boss compensates")
        raise


class Boss(actors.VirtualObject, name="boss"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def delegate(self, ctx: actors.ObjectContext, keys: str) -> str:
        return await _delegate(self.probe, ctx, keys)


class BossFlow(actors.Workflow, name="bossFlow"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, keys: str) -> str:
        return await _delegate(self.probe, ctx, keys)


class Watcher(actors.VirtualObject, name="watcher"):
    """Calls a napper and reports how the call ended."""

    @actors.exclusive
    async def watch(self, ctx: actors.ObjectContext, key: str) -> str:
        try:
            return await ctx.call(Napper.nap, key=key)
        except actors.TerminalError as exc:
            return f"{exc.status_code}"


@pytest.mark.parametrize("caller", ["object", "workflow"])
@pytest.mark.parametrize("keys", ["n1", "n1 n2"])
async def test_cancel_propagates_to_the_callee(tmp_path: Path, caller: str, keys: str) -> None:
    probe = Probe()
    registered = [Napper(probe), Boss(probe), BossFlow(probe)]
    with anyio.fail_after(10):
        async with open_test_runtime(registered, path=tmp_path) as rt:
            if caller == "object":
                handle = await rt.send(Boss.delegate, keys, key="boss")
            else:
                handle = await rt.send(BossFlow.run, keys, key="boss")
            for key in keys.split():
                await probe.arrived(f"nap {key}")
            await rt.cancel(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            _assert_cancelled(info.value)
            for key in keys.split():
                with pytest.raises(actors.TerminalError) as callee:
                    await rt.attach(probe.ids[f"nap {key}"])
                _assert_cancelled(callee.value)
                # The callee's key is free again.
                assert await rt.call(Napper.ping, key=key) == f"pong {key}"
            assert rt.statistics().in_flight == 0
    wakes = sorted(e for e in probe.effects if e.startswith("wake"))
    assert wakes == [f"wake {key}" for key in sorted(keys.split())]
    assert probe.effects.count("boss compensates") == 1
    assert [code for code, _ in probe.caught] == [409]


async def test_cancelling_the_callee_fails_the_callers_call_with_409(tmp_path: Path) -> None:
    probe = Probe()
    async with open_test_runtime([Napper(probe), Watcher()], path=tmp_path) as rt:
        handle = await rt.send(Watcher.watch, "n", key="w")
        await probe.arrived("nap n")
        await rt.cancel(probe.ids["nap n"])
        assert await handle.result() == "409"
    assert probe.effects == ["wake n"]


# --- 3. invocations that have not started ------------------------------------------------------


class Desk(actors.VirtualObject, name="desk"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> str:
        """Hold the key until an awakeable is resolved."""
        self.probe.ids["hold"] = ctx.invocation_id
        try:
            awk_id, fut = ctx.awakeable(str)
            self.probe.awakeables["hold"] = awk_id
            self.probe.arrive("hold")
            return await fut
        except actors.TerminalError:
            await ctx.run("compensate hold", self.probe.effect, "compensate hold")
            raise
        finally:
            self.probe.finally_ran.append("hold")

    @actors.exclusive
    async def work(self, ctx: actors.ObjectContext, tag: str) -> str:
        self.probe.effects.append(f"work {tag}")
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + 1)
        return f"worked {tag}"

    @actors.shared
    async def count(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


@pytest.mark.parametrize("how", ["cancel", "kill"])
async def test_a_queued_invocation_ends_at_once_without_running(tmp_path: Path, how: str) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
            holder = await rt.send(Desk.hold, key="k")
            await probe.arrived("hold")
            queued = await rt.send(Desk.work, "queued", key="k")
            # Let it reach the key's queue (killing it earlier is tested below).
            await anyio.wait_all_tasks_blocked()
            assert rt.statistics().queued_exclusive == 1
            if how == "cancel":
                await rt.cancel(queued.invocation_id)
            else:
                await rt.kill(queued.invocation_id)
            # It completes while the holder still holds the key.
            with pytest.raises(actors.TerminalError) as info:
                await queued.result()
            assert info.value.status_code == 409
            assert ("killed" if how == "kill" else "cancel") in info.value.message
            assert probe.effects == []
            await rt.resolve_awakeable(probe.awakeables["hold"], "released")
            assert await holder.result() == "released"
            assert await rt.call(Desk.work, "after", key="k") == "worked after"
            assert await rt.call(Desk.count, key="k") == 1
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError):
                await rt.attach(queued.invocation_id)
            assert await rt.call(Desk.count, key="k") == 1
    assert probe.effects == ["work after"]


async def test_kill_right_after_send_of_a_queued_invocation(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Whether the acceptance was delivered before kill() runs depends on trio's
    # scheduling order, so try many times (each loses the race about half the time).
    probe = Probe()
    async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
        await rt.send(Desk.hold, key="k")
        await probe.arrived("hold")
        for n in range(40):
            queued = await rt.send(Desk.work, f"w{n}", key="k")
            with anyio.fail_after(1):  # virtual time: jumps at once if kill() blocks
                await rt.kill(queued.invocation_id)
            with pytest.raises(actors.TerminalError):
                await queued.result()
        await rt.resolve_awakeable(probe.awakeables["hold"], "done")
    assert probe.effects == []


@pytest.mark.parametrize("how", ["cancel", "kill"])
async def test_a_delayed_send_ends_at_once_and_never_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, how: str
) -> None:
    probe = Probe()
    async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
        delayed = await rt.send(Desk.work, "later", key="k", delay=timedelta(hours=1))
        await anyio.sleep(60)
        if how == "cancel":
            await rt.cancel(delayed.invocation_id)
        else:
            await rt.kill(delayed.invocation_id)
        with anyio.fail_after(1):  # at once, not when the delay is up
            with pytest.raises(actors.TerminalError) as info:
                await delayed.result()
        assert info.value.status_code == 409
        await anyio.sleep(timedelta(hours=2).total_seconds())
        assert probe.effects == []
        assert rt.statistics().in_flight == 0
    async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
        await anyio.sleep(timedelta(hours=2).total_seconds())
        assert await rt.call(Desk.count, key="k") == 0
    assert probe.effects == []


async def test_a_delayed_send_cancelled_without_a_mock_clock(tmp_path: Path) -> None:
    probe = Probe()
    async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
        delayed = await rt.send(Desk.work, "later", key="k", delay=timedelta(hours=1))
        await rt.cancel(delayed.invocation_id)
        with anyio.fail_after(10):
            with pytest.raises(actors.TerminalError) as info:
                await delayed.result()
        _assert_cancelled(info.value)
        assert await rt.call(Desk.work, "now", key="k") == "worked now"
    assert probe.effects == ["work now"]


# --- 4. cancel is durable ----------------------------------------------------------------------

PARKED_KINDS = ["sleep", "awakeable", "promise"]


@pytest.mark.parametrize("kind", PARKED_KINDS)
async def test_a_cancel_survives_a_restart_before_the_handler_saw_it(
    tmp_path: Path, kind: str
) -> None:
    probe = Probe()
    async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
        handle = await rt.send(Trip.run, f"{kind} reraise", key="t")
        await probe.arrived("waiting")
        await anyio.wait_all_tasks_blocked()  # blocked in its durable wait
        await rt.cancel(handle.invocation_id)
        # Leave at once: closing the runtime stops the handler before it compensates.
    assert probe.effects == BOOKED
    with anyio.fail_after(10):
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as info:
                await rt.attach_workflow(Trip, "t")
            _assert_cancelled(info.value)
    assert probe.effects == SAGA


async def test_a_cancel_recorded_in_the_journal_is_replayed_after_a_crash(
    tmp_path: Path,
) -> None:
    probe = Probe()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Trip(probe)], path=tmp_path, crash=CrashPlan(in_run="cancel flight")
        ) as rt:
            handle = await rt.send(Trip.run, "awakeable reraise", key="t")
            await probe.arrived("waiting")
            await rt.cancel(handle.invocation_id)
            await handle.result()
    assert probe.effects == ["book flight", "book hotel", "cancel hotel"]
    with anyio.fail_after(10):
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as info:
                await rt.attach_workflow(Trip, "t")
            _assert_cancelled(info.value)
    # The cancellation happened at the same await on replay; "cancel hotel" was
    # journaled, so only "cancel flight" ran in the second life.
    assert probe.effects == SAGA


async def _park(rt: actors.Runtime) -> None:
    await anyio.sleep(10)  # past suspend_after: the waiting workflow is parked
    assert rt.statistics().parked == 1
    assert rt.statistics().in_flight == 0


@pytest.mark.parametrize("kind", PARKED_KINDS)
async def test_cancel_a_parked_workflow_wakes_it_to_compensate(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Trip(probe)],
        path=tmp_path,
        suspend_after=1,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        handle = await rt.send(Trip.run, f"{kind} reraise", key="t")
        await probe.arrived("waiting")
        await _park(rt)
        await rt.cancel(handle.invocation_id)
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach_workflow(Trip, "t")
        _assert_cancelled(info.value)
        await anyio.sleep(LONG.total_seconds() * 2)  # the old sleep timer changes nothing
        assert rt.statistics().parked == 0
    assert probe.effects == SAGA


@pytest.mark.parametrize("kind", PARKED_KINDS)
async def test_cancel_a_parked_workflow_then_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    probe = Probe()
    async with open_test_runtime([Trip(probe)], path=tmp_path, suspend_after=1) as rt:
        handle = await rt.send(Trip.run, f"{kind} reraise", key="t")
        await probe.arrived("waiting")
        await _park(rt)
        await rt.cancel(handle.invocation_id)
    async with open_test_runtime([Trip(probe)], path=tmp_path, suspend_after=1) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach_workflow(Trip, "t")
        _assert_cancelled(info.value)
    assert probe.effects == SAGA


# --- 5. kill -----------------------------------------------------------------------------------


async def test_kill_a_running_exclusive_handler_frees_its_key(tmp_path: Path) -> None:
    probe = Probe()
    errors: list[actors.TerminalError] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                try:
                    await rt.call(Desk.hold, key="k")
                except actors.TerminalError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                queued = await rt.send(Desk.work, "next", key="k")
                await rt.kill(probe.ids["hold"])
            assert len(errors) == 1
            assert errors[0].status_code == 409
            assert "killed" in errors[0].message
            # The next queued exclusive invocation on the key runs.
            assert await queued.result() == "worked next"
            assert await rt.call(Desk.count, key="k") == 1
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach(probe.ids["hold"])
            assert "killed" in attached.value.message
            # Its awakeable can no longer resume anything.
            late: list[int] = []
            try:
                await rt.resolve_awakeable(probe.awakeables["hold"], "late")
            except actors.TerminalError as exc:
                late.append(exc.status_code)
            assert set(late) <= {404, 409}
            with pytest.raises(actors.TerminalError) as still:
                await rt.attach(probe.ids["hold"])
            assert "killed" in still.value.message
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as after:
                await rt.attach(probe.ids["hold"])
            assert "killed" in after.value.message
            assert rt.statistics().in_flight == 0
    # Python `finally` blocks run (the task is cancelled), but no durable compensation.
    assert probe.finally_ran == ["hold"]
    assert probe.effects == ["work next"]


async def test_a_caller_whose_inline_call_was_killed_goes_on_calling(tmp_path: Path) -> None:
    # Under trio the kill cancels the caller's own scope of the inline call (one scope
    # per call), and the handler writes its killed record shielded inside it: the caller
    # gets the 409 and nothing more of that cancellation, whatever it awaits next.
    probe = Probe()
    after: list[str] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Desk(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                with pytest.raises(actors.TerminalError) as killed:
                    await rt.call(Desk.hold, key="k")
                assert killed.value.status_code == 409
                await anyio.lowlevel.checkpoint()
                after.append(await rt.call(Desk.work, "after", key="k"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                await rt.kill(probe.ids["hold"])
            assert after == ["worked after"]
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach(probe.ids["hold"])
            assert "killed" in attached.value.message


class Swallower(actors.VirtualObject, name="swallower"):
    """Catches what a kill raises in it and returns at once, with no checkpoint after."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids["hold"] = ctx.invocation_id
        _, fut = ctx.awakeable(str)
        self.probe.arrive("hold")
        try:
            return await fut
        except BaseException:
            return "swallowed"

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return "pong"


async def test_an_inline_call_killed_after_its_last_checkpoint_is_killed(tmp_path: Path) -> None:
    probe = Probe()
    after: list[str] = []
    with anyio.fail_after(10):
        async with open_test_runtime([Swallower(probe)], path=tmp_path) as rt:

            async def caller() -> None:
                with pytest.raises(actors.TerminalError) as killed:
                    await rt.call(Swallower.hold, key="k")
                assert killed.value.status_code == 409
                after.append(await rt.call(Swallower.ping, key="k"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(caller)
                await probe.arrived("hold")
                await rt.kill(probe.ids["hold"])
            assert after == ["pong"]
            assert rt.statistics().in_flight == 0


async def test_kill_a_running_workflow_runs_no_compensation(tmp_path: Path) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            handle = await rt.send(Trip.run, "promise reraise", key="t")
            await probe.arrived("waiting")
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await rt.attach_workflow(Trip, "t")
            assert info.value.status_code == 409
            assert "killed" in info.value.message
            await rt.call(Trip.confirm, "too late", key="t")
        async with open_test_runtime([Trip(probe)], path=tmp_path) as rt:
            with pytest.raises(actors.TerminalError) as again:
                await rt.workflow_output(Trip, "t")
            assert "killed" in again.value.message
    assert probe.effects == BOOKED
    assert probe.caught == []


async def test_kill_a_parked_workflow(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    probe = Probe()
    async with open_test_runtime(
        [Trip(probe)], path=tmp_path, suspend_after=1, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        handle = await rt.send(Trip.run, "sleep reraise", key="t")
        await probe.arrived("waiting")
        await _park(rt)
        await rt.kill(handle.invocation_id)
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach_workflow(Trip, "t")
        assert info.value.status_code == 409
        assert "killed" in info.value.message
        await anyio.sleep(LONG.total_seconds() * 2)  # its timer fires into nothing
        assert rt.statistics().parked == 0
        assert rt.statistics().in_flight == 0
    async with open_test_runtime(
        [Trip(probe)], path=tmp_path, retention=YEAR, idle_timeout=IDLE
    ) as rt:
        await anyio.sleep(LONG.total_seconds() * 2)
        with pytest.raises(actors.TerminalError) as again:
            await rt.attach_workflow(Trip, "t")
        assert "killed" in again.value.message
    assert probe.effects == BOOKED
    assert probe.caught == []


async def test_kill_propagates_to_the_callee_without_compensation(tmp_path: Path) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Napper(probe), Boss(probe)], path=tmp_path) as rt:
            handle = await rt.send(Boss.delegate, "n", key="boss")
            await probe.arrived("nap n")
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            assert "killed" in info.value.message
            with pytest.raises(actors.TerminalError) as callee:
                await rt.attach(probe.ids["nap n"])
            assert callee.value.status_code == 409
            assert "killed" in callee.value.message
            assert await rt.call(Napper.ping, key="n") == "pong n"
    assert probe.effects == []
    assert probe.caught == []


@pytest.mark.parametrize("how", ["suspended", "restarted"])
async def test_kill_of_a_caller_without_its_coroutine_reaches_the_callee(
    tmp_path: Path, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A caller whose coroutine is gone (suspended while it waits, or rebuilt after a
    restart) knows its unanswered calls only from its journal: a kill finds them there."""
    probe = Probe()
    suspend_after = 1.0 if how == "suspended" else 60.0
    async with open_test_runtime(
        [Napper(probe), Boss(probe)],
        path=tmp_path,
        suspend_after=suspend_after,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        handle = await rt.send(Boss.delegate, "n", key="boss")
        await probe.arrived("nap n")
        if how == "suspended":
            await anyio.sleep(10)  # past suspend_after: both coroutines are dropped
            assert rt.statistics().suspended == 2
            await _kill_and_check(rt, handle.invocation_id, probe)
            return
    probe.reset("nap n")
    async with open_test_runtime(
        [Napper(probe), Boss(probe)],
        path=tmp_path,
        suspend_after=suspend_after,
        retention=YEAR,
        idle_timeout=IDLE,
    ) as rt:
        await probe.arrived("nap n")  # the callee runs again; the boss is rebuilt, waiting
        await _kill_and_check(rt, handle.invocation_id, probe)


async def _kill_and_check(rt: actors.Runtime, boss_id: str, probe: Probe) -> None:
    await rt.kill(boss_id)
    with pytest.raises(actors.TerminalError) as boss:
        await rt.attach(boss_id)
    assert "killed" in boss.value.message
    with anyio.fail_after(60):
        with pytest.raises(actors.TerminalError) as callee:
            await rt.attach(probe.ids["nap n"])
    assert callee.value.status_code == 409
    assert "killed" in callee.value.message
    assert await rt.call(Napper.ping, key="n") == "pong n"
    assert probe.effects == []  # killed: no compensation anywhere


class SlowUndo(actors.VirtualObject, name="slowUndo"):
    """Its compensation takes a month."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def go(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids["go"] = ctx.invocation_id
        try:
            self.probe.arrive("waiting")
            await ctx.sleep(LONG)
            return "done"
        except actors.TerminalError as exc:
            self.probe.caught.append((exc.status_code, exc.message))
            self.probe.arrive("compensating")
            await ctx.sleep(LONG)  # not interrupted by a second cancel
            await ctx.run("undo", self.probe.effect, "undo")
            raise


async def test_cancel_twice_is_harmless_and_kill_ends_a_slow_compensation(
    tmp_path: Path,
) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([SlowUndo(probe)], path=tmp_path) as rt:
            handle = await rt.send(SlowUndo.go, key="k")
            await probe.arrived("waiting")
            await rt.cancel(handle.invocation_id)
            await rt.cancel(handle.invocation_id)
            await probe.arrived("compensating")
            await rt.cancel(handle.invocation_id)
            await rt.kill(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            assert "killed" in info.value.message
    assert [code for code, _ in probe.caught] == [409]
    assert probe.effects == []


# --- 6. bad ids and finished invocations ---------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "kill"])
@pytest.mark.parametrize("invocation_id", ["inv_doesnotexist", "", "awk_nope", "not an id"])
async def test_unknown_ids(tmp_path: Path, how: str, invocation_id: str) -> None:
    async with open_test_runtime([Desk(Probe())], path=tmp_path) as rt:
        with pytest.raises(actors.UnknownHandlerError):
            if how == "cancel":
                await rt.cancel(invocation_id)
            else:
                await rt.kill(invocation_id)


@pytest.mark.parametrize("how", ["cancel", "kill"])
async def test_finished_invocations_answer_409(tmp_path: Path, how: str) -> None:
    probe = Probe()

    async def end(rt: actors.Runtime, invocation_id: str) -> None:
        if how == "cancel":
            await rt.cancel(invocation_id)
        else:
            await rt.kill(invocation_id)

    async with open_test_runtime([Desk(probe), Trip(probe)], path=tmp_path) as rt:
        done = await rt.send(Desk.work, "once", key="k")
        assert await done.result() == "worked once"
        with pytest.raises(actors.TerminalError) as info:
            await end(rt, done.invocation_id)
        assert info.value.status_code == 409
        # A cancelled one is finished too: a second cancel or kill answers 409.
        trip = await rt.send(Trip.run, "awakeable reraise", key="t")
        await probe.arrived("waiting")
        await rt.cancel(trip.invocation_id)
        with pytest.raises(actors.TerminalError):
            await trip.result()
        with pytest.raises(actors.TerminalError) as again:
            await end(rt, trip.invocation_id)
        assert again.value.status_code == 409
    async with open_test_runtime([Desk(probe), Trip(probe)], path=tmp_path) as rt:
        for invocation_id in (done.invocation_id, trip.invocation_id):
            with pytest.raises(actors.TerminalError) as stored:
                await end(rt, invocation_id)
            assert stored.value.status_code == 409
    assert probe.effects == ["work once", *SAGA]


# --- a paused invocation is cancellable ------------------------------------------------------


class Broken(actors.VirtualObject, name="broken"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive(retry=actors.RetryPolicy(max_attempts=1))
    async def fail(self, ctx: actors.ObjectContext, steps: int) -> str:
        self.probe.ids["fail"] = ctx.invocation_id
        for n in range(steps):
            await ctx.run(f"step {n}", self.probe.effect, f"step {n}")
        self.probe.arrive("failing")
        raise RuntimeError("always broken")


@pytest.mark.parametrize("steps", [0, 1])
async def test_cancel_a_paused_invocation(tmp_path: Path, steps: int) -> None:
    probe = Probe()
    with anyio.fail_after(10):
        async with open_test_runtime([Broken(probe), Desk(probe)], path=tmp_path) as rt:
            handle = await rt.send(Broken.fail, steps, key="k")
            await probe.arrived("failing")
            await anyio.wait_all_tasks_blocked()
            assert rt.statistics().paused == 1
            await rt.cancel(handle.invocation_id)
            with pytest.raises(actors.TerminalError) as info:
                await handle.result()
            _assert_cancelled(info.value)
    assert probe.effects == [f"step {n}" for n in range(steps)]
