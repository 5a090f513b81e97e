"""Parked invocations cost (nearly) nothing in memory (``actors/_parked.py``), and every
wake-up still finds them: promise resolutions, attach, kill, crashes.

The memory test measures Python allocations (``tracemalloc``), not RSS, so it is exact
and fails CI on a regression: the parked index is ~85 bytes per parked workflow (its
compact id and the dict's slot), against ~600 when a parked invocation kept a
``Completion``, its id and row objects and a promise-waiter entry.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

import actors
from actors._invocation import Completion
from actors._key_order import accepted_row, admitted_row
from actors._parked import ParkedInvocations, id_key, inbox_row, revived_row
from actors._util import derived_invocation_id, new_invocation_id
from actors.storage import Store, Table, Target, WriteBatch
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

#: Python bytes per parked workflow, measured between two counts of parked ones.
BYTES_PER_PARKED_BOUND = 120
#: A wait gives up its coroutine when this has passed: before the next scheduling round.
SUSPEND_AT_ONCE = 1e-9


class Waiter(actors.Workflow):
    """Parks on a promise; counts the step after it, to prove it ran once."""

    def __init__(self) -> None:
        self.after: list[int] = []

    async def _after(self, i: int) -> int:
        self.after.append(i)
        return i

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, i: int) -> str:
        value = await ctx.promise("p", str).value()
        await ctx.run("after", self._after, i)
        return value

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
        await ctx.promise("p", str).resolve(value)

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> str:
        return await ctx.promise("p", str).value()  # a second waiter on the same promise


async def parked(rt: actors.Runtime, count: int) -> None:
    """Until ``count`` invocations are parked: with ``SUSPEND_AT_ONCE`` each parks as
    soon as it blocks, so this takes only scheduling rounds (no time passes)."""
    with anyio.fail_after(60):
        while rt.statistics().parked < count:
            await anyio.lowlevel.checkpoint()


# --- the index alone, without an event loop --------------------------------------------


def test_ParkedInvocations_id_keys_are_distinct_and_compact() -> None:
    minted = [new_invocation_id() for _ in range(2000)]
    derived = [derived_invocation_id(minted[0], i) for i in range(2000)]
    other = ["inv_ABC", "inv_abc", "inv_0abc", "inv_", "not-an-id", "inv_Abc"]
    ids = [*minted, *derived, *other]
    keys = [id_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    assert all(isinstance(id_key(i), int) for i in (*minted, *derived))
    assert all(isinstance(id_key(i), str) for i in ("inv_ABC", "inv_0abc", "inv_", "inv_Abc"))


def test_ParkedInvocations_rebuild_the_inbox_row_of_a_service_and_keep_none_for_a_key() -> None:
    service, keyed = Target("Svc", "run"), Target("Wf", "run", "w-1")
    index = ParkedInvocations()
    rows = {
        "inv_a1": (accepted_row(service, 41), service),
        "inv_a2": (b"\x01an old row shape", service),
        "inv_a3": (admitted_row(keyed, 7), keyed),
        "inv_a4": (accepted_row(keyed, 8), keyed),
    }
    for invocation_id, (row, target) in rows.items():
        index.park(invocation_id, row, target, Completion())
    assert len(index) == 4
    assert "inv_a1" in index
    assert "inv_a9" not in index
    for invocation_id, (row, target) in rows.items():
        unparked = index.unpark(invocation_id)
        assert unparked is not None
        value, done = unparked
        if target.key is None:
            assert value is not None
            assert inbox_row(value, target) == row
        else:
            assert value is None  # found again under its key (``revived_row``)
        assert done is None  # nobody waited on it: not kept
    assert len(index) == 0
    assert index.unpark("inv_a1") is None


def test_ParkedInvocations_keep_a_completion_with_waiters_and_make_one_on_demand() -> None:
    target = Target("Wf", "run", "w-1")
    index = ParkedInvocations()
    held, alone = Completion(), Completion()
    held.waiters = 1  # someone registered to be answered by it
    index.park("inv_held", accepted_row(target, 1), target, held)
    index.park("inv_free", accepted_row(target, 2), target, alone)
    assert index.completion("inv_free") is not alone  # nobody waited on it: dropped
    assert index.completion("inv_held") is held
    made = index.completion("inv_free")  # made on demand (above), then kept
    assert made is not None
    assert index.completion("inv_free") is made
    assert index.completion("inv_nope") is None
    assert sorted(map(id, index.completions())) == sorted([id(held), id(made)])
    unparked = index.unpark("inv_free")
    assert unparked is not None
    assert unparked[1] is made


def test_ParkedInvocations_know_which_promises_each_waits_on() -> None:
    target = Target("Wf", "run", "w-1")
    index = ParkedInvocations()
    p, q, r = b"promise p", b"promise q", b"promise r"
    index.park("inv_a1", accepted_row(target, 1), target, Completion(), [p])
    index.park("inv_a2", accepted_row(target, 2), target, Completion(), [q, r])
    index.park("inv_a3", accepted_row(target, 3), target, Completion())
    index.park("inv_a4", b"\x01an old row shape", target, Completion(), [q])
    waiting = {
        i: [row for row in (p, q, r) if index.waits_on(i, row)]
        for i in ("inv_a1", "inv_a2", "inv_a3", "inv_a4", "inv_a5")
    }
    assert waiting == {"inv_a1": [p], "inv_a2": [q, r], "inv_a3": [], "inv_a4": [q], "inv_a5": []}
    for invocation_id in ("inv_a1", "inv_a2", "inv_a3", "inv_a4"):
        assert index.unpark(invocation_id) is not None
        assert not index.waits_on(invocation_id, q)


async def test_revived_row_finds_a_keyed_invocations_row_or_says_the_store_is_damaged(
    tmp_path: Path,
) -> None:
    target = Target("Wf", "run", "w-1")
    with Store.open(tmp_path, durability="process", commit_mode="inline") as store:
        batch = WriteBatch()
        batch.put(Table.INBOX, accepted_row(target, 3), b"inv_other")
        batch.put(Table.INBOX, admitted_row(target, 5), b"inv_mine")
        await store.commit(batch)
        assert revived_row(store, None, target, "inv_mine") == admitted_row(target, 5)
        assert revived_row(store, 7, target, "inv_mine") == accepted_row(target, 3)
        with pytest.raises(
            actors.PersistenceError,
            match=r"^store .* is damaged: the parked invocation inv_gone has no inbox row ",
        ):
            revived_row(store, None, target, "inv_gone")


async def test_Completion_counts_its_waiters_while_they_wait_and_after_they_give_up() -> None:
    done = Completion()
    seen: list[int] = []
    async with anyio.create_task_group() as group:
        group.start_soon(done.wait)
        group.start_soon(done.wait_answer)
        await anyio.wait_all_tasks_blocked()
        seen.append(done.waiters)
        group.cancel_scope.cancel()  # both give up
    seen.append(done.waiters)
    async with anyio.create_task_group() as group:
        group.start_soon(done.wait)
        await anyio.wait_all_tasks_blocked()
        seen.append(done.waiters)
        done.set()
    seen.append(done.waiters)
    assert seen == [2, 0, 1, 0]


# --- a runtime --------------------------------------------------------------------------


async def test_parked_workflows_cost_under_the_bound_in_python_memory() -> None:
    waiter = Waiter()
    first, more = 200, 2000
    async with open_test_runtime([waiter], suspend_after=SUSPEND_AT_ONCE) as rt:
        handles = [await rt.send(Waiter.run, i, key=f"w-{i}") for i in range(first)]
        await parked(rt, first)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            handles += [
                await rt.send(Waiter.run, i, key=f"w-{i}") for i in range(first, first + more)
            ]
            await parked(rt, first + more)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        # The handles are the test's own: not what the runtime holds.
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        handle_bytes = sum(map(_size_of_handle, handles[first:]))
        per_parked = (grown - handle_bytes) / more
        assert rt.statistics().in_flight == 0
        assert per_parked < BYTES_PER_PARKED_BOUND, f"{per_parked:.0f} bytes per parked workflow"
        for i, handle in enumerate(handles):
            await rt.call(Waiter.approve, f"v{i}", key=f"w-{i}")
            assert await handle.result() == f"v{i}"
        assert rt.statistics().parked == 0
    assert sorted(waiter.after) == list(range(first + more))


def _size_of_handle(handle: actors.InvocationHandle) -> int:
    return sys.getsizeof(handle) + sys.getsizeof(handle.invocation_id)


async def test_a_resolution_wakes_every_parked_waiter_of_the_promise_once() -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter], suspend_after=SUSPEND_AT_ONCE) as rt:
        main = await rt.send(Waiter.run, 1, key="w")
        peeks = [await rt.send(Waiter.peek, key="w") for _ in range(3)]
        await parked(rt, 4)
        await rt.call(Waiter.approve, "yes", key="w")
        assert await main.result() == "yes"
        assert [await peek.result() for peek in peeks] == ["yes"] * 3
        assert rt.statistics().parked == 0
    assert waiter.after == [1]


async def test_attach_to_a_parked_workflow_waits_for_its_result() -> None:
    async with open_test_runtime([Waiter()], suspend_after=SUSPEND_AT_ONCE) as rt:
        handle = await rt.send(Waiter.run, 1, key="w")
        await parked(rt, 1)
        results: list[str] = []
        async with anyio.create_task_group() as group:

            async def attach() -> None:
                results.append(await rt.attach(handle.invocation_id))

            group.start_soon(attach)
            group.start_soon(attach)
            await anyio.lowlevel.checkpoint()
            with pytest.raises(actors.NotReadyError):
                await rt.output(handle.invocation_id)
            await rt.call(Waiter.approve, "yes", key="w")
        assert results == ["yes", "yes"]
        assert await rt.attach_workflow(Waiter, "w") == "yes"


async def test_kill_of_a_parked_workflow_ends_it_and_its_attached_callers() -> None:
    async with open_test_runtime([Waiter()], suspend_after=SUSPEND_AT_ONCE) as rt:
        handle = await rt.send(Waiter.run, 1, key="w")
        await parked(rt, 1)
        errors: list[int] = []
        async with anyio.create_task_group() as group:

            async def attach() -> None:
                try:
                    await rt.attach(handle.invocation_id)
                except actors.TerminalError as exc:
                    errors.append(exc.status_code)

            group.start_soon(attach)
            await anyio.lowlevel.checkpoint()
            await rt.kill(handle.invocation_id)
        assert errors == [409]
        assert rt.statistics().parked == 0


async def test_parked_workflows_resolved_after_a_crash_complete_exactly_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    waiter = Waiter()
    count = 20
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [waiter], path=tmp_path, suspend_after=1.0, crash=CrashPlan(after_commits=count + 3)
        ) as rt:
            handles = [await rt.send(Waiter.run, i, key=f"w-{i}") for i in range(count)]
            await trio.sleep(60)  # virtual time: every one suspends and parks
            assert rt.statistics().parked == count
            for i in range(count):  # the crash comes after a few of these landed
                await rt.call(Waiter.approve, f"v{i}", key=f"w-{i}")
            await trio.sleep(3600)
    done_before = list(waiter.after)
    assert len(done_before) < count
    async with open_test_runtime([waiter], path=tmp_path, suspend_after=1.0) as rt:
        await trio.sleep(60)  # recovered: rebuilt, each unresolved one parks at once
        assert 0 < rt.statistics().parked <= count - len(done_before)
        codes: list[int] = []
        for i in range(count):
            try:
                await rt.call(Waiter.approve, f"v{i}", key=f"w-{i}")
            except actors.TerminalError as exc:  # resolved in the first life
                codes.append(exc.status_code)
        assert set(codes) <= {409}
        for i, handle in enumerate(handles):
            assert await rt.attach(handle.invocation_id) == f"v{i}"
    # Each workflow completed once with its value (above). A step's body runs again only
    # if the crash came before its result was durable: only a first-life one may repeat.
    assert sorted(set(waiter.after)) == list(range(count))
    repeated = [i for i in set(waiter.after) if waiter.after.count(i) > 1]
    assert all(waiter.after.count(i) == 2 and i in done_before for i in repeated)


class Promises(actors.Workflow):
    """Waits on the promises "p", "q" and "r" in turn; counts how often its body runs
    (each revive replays it from the start)."""

    def __init__(self) -> None:
        self.starts = 0

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        self.starts += 1
        values = [await ctx.promise(name, str).value() for name in ("p", "q", "r")]
        return "".join(values)

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, name: str) -> None:
        await ctx.promise(name, str).resolve(name.upper())

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext, name: str) -> str:
        return await ctx.promise(name, str).value()


async def test_a_parked_workflow_keeps_its_completion_exactly_while_someone_waits() -> None:
    async with open_test_runtime([Promises()], suspend_after=SUSPEND_AT_ONCE) as rt:
        index = rt._k.parked
        handle = await rt.send(Promises.run, key="w")
        await parked(rt, 1)
        results: list[str] = []

        async def attach() -> None:
            results.append(await rt.attach(handle.invocation_id))

        async with anyio.create_task_group() as group:
            gives_up, stays = anyio.CancelScope(), anyio.CancelScope()

            async def attach_in(scope: anyio.CancelScope) -> None:
                with scope:
                    await attach()

            group.start_soon(attach_in, gives_up)
            group.start_soon(attach_in, stays)
            await anyio.wait_all_tasks_blocked()
            gives_up.cancel()
            await anyio.wait_all_tasks_blocked()
            # Revived with its completion, it parks again on "q": one attacher still
            # waits on that completion, so the index keeps it.
            await rt.call(Promises.resolve, "p", key="w")
            await parked(rt, 1)
            assert [done.waiters for done in index.completions()] == [1]
            stays.cancel()
            await anyio.wait_all_tasks_blocked()
            # Nobody waits any more: parked again on "r", it keeps no completion.
            await rt.call(Promises.resolve, "q", key="w")
            await parked(rt, 1)
            assert list(index.completions()) == []
            group.start_soon(attach)
            await anyio.wait_all_tasks_blocked()
            await rt.call(Promises.resolve, "r", key="w")
        assert results == ["PQR"]
        assert await handle.result() == "PQR"


async def test_a_resolution_revives_only_the_parked_invocations_waiting_on_it() -> None:
    workflow = Promises()
    async with open_test_runtime([workflow], suspend_after=SUSPEND_AT_ONCE) as rt:
        main = await rt.send(Promises.run, key="w")
        on_q = await rt.send(Promises.peek, "q", key="w")  # same workflow id, other promise
        await parked(rt, 2)
        await rt.call(Promises.resolve, "q", key="w")
        assert await on_q.result() == "Q"
        assert workflow.starts == 1  # the main, parked on "p", was not revived
        assert rt.statistics().parked == 1
        await rt.call(Promises.resolve, "p", key="w")
        await parked(rt, 1)  # revived once, on to "r": "q" is resolved already
        assert workflow.starts == 2
        await rt.call(Promises.resolve, "r", key="w")
        assert await main.result() == "PQR"
