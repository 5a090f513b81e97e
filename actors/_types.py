"""The value types beyond what cattrs knows by itself: pydantic v2 models, msgspec Structs,
raw ``bytes`` bodies, and the unknown-field rule for dataclasses, attrs classes and
TypedDicts. ``_serde`` installs these hooks into its converters (``configure_types``);
this module encodes nothing itself.

Decisions
---------
* **pydantic is detected, never imported.** A class is a pydantic model when the
  ``pydantic`` module is already loaded (no model class can exist otherwise) and the class
  derives from its ``BaseModel``. ``import actors`` does not load pydantic, and a program
  without it pays nothing: cattrs caches the hook it chose per type, so the check runs once
  per type, not per value. pydantic v1 models (``pydantic.v1``) are not detected.
* **pydantic models are encoded by alias**: ``model_dump(mode="json", by_alias=True)``,
  decoded with ``model_validate_json``. Why aliases rather than field names:

  - A pydantic user who declares aliases is declaring the wire names (typically camelCase
    over snake_case fields, ``alias_generator=to_camel``): the same JSON goes in and comes
    out, as FastAPI answers (``response_model_by_alias=True`` by default).
  - What is encoded must decode again with the same model: state, step results and call
    results are read back through it, and a model with aliases but without
    ``populate_by_name`` accepts only its aliases, so field names would make its own
    state unreadable. For the same reason a model configured ``validate_by_alias=False``
    (pydantic 2.11), which accepts only field names, is encoded with field names.

  Restate's SDK encodes results with field names (``model_dump_json()``); the module
  ``actors.restate`` (issue 15) follows Restate there, this API does not.
* **Validation is pydantic's own**: the model's config decides strictness (``"5"`` is an
  int unless ``strict=True``) and unknown fields (ignored unless ``extra="forbid"``). It
  runs in JSON mode even for a model nested in a list or a dataclass (the nested value is
  re-encoded for that, a cost only models pay), so a strict model accepts an ISO date
  string everywhere, as it does in a request body. ``ValidationError`` becomes
  ``SerializationError`` naming each failing field by its JSON path (``$.fullName``).
* **msgspec Structs**: cattrs' msgspec preset already converts them (``msgspec.convert``,
  strict; ``msgspec.to_builtins``, which applies ``rename``). Here only their errors are
  reshaped to name the field the way the others do. Unknown fields follow the Struct's
  own ``forbid_unknown_fields``.
* **Raw bytes.** A handler whose input or output is annotated ``bytes`` takes the request
  body as it is and returns bytes that are answered as they are (``application/octet-stream``
  over HTTP), like Restate's ``BytesSerde``; stored as they are too, with no base64. The
  handler's annotation becomes ``RAW_BYTES`` (``Annotated[bytes, raw body]``), which only
  handler payloads carry: ``bytes`` in state, step results and promise values stays JSON
  (a base64 string), so what was stored before keeps decoding.
* **Unknown fields are refused in inputs.** A request body or call argument for a
  dataclass, attrs class or TypedDict with a field the class lacks is a
  ``SerializationError`` naming the field (400 over HTTP): a silently dropped field is a
  caller's bug nobody sees. Stored values (state, results, journal) are read leniently, so
  a class that loses a field still reads what was stored with it. ``allow_extra_fields``
  opts a class out; it marks that class, not its subclasses (as ``@dataclass`` does not
  reach a subclass), because a subclass that adds fields is a new contract.

Rejected: a serde object per handler (Restate's ``input_serde=``): an annotation already
says the type, and ``actors.restate`` can map Restate's serdes onto annotations; importing
pydantic when it is installed: it would cost every program its import time (~0.1 s) and
make ``actors`` behave differently depending on what happens to be installed.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import attrs
import cattrs
import msgspec
from cattrs._compat import is_mapping, is_sequence
from cattrs.cols import is_namedtuple
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn
from cattrs.gen.typeddicts import make_dict_structure_fn as make_typeddict_structure_fn
from cattrs.preconf import msgspec as preset
from cattrs.v import format_exception

if TYPE_CHECKING:
    from collections.abc import Callable

_C = TypeVar("_C", bound=type)

_ALLOW_EXTRA: Final = "__actors_allow_extra_fields__"


def allow_extra_fields(cls: _C) -> _C:
    """Class decorator: inputs of this dataclass, attrs class or TypedDict may carry
    fields the class does not declare: a class ignores them, a TypedDict keeps them (it
    is a dict). Without it such an input is refused with ``SerializationError`` (400
    over HTTP) naming the unknown fields.

    Put it above ``@dataclass`` or ``@attrs.define`` (it needs the finished class). It
    marks this class only, not its subclasses. pydantic models and msgspec Structs have
    their own setting for this (``extra=`` and ``forbid_unknown_fields``).

    Example::

        @actors.allow_extra_fields
        @dataclass
        class Event:
            kind: str

    Raises:
      TypeError: ``cls`` is not a dataclass, an attrs class or a TypedDict.
    """
    if not (dataclasses.is_dataclass(cls) or attrs.has(cls) or typing.is_typeddict(cls)):
        raise TypeError(
            f"allow_extra_fields applies to a dataclass, an attrs class or a TypedDict, "
            f"not {cls!r} (put it above @dataclass or @attrs.define)"
        )
    setattr(cls, _ALLOW_EXTRA, True)
    return cls


def extra_fields_allowed(cls: Any) -> bool:
    """Whether ``cls`` itself (or the class of a generic alias) is marked
    ``allow_extra_fields``."""
    origin = typing.get_origin(cls) or cls
    return _ALLOW_EXTRA in getattr(origin, "__dict__", {})


# --- raw bytes -----------------------------------------------------------------------------


@attrs.frozen
class _RawBody:
    def __repr__(self) -> str:
        return "raw body"


RAW_BYTES: Final[Any] = Annotated[bytes, _RawBody()]
"""The annotation of a handler input or output declared ``bytes``: taken and stored as
is, no JSON."""


def payload_type(annotation: Any) -> Any:
    """The annotation a handler's input or output is converted with."""
    return RAW_BYTES if annotation is bytes else annotation


