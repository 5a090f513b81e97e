"""Restate's ``restate.serde``: how handler inputs, outputs, state, step results,
promises and awakeables become bytes, exactly as Restate encodes them.

``DefaultSerde`` is JSON: ``None`` is the empty payload (so a handler returning nothing
answers an empty body), a pydantic model is its ``model_dump_json()`` (field names, not
aliases, as in Restate), a dataclass is its ``asdict``, a msgspec ``Struct`` is msgspec's
JSON; decoding uses the type hint (the handler's annotation, or ``type_hint=``) for the
same kinds. pydantic and msgspec are imported only when a value or hint is one of theirs.

Inside the runtime a payload's bytes are stored as given; state, step results and
promise values are stored as the JSON value the bytes hold when they are JSON, so that
``actors state`` and native handlers read them (``_plain``).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import sys
import typing
from typing import Any, Generic, TypeVar

__all__ = [
    "BytesSerde",
    "DefaultSerde",
    "JsonSerde",
    "MsgspecJsonSerde",
    "PydanticJsonSerde",
    "Serde",
    "is_pydantic",
]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741  (Restate's name for an input type)
O = TypeVar("O")  # noqa: E741


def is_pydantic(annotation: Any) -> bool:
    """Whether ``annotation`` is a pydantic model class (pydantic is never imported for
    this: a program that has not imported it has no models)."""
    module = sys.modules.get("pydantic")
    if module is None or not isinstance(annotation, type):
        return False
    return issubclass(annotation, module.BaseModel)


def _is_struct(annotation: Any) -> bool:
    module = sys.modules.get("msgspec")
    if module is None or not isinstance(annotation, type):
        return False
    return issubclass(annotation, module.Struct)


class Serde(Generic[T], abc.ABC):
    """Turns values into bytes and back. Subclass it for a custom format. Every serde
    here encodes ``None`` as the empty payload, and all but ``BytesSerde`` decode the
    empty payload as ``None``."""

    @abc.abstractmethod
    def deserialize(self, buf: bytes) -> T | None:
        """The value ``buf`` holds."""

    @abc.abstractmethod
    def serialize(self, obj: T | None) -> bytes:
        """The bytes of ``obj``."""


class BytesSerde(Serde[bytes]):
    """Bytes as they are (``None`` is encoded as the empty payload, which decodes as
    ``b""``)."""

    def deserialize(self, buf: bytes) -> bytes | None:
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


class JsonSerde(Serde[I]):
    """Plain ``json``: whatever ``json.dumps`` takes; no type hint."""

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        value: I = json.loads(buf)
        return value

    def serialize(self, obj: I | None) -> bytes:
        return b"" if obj is None else json.dumps(obj).encode()


class DefaultSerde(Serde[I]):
    """JSON, with pydantic models, dataclasses and msgspec structs by the type hint
    (decoding) or the value's class (encoding). What handlers use unless told."""

    def __init__(self, type_hint: type[I] | None = None) -> None:
        super().__init__()
        self.type_hint = type_hint

    def with_maybe_type(self, type_hint: Any = None) -> DefaultSerde[I]:
        """This serde with ``type_hint`` (an ``Optional[X]`` hint decodes as ``X``)."""
        if type_hint is None:
            return self
        return DefaultSerde(_core_type(type_hint))

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        hint: Any = self.type_hint
        if hint is None:
            value: I = json.loads(buf)
            return value
        if is_pydantic(hint):
            model: I = hint.model_validate_json(buf)
            return model
        if _is_struct(hint):
            struct: I = sys.modules["msgspec"].json.decode(buf, type=hint)
            return struct
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            data = json.loads(buf)
            made: Any = hint(**data) if isinstance(data, dict) else data
            return typing.cast("I", made)
        value = json.loads(buf)
        return value

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        if is_pydantic(type(obj)):
            dumped: str = obj.model_dump_json()  # type: ignore[attr-defined]
            return dumped.encode()
        if _is_struct(type(obj)):
            encoded: bytes = sys.modules["msgspec"].json.encode(obj)
            return encoded
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return json.dumps(dataclasses.asdict(obj)).encode()
        return json.dumps(obj).encode()


class PydanticJsonSerde(Serde[I]):
    """One pydantic model class, as JSON (field names, as ``model_dump_json``)."""

    def __init__(self, model: type[I]) -> None:
        super().__init__()
        self.model = model

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        value: I = self.model.model_validate_json(buf)  # type: ignore[attr-defined]
        return value

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        dumped: str = obj.model_dump_json()  # type: ignore[attr-defined]
        return dumped.encode()


class MsgspecJsonSerde(Serde[I]):
    """One msgspec type, with msgspec's JSON codec."""

    def __init__(self, model: type[I]) -> None:
        super().__init__()
        self.model = model

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        import msgspec

        value: I = msgspec.json.decode(buf, type=self.model)
        return value

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        import msgspec

        return msgspec.json.encode(obj)


def _core_type(hint: Any) -> Any:
    """``X`` for ``Optional[X]`` (either spelling), else ``hint``."""
    args = typing.get_args(hint)
    if len(args) == 2 and type(None) in args:
        return args[0] if args[1] is type(None) else args[1]
    return hint


def with_hint(serde: Serde[Any], hint: Any) -> Serde[Any]:
    """``serde`` with ``hint`` when it is a ``DefaultSerde`` (as Restate does)."""
    if isinstance(serde, DefaultSerde) and hint is not None:
        return serde.with_maybe_type(hint)
    return serde
