"""Workflows: main runs once per id, and shared handlers read durable state (durable
promises and parking: test_workflow_promises.py; retention and bad definitions:
test_workflow_retention.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


from workflow_actors import Signup


class Caller(actors.Service):
    @actors.handler
    async def signup(self, ctx: actors.Context, user: str) -> str:
        return await ctx.call(Signup.run, user, key="called")

    @actors.handler
    async def send_twice(self, ctx: actors.Context) -> list[str]:
        first = await ctx.send(Signup.run, "alice", key="sent")
        second = await ctx.send(Signup.run, "bob", key="sent")
        same = "same id" if first.invocation_id == second.invocation_id else "other id"
        return [first.status, second.status, same]


# --- main runs once per workflow id ------------------------------------------------------


async def test_second_send_of_main_is_previously_accepted_with_the_same_id(
    tmp_path: Path,
) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            first = await rt.send(Signup.run, "alice", key="w")
            second = await rt.send(Signup.run, "bob", key="w")
            assert first.status == "Accepted"
            assert second.status == "PreviouslyAccepted"
            assert second.invocation_id == first.invocation_id
            await rt.call(Signup.verify, "a@example.com", key="w")
            assert await second.result() == "alice <a@example.com>"
            assert await first.result() == "alice <a@example.com>"
            third = await rt.send(Signup.run, "carol", key="w")  # after it finished too
            assert (third.status, third.invocation_id) == (
                "PreviouslyAccepted",
                first.invocation_id,
            )
    assert signup.executions == 1
    assert signup.effects == ["before", "after"]


async def test_concurrent_submissions_of_one_id_accept_one_run(tmp_path: Path) -> None:
    signup = Signup()
    handles: list[actors.InvocationHandle] = []
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:

            async def submit(user: str) -> None:
                handles.append(await rt.send(Signup.run, user, key="w"))

            async with anyio.create_task_group() as group:
                for i in range(10):
                    group.start_soon(submit, f"user{i}")
            assert sorted(h.status for h in handles) == ["Accepted"] + ["PreviouslyAccepted"] * 9
            assert len({h.invocation_id for h in handles}) == 1
            await rt.call(Signup.verify, "x@example.com", key="w")
            results = {await h.result() for h in handles}
    assert len(results) == 1
    assert signup.executions == 1


async def test_call_on_an_existing_id_returns_the_first_result_without_running_again(
    tmp_path: Path,
) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            await rt.call(Signup.verify, "a@example.com", key="w")
            assert await rt.call(Signup.run, "alice", key="w") == "alice <a@example.com>"
            assert await rt.call(Signup.run, "bob", key="w") == "alice <a@example.com>"
    assert signup.executions == 1
    assert signup.effects == ["before", "after"]


async def test_call_on_a_failed_id_raises_its_error_without_running_again(tmp_path: Path) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            await rt.call(Signup.verify, "m@example.com", key="m")
            for user in ("mallory", "alice"):
                with pytest.raises(actors.TerminalError, match=r"^mallory is banned$") as info:
                    await rt.call(Signup.run, user, key="m")
                assert info.value.status_code == 403
            handle = await rt.send(Signup.run, "alice", key="m")
            assert handle.status == "PreviouslyAccepted"
            for attempt in (
                handle.result(),
                rt.attach(handle.invocation_id),
                rt.attach_workflow(Signup, "m"),
                rt.output(handle.invocation_id),
                rt.workflow_output(Signup, "m"),
            ):
                with pytest.raises(actors.TerminalError, match=r"^mallory is banned$") as info:
                    await attempt
                assert info.value.status_code == 403
    assert signup.executions == 1


async def test_call_while_the_first_run_is_running_waits_for_its_result(tmp_path: Path) -> None:
    signup = Signup()
    results: list[str] = []
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            first = await rt.send(Signup.run, "alice", key="w")
            await signup.waiting.wait()

            async def call(user: str) -> None:
                results.append(await rt.call(Signup.run, user, key="w"))

            async with anyio.create_task_group() as group:
                group.start_soon(call, "bob")
                group.start_soon(call, "carol")
                await rt.call(Signup.verify, "a@example.com", key="w")
            assert await first.result() == "alice <a@example.com>"
    assert results == ["alice <a@example.com>"] * 2
    assert signup.executions == 1


async def test_ctx_call_of_main_on_an_existing_id_returns_the_first_result(
    tmp_path: Path,
) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup, Caller]) as rt:
            await rt.call(Signup.verify, "a@example.com", key="called")
            assert await rt.call(Caller.signup, "alice") == "alice <a@example.com>"
            assert await rt.call(Caller.signup, "bob") == "alice <a@example.com>"
            handle = await rt.send(Signup.run, "carol", key="called")
            assert handle.status == "PreviouslyAccepted"
    assert signup.executions == 1


async def test_cancelled_run_stays_the_answer_of_its_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], suspend_after=1.0) as rt:
        handle = await rt.send(Signup.run, "alice", key="w")
        await trio.sleep(5)  # parked on its promise
        await rt.cancel(handle.invocation_id)
        with pytest.raises(actors.TerminalError, match="was cancelled") as info:
            await handle.result()
        assert info.value.status_code == 409
        again = await rt.send(Signup.run, "bob", key="w")
        assert (again.status, again.invocation_id) == ("PreviouslyAccepted", handle.invocation_id)
        with pytest.raises(actors.TerminalError, match="was cancelled"):
            await rt.call(Signup.run, "bob", key="w")
        # Its promise is still there to resolve, but nothing runs main again.
        await rt.call(Signup.verify, "a@example.com", key="w")
        with pytest.raises(actors.TerminalError, match="was cancelled"):
            await rt.workflow_output(Signup, "w")
    assert signup.effects == ["before"]


async def test_ctx_send_of_main_twice_is_previously_accepted(tmp_path: Path) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup, Caller]) as rt:
            assert await rt.call(Caller.send_twice) == [
                "Accepted",
                "PreviouslyAccepted",
                "same id",
            ]
            await rt.call(Signup.verify, "a@example.com", key="sent")
            assert await rt.attach_workflow(Signup, "sent") == "alice <a@example.com>"
    assert signup.executions == 1


class Recursive(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, n: int) -> int:
        if n == 0:
            return 0
        return await ctx.call(Recursive.run, n - 1, key=ctx.key) + 1  # its own id


async def test_main_calling_its_own_id_is_a_deadlock_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Recursive]) as rt:
        with pytest.raises(actors.DeadlockError):
            with anyio.fail_after(3600):
                await rt.call(Recursive.run, 1, key="self")


async def test_attach_and_output_of_a_running_then_finished_workflow(tmp_path: Path) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            handle = await rt.send(Signup.run, "alice", key="w")
            for lookup in (rt.output(handle.invocation_id), rt.workflow_output(Signup, "w")):
                with pytest.raises(actors.NotReadyError) as info:
                    await lookup
                assert info.value.status_code == 470
            await signup.waiting.wait()  # main is now waiting on its promise
            with pytest.raises(actors.NotReadyError):
                await rt.output(handle.invocation_id)
            with pytest.raises(actors.NotReadyError):
                await rt.workflow_output(Signup, "w")
            async with anyio.create_task_group() as group:
                attached: list[str] = []

                async def attach() -> None:
                    attached.append(await rt.attach(handle.invocation_id))
                    attached.append(await rt.attach_workflow(Signup, "w"))

                group.start_soon(attach)
                await rt.call(Signup.verify, "a@example.com", key="w")
            assert attached == ["alice <a@example.com>"] * 2
            assert await rt.output(handle.invocation_id) == "alice <a@example.com>"
            assert await rt.workflow_output(Signup, "w") == "alice <a@example.com>"


class Unregistered(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> int:
        return 0


async def test_unknown_workflow_ids_and_invocations_are_unknown(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [Signup()]) as rt:
            with pytest.raises(actors.UnknownHandlerError, match="no run of workflow"):
                await rt.attach_workflow(Signup, "nope")
            with pytest.raises(actors.UnknownHandlerError, match="no run of workflow"):
                await rt.workflow_output(Signup, "nope")
            with pytest.raises(actors.UnknownHandlerError, match="'inv_nope'"):
                await rt.attach("inv_nope")
            with pytest.raises(actors.UnknownHandlerError, match="'inv_nope'"):
                await rt.output("inv_nope")
            with pytest.raises(actors.UnknownHandlerError, match="not registered"):
                await rt.attach_workflow(Unregistered, "w")
            with pytest.raises(actors.UnknownHandlerError, match="not registered"):
                await rt.workflow_output(Unregistered, "w")
            # A shared handler on an id without a run is fine: it just finds nothing.
            assert await rt.call(Signup.get_stage, key="nope") is None
            with pytest.raises(actors.UnknownHandlerError, match="no run of workflow"):
                await rt.attach_workflow(Signup, "nope")


async def test_idempotency_key_on_main_is_a_type_error(tmp_path: Path) -> None:
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [signup]) as rt:
            with pytest.raises(TypeError, match="takes no idempotency_key"):
                await rt.send(Signup.run, "alice", key="w", idempotency_key="k")
            with pytest.raises(TypeError, match="takes no idempotency_key"):
                await rt.call(Signup.run, "alice", key="w", idempotency_key="k")
            with pytest.raises(actors.UnknownHandlerError):  # nothing was stored
                await rt.attach_workflow(Signup, "w")
            assert signup.executions == 0
            assert (await rt.send(Signup.run, "alice", key="w")).status == "Accepted"


async def test_run_once_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    signup = Signup()
    with anyio.fail_after(30):
        async with actors.open_runtime(path, [signup]) as rt:
            await rt.call(Signup.verify, "a@example.com", key="w")
            first = await rt.send(Signup.run, "alice", key="w")
            assert await first.result() == "alice <a@example.com>"
        async with actors.open_runtime(path, [signup]) as rt:
            again = await rt.send(Signup.run, "bob", key="w")
            assert (again.status, again.invocation_id) == (
                "PreviouslyAccepted",
                first.invocation_id,
            )
            assert await rt.call(Signup.run, "bob", key="w") == "alice <a@example.com>"
            assert await rt.attach_workflow(Signup, "w") == "alice <a@example.com>"
            assert await rt.workflow_output(Signup, "w") == "alice <a@example.com>"
            assert await rt.call(Signup.get_stage, key="w") == "verified"
            assert rt.statistics().in_flight == 0
    assert signup.executions == 1
    assert signup.effects == ["before", "after"]


# --- shared handlers of a workflow ---------------------------------------------------------


class Staged(actors.Workflow):
    """main makes n=1 durable, then sets n=2 and waits on a plain (non-durable) gate,
    so n=2 is not durable while it waits."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.gate = anyio.Event()

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> int:
        ctx.set("n", 1)
        await ctx.run("commit", _noop)  # runs once n=1 is durable
        ctx.set("n", 2)
        ctx.set("extra", True)
        self.entered.set()
        await self.gate.wait()
        ctx.set("n", 3)
        ctx.clear("extra")
        return 3

    @actors.shared
    async def n(self, ctx: actors.WorkflowSharedContext) -> int | None:
        return await ctx.get("n", int)

    @actors.shared
    async def keys(self, ctx: actors.WorkflowSharedContext) -> list[str]:
        return await ctx.state_keys()

    @actors.shared
    async def try_write(self, ctx: actors.WorkflowSharedContext) -> list[str]:
        untyped: Any = ctx
        refused: list[str] = []
        for name, args in (("set", ("n", 99)), ("clear", ("n",)), ("clear_all", ())):
            try:
                getattr(untyped, name)(*args)
            except AttributeError:
                refused.append(name)
        return refused

    @actors.shared
    async def bad_promise_name(self, ctx: actors.WorkflowSharedContext) -> str:
        untyped: Any = ctx
        try:
            untyped.promise("")
        except TypeError as exc:
            return str(exc)
        return "accepted"