def raw_bytes(value: object) -> bytes:
    """``value`` as the bytes of a raw payload; ``TypeError`` unless it is bytes-like."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"expected bytes (the handler is annotated bytes), got {type(value).__name__}")


# --- errors --------------------------------------------------------------------------------


class FieldErrors(ValueError):
    """A model's own validation failed (pydantic, msgspec): ``(path, message)`` pairs,
    each path relative to the value (``.fullName``, ``[1].age``, ``""`` for itself)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{message} @ ${path}" for path, message in errors))
        self.errors = errors


def describe(exc: BaseException, path: str) -> list[str]:
    """``cattrs.transform_error``, which also places a model's own errors at their path
    (``... @ $[1].age``) rather than at the model's."""
    if isinstance(exc, FieldErrors):
        return [f"{message} @ {path}{where}" for where, message in exc.errors]
    found: list[str] = []
    if isinstance(exc, cattrs.IterableValidationError | cattrs.ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            if isinstance(note, cattrs.AttributeValidationNote):
                where = f"{path}.{note.name}"
            else:
                where = f"{path}[{note.index!r}]"
            if isinstance(inner, FieldErrors | cattrs.BaseValidationError):
                found.extend(describe(inner, where))
            else:
                found.append(f"{format_exception(inner, note.type)} @ {where}")
        for inner in without:
            if isinstance(inner, FieldErrors):
                found.extend(describe(inner, path))
            else:
                found.append(f"{format_exception(inner, None)} @ {path}")
        return found
    return [f"{format_exception(exc, None)} @ {path}"]


def _pydantic_errors(exc: Any) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        )
        errors.append((where, str(error["msg"])))
    return errors


def _msgspec_errors(exc: msgspec.ValidationError) -> list[tuple[str, str]]:
    # msgspec says "Expected `int`, got `str` - at `$.quantity`".
    message, marker, where = str(exc).partition(" - at `$")
    return [(where.rstrip("`") if marker else "", message)]


# --- pydantic ------------------------------------------------------------------------------


