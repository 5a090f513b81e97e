"""``actors.restate.serde``: Restate's encodings, value by value (no event loop)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import msgspec
import pydantic
import pytest

from actors.restate._plain import from_plain, to_plain
from actors.restate.serde import (
    BytesSerde,
    DefaultSerde,
    JsonSerde,
    MsgspecJsonSerde,
    PydanticJsonSerde,
    Serde,
    is_pydantic,
)


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    user_name: str = pydantic.Field(alias="userName")


@dataclass
class Point:
    x: int
    y: int


class Struct(msgspec.Struct):
    a: int


def test_none_is_the_empty_payload() -> None:
    serdes: list[Serde[Any]] = [
        DefaultSerde(),
        JsonSerde(),
        PydanticJsonSerde(Model),
        MsgspecJsonSerde(Struct),
    ]
    for serde in serdes:
        assert serde.serialize(None) == b""
        assert serde.deserialize(b"") is None
    assert BytesSerde().serialize(None) == b""
    assert BytesSerde().deserialize(b"") == b""  # as Restate's: bytes stay bytes


def test_default_serde_by_value_and_hint() -> None:
    serde: DefaultSerde[Any] = DefaultSerde()
    assert serde.serialize({"a": [1, "x"]}) == b'{"a": [1, "x"]}'
    assert serde.deserialize(b'{"a": 1}') == {"a": 1}
    # pydantic: field names, not aliases (Restate's model_dump_json()).
    assert json.loads(serde.serialize(Model(userName="ada"))) == {"user_name": "ada"}
    assert serde.with_maybe_type(Model).deserialize(b'{"userName": "ada"}') == Model(userName="ada")
    assert json.loads(serde.serialize(Point(1, 2))) == {"x": 1, "y": 2}
    assert serde.with_maybe_type(Point).deserialize(b'{"x": 1, "y": 2}') == Point(1, 2)
    assert serde.with_maybe_type(Optional[Point]).deserialize(b'{"x": 3, "y": 4}') == Point(3, 4)  # noqa: UP045
    assert serde.with_maybe_type(Point | None).type_hint is Point
    assert serde.serialize(Struct(a=1)) == b'{"a":1}'
    assert serde.with_maybe_type(Struct).deserialize(b'{"a":1}') == Struct(a=1)
    assert serde.with_maybe_type(None) is serde
    assert is_pydantic(Model)
    assert not is_pydantic(Point)
    assert not is_pydantic(1)


def test_bad_payloads_raise() -> None:
    with pytest.raises(ValueError, match="Expecting"):
        DefaultSerde().deserialize(b"{nope")
    with pytest.raises(pydantic.ValidationError):
        PydanticJsonSerde(Model).deserialize(b'{"other": 1}')
    with pytest.raises(msgspec.ValidationError):
        MsgspecJsonSerde(Struct).deserialize(b'{"a": "x"}')
    with pytest.raises(TypeError):
        DefaultSerde[Any]().serialize(object())


def test_plain_form_for_the_runtime() -> None:
    # JSON bytes become the JSON value; other bytes stay bytes; empty is None.
    assert to_plain(DefaultSerde(), Point(1, 2)) == {"x": 1, "y": 2}
    assert from_plain(DefaultSerde(Point), {"x": 1, "y": 2}) == Point(1, 2)
    assert to_plain(BytesSerde(), b"\xff\x00") == b"\xff\x00"
    assert from_plain(BytesSerde(), b"\xff\x00") == b"\xff\x00"
    assert to_plain(DefaultSerde(), None) is None
    assert from_plain(DefaultSerde(), None) is None
