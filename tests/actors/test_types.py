"""Handler inputs, outputs and state of every supported kind (issue 13 item 5): pydantic v2
models (aliases, validators, ``populate_by_name``), msgspec Structs, dataclasses, attrs
classes, TypedDicts and raw ``bytes``, embedded (``rt.call``, ``ctx.call``, state) and
over HTTP. Unknown fields of dataclasses, attrs classes and TypedDicts are refused, naming
the field, unless the class is marked ``actors.allow_extra_fields``; stored values keep
decoding. Every coroutine test runs under trio and asyncio (conftest.py)."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import pytest

import actors
from actors._serde import decode_value, encode_value
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


from typed_actors import (
    ACTORS,
    AliasOnly,
    Basket,
    Customer,
    Echo,
    Label,
    LoosePoint,
    NamesOnly,
    Order,
    Point,
    Settings,
    Shop,
    customer,
)

# --- pydantic, embedded --------------------------------------------------------------------


async def test_pydantic_model_in_out_and_in_state() -> None:
    async with open_test_runtime(ACTORS) as rt:
        result = await rt.call(Shop.register, customer(), key="k")
        assert result == customer("ADA LOVELACE")
        assert isinstance(result, Customer)
        assert await rt.call(Shop.customer, key="k") == customer()
        assert await rt.call(Shop.customer, key="nobody") is None


async def test_pydantic_model_is_stored_with_its_aliases() -> None:
    """The stored (and answered) JSON uses the aliases: what a pydantic user modelling a
    camelCase API expects, and what reads back whether or not populate_by_name is set."""
    async with open_test_runtime(ACTORS) as rt:
        joined = customer().model_copy(update={"joined": datetime.date(2026, 1, 2)})
        await rt.call(Shop.register, joined, key="k")
        assert await rt.call(Shop.stored, key="k") == {
            "fullName": "Ada Lovelace",
            "age": 36,
            "address": {"streetName": "Main", "zipCode": "1"},
            "joined": "2026-01-02",
        }
        item = AliasOnly.model_validate({"itemId": "i-1"})
        assert await rt.call(Shop.alias_only, item, key="k") == item


async def test_pydantic_validation_error_is_a_serialization_error_naming_the_field() -> None:
    async with open_test_runtime(ACTORS) as rt:
        invalid = Customer.model_construct(full_name="Ada", age=-1)  # skips the validator
        with pytest.raises(actors.SerializationError, match=r"age must not be negative") as info:
            await rt.call(Shop.register, invalid, key="k")
        assert "$.age" in str(info.value)
        assert "input of Shop.register" in str(info.value)
        assert info.value.status_code == 400
        with pytest.raises(actors.SerializationError, match=r"expected Customer, got dict"):
            await rt.call(Shop.register, {"fullName": "Ada", "age": 1}, key="k")
        # Nothing was stored for either.
        assert await rt.call(Shop.customer, key="k") is None


async def test_pydantic_models_nested_in_lists_and_dataclasses() -> None:
    async with open_test_runtime(ACTORS) as rt:
        many = await rt.call(Shop.many, [customer("a", 1), customer("b", 2)], key="k")
        assert [(c.full_name, c.age) for c in many] == [("a", 2), ("b", 3)]
        basket = Basket(customer(), [Order("o-1", 2), Order("o-2", 3)])
        assert await rt.call(Shop.basket, basket, key="k") == basket


async def test_pydantic_models_through_ctx_call_ctx_run_and_awakeables() -> None:
    shop = Shop()
    async with open_test_runtime([shop, Echo]) as rt:
        through = await rt.call(Echo.via_shop, customer())
        assert through == customer("ADA LOVELACE")
        handle = await rt.send(Shop.remember, customer(), key="r")
        await shop.awakeable_made.wait()
        await rt.resolve_awakeable(shop.awakeable_ids[0], {"fullName": "Grace", "age": 40})
        assert await handle.result() == "Ada Lovelace 99 Grace 40"


async def test_pydantic_input_survives_a_restart(tmp_path: Path, autojump_clock: object) -> None:
    """A stored model input is decoded again when the invocation runs after a restart."""
    path = tmp_path / "data"
    async with open_test_runtime(ACTORS, path=path) as rt:
        handle = await rt.send(Shop.register, customer("Kept"), key="k", delay=3600)
    async with open_test_runtime(ACTORS, path=path) as rt:
        assert await rt.attach(handle.invocation_id) == customer("KEPT")
        assert await rt.call(Shop.customer, key="k") == customer("Kept")


def test_pydantic_model_that_accepts_only_field_names_is_encoded_with_them() -> None:
    data = encode_value(NamesOnly(item_id="x"), NamesOnly, "state")
    assert data == b'{"item_id":"x"}'
    assert decode_value(data, NamesOnly, "state") == NamesOnly(item_id="x")


def test_pydantic_models_inside_untyped_values_are_encoded_by_alias() -> None:
    """A model inside a dict, list or dataclass that msgspec encodes itself."""
    value = {"who": [customer("a", 1)], "point": Point(1, 2)}
    data = encode_value(value, type(value), "state")
    assert decode_value(data, object, "state") == {
        "who": [
            {
                "fullName": "a",
                "age": 1,
                "address": {"streetName": "Main", "zipCode": "1"},
                "joined": None,
            }
        ],
        "point": {"x": 1, "y": 2},
    }
    assert decode_value(data, dict[str, object], "state")["point"] == {"x": 1, "y": 2}
    # Refused by name: not a RecursionError (a bare object() once dispatched to itself).
    with pytest.raises(
        actors.SerializationError,
        match=r"^cannot serialize state: Encoding objects of type object is unsupported$",
    ):
        encode_value({"x": object()}, dict, "state")


# --- msgspec, dataclasses, attrs, TypedDicts, embedded ------------------------------------


async def test_msgspec_struct_in_out_and_in_state() -> None:
    async with open_test_runtime(ACTORS) as rt:
        assert await rt.call(Shop.order, Order("o-1", 2), key="k") == Order("o-1", 4)


async def test_dataclass_attrs_and_typeddict_round_trip() -> None:
    async with open_test_runtime(ACTORS) as rt:
        assert await rt.call(Echo.point, Point(1, 2)) == Point(2, 1)
        assert await rt.call(Echo.loose, LoosePoint(1, 2)) == LoosePoint(1, 2)
        assert await rt.call(Echo.label, Label("l")) == Label("l")
        settings: Settings = {"theme": "dark", "size": 3}
        assert await rt.call(Echo.settings, settings) == settings


async def test_embedded_dict_argument_with_an_unknown_field_is_refused() -> None:
    """A dict passed for a dataclass input is checked like a request body."""
    async with open_test_runtime(ACTORS) as rt:
        assert await rt.call(Echo.point, {"x": 1, "y": 2}) == Point(2, 1)
        with pytest.raises(actors.SerializationError, match=r"extra fields found \(z\) @ \$"):
            await rt.call(Echo.point, {"x": 1, "y": 2, "z": 3})
        assert await rt.call(Echo.loose, {"x": 1, "y": 2, "z": 3}) == LoosePoint(1, 2)


async def test_stored_values_ignore_fields_their_class_no_longer_has() -> None:
    """The unknown-field check is for inputs: a stored value written with a field that
    its class has since lost still reads (state is not refused after a schema change)."""
    async with open_test_runtime(ACTORS) as rt:
        value = {"x": 1, "y": 2, "removed": 3}
        assert await rt.call(Shop.stored_as, value, key="k") == Point(1, 2)


# --- bytes, embedded ---------------------------------------------------------------------


async def test_bytes_handler_takes_and_returns_the_bytes() -> None:
    async with open_test_runtime(ACTORS) as rt:
        assert await rt.call(Echo.raw, b"\x00\xffab") == b"ba\xff\x00"
        assert await rt.call(Echo.raw, b"") == b""
        assert await rt.call(Echo.raw, bytearray(b"xy")) == b"yx"
        assert await rt.call(Echo.via_raw, "hello") == "olleh"
        with pytest.raises(actors.SerializationError, match=r"bytes"):
            await rt.call(Echo.raw, "text")
        with pytest.raises(actors.TerminalError, match=r"output of Echo.raw_wrong.*bytes.*str"):
            await rt.call(Echo.raw_wrong, b"x")


def test_bytes_handler_payloads_are_stored_as_they_are() -> None:
    """No JSON (no base64) for a bytes handler's input and output."""
    input_type, output_type = Echo.raw.input_type, Echo.raw.output_type
    assert encode_value(b"\x00\xff", input_type, "input") == b"\x00\xff"
    assert decode_value(b"\x00\xff", output_type, "output") == b"\x00\xff"


