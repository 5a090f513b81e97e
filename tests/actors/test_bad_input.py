"""Bad input loses nothing: unknown actors and handlers, wrong keys, undecodable input
and failing handlers each give a clear error, and stored state stays as it was."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import actors
from actors.testing import LoopClock

if TYPE_CHECKING:
    from pathlib import Path


@dataclasses.dataclass
class Person:
    name: str
    age: int


class Counter(actors.VirtualObject):
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.broken = True

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        self.ran.append("add")
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.exclusive
    async def set_person(self, ctx: actors.ObjectContext, person: Person) -> str:
        self.ran.append("set_person")
        ctx.set("person", person)
        return person.name

    @actors.exclusive
    async def bump(self, ctx: actors.ObjectContext) -> int:
        self.ran.append("bump")
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + 1)
        return n + 1

    @actors.exclusive(retry=actors.RetryPolicy(initial_interval=0.001, max_attempts=3))
    async def fail_with_value_error(self, ctx: actors.ObjectContext, delta: int) -> int:
        self.ran.append("fail")
        ctx.set("n", delta)
        ctx.set("extra", delta)
        if self.broken:
            raise ValueError(f"boom {delta}")
        return delta

    @actors.exclusive
    async def fail_terminal(self, ctx: actors.ObjectContext) -> int:
        raise actors.TerminalError("nope", 418)

    @actors.shared
    async def snapshot(self, ctx: actors.ObjectSharedContext) -> dict[str, str]:
        """Every state entry of the key, as JSON text."""
        return {
            name: json.dumps(await ctx.get(name), sort_keys=True) for name in await ctx.state_keys()
        }


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"

    @actors.handler
    async def relay_terminal(self, ctx: actors.Context, key: str) -> int:
        return await ctx.call(Counter.fail_terminal, key=key)


class Chain(actors.VirtualObject):
    @actors.exclusive
    async def start(self, ctx: actors.ObjectContext, key: str) -> int:
        return await ctx.call(Greeter.relay_terminal, key)


class Unregistered(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        return delta  # pragma: no cover


class CounterImpostor(actors.VirtualObject, name="Counter"):
    """Claims the registered actor's name, with a handler the registered class lacks."""

    @actors.exclusive
    async def explode(self, ctx: actors.ObjectContext) -> int:
        return 0  # pragma: no cover


KEYS = ["alice", "bob"]


async def seed(rt: actors.Runtime) -> dict[str, dict[str, str]]:
    await rt.call(Counter.add, 7, key="alice")
    await rt.call(Counter.set_person, Person("ann", 30), key="alice")
    await rt.call(Counter.add, 1, key="bob")
    return await snapshot_all(rt)


async def snapshot_all(rt: actors.Runtime) -> dict[str, dict[str, str]]:
    return {key: await rt.call(Counter.snapshot, key=key) for key in KEYS}


async def assert_rejected_without_change(
    tmp_path: Path,
    error: type[Exception],
    message: str,
    target: actors.Handler[Any, Any],
    *args: object,
    key: str | None = None,
) -> None:
    """``rt.call`` and ``rt.send`` both reject the input with ``error``; stored state is
    unchanged, also after a restart, and no handler ran or resumes."""
    counter = Counter()
    path = tmp_path / "db"
    async with actors.open_runtime(path, [counter, Greeter]) as rt:
        before = await seed(rt)
        ran_before = list(counter.ran)
        with pytest.raises(error, match=message):
            await rt.call(target, *args, key=key)
        with pytest.raises(error, match=message):
            await rt.send(target, *args, key=key)
        assert await snapshot_all(rt) == before
        assert rt.statistics().in_flight == 0
    async with actors.open_runtime(path, [counter, Greeter]) as rt:
        assert await snapshot_all(rt) == before
    assert counter.ran == ran_before


async def test_unknown_actor(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        actors.UnknownHandlerError,
        r"^actor 'Unregistered' is not registered with this runtime$",
        Unregistered.add,
        1,
        key="alice",
    )


async def test_unknown_handler_of_a_class_claiming_a_registered_name(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        actors.UnknownHandlerError,
        r"'Counter'",
        CounterImpostor.explode,
        key="alice",
    )


