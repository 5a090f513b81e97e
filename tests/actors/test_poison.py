"""Poison pills (issue 12, item 2): whatever a handler or a ``ctx.run`` body raises,
``BaseException`` included, is a recorded failure of that attempt, retried or paused by
policy; the runtime never dies of it, and neither does a reopen. A message that cannot
render falls back to the type name; a huge one is cut to ``MAX_FAILURE_MESSAGE_CHARS``.
The runtime's own cancellation still stops it promptly, recording nothing.

Every test runs under trio and under asyncio (conftest.py); retry policies without
backoff keep them off the clock."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import TYPE_CHECKING

import anyio
import pytest

import actors
from actors._cli import main
from actors._limits import MAX_FAILURE_MESSAGE_CHARS
from actors.storage import InvocationRecord, InvocationStatus, StoreReader, Table, loads
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

QUICK = actors.RetryPolicy(initial_interval=0, max_attempts=2)
HUGE = 20 * 1024 * 1024  # characters: more than a stored value may hold


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this exception fails too")


class Homemade(BaseException):
    """A BaseException of the user's own."""


def pill(kind: str) -> BaseException:
    if kind == "unprintable":
        return Unprintable()
    if kind == "keyboard":
        return KeyboardInterrupt("from handler code")
    if kind == "exit":
        return SystemExit(3)
    if kind == "generator":
        return GeneratorExit()
    if kind == "homemade":
        return Homemade("mine")
    if kind == "cancelled":  # raised by hand: nothing is being cancelled
        return asyncio.CancelledError()
    if kind == "group":
        return BaseExceptionGroup("several", [KeyboardInterrupt(), Homemade("and mine")])
    if kind == "huge":
        return RuntimeError("x" * HUGE)
    raise AssertionError(kind)


#: Each pill and what its recorded failure says.
PILLS = {
    "unprintable": "Unprintable",
    "keyboard": "KeyboardInterrupt: from handler code",
    "exit": "SystemExit: 3",
    "generator": "GeneratorExit",
    "homemade": "Homemade: mine",
    "cancelled": "CancelledError",
    "group": "BaseExceptionGroup: several (2 sub-exceptions): [KeyboardInterrupt, Homemade: and mine]",
}


async def raise_async(kind: str) -> str:
    raise pill(kind)


def raise_sync(kind: str) -> str:
    raise pill(kind)


class Poison(actors.VirtualObject):
    def __init__(self) -> None:
        self.cured = False
        self.tries: collections.Counter[str] = collections.Counter()

    @actors.exclusive(retry=QUICK)
    async def swallow(self, ctx: actors.ObjectContext, kind: str) -> str:
        self.tries["handler"] += 1
        if not self.cured:
            if kind == "nursery":  # a task group of the handler's own carries it out
                async with anyio.create_task_group() as tg:
                    tg.start_soon(raise_async, "homemade")
            raise pill(kind)
        ctx.set("cured", kind)
        return f"cured of {kind}"

    @actors.exclusive(retry=QUICK)
    async def step(self, ctx: actors.ObjectContext, kind: str) -> str:
        def counted(kind: str) -> str:  # a plain function: it runs on a worker thread
            self.tries["body"] += 1
            return raise_sync(kind)

        async def counted_async(kind: str) -> str:
            self.tries["body"] += 1
            return await raise_async(kind)

        fn = counted if ctx.key == "thread" else counted_async
        return await ctx.run("pill", fn, kind, retry=QUICK)

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return "pong"


def stored_record(data: Path, invocation_id: str) -> InvocationRecord:
    with StoreReader.open(data) as reader, reader.read() as view:
        raw = view.get(Table.INVOCATIONS, invocation_id.encode())
    assert raw is not None
    return loads(InvocationRecord, raw)


