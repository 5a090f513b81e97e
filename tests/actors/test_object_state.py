"""Per-key state: durable with the exclusive invocation's completion, typed reads,
clear / clear_all / state_keys (own uncommitted writes included)."""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

import anyio
import attrs
import pytest

import actors
from actors.storage import Table, WriteBatch

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclasses.dataclass
class Person:
    name: str
    age: int


@attrs.frozen
class Tagged:
    number: int
    tags: list[str]
    color: Color


AWARE = datetime(2024, 2, 29, 13, 45, 7, 123000, tzinfo=UTC)
OFFSET = datetime(2024, 2, 29, 13, 45, 7, tzinfo=timezone(timedelta(hours=5, minutes=30)))
NAIVE = datetime(2024, 2, 29, 13, 45, 7)

#: name -> (value written, type read back with)
TYPED_VALUES: dict[str, tuple[object, object]] = {
    "dataclass": (Person("ann", 42), Person),
    "attrs": (Tagged(7, ["a", "b"], Color.GREEN), Tagged),
    "list": ([1, 2, 3], list[int]),
    "list_of_dataclasses": ([Person("a", 1), Person("b", 2)], list[Person]),
    "dict": ({"x": 1, "y": 2}, dict[str, int]),
    "datetime_utc": (AWARE, datetime),
    "datetime_offset": (OFFSET, datetime),
    "datetime_naive": (NAIVE, datetime),
    "enum": (Color.RED, Color),
    "str": ("text", str),
    "float": (1.5, float),
    "bool": (True, bool),
    "optional_none": (None, int | None),
}


class Bag(actors.VirtualObject):
    """Writes and reads state; what reads return is recorded on the instance."""

    def __init__(self) -> None:
        self.read_back: dict[str, object] = {}
        self.keys_seen: list[list[str]] = []

    @actors.exclusive
    async def put(self, ctx: actors.ObjectContext, value: int) -> int:
        ctx.set("n", value)
        return value

    @actors.shared
    async def get(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)

    @actors.shared
    async def keys(self, ctx: actors.ObjectSharedContext) -> list[str]:
        return await ctx.state_keys()

    @actors.exclusive
    async def write_typed(self, ctx: actors.ObjectContext) -> int:
        for name, (value, _) in TYPED_VALUES.items():
            ctx.set(name, value)
        return len(TYPED_VALUES)

    @actors.exclusive
    async def read_typed_exclusive(self, ctx: actors.ObjectContext) -> int:
        for name, (_, tp) in TYPED_VALUES.items():
            self.read_back[name] = await ctx.get(name, tp)  # type: ignore[call-overload]
        return len(self.read_back)

    @actors.shared
    async def read_typed_shared(self, ctx: actors.ObjectSharedContext) -> int:
        for name, (_, tp) in TYPED_VALUES.items():
            self.read_back[name] = await ctx.get(name, tp)  # type: ignore[call-overload]
        return len(self.read_back)

    @actors.exclusive
    async def write_and_read_own(self, ctx: actors.ObjectContext) -> list[int | None]:
        seen: list[int | None] = []
        ctx.set("a", 1)
        seen.append(await ctx.get("a", int))
        ctx.set("a", 2)
        seen.append(await ctx.get("a", int))
        ctx.clear("a")
        seen.append(await ctx.get("a", int))
        return seen

    @actors.exclusive
    async def shuffle_keys(self, ctx: actors.ObjectContext) -> list[str]:
        # Starts with committed keys {"a", "b"}; every step is recorded.
        self.keys_seen.append(await ctx.state_keys())
        ctx.set("c", 3)
        self.keys_seen.append(await ctx.state_keys())
        ctx.clear("a")
        self.keys_seen.append(await ctx.state_keys())
        ctx.clear_all()
        self.keys_seen.append(await ctx.state_keys())
        ctx.set("z", 26)
        self.keys_seen.append(await ctx.state_keys())
        return await ctx.state_keys()

    @actors.exclusive
    async def set_ab(self, ctx: actors.ObjectContext) -> list[str]:
        ctx.set("a", 1)
        ctx.set("b", 2)
        return await ctx.state_keys()

    @actors.exclusive
    async def clear_one(self, ctx: actors.ObjectContext, name: str) -> list[str]:
        ctx.clear(name)
        return await ctx.state_keys()

    @actors.exclusive
    async def clear_everything(self, ctx: actors.ObjectContext) -> list[str]:
        ctx.clear_all()
        return await ctx.state_keys()

    @actors.exclusive
    async def returns_none(self, ctx: actors.ObjectContext, value: int) -> None:
        ctx.set("n", value)