def test_UnknownHandlerError_is_a_LookupError() -> None:
    assert issubclass(actors.UnknownHandlerError, LookupError)
    assert actors.UnknownHandlerError.status_code == 404


async def test_target_that_is_not_a_handler(tmp_path: Path) -> None:
    async def not_a_handler() -> int:
        return 0  # pragma: no cover

    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^call target must be a handler such as Counter.add, not <function ",
        not_a_handler,  # type: ignore[arg-type]
        key="alice",
    )


async def test_key_given_to_a_service(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^Greeter is a service: its handlers take no key \(got key='alice'\)$",
        Greeter.greet,
        "ann",
        key="alice",
    )


async def test_missing_key_for_an_object(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^Counter is a keyed object: Counter.add needs key=$",
        Counter.add,
        1,
    )


async def test_key_that_is_not_a_str(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^key must be a str, not int$",
        Counter.add,
        1,
        key=5,  # type: ignore[arg-type]
    )


async def test_missing_input(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^Counter.add takes an input of type <class 'int'>; none was given$",
        Counter.add,
        key="alice",
    )


async def test_input_for_a_handler_without_input(tmp_path: Path) -> None:
    await assert_rejected_without_change(
        tmp_path,
        TypeError,
        r"^Counter.bump takes no input, but one was given$",
        Counter.bump,
        1,
        key="alice",
    )


@pytest.mark.parametrize("bad", ["5", True, 5.0, None, [5]])
async def test_input_of_the_wrong_primitive_type(tmp_path: Path, bad: object) -> None:
    await assert_rejected_without_change(
        tmp_path,
        actors.SerializationError,
        r"^input of Counter.add does not convert to int: .* @ \$$",
        Counter.add,
        bad,
        key="alice",
    )


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (Person("bea", "31"), r"\$\.age"),  # type: ignore[arg-type]
        ({"name": "bea", "age": "31"}, r"\$\.age"),
        ({"name": 5, "age": 31}, r"\$\.name"),
        ({"name": "bea"}, r"\$\.age"),
    ],
)
async def test_input_with_a_mistyped_field(tmp_path: Path, bad: object, field: str) -> None:
    await assert_rejected_without_change(
        tmp_path,
        actors.SerializationError,
        rf"^input of Counter.set_person does not convert to Person: .*{field}",
        Counter.set_person,
        bad,
        key="alice",
    )


def test_SerializationError_has_status_400() -> None:
    assert actors.SerializationError.status_code == 400
    assert issubclass(actors.SerializationError, ValueError)


async def test_handler_raising_ValueError(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # A non-terminal exception is retried from the journal; when the attempts run out
    # the invocation is paused (visible, resumable), its unflushed writes dropped.
    counter = Counter()
    async with actors.open_runtime(
        tmp_path / "db", [counter], commit_mode="inline", clock=LoopClock()
    ) as rt:
        before = await seed(rt)
        h = await rt.send(Counter.fail_with_value_error, 98, key="alice")
        await trio.sleep(3600)  # mock time, past every backoff of its retry policy
        assert rt.statistics().paused == 1
        assert counter.ran.count("fail") == 3
        assert await snapshot_all(rt) == before
        counter.broken = False
        await rt.resume(h.invocation_id)
        assert await h.result() == 98
        assert await rt.attach(h.invocation_id) == 98
        # The key is usable again.
        assert (await rt.call(Counter.snapshot, key="alice"))["n"] == "98"
    assert counter.ran.count("fail") == 4


async def test_handler_raising_TerminalError(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Counter]) as rt:
        before = await seed(rt)
        with pytest.raises(actors.TerminalError, match=r"^nope$") as info:
            await rt.call(Counter.fail_terminal, key="alice")
        assert info.value.status_code == 418
        assert info.value.message == "nope"
        assert not isinstance(info.value, actors.DeadlockError)
        assert await snapshot_all(rt) == before
        assert await rt.call(Counter.add, 1, key="alice") == 8


async def test_TerminalError_reaches_the_caller_through_a_call_chain(tmp_path: Path) -> None:
    # Chain/x -> Greeter.relay_terminal (service) -> Counter/alice.fail_terminal
    async with actors.open_runtime(tmp_path / "db", [Counter, Greeter, Chain]) as rt:
        before = await seed(rt)
        with pytest.raises(actors.TerminalError, match=r"^nope$") as info:
            await rt.call(Chain.start, "alice", key="x")
        assert info.value.status_code == 418
        h = await rt.send(Greeter.relay_terminal, "alice")
        with pytest.raises(actors.TerminalError, match=r"^nope$") as info:
            await h.result()
        assert info.value.status_code == 418
        assert await snapshot_all(rt) == before


