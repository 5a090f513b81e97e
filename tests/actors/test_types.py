"""Handler inputs, outputs and state of every supported kind (issue 13 item 5): pydantic v2
models (aliases, validators, ``populate_by_name``), msgspec Structs, dataclasses, attrs
classes, TypedDicts and raw ``bytes``, embedded (``rt.call``, ``ctx.call``, state) and
over HTTP. Unknown fields of dataclasses, attrs classes and TypedDicts are refused, naming
the field, unless the class is marked ``actors.allow_extra_fields``; stored values keep
decoding. Every coroutine test runs under trio and asyncio (conftest.py)."""

from __future__ import annotations

import datetime
import enum
import subprocess
import sys
import textwrap
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import anyio
import attrs
import httpx
import msgspec
import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

import actors
from actors._ingress import IngressApp
from actors._serde import decode_value, encode_value
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actors._runtime import Runtime

# --- the types ---------------------------------------------------------------------------


class Address(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    street_name: str
    zip_code: str


class Customer(BaseModel):
    """Restate style: camelCase on the wire, snake_case in Python, a validator."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    full_name: str
    age: int
    address: Address | None = None
    joined: datetime.date | None = None

    @field_validator("age")
    @classmethod
    def age_is_positive(cls, value: int) -> int:
        if value < 0:
            raise ValueError("age must not be negative")
        return value


class AliasOnly(BaseModel):
    """An alias without populate_by_name: only the alias is accepted as input."""

    item_id: Annotated[str, Field(alias="itemId")]


class NamesOnly(BaseModel):
    """Accepts field names only (pydantic 2.11): so it is encoded with field names."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=False, validate_by_name=True
    )
    item_id: str


class Order(msgspec.Struct, rename="camel"):
    order_id: str
    quantity: int


@dataclass
class Point:
    x: int
    y: int


@actors.allow_extra_fields
@dataclass
class LoosePoint:
    x: int
    y: int


@dataclass
class Segment:
    start: Point
    end: Point


@attrs.frozen
class Label:
    text: str


@actors.allow_extra_fields
@attrs.frozen
class LooseLabel:
    text: str


class Settings(TypedDict):
    theme: str
    size: int


@actors.allow_extra_fields
class LooseSettings(TypedDict):
    theme: str


@dataclass
class Basket:
    """A dataclass holding pydantic models and a msgspec Struct."""

    owner: Customer
    orders: list[Order]


# --- the actors ----------------------------------------------------------------------------


class Shop(actors.VirtualObject):
    def __init__(self) -> None:
        self.awakeable_ids: list[str] = []
        self.awakeable_made = anyio.Event()

    @actors.exclusive
    async def register(self, ctx: actors.ObjectContext, customer: Customer) -> Customer:
        ctx.set("customer", customer)
        return customer.model_copy(update={"full_name": customer.full_name.upper()})

    @actors.shared
    async def customer(self, ctx: actors.ObjectSharedContext) -> Customer | None:
        return await ctx.get("customer", Customer)

    @actors.shared
    async def stored(self, ctx: actors.ObjectSharedContext) -> object:
        return await ctx.get("customer")

    @actors.exclusive
    async def many(self, ctx: actors.ObjectContext, customers: list[Customer]) -> list[Customer]:
        return [c.model_copy(update={"age": c.age + 1}) for c in customers]

    @actors.exclusive
    async def basket(self, ctx: actors.ObjectContext, basket: Basket) -> Basket:
        ctx.set("basket", basket)
        stored = await ctx.get("basket", Basket)
        assert stored is not None
        return stored

    @actors.exclusive
    async def alias_only(self, ctx: actors.ObjectContext, item: AliasOnly) -> AliasOnly:
        ctx.set("item", item)
        stored = await ctx.get("item", AliasOnly)
        assert stored == item
        return item

    @actors.exclusive
    async def order(self, ctx: actors.ObjectContext, order: Order) -> Order:
        ctx.set("order", order)
        stored = await ctx.get("order", Order)
        assert stored is not None
        return Order(stored.order_id, stored.quantity * 2)

    @actors.exclusive
    async def stored_as(self, ctx: actors.ObjectContext, value: dict[str, object]) -> Point:
        """Writes an untyped value, reads it back as a Point (a stored value, not an input)."""
        ctx.set("point", value)
        point = await ctx.get("point", Point)
        assert point is not None
        return point

    @actors.exclusive
    async def remember(self, ctx: actors.ObjectContext, customer: Customer) -> str:
        made = await ctx.run(
            "make a model", lambda: customer.model_copy(update={"age": 99}), type=Customer
        )
        assert isinstance(made, Customer)
        awakeable_id, future = ctx.awakeable(Customer)
        self.awakeable_ids.append(awakeable_id)
        self.awakeable_made.set()
        resolved = await future
        return f"{customer.full_name} {made.age} {resolved.full_name} {resolved.age}"


