"""Workflows: retention of finished runs (and of idempotency records), durable across a
restart, and workflow definitions that are refused."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


from workflow_actors import Signup

# --- retention -----------------------------------------------------------------------------

RETENTION = timedelta(hours=1)


async def test_finished_workflow_is_forgotten_after_retention(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], retention=RETENTION) as rt:
        await rt.call(Signup.verify, "a@example.com", key="w")
        first = await rt.send(Signup.run, "alice", key="w")
        assert await first.result() == "alice <a@example.com>"
        await trio.sleep(1800)  # half the retention: all still there
        assert await rt.attach_workflow(Signup, "w") == "alice <a@example.com>"
        assert await rt.call(Signup.get_stage, key="w") == "verified"
        assert await rt.call(Signup.peek, key="w") == "a@example.com"
        await trio.sleep(1801)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach_workflow(Signup, "w")
        with pytest.raises(actors.UnknownHandlerError):
            await rt.workflow_output(Signup, "w")
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(first.invocation_id)
        with pytest.raises(actors.UnknownHandlerError):
            await rt.output(first.invocation_id)
        assert await rt.call(Signup.get_stage, key="w") is None  # state gone
        assert await rt.call(Signup.peek, key="w") is None  # promise gone
        # A new run on the id starts fresh: accepted, and waits for a new promise value.
        second = await rt.send(Signup.run, "bob", key="w")
        assert second.status == "Accepted"
        assert second.invocation_id != first.invocation_id
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(actors.NotReadyError):
            await rt.workflow_output(Signup, "w")
        await rt.call(Signup.verify, "b@example.com", key="w")
        assert await second.result() == "bob <b@example.com>"
    assert signup.executions == 2


async def _expire_first_of(rt: actors.Runtime, first: str, others: list[str]) -> None:
    """Finish runs on ``first`` and ``others``; let only ``first``'s retention end."""
    for key in (first, *others):
        await rt.call(Signup.verify, f"{key}@example.com", key=key)
    await rt.call(Signup.run, "a", key=first)
    await trio.sleep(1800)
    for key in others:
        await rt.call(Signup.run, "b", key=key)
    await trio.sleep(1801)
    with pytest.raises(actors.UnknownHandlerError):
        await rt.attach_workflow(Signup, first)


async def test_retention_of_one_id_leaves_other_ids_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Signup()], retention=RETENTION) as rt:
        await _expire_first_of(rt, "w", ["w2", "v"])
        for key in ("w2", "v"):
            assert await rt.attach_workflow(Signup, key) == f"b <{key}@example.com>"
            assert await rt.call(Signup.get_stage, key=key) == "verified"
            assert await rt.call(Signup.peek, key=key) == f"{key}@example.com"


async def test_retention_of_one_id_leaves_an_id_extending_it_with_nul_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Signup()], retention=RETENTION) as rt:
        await _expire_first_of(rt, "w", ["w\x00"])
        assert await rt.attach_workflow(Signup, "w\x00") == "b <w\x00@example.com>"
        assert await rt.call(Signup.get_stage, key="w\x00") == "verified"
        assert await rt.call(Signup.peek, key="w\x00") == "w\x00@example.com"


async def test_running_workflow_keeps_its_state_past_the_retention(
    autojump_clock: trio.testing.MockClock,
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], retention=RETENTION) as rt:
        main = await rt.send(Signup.run, "alice", key="w")
        await signup.waiting.wait()
        query = await rt.send(Signup.get_stage, key="w")  # a recorded shared invocation
        assert await query.result() == "waiting"
        await trio.sleep(3 * 3600)  # the query expires; the running workflow does not
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(query.invocation_id)
        assert await rt.call(Signup.get_stage, key="w") == "waiting"
        with pytest.raises(actors.NotReadyError):
            await rt.workflow_output(Signup, "w")
        again = await rt.send(Signup.run, "bob", key="w")
        assert (again.status, again.invocation_id) == ("PreviouslyAccepted", main.invocation_id)
        await rt.call(Signup.verify, "a@example.com", key="w")
        assert await main.result() == "alice <a@example.com>"
    assert signup.effects == ["before", "after"]


async def test_retention_expiry_is_durable_across_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    signup = Signup()
    async with open_test_runtime([signup], path=tmp_path, retention=RETENTION) as rt:
        await rt.call(Signup.verify, "a@example.com", key="w")
        await rt.call(Signup.run, "alice", key="w")
    await trio.sleep(7200)  # the retention ends while no runtime is open
    async with open_test_runtime([signup], path=tmp_path, retention=RETENTION) as rt:
        await trio.sleep(1)  # the overdue expiry fires at once
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach_workflow(Signup, "w")
        assert await rt.call(Signup.peek, key="w") is None
        assert rt.statistics().timers == 0
        assert (await rt.send(Signup.run, "bob", key="w")).status == "Accepted"


class Ledger(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, n: int) -> int:
        total = ((await ctx.get("t", int)) or 0) + n
        ctx.set("t", total)
        return total


async def test_idempotency_record_expires_after_retention(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_runtime([Ledger], retention=RETENTION) as rt:
        first = await rt.send(Ledger.add, 5, key="l", idempotency_key="pay-1")
        assert await first.result() == 5
        await trio.sleep(1800)
        again = await rt.send(Ledger.add, 5, key="l", idempotency_key="pay-1")
        assert (again.status, again.invocation_id) == ("PreviouslyAccepted", first.invocation_id)
        await trio.sleep(1801)
        fresh = await rt.send(Ledger.add, 5, key="l", idempotency_key="pay-1")
        assert fresh.status == "Accepted"
        assert fresh.invocation_id != first.invocation_id
        assert await fresh.result() == 10  # ran again: the key was forgotten
        with pytest.raises(actors.UnknownHandlerError):
            await rt.attach(first.invocation_id)
        # A different request under the expired key is a new request, not a 409.
        await trio.sleep(3601)
        assert await rt.call(Ledger.add, 1, key="l", idempotency_key="pay-1") == 11


# --- bad definitions (no @main / two @main are in test_definitions.py) ---------------------


def test_exclusive_handler_on_a_workflow_is_rejected() -> None:
    with pytest.raises(
        TypeError, match=r"^BadFlow\.write is declared @exclusive, but a Workflow has one @main"
    ):

        class BadFlow(actors.Workflow):
            @actors.main
            async def run(self, ctx: actors.WorkflowContext) -> int:
                return 0

            @actors.exclusive
            async def write(self, ctx: actors.WorkflowContext) -> int:
                return 0