@pytest.mark.parametrize("kind", [*PILLS, "nursery"])
async def test_a_handler_raising_anything_is_paused_and_the_runtime_and_reopen_live(
    tmp_path: Path, kind: str
) -> None:
    # A task group's own message differs between trio and asyncio: not compared.
    expected = PILLS.get(kind, "BaseExceptionGroup")
    poison = Poison()
    async with open_test_runtime([poison], path=tmp_path) as rt:
        handle = await rt.send(Poison.swallow, kind, key="k")
        with pytest.raises(actors.InvocationPausedError) as info:
            await handle.result()
        assert info.value.invocation_id == handle.invocation_id
        reason = info.value.reason
        assert reason.startswith(f"gave up after 2 attempts: {expected}")
        if kind == "nursery":
            assert reason.endswith("(1 sub-exception): [Homemade: mine]")
        else:
            assert reason == f"gave up after 2 attempts: {expected}"
        assert handle.invocation_id in info.value.message
        assert poison.tries["handler"] == 2  # retried by its policy, then paused
        assert rt.statistics().paused == 1
        assert await rt.call(Poison.ping, key="other") == "pong"  # the runtime lives
    record = stored_record(tmp_path, handle.invocation_id)
    assert record.status is InvocationStatus.PAUSED
    assert record.pause_reason == reason
    # The reopened runtime runs, the invocation is still paused, and resumes when cured.
    async with open_test_runtime([poison], path=tmp_path) as rt:
        assert await rt.call(Poison.ping, key="other") == "pong"
        with pytest.raises(actors.InvocationPausedError):
            await rt.attach(handle.invocation_id)
        poison.cured = True
        await rt.resume(handle.invocation_id)
        assert await rt.attach(handle.invocation_id) == f"cured of {kind}"


class PillService(actors.Service):
    def __init__(self) -> None:
        self.cured = False

    @actors.handler(retry=QUICK)
    async def swallow(self, ctx: actors.Context) -> str:
        if not self.cured:
            raise KeyboardInterrupt("in a service")
        return "cured"


class PillObject(actors.VirtualObject):
    def __init__(self) -> None:
        self.cured = False

    @actors.shared(retry=QUICK)
    async def peek(self, ctx: actors.ObjectSharedContext) -> str:
        if not self.cured:
            raise SystemExit("in a shared handler")
        return "cured"


async def test_services_and_shared_handlers_called_inline_survive_pills_too(
    tmp_path: Path,
) -> None:
    # ``rt.call`` runs these in the caller's own task: the pause unwinds to the caller.
    service, shared = PillService(), PillObject()
    async with open_test_runtime([service, shared], path=tmp_path) as rt:
        with pytest.raises(actors.InvocationPausedError) as in_service:
            await rt.call(PillService.swallow)
        assert in_service.value.reason.endswith("KeyboardInterrupt: in a service")
        with pytest.raises(actors.InvocationPausedError) as in_shared:
            await rt.call(PillObject.peek, key="k")
        assert in_shared.value.reason.endswith("SystemExit: in a shared handler")
        assert rt.statistics().paused == 2
    async with open_test_runtime([service, shared], path=tmp_path) as rt:
        service.cured = shared.cured = True
        for error in (in_service.value, in_shared.value):
            await rt.resume(error.invocation_id)
            assert await rt.attach(error.invocation_id) == "cured"


