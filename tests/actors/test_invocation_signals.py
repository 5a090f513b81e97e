"""Named signals of one invocation: ``ctx.signal(name)``, completed by id with
``rt.resolve_signal`` / ``rt.reject_signal`` or from a handler with
``ctx.resolve_signal`` / ``ctx.reject_signal``. Durable both ways: kept when sent before
the wait, journaled by the waiter, never delivered twice across crashes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.storage import Table, encode_key
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Approvals(actors.Service):
    """``wait`` publishes its invocation id, then waits for its "approve" signal;
    ``send`` and ``refuse`` complete another invocation's signal from a handler."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold  # wait inside the publish step until ``release`` is set
        self.published = anyio.Event()
        self.release = anyio.Event()
        self.ids: list[str] = []
        self.recorded: list[str] = []
        self.sent: list[str] = []

    async def _publish(self, invocation_id: str) -> None:
        self.ids.append(invocation_id)
        self.published.set()
        if self.hold:
            await self.release.wait()

    async def _record(self, outcome: str) -> None:
        self.recorded.append(outcome)

    async def _note(self, what: str) -> None:
        self.sent.append(what)

    @actors.handler
    async def wait(self, ctx: actors.Context) -> str:
        await ctx.run("publish", self._publish, ctx.invocation_id)
        try:
            outcome = f"got {await ctx.signal('approve', str)}"
        except actors.TerminalError as exc:
            outcome = f"rejected {exc.status_code}: {exc.message}"
        await ctx.run("record", self._record, outcome)
        return outcome

    @actors.handler
    async def twice(self, ctx: actors.Context) -> list[int]:
        await ctx.run("publish", self._publish, ctx.invocation_id)
        return [await ctx.signal("n", int), await ctx.signal("n", int)]

    @actors.handler
    async def send(self, ctx: actors.Context, target: list[Any]) -> str:
        invocation_id, name, value = target
        await ctx.run("before", self._note, "before")
        try:
            await ctx.resolve_signal(invocation_id, name, value)
        except actors.TerminalError as exc:
            answer = f"{exc.status_code} {exc.message}"
        else:
            answer = "sent"
        await ctx.run("after", self._note, answer)
        return answer

    @actors.handler
    async def refuse(self, ctx: actors.Context, target: list[Any]) -> str:
        invocation_id, reason, code = target
        try:
            await ctx.reject_signal(invocation_id, "approve", reason, code)
        except actors.TerminalError as exc:
            return f"{exc.status_code} {exc.message}"
        return "rejected"


async def _waiting(rt: actors.Runtime, approvals: Approvals) -> actors.InvocationHandle:
    handle = await rt.send(Approvals.wait)
    await approvals.published.wait()
    assert approvals.ids[-1] == handle.invocation_id
    return handle


async def test_a_signal_resolved_from_outside_reaches_its_waiter() -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)
        await rt.resolve_signal(handle.invocation_id, "approve", "yes")
        assert await handle.result() == "got yes"
    assert approvals.recorded == ["got yes"]


async def test_a_signal_sent_before_the_wait_is_kept() -> None:
    approvals = Approvals(hold=True)
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)  # still inside its publish step
        await rt.resolve_signal(handle.invocation_id, "approve", "early")
        approvals.release.set()
        assert await handle.result() == "got early"


async def test_a_signal_rejected_with_a_code_fails_its_waiter_with_it() -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)
        await rt.reject_signal(handle.invocation_id, "approve", "not you", code=403)
        assert await handle.result() == "rejected 403: not you"
        approvals.published = anyio.Event()
        other = await _waiting(rt, approvals)
        answer = await rt.call(Approvals.refuse, [other.invocation_id, "later", 503])
        assert answer == "rejected"
        assert await other.result() == "rejected 503: later"


async def test_waiting_twice_on_one_name_gets_the_same_value() -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        handle = await rt.send(Approvals.twice)
        await approvals.published.wait()
        await rt.resolve_signal(handle.invocation_id, "n", 7)
        assert await handle.result() == [7, 7]


async def test_a_signal_resolved_from_another_handler() -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)
        assert await rt.call(Approvals.send, [handle.invocation_id, "approve", "ok"]) == "sent"
        assert await handle.result() == "got ok"


async def test_resolving_a_signal_twice_is_409_and_keeps_the_first_value() -> None:
    approvals = Approvals(hold=True)
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)
        await rt.resolve_signal(handle.invocation_id, "approve", "first")
        message = f"signal 'approve' of invocation {handle.invocation_id} was already completed"
        with pytest.raises(actors.TerminalError, match=f"^{message}$") as info:
            await rt.resolve_signal(handle.invocation_id, "approve", "second")
        assert info.value.status_code == 409
        with pytest.raises(actors.TerminalError) as info:
            await rt.reject_signal(handle.invocation_id, "approve", "no")
        assert info.value.status_code == 409
        answer = await rt.call(Approvals.send, [handle.invocation_id, "approve", "third"])
        assert answer == f"409 {message}"
        approvals.release.set()
        assert await handle.result() == "got first"


async def test_signals_to_unknown_or_finished_invocations_are_refused() -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        for unknown in ("inv_nothing", "", "x" * 1000):
            with pytest.raises(actors.TerminalError, match=r"^no invocation ") as info:
                await rt.resolve_signal(unknown, "approve", 1)
            assert info.value.status_code == 404
        answer = await rt.call(Approvals.send, ["inv_nothing", "approve", 1])
        assert answer == "404 no invocation 'inv_nothing'"
        handle = await _waiting(rt, approvals)
        await rt.resolve_signal(handle.invocation_id, "approve", "yes")
        await handle.result()
        finished = (
            f"invocation {handle.invocation_id} has already completed: nobody would read "
            "its signal 'other'"
        )
        with pytest.raises(actors.TerminalError, match=f"^{finished}$") as info:
            await rt.resolve_signal(handle.invocation_id, "other", 1)
        assert info.value.status_code == 409