async def _noop() -> None:
    pass


async def test_shared_handlers_read_only_durable_state_while_main_runs_and_after(
    tmp_path: Path,
) -> None:
    staged = Staged()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [staged]) as rt:
            assert await rt.call(Staged.n, key="s") is None  # before main started
            handle = await rt.send(Staged.run, key="s")
            await staged.entered.wait()
            # main holds the id and is blocked, yet shared handlers run; they see n=1
            # (durable), not n=2 or "extra" (set in memory only).
            assert await rt.call(Staged.n, key="s") == 1
            assert await rt.call(Staged.keys, key="s") == ["n"]
            sent = await rt.send(Staged.n, key="s")
            assert await sent.result() == 1
            staged.gate.set()
            assert await handle.result() == 3
            assert await rt.call(Staged.n, key="s") == 3
            assert await rt.call(Staged.keys, key="s") == ["n"]
            assert await rt.call(Staged.n, key="other") is None  # ids do not share state


async def test_shared_handler_of_a_workflow_has_no_writing_methods(tmp_path: Path) -> None:
    assert not hasattr(actors.WorkflowSharedContext, "set")
    assert not hasattr(actors.WorkflowSharedContext, "clear")
    assert not hasattr(actors.WorkflowSharedContext, "clear_all")
    assert hasattr(actors.WorkflowContext, "set")
    staged = Staged()
    staged.gate.set()
    with anyio.fail_after(30):
        async with actors.open_runtime(tmp_path / "db", [staged]) as rt:
            assert await rt.call(Staged.try_write, key="s") == ["set", "clear", "clear_all"]
            assert await rt.call(Staged.keys, key="s") == []
            assert await rt.call(Staged.run, key="s") == 3
            assert await rt.call(Staged.try_write, key="s") == ["set", "clear", "clear_all"]
            assert await rt.call(Staged.n, key="s") == 3
            message = await rt.call(Staged.bad_promise_name, key="s")
            assert message == "a promise needs a non-empty str name"