class Echo(actors.Service):
    @actors.handler
    async def point(self, ctx: actors.Context, p: Point) -> Point:
        return Point(p.y, p.x)

    @actors.handler
    async def loose(self, ctx: actors.Context, p: LoosePoint) -> LoosePoint:
        return p

    @actors.handler
    async def segment(self, ctx: actors.Context, s: Segment) -> Segment:
        return s

    @actors.handler
    async def label(self, ctx: actors.Context, label: Label) -> Label:
        return label

    @actors.handler
    async def loose_label(self, ctx: actors.Context, label: LooseLabel) -> LooseLabel:
        return label

    @actors.handler
    async def settings(self, ctx: actors.Context, s: Settings) -> Settings:
        return s

    @actors.handler
    async def loose_settings(self, ctx: actors.Context, s: LooseSettings) -> LooseSettings:
        return s

    @actors.handler
    async def raw(self, ctx: actors.Context, body: bytes) -> bytes:
        return body[::-1]

    @actors.handler
    async def raw_wrong(self, ctx: actors.Context, body: bytes) -> bytes:
        return body.decode("latin-1")  # type: ignore[return-value]

    @actors.handler
    async def via_raw(self, ctx: actors.Context, text: str) -> str:
        reversed_bytes = await ctx.call(Echo.raw, text.encode())
        assert isinstance(reversed_bytes, bytes)
        return reversed_bytes.decode()

    @actors.handler
    async def via_shop(self, ctx: actors.Context, customer: Customer) -> Customer:
        return await ctx.call(Shop.register, customer, key="via")


ACTORS: list[type[actors.VirtualObject] | type[actors.Service]] = [Shop, Echo]


def customer(name: str = "Ada Lovelace", age: int = 36) -> Customer:
    return Customer(full_name=name, age=age, address=Address(street_name="Main", zip_code="1"))


