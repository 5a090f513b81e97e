"""Records <-> bytes. Pure: no I/O, no LMDB.

One cattrs converter built for storage (never cattrs' global one), with the journal and
outcome unions tagged from the frozen maps in ``_records``. The unstructured form is
encoded with msgpack (msgspec), which keeps ``bytes`` as binary: payloads are stored as
the exact bytes the caller gave, with no base64 or re-encoding.

``detailed_validation`` is off: stored records are written by this code, and decoding
sits on every read path. A record that fails to decode raises ``RecordDecodeError``.
The records and journal entries written and read on every resolution and replay skip
cattrs: ``_encoders`` builds their msgpack maps and ``_decoders`` the records from them
directly (the same bytes and the same records: tests compare them with cattrs').
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import cattrs
import msgspec
from cattrs.fns import identity
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from . import _decoders, _encoders
from ._errors import RecordDecodeError
from ._records import (
    JOURNAL_TAGS,
    OUTCOME_TAGS,
    Failure,
    InvocationRecord,
    InvocationStatus,
    JournalEntry,
    Outcome,
    TimerKind,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")
P = ParamSpec("P")


def make_converter(*, fast_paths: bool = True) -> cattrs.Converter:
    """Build the storage converter. Exposed so tests can check it in isolation; without
    ``fast_paths``, the hooks that only make writing faster are left out (the tests
    check that they change no byte)."""
    converter = cattrs.Converter(detailed_validation=False)
    # Before the unions, which take their members' hooks: a failure without metadata
    # is stored exactly as before the field existed.
    converter.register_unstructure_hook(
        Failure,
        make_dict_unstructure_fn(Failure, converter, metadata=override(omit_if_default=True)),
    )
    # Tuples are written as msgpack arrays and must come back as tuples.
    configure_tagged_union(
        Outcome,
        converter,
        tag_generator=OUTCOME_TAGS.__getitem__,
        tag_name="t",
    )
    configure_tagged_union(
        JournalEntry,
        converter,
        tag_generator=JOURNAL_TAGS.__getitem__,
        tag_name="t",
    )
    # An optional outcome must carry its tag too: one on-disk form per value.
    optional_outcome = Outcome | None
    converter.register_unstructure_hook_func(
        lambda t: t == optional_outcome,
        lambda value: None if value is None else converter.unstructure(value, Outcome),
    )
    converter.register_structure_hook_func(
        lambda t: t == optional_outcome,
        lambda value, _: None if value is None else converter.structure(value, Outcome),  # type: ignore[arg-type]
    )
    # Retry starts (``InvocationRecord.retry_since``) are written by this code as plain
    # tuples, which msgpack takes as they are (cattrs' generic tuple walk is slow).
    retry_since = tuple[tuple[int, float], ...]
    converter.register_unstructure_hook_func(lambda t: t == retry_since, lambda value: value)
    converter.register_structure_hook_func(
        lambda t: t == retry_since,
        lambda value, _: tuple((int(index), float(at)) for index, at in value),
    )
    # Optional plain values are written as they are: cattrs' optional hook calls an
    # identity hook through a wrapper per field, where the identity hook itself lets the
    # generated record functions read the field inline (same bytes: ``x`` or None).
    if fast_paths:
        passthrough = tuple(kind | None for kind in (str, int, float, bool, bytes))
        converter.register_unstructure_hook_func(lambda t: t in passthrough, identity)
        # Enums as their value, read directly (``Enum.value`` is a property: ~0.3 us).
        for kind in (InvocationStatus, TimerKind):
            converter.register_unstructure_hook(kind, operator.attrgetter("_value_"))
    # Headers and retry starts are rare: a record without them stores no key for them at
    # all (its bytes are what they were before the fields existed).
    converter.register_unstructure_hook(
        InvocationRecord,
        make_dict_unstructure_fn(
            InvocationRecord,
            converter,
            headers=override(omit_if_default=True),
            retry_since=override(omit_if_default=True),
        ),
    )
    return converter


_converter = make_converter()
_FAST_RECORDS: Final = _encoders.RECORDS
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def dumps(record: object) -> bytes:
    """Encode a record (or a union member) into bytes."""
    fast = _FAST_RECORDS.get(record.__class__)
    if fast is not None:  # the hot records: a hand-written encoder (``_encoders``)
        return _encoder.encode(fast(record))
    unstructured: Any = _converter.unstructure(record)
    return _encoder.encode(unstructured)


def _encoding(fields: Callable[P, dict[str, Any]]) -> Callable[P, bytes]:
    def encode(*args: P.args, **kwargs: P.kwargs) -> bytes:
        return _encoder.encode(fields(*args, **kwargs))

    encode.__doc__ = fields.__doc__
    return encode


#: ``dumps(InvocationRecord(...))`` of the same fields (all of them, in the record's
#: order), without making the record: one is written per acceptance and completion.
dumps_invocation: Final = _encoding(_encoders.invocation_fields)


def dumps_entry(entry: JournalEntry) -> bytes:
    """Encode a journal entry with its union tag."""
    fast = _encoders.JOURNAL.get(entry.__class__)
    if fast is not None:  # the entries journaled most, steps first (``_encoders``)
        return _encoder.encode(fast(entry))
    return _encoder.encode(_converter.unstructure(entry, JournalEntry))


def loads(cls: type[T], data: bytes) -> T:
    """Decode bytes made by ``dumps`` into ``cls``."""
    try:
        fast = _decoders.RECORDS.get(cls)
        if fast is not None:  # the hot records: a hand-written decoder (``_decoders``)
            decoded: T = fast(_decoder.decode(data))
            return decoded
        return _converter.structure(_decoder.decode(data), cls)
    except Exception as exc:
        raise RecordDecodeError(f"stored bytes do not decode as {cls.__name__}: {exc!r}") from exc


def loads_entry(data: bytes) -> JournalEntry:
    """Decode a journal entry written by ``dumps_entry``."""
    try:
        raw = _decoder.decode(data)
        fast = _decoders.JOURNAL.get(raw["t"]) if type(raw) is dict else None
        if fast is not None:  # the entries replayed most (``_decoders``)
            return fast(raw)
        entry: JournalEntry = _converter.structure(raw, JournalEntry)  # type: ignore[arg-type]
    except Exception as exc:
        raise RecordDecodeError(f"stored bytes do not decode as a journal entry: {exc!r}") from exc
    return entry