@pytest.mark.parametrize("durability", ["fsync", "process"])
async def test_state_is_durable_when_call_returns(
    tmp_path: Path, durability: Literal["fsync", "process"]
) -> None:
    path = tmp_path / "db"
    async with actors.open_runtime(path, [Bag], durability=durability) as rt:
        assert await rt.call(Bag.put, 41, key="alice") == 41
        assert await rt.call(Bag.put, 42, key="bob") == 42
    async with actors.open_runtime(path, [Bag], durability=durability) as rt:
        assert await rt.call(Bag.get, key="alice") == 41
        assert await rt.call(Bag.get, key="bob") == 42
        assert await rt.call(Bag.get, key="carol") is None


async def test_state_is_durable_in_inline_commit_mode(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with actors.open_runtime(path, [Bag], commit_mode="inline") as rt:
        assert await rt.call(Bag.put, 3, key="alice") == 3
    async with actors.open_runtime(path, [Bag]) as rt:
        assert await rt.call(Bag.get, key="alice") == 3


async def test_state_is_durable_when_send_result_returns(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with actors.open_runtime(path, [Bag]) as rt:
        h = await rt.send(Bag.put, 7, key="alice")
        assert await h.result() == 7
    async with actors.open_runtime(path, [Bag]) as rt:
        assert await rt.call(Bag.get, key="alice") == 7


async def test_state_is_per_actor_and_key(tmp_path: Path) -> None:
    class Other(actors.VirtualObject):
        @actors.shared
        async def get(self, ctx: actors.ObjectSharedContext) -> int | None:
            return await ctx.get("n", int)

    async with actors.open_runtime(tmp_path / "db", [Bag, Other]) as rt:
        await rt.call(Bag.put, 1, key="k")
        assert await rt.call(Bag.get, key="K") is None
        assert await rt.call(Other.get, key="k") is None


async def test_typed_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "db"
    bag = Bag()
    async with actors.open_runtime(path, [bag]) as rt:
        assert await rt.call(Bag.write_typed, key="k") == len(TYPED_VALUES)
        await rt.call(Bag.read_typed_exclusive, key="k")
        from_exclusive = dict(bag.read_back)
        bag.read_back.clear()
        await rt.call(Bag.read_typed_shared, key="k")
        from_shared = dict(bag.read_back)
    bag.read_back.clear()
    async with actors.open_runtime(path, [bag]) as rt:
        await rt.call(Bag.read_typed_shared, key="k")
        after_restart = dict(bag.read_back)
    expected = {name: value for name, (value, _) in TYPED_VALUES.items()}
    for read_back in (from_exclusive, from_shared, after_restart):
        assert read_back == expected
        for name, value in expected.items():
            assert type(read_back[name]) is type(value), name
    assert after_restart["datetime_offset"].utcoffset() == OFFSET.utcoffset()  # type: ignore[attr-defined]


async def test_typed_state_read_within_the_writing_handler(tmp_path: Path) -> None:
    class WriteThenRead(actors.VirtualObject):
        def __init__(self) -> None:
            self.read_back: dict[str, object] = {}

        @actors.exclusive
        async def run(self, ctx: actors.ObjectContext) -> int:
            for name, (value, _) in TYPED_VALUES.items():
                ctx.set(name, value)
            for name, (_, tp) in TYPED_VALUES.items():
                self.read_back[name] = await ctx.get(name, tp)  # type: ignore[call-overload]
            return 0

    actor = WriteThenRead()
    async with actors.open_runtime(tmp_path / "db", [actor]) as rt:
        await rt.call(WriteThenRead.run, key="k")
    assert actor.read_back == {name: value for name, (value, _) in TYPED_VALUES.items()}


async def test_get_without_type_returns_plain_json(tmp_path: Path) -> None:
    class Plain(actors.VirtualObject):
        def __init__(self) -> None:
            self.seen: list[object] = []

        @actors.exclusive
        async def run(self, ctx: actors.ObjectContext) -> int:
            ctx.set("person", Person("ann", 3))
            ctx.set("when", AWARE)
            self.seen.append(await ctx.get("person"))
            self.seen.append(await ctx.get("when"))
            self.seen.append(await ctx.get("missing"))
            return 0

    actor = Plain()
    async with actors.open_runtime(tmp_path / "db", [actor]) as rt:
        await rt.call(Plain.run, key="k")
    assert actor.seen[0] == {"name": "ann", "age": 3}
    assert isinstance(actor.seen[1], str)
    assert datetime.fromisoformat(actor.seen[1]) == AWARE
    assert actor.seen[2] is None


async def test_state_of_wrong_type_raises_SerializationError(tmp_path: Path) -> None:
    class Mistyped(actors.VirtualObject):
        @actors.exclusive
        async def run(self, ctx: actors.ObjectContext) -> int:
            ctx.set("person", {"name": "ann", "age": "old"})
            return 0

        @actors.shared
        async def read(self, ctx: actors.ObjectSharedContext) -> str:
            try:
                await ctx.get("person", Person)
            except actors.SerializationError as exc:
                return str(exc)
            return "no error"

    async with actors.open_runtime(tmp_path / "db", [Mistyped]) as rt:
        await rt.call(Mistyped.run, key="k")
        message = await rt.call(Mistyped.read, key="k")
    assert "state 'person' of Mistyped/k does not convert to Person" in message
    assert "$.age" in message


async def test_exclusive_handler_reads_its_own_writes(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Bag]) as rt:
        assert await rt.call(Bag.write_and_read_own, key="k") == [1, 2, None]
        assert await rt.call(Bag.get, key="k") is None


async def test_state_keys_include_own_uncommitted_writes(tmp_path: Path) -> None:
    bag = Bag()
    async with actors.open_runtime(tmp_path / "db", [bag]) as rt:
        assert await rt.call(Bag.set_ab, key="k") == ["a", "b"]
        assert await rt.call(Bag.keys, key="k") == ["a", "b"]
        assert await rt.call(Bag.shuffle_keys, key="k") == ["z"]
        assert bag.keys_seen == [
            ["a", "b"],
            ["a", "b", "c"],
            ["b", "c"],
            [],
            ["z"],
        ]
        assert await rt.call(Bag.keys, key="k") == ["z"]


async def test_clear_and_clear_all_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "db"
    async with actors.open_runtime(path, [Bag]) as rt:
        assert await rt.call(Bag.set_ab, key="k") == ["a", "b"]
        assert await rt.call(Bag.set_ab, key="other") == ["a", "b"]
        assert await rt.call(Bag.clear_one, "a", key="k") == ["b"]
        assert await rt.call(Bag.clear_one, "never-set", key="k") == ["b"]
    async with actors.open_runtime(path, [Bag]) as rt:
        assert await rt.call(Bag.keys, key="k") == ["b"]
        assert await rt.call(Bag.clear_everything, key="k") == []
    async with actors.open_runtime(path, [Bag]) as rt:
        assert await rt.call(Bag.keys, key="k") == []
        # clear_all touches one key only
        assert await rt.call(Bag.keys, key="other") == ["a", "b"]


async def test_pipelined_invocations_see_earlier_writes(tmp_path: Path) -> None:
    # Sent without waiting: each one may start before the previous one's commit is
    # durable, and must still see its writes (and clears) through the key's overlay.
    keys = [f"k{i}" for i in range(20)]
    async with actors.open_runtime(tmp_path / "db", [Bag]) as rt:
        handles = []
        for key in keys:
            handles.append(
                [
                    await rt.send(Bag.set_ab, key=key),
                    await rt.send(Bag.clear_one, "a", key=key),
                    await rt.send(Bag.clear_everything, key=key),
                    await rt.send(Bag.put, 5, key=key),
                    await rt.send(Bag.clear_one, "b", key=key),
                ]
            )
        for per_key in handles:
            assert [await h.result() for h in per_key] == [["a", "b"], ["b"], [], 5, ["n"]]
        for key in keys:
            assert await rt.call(Bag.keys, key=key) == ["n"]
            assert await rt.call(Bag.get, key=key) == 5


class HeldBag(Bag):
    """A Bag whose key can be held busy, so that later invocations queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.released = anyio.Event()

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> None:
        await self.released.wait()


async def test_state_keys_keeps_the_overlay_whose_batch_lands_during_the_scan(
    tmp_path: Path,
) -> None:
    # The interleaving that once lost writes, forced: the writer thread holds set_ab's
    # state batch until clear_one (pipelined behind it) has scanned LMDB without it, then
    # lands it before clear_one looks at the durable watermark. The overlay must apply.
    writer_holding = threading.Event()
    release = threading.Event()

    def hold_state_batches(batches: Sequence[WriteBatch]) -> None:
        if any(op[1] is Table.STATE for batch in batches for op in batch.ops):
            writer_holding.set()
            release.wait(timeout=30)

    bag = HeldBag()
    async with actors.open_runtime(
        tmp_path / "db", [bag], commit_mode="thread", _fault_hook=hold_state_batches
    ) as rt:
        store = rt._store
        real_scan = store.scan

        def scan_then_let_the_batch_land(*args: object, **kwargs: object) -> object:
            activation = rt._activations.get(("HeldBag", "k"))
            pending = (
                args[0] is Table.STATE
                and activation is not None
                and activation.overlay_seq > store.durable_seq
            )
            if pending and not release.is_set():
                assert writer_holding.wait(timeout=30), "the writer never took the batch"
            result = real_scan(*args, **kwargs)  # type: ignore[arg-type]
            if pending and not release.is_set():
                release.set()
                deadline = time.monotonic() + 30
                while store.durable_seq < store.statistics().submitted_seq:
                    assert time.monotonic() < deadline, "the held batch never landed"
                    time.sleep(0.001)
            return result

        store.scan = scan_then_let_the_batch_land  # type: ignore[method-assign,assignment]
        await rt.send(HeldBag.hold, key="k")
        first = await rt.send(HeldBag.set_ab, key="k")
        second = await rt.send(HeldBag.clear_one, "a", key="k")
        bag.released.set()
        assert await first.result() == ["a", "b"]
        assert await second.result() == ["b"]
        assert release.is_set()  # the interleaving did happen


async def test_handler_returning_None(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Bag]) as rt:
        result = await rt.call(Bag.returns_none, 5, key="k")  # type: ignore[func-returns-value]
        assert result is None
        assert await rt.call(Bag.get, key="k") == 5


class LooselyTyped(actors.VirtualObject):
    @actors.exclusive
    async def mixed(self, ctx: actors.ObjectContext, items: list[object]) -> list[object]:
        return items


async def test_nested_object_annotation_accepts_any_json(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [LooselyTyped]) as rt:
        assert await rt.call(LooselyTyped.mixed, [1, "a", None], key="k") == [1, "a", None]