@asynccontextmanager
async def open_client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=IngressApp(rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield client


def error_message(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    message = body["message"]
    assert isinstance(message, str)
    return message


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


# --- over HTTP ---------------------------------------------------------------------------


async def test_http_pydantic_camel_case_in_and_out() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        body = {"fullName": "Ada", "age": 36, "address": {"streetName": "Main", "zipCode": "1"}}
        response = await client.post("/Shop/k/register", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {**body, "fullName": "ADA", "joined": None}
        # populate_by_name: the field names are accepted too
        by_name = {"full_name": "Bob", "age": 1}
        response = await client.post("/Shop/b/register", json=by_name)
        assert response.status_code == 200, response.text
        assert response.json()["fullName"] == "BOB"
        stored = await client.post("/Shop/b/customer")
        assert stored.json() == {"fullName": "Bob", "age": 1, "address": None, "joined": None}


async def test_http_pydantic_validation_errors_are_400_naming_the_field() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        negative = await client.post("/Shop/k/register", json={"fullName": "Ada", "age": -1})
        message = error_message(negative, 400)
        assert "$.age" in message
        assert "age must not be negative" in message
        missing = await client.post("/Shop/k/register", json={"age": 3})
        message = error_message(missing, 400)
        assert "$.fullName" in message
        assert "Field required" in message
        nested = await client.post(
            "/Shop/k/many", json=[{"fullName": "a", "age": 1}, {"fullName": "b", "age": "x"}]
        )
        assert "$[1].age" in error_message(nested, 400)
        # An alias without populate_by_name: the field name is not the wire name.
        by_name = await client.post("/Shop/k/alias_only", json={"item_id": "i"})
        assert "$.itemId" in error_message(by_name, 400)
        ok = await client.post("/Shop/k/alias_only", json={"itemId": "i"})
        assert ok.json() == {"itemId": "i"}
        # nothing was stored for the refused requests
        nothing = await client.post("/Shop/k/customer")
        assert (nothing.status_code, nothing.content) == (200, b"")  # None: an empty body


async def test_http_msgspec_struct() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        response = await client.post("/Shop/k/order", json={"orderId": "o", "quantity": 2})
        assert response.json() == {"orderId": "o", "quantity": 4}
        wrong = await client.post("/Shop/k/order", json={"orderId": "o", "quantity": "2"})
        message = error_message(wrong, 400)
        assert "$.quantity" in message
        assert "Expected `int`, got `str`" in message


async def test_http_unknown_fields_are_refused_naming_them() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        point = await client.post("/Echo/point", json={"x": 1, "y": 2, "z": 3, "w": 4})
        assert "extra fields found (w, z) @ $" in error_message(point, 400)
        nested = {"start": {"x": 1, "y": 2}, "end": {"x": 3, "y": 4, "q": 0}}
        segment = await client.post("/Echo/segment", json=nested)
        assert "extra fields found (q) @ $.end" in error_message(segment, 400)
        label = await client.post("/Echo/label", json={"text": "t", "colour": "red"})
        assert "extra fields found (colour)" in error_message(label, 400)
        settings = await client.post("/Echo/settings", json={"theme": "d", "size": 1, "x": 0})
        assert "extra fields found (x)" in error_message(settings, 400)
        # Without the unknown field, each is fine.
        assert (await client.post("/Echo/point", json={"x": 1, "y": 2})).json() == {"x": 2, "y": 1}
        assert (await client.post("/Echo/label", json={"text": "t"})).json() == {"text": "t"}


async def test_http_classes_marked_allow_extra_fields_ignore_unknown_fields() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        loose = await client.post("/Echo/loose", json={"x": 1, "y": 2, "z": 3})
        assert loose.json() == {"x": 1, "y": 2}
        label = await client.post("/Echo/loose_label", json={"text": "t", "colour": "red"})
        assert label.json() == {"text": "t"}
        settings = await client.post("/Echo/loose_settings", json={"theme": "d", "size": 1})
        assert settings.json() == {"theme": "d", "size": 1}  # a dict keeps what it got
        # Extra fields are allowed; a missing one is still an error.
        missing = await client.post("/Echo/loose", json={"x": 1, "z": 3})
        assert "required field missing @ $.y" in error_message(missing, 400)


def test_allow_extra_fields_marks_only_the_class_itself() -> None:
    @dataclass
    class Child(LoosePoint):
        z: int = 0

    assert actors.allow_extra_fields(LoosePoint) is LoosePoint
    from actors._types import extra_fields_allowed

    assert extra_fields_allowed(LoosePoint)
    assert extra_fields_allowed(LooseSettings)
    assert not extra_fields_allowed(Settings)
    assert not extra_fields_allowed(Child)
    assert not extra_fields_allowed(Point)
    with pytest.raises(TypeError, match=r"dataclass, an attrs class or a TypedDict"):
        actors.allow_extra_fields(int)


async def test_http_bytes_handler_takes_and_answers_the_raw_body() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        body = b"\x00\xff not json {"
        response = await client.post(
            "/Echo/raw", content=body, headers={"content-type": "application/octet-stream"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == body[::-1]
        empty = await client.post("/Echo/raw")
        assert (empty.status_code, empty.content) == (200, b"")
        assert empty.headers["content-type"] == "application/octet-stream"
        sent = await client.post("/Echo/raw/send", content=b"abc")
        assert sent.status_code == 202
        invocation_id = sent.json()["invocationId"]
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert (attached.status_code, attached.content) == (200, b"cba")
        assert attached.headers["content-type"] == "application/octet-stream"
        # A JSON handler still answers JSON.
        point = await client.post("/Echo/point", json={"x": 1, "y": 2})
        assert point.headers["content-type"] == "application/json"


async def test_http_pydantic_over_a_real_socket(tmp_path: Path) -> None:
    """hypercorn (trio or asyncio worker, per the backend) decodes the body with the
    handler's model and answers with its aliases, also on attach."""
    async with (
        open_test_runtime(ACTORS, path=tmp_path / "data") as rt,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body = {"fullName": "Ada", "age": 36}
            response = await client.post("/Shop/k/register", json=body)
            assert response.json()["fullName"] == "ADA"
            sent = await client.post("/Shop/j/register/send", json=body)
            invocation_id = sent.json()["invocationId"]
            attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
            assert attached.json() == {
                "fullName": "ADA",
                "age": 36,
                "address": None,
                "joined": None,
            }
            bad = await client.post("/Shop/k/register", json={"fullName": "Ada"})
            assert "$.age" in error_message(bad, 400)
            raw = await client.post("/Echo/raw", content=b"\x01\x02")
            assert raw.content == b"\x02\x01"
        tg.cancel_scope.cancel()


# --- pydantic stays optional ---------------------------------------------------------------

WITHOUT_PYDANTIC = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoPydantic(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pydantic" or name.startswith("pydantic."):
                raise ImportError(f"{name} is blocked by the test")
            return None

    sys.meta_path.insert(0, NoPydantic())
    try:
        import pydantic  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block pydantic")

    import dataclasses, msgspec, trio
    import actors, actors.testing

    class BaseModel:  # a class of this name is not a pydantic model
        pass

    @actors.allow_extra_fields
    @dataclasses.dataclass
    class Loose:
        x: int

    class Order(msgspec.Struct):
        quantity: int

    class Echo(actors.Service):
        @actors.handler
        async def loose(self, ctx: actors.Context, value: Loose) -> Loose:
            return value

        @actors.handler
        async def order(self, ctx: actors.Context, value: Order) -> Order:
            return value

        @actors.handler
        async def raw(self, ctx: actors.Context, value: bytes) -> bytes:
            return value

        @actors.handler
        async def plain(self, ctx: actors.Context, value: object) -> object:
            return value

    async def main():
        async with actors.testing.open_test_runtime([Echo]) as rt:
            assert await rt.call(Echo.loose, Loose(1)) == Loose(1)
            assert await rt.call(Echo.order, Order(2)) == Order(2)
            assert await rt.call(Echo.raw, b"\\x00") == b"\\x00"
            assert await rt.call(Echo.plain, {"a": 1}) == {"a": 1}
            try:
                await rt.call(Echo.plain, BaseModel())
            except actors.SerializationError as exc:
                print("refused:", exc)
        assert not any(m.split(".")[0] == "pydantic" for m in sys.modules)
        print("ok")

    trio.run(main)
    """
)


def test_actors_works_without_pydantic() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYDANTIC],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok"
    assert lines[0].startswith("refused: cannot serialize")


def test_importing_actors_does_not_import_pydantic() -> None:
    program = (
        "import sys, actors, actors.testing, actors._ingress, actors._cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