def is_pydantic_model(annotation: Any) -> bool:
    """A pydantic v2 model class, without importing pydantic."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or not isinstance(annotation, type):
        return False
    base = getattr(pydantic, "BaseModel", None)  # None while pydantic is being imported
    return (
        isinstance(base, type)
        and issubclass(annotation, base)
        and hasattr(annotation, "model_validate_json")
    )


def _pydantic_structure(model: Any, _: cattrs.Converter) -> Callable[[object, Any], object]:
    validate_json = model.model_validate_json
    encode = msgspec.json.encode

    def structure(value: object, _: Any) -> object:
        try:
            return validate_json(encode(value))
        except ValueError as exc:  # pydantic_core.ValidationError is a ValueError
            if not callable(getattr(exc, "errors", None)):
                raise
            raise FieldErrors(_pydantic_errors(exc)) from None

    return structure


def _dumps_by_alias(model: Any) -> bool:
    return model.model_config.get("validate_by_alias", True) is not False


def _pydantic_unstructure(model: Any) -> Callable[[object], object]:
    by_alias = _dumps_by_alias(model)
    name = model.__name__

    def unstructure(value: object) -> object:
        if not isinstance(value, model):
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value.model_dump(mode="json", by_alias=by_alias)

    return unstructure


def encode_unknown(value: object) -> object:
    """msgspec's ``enc_hook``: a pydantic model met inside a value that msgspec encodes
    itself (a dataclass field, an untyped dict) is dumped as above."""
    if is_pydantic_model(type(value)):
        model: Any = value
        return model.model_dump(mode="json", by_alias=_dumps_by_alias(type(value)))
    raise NotImplementedError(f"Encoding objects of type {type(value).__name__} is unsupported")


def _passthrough(factory: Callable[..., Any]) -> Callable[[Any, cattrs.Converter], Any]:
    """One of the msgspec preset's unstructure factories, handing msgspec's encoder the
    value itself (``identity``) where the preset would copy it with ``to_builtins``:
    the encoder, unlike ``to_builtins``, calls ``encode_unknown`` for a pydantic model,
    wherever it sits. The bytes are the same (msgspec encodes both the same way)."""

    def make(annotation: Any, converter: cattrs.Converter) -> Any:
        hook = factory(annotation, converter)
        return identity if hook is msgspec.to_builtins else hook

    return make


# --- msgspec Structs, UUIDs, raw bytes -----------------------------------------------------


def _structure_struct(value: object, struct: type[msgspec.Struct]) -> msgspec.Struct:
    try:
        return msgspec.convert(value, struct)
    except msgspec.ValidationError as exc:
        raise FieldErrors(_msgspec_errors(exc)) from None


def _structure_uuid(value: object, _: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID string, got {type(value).__name__} {value!r}")
    return uuid.UUID(value)


def _structure_raw(value: object, _: Any) -> bytes:
    return raw_bytes(value)


# --- installing ----------------------------------------------------------------------------


def _lenient_structure(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    if typing.is_typeddict(typing.get_origin(cls) or cls):
        return make_typeddict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False)
    return make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False)


def configure_types(converter: cattrs.Converter) -> None:
    """Teach ``converter`` (built by cattrs' msgspec preset) the types above; its output
    must be encoded by an encoder with ``enc_hook=encode_unknown``. With
    ``converter.forbid_extra_keys`` (the input converter), classes marked
    ``allow_extra_fields`` are still structured leniently."""
    converter.register_unstructure_hook(bytes, identity)
    converter.register_unstructure_hook(msgspec.Struct, identity)
    converter.register_unstructure_hook_factory(
        is_mapping, _passthrough(preset.mapping_unstructure_factory)
    )
    converter.register_unstructure_hook_factory(
        is_sequence, _passthrough(preset.seq_unstructure_factory)
    )
    converter.register_unstructure_hook_factory(
        attrs.has, _passthrough(preset.msgspec_attrs_unstructure_factory)
    )
    converter.register_unstructure_hook_factory(
        dataclasses.is_dataclass,
        _passthrough(
            lambda t, c: preset.msgspec_attrs_unstructure_factory(t, c, msgspec_skips_private=False)
        ),
    )
    converter.register_unstructure_hook_factory(
        is_namedtuple, _passthrough(preset.namedtuple_unstructure_factory)
    )
    converter.register_structure_hook(msgspec.Struct, _structure_struct)
    converter.register_structure_hook(uuid.UUID, _structure_uuid)
    converter.register_structure_hook_func(lambda t: t is RAW_BYTES, _structure_raw)
    converter.register_structure_hook_factory(is_pydantic_model, _pydantic_structure)
    converter.register_unstructure_hook_factory(is_pydantic_model, _pydantic_unstructure)
    if converter.forbid_extra_keys:
        converter.register_structure_hook_factory(extra_fields_allowed, _lenient_structure)
