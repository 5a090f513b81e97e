"""The types and actors the tests of handler types share (test_types.py embedded,
test_types_http.py over HTTP): pydantic models, msgspec Structs, dataclasses, attrs
classes and TypedDicts, a ``Shop`` object and an ``Echo`` service that take and return
them, and an in-process ``httpx`` client of a runtime's ingress."""

from __future__ import annotations

import datetime  # noqa: TC003 - the models' annotations are resolved at run time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypedDict

import anyio
import attrs
import httpx
import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

import actors
from actors._ingress import IngressApp

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

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
