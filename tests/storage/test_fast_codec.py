"""The hand-written encoders and decoders (``storage/_encoders``, ``_decoders``) against
cattrs' plain converter: the encoders write the same bytes for records of every shape,
and for every map the codec writes (and the same maps without their optional keys, as
records written before a field existed) the decoders give the same record, field by
field, value and type."""

from __future__ import annotations

from typing import Any

import attrs
import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from storage_strategies import (
    JOURNAL_STRATEGIES,
    RECORD_STRATEGIES,
    float_fields,
    invocation_records,
    outcomes,
    timer_records,
)

from actors.storage import (
    CallEntry,
    Failure,
    InvocationRecord,
    JournalEntry,
    PromiseEntry,
    PromiseRecord,
    RecordDecodeError,
    ResolveEntry,
    RunEntry,
    Success,
    TimerRecord,
    WorkflowRecord,
    _decoders,
    _encoders,
    _records,
    dumps,
    dumps_entry,
    dumps_invocation,
    loads,
    loads_entry,
)
from actors.storage._codec import make_converter

#: The general decoder: cattrs' converter, without any fast path.
_GENERAL = make_converter(fast_paths=False)

#: The records and entries with hand-written codecs, drawn as ``storage_strategies`` draws
#: them, with float fields also written from ints.
RECORDS: dict[type, st.SearchStrategy[Any]] = {
    InvocationRecord: invocation_records(float_fields),
    PromiseRecord: RECORD_STRATEGIES[PromiseRecord],
    WorkflowRecord: RECORD_STRATEGIES[WorkflowRecord],
    TimerRecord: timer_records(float_fields),
}
ENTRIES: dict[type, st.SearchStrategy[Any]] = {
    cls: JOURNAL_STRATEGIES[cls] for cls in (PromiseEntry, RunEntry, ResolveEntry, CallEntry)
}


def _same(fast: Any, general: Any) -> None:
    """Equal on every field, with the same types, nested records included."""
    assert type(fast) is type(general)
    if attrs.has(type(general)):
        for field in attrs.fields(type(general)):
            _same(getattr(fast, field.name), getattr(general, field.name))
        return
    assert fast == general
    if isinstance(general, tuple | list):
        for a, b in zip(fast, general, strict=True):
            _same(a, b)
    if isinstance(general, dict):
        assert list(fast.items()) == list(general.items())


def _optional_keys(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls) if f.default is not attrs.NOTHING]


def test_the_fast_paths_cover_the_hot_records() -> None:
    assert set(_decoders.RECORDS) == set(RECORDS)
    assert set(_encoders.RECORDS) <= set(RECORDS)
    tags = {_records.JOURNAL_TAGS[cls] for cls in ENTRIES}
    assert set(_decoders.JOURNAL) == tags
    assert set(_encoders.JOURNAL) == set(ENTRIES)


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_a_record_is_written_as_the_general_encoder_writes_it(cls: type, data: Any) -> None:
    record = data.draw(RECORDS[cls])
    assert dumps(record) == msgspec.msgpack.encode(_GENERAL.unstructure(record))


@pytest.mark.parametrize("cls", list(ENTRIES), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_an_entry_is_written_as_the_general_encoder_writes_it(cls: type, data: Any) -> None:
    entry = data.draw(ENTRIES[cls])
    general = _GENERAL.unstructure(entry, JournalEntry)
    assert dumps_entry(entry) == msgspec.msgpack.encode(general)


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_a_record_decodes_as_the_general_decoder_decodes_it(cls: type, data: Any) -> None:
    record = data.draw(RECORDS[cls])
    stored = dumps(record)
    raw = msgspec.msgpack.decode(stored)
    _same(loads(cls, stored), _GENERAL.structure(raw, cls))
    # Without some of its optional keys (written before the field existed, or left
    # out because empty): both take the field's default.
    dropped = data.draw(
        st.sets(st.sampled_from(_optional_keys(cls))) if _optional_keys(cls) else st.just(set())
    )
    old = {k: v for k, v in raw.items() if k not in dropped}
    _same(loads(cls, msgspec.msgpack.encode(old)), _GENERAL.structure(old, cls))


@pytest.mark.parametrize("cls", list(ENTRIES), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_an_entry_decodes_as_the_general_decoder_decodes_it(cls: type, data: Any) -> None:
    entry = data.draw(ENTRIES[cls])
    stored = dumps_entry(entry)
    raw = msgspec.msgpack.decode(stored)
    _same(loads_entry(stored), _GENERAL.structure(raw, JournalEntry))  # type: ignore[arg-type]
    dropped = data.draw(
        st.sets(st.sampled_from(_optional_keys(cls))) if _optional_keys(cls) else st.just(set())
    )
    old = {k: v for k, v in raw.items() if k not in dropped}
    _same(loads_entry(msgspec.msgpack.encode(old)), _GENERAL.structure(old, JournalEntry))  # type: ignore[arg-type]


@given(outcomes)
@example(Failure("m"))
def test_an_outcome_without_its_defaults_decodes_alike(outcome: Success | Failure) -> None:
    raw = msgspec.msgpack.decode(dumps_entry(RunEntry("s", outcome)))["outcome"]
    for key in ("status_code", "deadlock", "metadata"):
        raw.pop(key, None)
        _same(_decoders.outcome(raw), _GENERAL.structure(raw, _records.Outcome))  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda cls: cls.__name__)
def test_a_new_field_needs_a_decoder_change(cls: type) -> None:
    # A record with every field set to a value that is not its default: a field the
    # decoder does not know would come back as its default and fail the comparison.
    names = [f.name for f in attrs.fields(cls)]
    expected = {
        InvocationRecord: [
            "invocation_id",
            "target",
            "payload",
            "status",
            "accepted_at",
            "attempt",
            "caller_id",
            "caller_index",
            "idempotency_key",
            "outcome",
            "completed_at",
            "next_attempt_at",
            "pause_reason",
            "cancel_requested",
            "kill_requested",
            "headers",
            "retry_since",
        ],
        PromiseRecord: ["workflow", "workflow_id", "name", "outcome"],
        WorkflowRecord: ["invocation_id"],
        TimerRecord: ["kind", "invocation_id", "due", "entry_index"],
    }[cls]
    assert names == expected


def test_an_outcome_neither_decoder_knows_is_a_decode_error() -> None:
    raw = msgspec.msgpack.decode(dumps(PromiseRecord("W", "id", "p", Success(b"x"))))
    raw["outcome"]["t"] = "maybe"
    with pytest.raises(RecordDecodeError, match="PromiseRecord"):
        loads(PromiseRecord, msgspec.msgpack.encode(raw))
    # A journal entry's outcome is untagged: told apart by its fields.
    entry = {"t": "promise", "name": "p", "outcome": {"neither": 1}}
    with pytest.raises(RecordDecodeError, match="journal entry"):
        loads_entry(msgspec.msgpack.encode(entry))
    with pytest.raises(ValueError, match="disambiguate"):
        _GENERAL.structure(entry, JournalEntry)  # type: ignore[arg-type]


@given(RECORDS[InvocationRecord])
def test_an_invocation_is_written_alike_from_its_fields(record: InvocationRecord) -> None:
    fields = [getattr(record, field.name) for field in attrs.fields(InvocationRecord)]
    assert dumps_invocation(*fields) == dumps(record)
    assert dumps_invocation(*fields) == msgspec.msgpack.encode(_GENERAL.unstructure(record))
