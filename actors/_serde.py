"""Handler inputs, outputs and state values <-> JSON bytes.

One cattrs converter for user values (separate from the storage converter): cattrs'
msgspec preset, encoded as JSON so that payloads are what Restate clients and the HTTP
ingress send. Primitives are structured strictly (``"5"`` is not an int, ``True`` is not
an int), because silently coercing a caller's input hides bugs; every conversion error
becomes ``SerializationError`` naming the failing field (``cattrs.transform_error``).

``ANY`` (``object``) means "no declared type": values round-trip as plain JSON.
"""

from __future__ import annotations

from typing import Any, Final

import cattrs
import msgspec
from cattrs.preconf.msgspec import make_converter

from ._errors import SerializationError

ANY: Final = object


def _strict(expected: type, accept: tuple[type, ...]) -> Any:
    def structure(value: object, _: type) -> object:
        if type(value) in accept:
            return float(value) if expected is float else value  # type: ignore[arg-type]
        raise TypeError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")

    return structure


def _make_value_converter() -> cattrs.Converter:
    converter = make_converter()
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook(type(None), _structure_none)
    # "Any JSON": matched exactly (a plain ``object`` hook would shadow every class).
    converter.register_structure_hook_func(lambda t: t is object, lambda value, _: value)
    converter.register_unstructure_hook_func(lambda t: t is object, _unstructure_any)
    return converter


def _structure_none(value: object, _: type) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__} {value!r}")


def _unstructure_any(value: object) -> object:
    return _converter.unstructure(value)


_converter = _make_value_converter()
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _describe(exc: Exception, what: str) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        details = "; ".join(cattrs.transform_error(exc, path=what))
    else:
        details = f"{exc} @ {what}"
    return details


def encode_value(value: object, annotation: Any, what: str) -> bytes:
    """JSON bytes for ``value`` of type ``annotation``; ``what`` names it in errors."""
    try:
        return _encode(_converter.unstructure(value, annotation))
    except Exception as exc:
        raise SerializationError(f"cannot serialize {what}: {exc}") from exc


def decode_value(data: bytes, annotation: Any, what: str) -> Any:
    """The value of type ``annotation`` that ``data`` holds, or ``SerializationError``."""
    try:
        raw = _decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"{what} is not valid JSON: {exc}") from exc
    return structure_value(raw, annotation, what)


def structure_value(raw: object, annotation: Any, what: str) -> Any:
    """Convert plain JSON-like data into ``annotation`` (strictly)."""
    if annotation is object or annotation is Any:
        return raw
    try:
        return _converter.structure(raw, annotation)
    except Exception as exc:
        raise SerializationError(
            f"{what} does not convert to {_type_name(annotation)}: {_describe(exc, '$')}"
        ) from exc


def check_value(value: object, annotation: Any, what: str) -> tuple[bytes, Any]:
    """Encode ``value`` and convert it back through ``annotation``: the bytes to store
    and the value a handler receives. Raises ``SerializationError`` for a value that
    does not fit the annotation, before anything is stored."""
    data = encode_value(value, annotation, what)
    if annotation is object or annotation is Any:
        return data, value
    return data, structure_value(_decode(data), annotation, what)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)