@pytest.mark.parametrize("where", ["async", "thread"])
@pytest.mark.parametrize("kind", list(PILLS))
async def test_a_step_body_raising_anything_fails_the_step_and_the_runtime_lives(
    tmp_path: Path, kind: str, where: str
) -> None:
    poison = Poison()
    message = f"ctx.run('pill') failed after 2 attempts: {PILLS[kind]}"
    async with open_test_runtime([poison], path=tmp_path) as rt:
        handle = await rt.send(Poison.step, kind, key=where)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert (info.value.message, info.value.status_code) == (message, 500)
        assert poison.tries["body"] == 2  # the body's own policy, then the handler's error
        assert await rt.call(Poison.ping, key="other") == "pong"
    async with open_test_runtime([poison], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach(handle.invocation_id)
        assert info.value.message == message
        assert await rt.call(Poison.ping, key="other") == "pong"
    assert poison.tries["body"] == 2  # the reopen did not run the body again


async def test_a_huge_retried_message_is_cut_recorded_and_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    poison = Poison()
    async with open_test_runtime([poison], path=tmp_path) as rt:
        handle = await rt.send(Poison.swallow, "huge", key="k")
        with pytest.raises(actors.InvocationPausedError) as info:
            await handle.result()
        reason = info.value.reason
        assert len(reason) == MAX_FAILURE_MESSAGE_CHARS
        assert reason.startswith("gave up after 2 attempts: RuntimeError: xxx")
        assert reason.endswith(f"xxx... [cut to {MAX_FAILURE_MESSAGE_CHARS} characters]")
    assert stored_record(tmp_path, handle.invocation_id).pause_reason == reason
    capsys.readouterr()
    assert main(["invocations", "-d", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["status"], row["pause_reason"]) == (
        handle.invocation_id,
        "paused",
        reason,
    )


async def test_a_huge_step_failure_is_cut_in_the_journal(tmp_path: Path) -> None:
    async with open_test_runtime([Poison()], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Poison.step, "huge", key="async")
    message = info.value.message
    assert len(message) == MAX_FAILURE_MESSAGE_CHARS
    assert message.startswith("ctx.run('pill') failed after 2 attempts: RuntimeError: xxx")
    assert message.endswith(f"xxx... [cut to {MAX_FAILURE_MESSAGE_CHARS} characters]")


class Odd(actors.Service):
    @actors.handler
    async def huge_terminal(self, ctx: actors.Context) -> str:
        raise actors.TerminalError("y" * HUGE, 422)

    @actors.handler
    async def odd_terminal(self, ctx: actors.Context) -> str:
        raise actors.TerminalError(["not", "text"], 10**30)  # type: ignore[arg-type]

    @actors.handler
    async def unprintable_terminal(self, ctx: actors.Context) -> str:
        error = actors.TerminalError("fine")
        error.message = Unprintable()  # type: ignore[assignment]
        raise error


async def test_terminal_errors_with_huge_or_odd_fields_are_stored_as_text(
    tmp_path: Path,
) -> None:
    async with open_test_runtime([Odd()], path=tmp_path) as rt:
        huge = await rt.send(Odd.huge_terminal)
        with pytest.raises(actors.TerminalError) as info:
            await huge.result()
        assert (len(info.value.message), info.value.status_code) == (MAX_FAILURE_MESSAGE_CHARS, 422)
        odd = await rt.send(Odd.odd_terminal)
        with pytest.raises(actors.TerminalError) as info:
            await odd.result()
        assert (info.value.message, info.value.status_code) == ("['not', 'text']", 500)
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Odd.unprintable_terminal)
        assert info.value.message == "TerminalError"
    async with open_test_runtime([Odd()], path=tmp_path) as rt:  # and they load again
        with pytest.raises(actors.TerminalError) as info:
            await rt.attach(odd.invocation_id)
        assert info.value.message == "['not', 'text']"


# --- the runtime's own cancellation still works ---------------------------------------------


class Sleeper(actors.VirtualObject):
    def __init__(self) -> None:
        self.started = anyio.Event()
        self.runs = 0
        self.block = True

    @actors.exclusive(retry=QUICK)
    async def nap(self, ctx: actors.ObjectContext) -> str:
        self.runs += 1
        self.started.set()
        if self.block:
            await anyio.sleep_forever()  # not a durable wait: only a cancellation ends it
        return "rested"


async def test_cancelling_the_users_own_scope_stops_the_runtime_and_records_nothing(
    tmp_path: Path,
) -> None:
    sleeper = Sleeper()
    with anyio.CancelScope() as outer:
        async with open_test_runtime([sleeper], path=tmp_path) as rt:
            handle = await rt.send(Sleeper.nap, key="k")
            await sleeper.started.wait()
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert sleeper.runs == 1  # not retried: a cancellation is not a failure
    assert stored_record(tmp_path, handle.invocation_id).status is not InvocationStatus.PAUSED
    sleeper.block = False
    async with open_test_runtime([sleeper], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "rested"  # it ran again at open
    assert sleeper.runs == 2


async def test_kill_of_a_handler_in_a_plain_await_still_ends_it(tmp_path: Path) -> None:
    sleeper = Sleeper()
    async with open_test_runtime([sleeper], path=tmp_path) as rt:
        handle = await rt.send(Sleeper.nap, key="k")
        await sleeper.started.wait()
        await rt.kill(handle.invocation_id)
        with pytest.raises(actors.TerminalError, match="was killed") as info:
            await handle.result()
        assert info.value.status_code == 409
        assert sleeper.runs == 1
        sleeper.block = False
        assert await rt.call(Sleeper.nap, key="k") == "rested"  # the key was handed on


def test_asyncio_cancelling_an_inline_call_is_a_cancellation_not_a_failure(
    tmp_path: Path,
) -> None:
    """asyncio only: a native ``task.cancel()`` of the task in which ``rt.call`` runs its
    handler reaches the handler as ``CancelledError``; it is the caller's cancellation,
    not a failure of the handler."""

    async def scenario() -> None:
        sleeper = Sleeper()
        async with open_test_runtime([sleeper], path=tmp_path) as rt:
            task = asyncio.ensure_future(rt.call(Sleeper.nap, key="k"))
            await sleeper.started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sleeper.runs == 1
            assert rt.statistics().paused == 0
            sleeper.block = False
            assert await rt.call(Sleeper.nap, key="k") == "rested"

    asyncio.run(scenario())