@pytest.mark.parametrize(
    ("invocation_id", "name", "message"),
    [
        (5, "approve", "invocation ids are str, not int"),
        ("ID", "", "a signal needs a non-empty str name"),
        ("ID", 5, "a signal needs a non-empty str name"),
        ("ID", "n" * 65, "the signal name is 65 bytes, over the limit of 64 bytes"),
    ],
)
async def test_bad_signal_arguments_are_400_and_change_nothing(
    invocation_id: Any, name: Any, message: str
) -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals]) as rt:
        handle = await _waiting(rt, approvals)
        target = handle.invocation_id if invocation_id == "ID" else invocation_id
        with pytest.raises(actors.TerminalError) as info:
            await rt.resolve_signal(target, name, 1)
        assert (info.value.status_code, info.value.message) == (
            413 if "limit" in message else 400,
            message,
        )
        with pytest.raises(actors.TerminalError) as info:
            await rt.reject_signal(handle.invocation_id, "approve", "no", code=1000)
        assert info.value.status_code == 400
        assert await rt.call(Approvals.refuse, [handle.invocation_id, "no", 42]) == (
            "400 a rejection code is an int from 100 to 999, not 42"
        )
        # Nothing was stored: the signal is still open.
        await rt.resolve_signal(handle.invocation_id, "approve", "yes")
        assert await handle.result() == "got yes"


class Misuse(actors.Service):
    @actors.handler
    async def bad_name(self, ctx: actors.Context) -> str:
        name: Any = 5
        try:
            ctx.signal(name)
        except actors.TerminalError as exc:
            return f"{exc.status_code} {exc.message}"
        return "accepted"


async def test_a_bad_signal_name_in_ctx_signal_is_400() -> None:
    async with open_test_runtime([Misuse()]) as rt:
        assert await rt.call(Misuse.bad_name) == "400 a signal needs a non-empty str name"


# --- crashes -----------------------------------------------------------------------------


async def test_a_crash_before_the_handler_resolves_loses_nothing(tmp_path: Path) -> None:
    approvals = Approvals()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [approvals], path=tmp_path, crash=CrashPlan(in_run="before")
        ) as rt:
            handle = await _waiting(rt, approvals)
            sender = await rt.send(Approvals.send, [handle.invocation_id, "approve", "v"])
            await sender.result()
    assert approvals.sent == []
    approvals = Approvals()
    async with open_test_runtime([approvals], path=tmp_path) as rt:
        assert await rt.attach(sender.invocation_id) == "sent"
        assert await rt.attach(handle.invocation_id) == "got v"
    assert approvals.recorded == ["got v"]


async def test_a_crash_after_the_handler_resolved_never_sends_twice(tmp_path: Path) -> None:
    # The sender resolves, then dies in its next step; its replay must not resolve again
    # (that would answer 409 and record it).
    approvals = Approvals()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [approvals], path=tmp_path, crash=CrashPlan(in_run="after")
        ) as rt:
            handle = await _waiting(rt, approvals)
            sender = await rt.send(Approvals.send, [handle.invocation_id, "approve", "once"])
            await sender.result()
    assert approvals.sent == ["before"]
    approvals = Approvals()
    async with open_test_runtime([approvals], path=tmp_path) as rt:
        assert await rt.attach(sender.invocation_id) == "sent"
        assert await rt.attach(handle.invocation_id) == "got once"
    assert approvals.sent == ["sent"]
    assert approvals.recorded == ["got once"]


async def test_a_received_signal_is_replayed_from_the_journal(tmp_path: Path) -> None:
    # The waiter receives the value and dies recording it; the replay returns what the
    # journal holds, and the signal stays completed.
    approvals = Approvals()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [approvals], path=tmp_path, crash=CrashPlan(in_run="record")
        ) as rt:
            handle = await _waiting(rt, approvals)
            await rt.reject_signal(handle.invocation_id, "approve", "gone", code=410)
            await handle.result()
    assert approvals.recorded == []
    approvals = Approvals()
    async with open_test_runtime([approvals], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "rejected 410: gone"
        with pytest.raises(actors.TerminalError) as info:
            await rt.resolve_signal(handle.invocation_id, "approve", "late")
        assert info.value.status_code == 409
    assert approvals.recorded == ["rejected 410: gone"]


async def test_a_parked_waiter_is_woken_by_its_signal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals], suspend_after=5) as rt:
        handle = await _waiting(rt, approvals)
        await trio.sleep(60)
        assert rt.statistics().parked == 1
        await rt.resolve_signal(handle.invocation_id, "approve", "wake up")
        assert await handle.result() == "got wake up"


async def test_a_signal_goes_with_its_invocation_s_retention(
    autojump_clock: trio.testing.MockClock,
) -> None:
    approvals = Approvals()
    async with open_test_runtime([approvals], retention=60) as rt:
        handle = await _waiting(rt, approvals)
        await rt.resolve_signal(handle.invocation_id, "approve", "yes")
        await handle.result()
        rows = encode_key(("", handle.invocation_id))
        store = rt._store
        assert len(store.scan(Table.PROMISES, rows, children=True)) == 1
        await trio.sleep(120)
        assert store.scan(Table.PROMISES, rows, children=True) == []
        with pytest.raises(actors.TerminalError) as info:
            await rt.resolve_signal(handle.invocation_id, "approve", "again")
        assert info.value.status_code == 404