# --- stored values written before this change ---------------------------------------------


class Color(enum.Enum):
    RED = "red"


@attrs.frozen
class Tagged:
    text: str
    tags: list[str]


# Bytes that the codec wrote on a2cb37a, before pydantic, Structs and raw bytes: each still
# decodes to the same value, and the same value still encodes to the same bytes.
WRITTEN_BEFORE: list[tuple[object, Any, bytes]] = [
    (5, int, b"5"),
    ("héllo", str, '"héllo"'.encode()),
    (2.5, float, b"2.5"),
    (True, bool, b"true"),
    (None, type(None), b"null"),
    (b"\x00\xffab", bytes, b'"AP9hYg=="'),
    (Point(1, 2), Point, b'{"x":1,"y":2}'),
    (Tagged("t", ["a", "b"]), Tagged, b'{"tags":["a","b"],"text":"t"}'),
    (Color.RED, Color, b'"red"'),
    (
        datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.datetime,
        b'"2026-01-02T03:04:05Z"',
    ),
    ({"a": [1, 2]}, dict[str, list[int]], b'{"a":[1,2]}'),
    ([Point(1, 2)], list[Point], b'[{"x":1,"y":2}]'),
    (uuid.UUID(int=7), uuid.UUID, b'"00000000-0000-0000-0000-000000000007"'),
]


@pytest.mark.parametrize(("value", "annotation", "stored"), WRITTEN_BEFORE)
def test_values_written_before_still_decode(value: object, annotation: Any, stored: bytes) -> None:
    assert decode_value(stored, annotation, "state") == value
    assert encode_value(value, annotation, "state") == stored
    # ctx.set encodes with the value's own type
    assert encode_value(value, type(value) if value is not None else object, "state") == stored