def test_TerminalError_defaults() -> None:
    error = actors.TerminalError("bad")
    assert error.status_code == 500
    assert error.message == "bad"
    assert isinstance(error, actors.ActorsError)
    deadlock = actors.DeadlockError("cycle")
    assert isinstance(deadlock, actors.TerminalError)
    assert deadlock.status_code == 409


async def test_a_stored_record_whose_key_was_lost_is_still_attachable(tmp_path: Path) -> None:
    """A damaged record that still decodes (LMDB keeps no checksums): a keyed object's
    invocation whose key reads back as null. Finding its handler needs no key, so attach
    answers from the record instead of raising a raw ``TypeError`` ("needs key=")."""
    import attrs

    from actors.storage import InvocationRecord, Table, WriteBatch, dumps, loads

    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        handle = await rt.send(Counter.add, 5, key="k")
        assert await handle.result() == 5
        row = handle.invocation_id.encode()
        stored = rt._store.get(Table.INVOCATIONS, row)
        assert stored is not None
        record = loads(InvocationRecord, stored)
        damaged = attrs.evolve(record, target=attrs.evolve(record.target, key=None))
        batch = WriteBatch()
        batch.put(Table.INVOCATIONS, row, dumps(damaged))
        await rt._store.commit(batch)
    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        assert await rt.attach(handle.invocation_id) == 5


async def test_a_stored_record_that_lost_its_outcome_is_refused_as_damage(tmp_path: Path) -> None:
    """A damaged record that still decodes: a finished invocation whose outcome reads back
    as null, with no inbox row (so nothing resumes it). Attach names the damaged store
    (``PersistenceError``) instead of saying the runtime is closed, which it is not."""
    import attrs

    from actors.storage import InvocationRecord, Table, WriteBatch, dumps, loads

    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        handle = await rt.send(Counter.add, 5, key="k")
        assert await handle.result() == 5
        row = handle.invocation_id.encode()
        stored = rt._store.get(Table.INVOCATIONS, row)
        assert stored is not None
        damaged = attrs.evolve(loads(InvocationRecord, stored), outcome=None)
        batch = WriteBatch()
        batch.put(Table.INVOCATIONS, row, dumps(damaged))
        await rt._store.commit(batch)
    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        with pytest.raises(actors.PersistenceError, match="damaged") as caught:
            await rt.attach(handle.invocation_id)
        assert str(tmp_path / "db") in str(caught.value)
        with pytest.raises(actors.PersistenceError, match="damaged"):
            await rt.output(handle.invocation_id)
        assert await rt.call(Counter.add, 1, key="k") == 6  # the rest still serves


async def test_a_stored_output_that_is_no_longer_json_is_refused_as_damage(tmp_path: Path) -> None:
    """A finished invocation whose stored output bytes were changed (a bit flip in a data
    page): attach and output name the damaged store (``PersistenceError``), where before
    they answered a 400 ``SerializationError`` as if the caller had sent bad input."""
    import attrs

    from actors.storage import InvocationRecord, Success, Table, WriteBatch, dumps, loads

    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        handle = await rt.send(Counter.add, 5, key="k")
        assert await handle.result() == 5
        row = handle.invocation_id.encode()
        stored = rt._store.get(Table.INVOCATIONS, row)
        assert stored is not None
        damaged = attrs.evolve(loads(InvocationRecord, stored), outcome=Success(b"5x"))
        batch = WriteBatch()
        batch.put(Table.INVOCATIONS, row, dumps(damaged))
        await rt._store.commit(batch)
    async with actors.open_runtime(tmp_path / "db", [Counter()], commit_mode="inline") as rt:
        for lookup in (rt.attach, rt.output):
            with pytest.raises(actors.PersistenceError, match="damaged") as caught:
                await lookup(handle.invocation_id)
            assert str(tmp_path / "db") in str(caught.value)
            assert "output of Counter.add" in str(caught.value)
