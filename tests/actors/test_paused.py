"""A paused invocation answers its callers outside the runtime (issue 12, item 6):
``rt.call``, ``handle.result()``, ``rt.attach`` and HTTP get ``InvocationPausedError``
(a 500 ``TerminalError`` naming the invocation and its last failure) as soon as it
pauses, or at once if it already is; the invocation stays paused and resumable, and a
later ``rt.resume`` + attach gets the real result. A caller inside a handler
(``ctx.call``) keeps waiting, durably. Under trio and asyncio."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import actors
from actors.storage import InvocationRecord, InvocationStatus, Table, loads
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

    from actors._runtime import Runtime

QUICK = actors.RetryPolicy(initial_interval=0, max_attempts=2)
REASON = "gave up after 2 attempts: RuntimeError: broken on {key}"


class Flaky(actors.VirtualObject):
    def __init__(self) -> None:
        self.broken = True
        self.runs = 0
        self.entered = anyio.Event()
        self.release = anyio.Event()

    @actors.exclusive(retry=QUICK)
    async def work(self, ctx: actors.ObjectContext, n: int) -> int:
        self.runs += 1
        if self.broken:
            raise RuntimeError(f"broken on {ctx.key}")
        total = ((await ctx.get("total", int)) or 0) + n
        ctx.set("total", total)
        return total

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> str:
        self.entered.set()
        await self.release.wait()  # keeps the key busy
        return "held"


class Job(actors.Workflow):
    def __init__(self) -> None:
        self.broken = True

    @actors.main(retry=QUICK)
    async def run(self, ctx: actors.WorkflowContext, n: int) -> int:
        if self.broken:
            raise RuntimeError(f"broken on {ctx.key}")
        return n * 2


class Relay(actors.Service):
    @actors.handler
    async def relay(self, ctx: actors.Context, key: str) -> int:
        return await ctx.call(Flaky.work, 10, key=key)


def paused_record(rt: Runtime, invocation_id: str) -> InvocationRecord:
    raw = rt._store.get(Table.INVOCATIONS, invocation_id.encode())
    assert raw is not None
    record = loads(InvocationRecord, raw)
    assert record.status is InvocationStatus.PAUSED
    return record


def assert_paused(error: actors.InvocationPausedError, key: str) -> str:
    assert isinstance(error, actors.TerminalError)
    assert error.status_code == 500
    assert error.reason == REASON.format(key=key)
    assert error.message.startswith(
        f"invocation {error.invocation_id} is paused: {REASON.format(key=key)} (fix the cause, "
        f"then resume it with Runtime.resume or `actors resume {error.invocation_id}`"
    )
    return error.invocation_id


async def test_a_call_that_pauses_raises_at_once_and_resumes(tmp_path: Path) -> None:
    flaky = Flaky()
    async with open_test_runtime([flaky], path=tmp_path) as rt:
        # The key is free: the handler runs in the caller's own task.
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.call(Flaky.work, 5, key="k")
        invocation_id = assert_paused(info.value, "k")
        assert flaky.runs == 2
        assert rt.statistics().paused == 1
        assert paused_record(rt, invocation_id).pause_reason == REASON.format(key="k")
        queued = await rt.send(Flaky.work, 1, key="k")  # waits: the paused one holds the key
        with pytest.raises(actors.InvocationPausedError):
            await rt.attach(invocation_id)  # at once: it already is paused
        flaky.broken = False
        await rt.resume(invocation_id)
        assert await rt.attach(invocation_id) == 5
        assert await queued.result() == 6
        assert rt.statistics().paused == 0


async def test_a_queued_call_that_pauses_raises_at_once(tmp_path: Path) -> None:
    flaky = Flaky()
    async with open_test_runtime([flaky], path=tmp_path) as rt, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(rt.call, Flaky.hold, key="k"))
        await flaky.entered.wait()
        outcome: list[BaseException] = []

        async def caller() -> None:
            try:
                await rt.call(Flaky.work, 5, key="k")  # queued behind hold
            except actors.InvocationPausedError as exc:
                outcome.append(exc)

        tg.start_soon(caller)
        flaky.release.set()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    (error,) = outcome
    assert isinstance(error, actors.InvocationPausedError)
    assert_paused(error, "k")


async def test_every_outside_waiter_is_answered_and_reopen_answers_again(tmp_path: Path) -> None:
    flaky, job = Flaky(), Job()
    async with open_test_runtime([flaky, job], path=tmp_path) as rt:
        handle = await rt.send(Flaky.work, 5, key="s")
        answers: list[BaseException] = []

        async def attach() -> None:
            try:
                await rt.attach(handle.invocation_id)
            except actors.InvocationPausedError as exc:
                answers.append(exc)

        async with anyio.create_task_group() as tg:  # started before it pauses
            tg.start_soon(attach)
            with pytest.raises(actors.InvocationPausedError) as info:
                await handle.result()
        assert_paused(info.value, "s")
        assert len(answers) == 1
        # An idempotent call: paused, and the same key answers at once again.
        for _ in range(2):
            with pytest.raises(actors.InvocationPausedError) as info:
                await rt.call(Flaky.work, 7, key="i", idempotency_key="once")
            idempotent_id = assert_paused(info.value, "i")
        # A workflow's main.
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.call(Job.run, 4, key="w")
        run_id = info.value.invocation_id
        with pytest.raises(actors.InvocationPausedError):
            await rt.attach_workflow(Job, "w")
        assert rt.statistics().paused == 3
    async with open_test_runtime([flaky, job], path=tmp_path) as rt:
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.attach(handle.invocation_id)
        assert_paused(info.value, "s")
        flaky.broken = job.broken = False
        for invocation_id in (handle.invocation_id, idempotent_id, run_id):
            await rt.resume(invocation_id)
        assert await rt.attach(handle.invocation_id) == 5
        assert await rt.call(Flaky.work, 7, key="i", idempotency_key="once") == 7
        assert await rt.attach_workflow(Job, "w") == 8


async def test_a_cancel_of_a_paused_invocation_answers_its_waiters(tmp_path: Path) -> None:
    async with open_test_runtime([Flaky()], path=tmp_path) as rt:
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.call(Flaky.work, 5, key="k")
        await rt.cancel(info.value.invocation_id)
        with pytest.raises(actors.TerminalError, match="was cancelled") as cancelled:
            await rt.attach(info.value.invocation_id)
        assert cancelled.value.status_code == 409
        assert not isinstance(cancelled.value, actors.InvocationPausedError)


async def test_a_kill_of_a_paused_call_taken_over_ends_it_and_frees_its_key(
    tmp_path: Path,
) -> None:
    flaky = Flaky()
    async with open_test_runtime([flaky], path=tmp_path) as rt:
        with pytest.raises(actors.InvocationPausedError) as info:
            await rt.call(Flaky.work, 5, key="k")  # inline: a runtime task took it over
        await rt.kill(info.value.invocation_id)
        with pytest.raises(actors.TerminalError, match="was killed") as killed:
            await rt.attach(info.value.invocation_id)
        assert killed.value.status_code == 409
        assert rt.statistics().paused == 0
        flaky.broken = False
        assert await rt.call(Flaky.work, 1, key="k") == 1  # the key was handed on


async def test_a_caller_inside_a_handler_keeps_waiting_durably(tmp_path: Path) -> None:
    flaky = Flaky()
    async with open_test_runtime([flaky, Relay()], path=tmp_path) as rt:
        caller = await rt.send(Relay.relay, "r")
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().paused == 1  # the callee, not its caller
        with pytest.raises(actors.NotReadyError):
            await rt.output(caller.invocation_id)
    async with open_test_runtime([flaky, Relay()], path=tmp_path) as rt:
        await anyio.wait_all_tasks_blocked()
        (paused,) = [inv for inv in rt._invocations.values() if inv.paused_reason]
        with pytest.raises(actors.NotReadyError):
            await rt.output(caller.invocation_id)
        flaky.broken = False
        await rt.resume(paused.invocation_id)
        assert await rt.attach(caller.invocation_id) == 10


# --- HTTP: a real socket --------------------------------------------------------------------


async def test_http_call_of_an_invocation_that_pauses_answers_500_then_resumes(
    tmp_path: Path,
) -> None:
    flaky = Flaky()
    async with open_test_runtime([flaky], path=tmp_path) as rt, anyio.create_task_group() as tg:
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/Flaky/h/work", json=5)
            assert response.status_code == 500
            body = response.json()
            assert body["code"] == 500
            match = re.match(r"invocation (inv_\w+) is paused: ", body["message"])
            assert match is not None
            invocation_id = match.group(1)
            assert REASON.format(key="h") in body["message"]
            attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
            assert (attached.status_code, attached.json()) == (500, body)
            flaky.broken = False
            resumed = await client.patch(f"/restate/invocation/{invocation_id}/resume")
            assert resumed.status_code == 200
            attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
            assert (attached.status_code, attached.json()) == (200, 5)
        tg.cancel_scope.cancel()
