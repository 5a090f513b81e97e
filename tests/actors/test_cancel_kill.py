"""Cancel: where the cancellation lands, compensations (sagas), propagation to callees,
invocations that never started and durability across a restart (kill, bad ids and
paused invocations: test_kill.py)."""

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

from cancel_actors import (
    BOOKED,
    IDLE,
    LONG,
    SAGA,
    YEAR,
    Booking,
    Boss,
    BossFlow,
    Desk,
    Napper,
    Probe,
    Trip,
    Watcher,
    _assert_cancelled,
    _park,
)

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
