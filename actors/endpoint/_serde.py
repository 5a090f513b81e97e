"""A restate ``Serde`` that encodes and decodes with virtual-actors' converter.

The Restate SDK moves bytes; what those bytes mean is ours: handler inputs and outputs,
``ctx.run`` results, state, promise and awakeable values are JSON made by
``actors._serde``, so a dataclass (attrs class, pydantic model, enum, datetime...)
arrives as that class, exactly as in the embedded runtime, and the bytes Restate stores
are the bytes the embedded runtime would store (``actors export`` relies on it).
"""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar

from restate.serde import Serde

from actors._serde import decode_input, decode_value, encode_value
from actors._types import RAW_BYTES

T = TypeVar("T")

NONE_TYPE: Final = type(None)


class ConverterSerde(Serde[T], Generic[T]):
    """Values of ``annotation`` <-> the JSON bytes our converter makes.

    ``None`` is the empty payload both ways, as Restate's own JSON serde does (an empty
    request body is a handler input of None; a handler returning None answers an empty
    body). With ``strict``, decoding refuses fields a class does not declare (what a
    caller sends); otherwise it ignores them (what was stored). Errors are
    ``actors.SerializationError`` naming ``what``.
    """

    __slots__ = ("annotation", "strict", "what")

    def __init__(self, annotation: Any, what: str, *, strict: bool = False) -> None:
        self.annotation = annotation
        self.what = what
        self.strict = strict

    def deserialize(self, buf: bytes) -> T | None:
        if self.annotation is RAW_BYTES:
            return bytes(buf)  # type: ignore[return-value]
        if not buf:
            buf = b"null"
        decode = decode_input if self.strict else decode_value
        value: T | None = decode(bytes(buf), self.annotation, self.what)
        return value

    def serialize(self, obj: T | None) -> bytes:
        if obj is None and self.annotation is not RAW_BYTES:
            return b""
        return encode_value(obj, self.annotation, self.what)
