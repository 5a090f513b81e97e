"""Handler inputs, outputs and state values <-> JSON bytes.

cattrs converters for user values (separate from the storage converter), from cattrs'
msgspec preset, encoded as JSON so that payloads are what Restate clients and the HTTP
ingress send. Primitives are structured strictly (``"5"`` is not an int, ``True`` is not
an int), because silently coercing a caller's input hides bugs; every conversion error
becomes ``SerializationError`` naming the failing field (``cattrs.transform_error``'s
form, ``_types.describe``).

``ANY`` (``object``) means "no declared type": values round-trip as plain JSON.

Two converters, the same but for one rule (``_types`` has the reasons): ``_input_converter``
checks what callers send (``check_value``, ``decode_input``) and refuses fields a
dataclass, attrs class or TypedDict does not declare; ``_converter`` reads what was stored
(state, results, journal) and ignores them, so a class that loses a field still reads its
old values. pydantic models, msgspec Structs and raw ``bytes`` payloads are ``_types``'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import cattrs
import msgspec
from cattrs.fns import identity
from cattrs.preconf.msgspec import make_converter

from ._errors import SerializationError
from ._types import RAW_BYTES, FieldErrors, configure_types, describe, encode_unknown, raw_bytes

ANY: Final = object


def _strict(expected: type, accept: tuple[type, ...]) -> Any:
    def structure(value: object, _: type) -> object:
        if type(value) in accept:
            return float(value) if expected is float else value  # type: ignore[arg-type]
        raise TypeError(f"expected {expected.__name__}, got {type(value).__name__} {value!r}")

    return structure


def _make_value_converter(*, forbid_extra_keys: bool) -> cattrs.Converter:
    converter = make_converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook(type(None), _structure_none)
    # "Any JSON": matched exactly (a plain ``object`` hook would shadow every class).
    converter.register_structure_hook_func(lambda t: t is object, lambda value, _: value)
    converter.register_unstructure_hook_func(lambda t: t is object, _unstructure_any)
    configure_types(converter)
    return converter


def _structure_none(value: object, _: type) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__} {value!r}")


def _unstructure_any(value: object) -> object:
    # By the value's own class. A bare ``object()`` would dispatch back here without
    # end (a RecursionError at whatever depth the stack allows): the encoder refuses it.
    if type(value) is object:
        return value
    return _converter.unstructure(value)


_converter = _make_value_converter(forbid_extra_keys=False)
_input_converter = _make_value_converter(forbid_extra_keys=True)
_encode = msgspec.json.Encoder(enc_hook=encode_unknown).encode
_decode = msgspec.json.Decoder().decode


# --- the hooks per annotation --------------------------------------------------------------
# These functions run for every argument, result and state value. Each looks its
# annotation's hook up in a dict of its own first: one subscript instead of a call into
# cattrs' converter (a Python frame and its dispatch cache) per value, and where cattrs
# would hand the value over unchanged (``identity``: ints, strs, most dataclasses) the
# encoder is msgspec's, called directly. cattrs caches the same hooks without a bound;
# these dicts are cleared when they reach ``_MAX_CACHED`` annotations (classes made at
# run time, e.g. in a loop, cannot grow them for ever). Raw ``bytes`` payloads
# (``RAW_BYTES``) have ``_RAW`` as their structure: no JSON at all.

_MAX_CACHED: Final = 4096
_Encoder = Callable[[Any], bytes]
_Structure = Callable[[Any, Any], Any] | None  # None: no conversion (``object``, ``Any``)


def _RAW(raw: object, annotation: Any) -> Any:
    raise AssertionError("a raw payload is never structured")  # checked for by identity


_encoders: dict[Any, _Encoder] = {RAW_BYTES: raw_bytes}
_structures: dict[Any, _Structure] = {RAW_BYTES: _RAW}
#: The JSON scalars, decoded and checked by msgspec in one C call, with the strict
#: hooks' answers (an int is not a bool, a float may be written as an int): the
#: commonest state values and results (a counter's ``int``) skip the hook's frame. A
#: value they refuse takes the general path, which names what is wrong.
_SCALAR_DECODERS: Final[dict[type, Callable[[bytes], Any]]] = {
    kind: msgspec.json.Decoder(kind).decode for kind in (int, str, bool, float)
}
_input_structures: dict[Any, _Structure] = {RAW_BYTES: _RAW}


def _remember(cache: dict[Any, Any], annotation: Any, hook: Any) -> None:
    if len(cache) >= _MAX_CACHED:
        raw = cache[RAW_BYTES]
        cache.clear()
        cache[RAW_BYTES] = raw
    try:
        cache[annotation] = hook
    except TypeError:  # an unhashable annotation (Annotated metadata): looked up each time
        pass


def _encoder_for(annotation: Any) -> _Encoder:
    hook = _converter.get_unstructure_hook(annotation)
    if hook is identity:
        encoder: _Encoder = _encode
    else:

        def encoder(value: Any) -> bytes:
            return _encode(hook(value))

    _remember(_encoders, annotation, encoder)
    return encoder


def _structure_for(
    converter: cattrs.Converter, cache: dict[Any, _Structure], annotation: Any
) -> _Structure:
    hook = (
        None
        if annotation is object or annotation is Any
        else converter.get_structure_hook(annotation)
    )
    _remember(cache, annotation, hook)
    return hook


def _describe(exc: Exception, what: str) -> str:
    if isinstance(exc, cattrs.BaseValidationError | FieldErrors):
        return "; ".join(describe(exc, what))
    return f"{exc} @ {what}"


def _not_converted(exc: Exception, annotation: Any, what: str) -> SerializationError:
    return SerializationError(
        f"{what} does not convert to {_type_name(annotation)}: {_describe(exc, '$')}"
    )


def encode_value(value: object, annotation: Any, what: str) -> bytes:
    """JSON bytes for ``value`` of type ``annotation`` (the value itself for a raw
    ``bytes`` payload); ``what`` names it in errors."""
    try:
        encoder = _encoders[annotation]
    except (KeyError, TypeError):
        encoder = _encoder_for(annotation)
    try:
        return encoder(value)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {what}: {exc}") from exc


def decode_value(data: bytes, annotation: Any, what: str) -> Any:
    """The value of type ``annotation`` that stored ``data`` holds, or
    ``SerializationError``. Fields a class no longer declares are ignored."""
    scalar = _SCALAR_DECODERS.get(annotation) if type(annotation) is type else None
    if scalar is not None:
        try:
            return scalar(data)
        except msgspec.MsgspecError:
            pass  # the general path says why, in its words
    try:
        structure = _structures[annotation]
    except (KeyError, TypeError):
        structure = _structure_for(_converter, _structures, annotation)
    if structure is _RAW:
        return bytes(data)
    try:
        raw = _decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"{what} is not valid JSON: {exc}") from exc
    if structure is None:
        return raw
    try:
        return structure(raw, annotation)
    except Exception as exc:
        raise _not_converted(exc, annotation, what) from exc


def decode_input(data: bytes, annotation: Any, what: str) -> Any:
    """``decode_value`` for what a caller sends (a request body): a field that a
    dataclass, attrs class or TypedDict does not declare is a ``SerializationError``."""
    if annotation is RAW_BYTES:
        return bytes(data)
    try:
        raw = _decode(data)
    except msgspec.DecodeError as exc:
        raise SerializationError(f"{what} is not valid JSON: {exc}") from exc
    return structure_value(raw, annotation, what)


def structure_value(raw: object, annotation: Any, what: str) -> Any:
    """Convert plain JSON-like data a caller sent into ``annotation`` (strictly, unknown
    fields refused)."""
    try:
        structure = _input_structures[annotation]
    except (KeyError, TypeError):
        structure = _structure_for(_input_converter, _input_structures, annotation)
    if structure is None:
        return raw
    try:
        return structure(raw, annotation)
    except Exception as exc:
        raise _not_converted(exc, annotation, what) from exc


def check_value(value: object, annotation: Any, what: str) -> tuple[bytes, Any]:
    """Encode ``value`` and convert it back through ``annotation``: the bytes to store
    and the value a handler receives. Raises ``SerializationError`` for a value that
    does not fit the annotation (unknown fields included), before anything is stored."""
    try:
        encoder = _encoders[annotation]
        structure = _input_structures[annotation]
    except (KeyError, TypeError):
        encoder = _encoder_for(annotation)
        structure = _structure_for(_input_converter, _input_structures, annotation)
    try:
        data = encoder(value)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {what}: {exc}") from exc
    if structure is None:
        return data, value
    if structure is _RAW:
        return data, data
    try:
        return data, structure(_decode(data), annotation)
    except Exception as exc:
        raise _not_converted(exc, annotation, what) from exc


def _type_name(annotation: Any) -> str:
    if annotation is RAW_BYTES:
        return "bytes"
    return getattr(annotation, "__name__", None) or repr(annotation)
