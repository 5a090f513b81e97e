"""Records <-> bytes: every record type round-trips, payloads stay verbatim, and the
on-disk names (union tags, enum values) never change."""

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
    journal_entries,
    outcomes,
    texts,
)

from actors.storage import (
    AttachEntry,
    AwakeableEntry,
    CallEntry,
    CancelledEntry,
    ClearStateEntry,
    CompletedEntry,
    Failure,
    GetStateEntry,
    IdempotencyRecord,
    InvocationRecord,
    InvocationStatus,
    JournalEntry,
    PromiseEntry,
    PromisePeekEntry,
    PromiseRecord,
    RecordDecodeError,
    ResolveEntry,
    RunEntry,
    SelectEntry,
    SendEntry,
    SetStateEntry,
    SignalEntry,
    SleepEntry,
    StateKeysEntry,
    Success,
    Target,
    TimeEntry,
    TimerKind,
    TimerRecord,
    _records,
    dumps,
    dumps_entry,
    loads,
    loads_entry,
)
from actors.storage._codec import make_converter


def _record_classes() -> set[type]:
    return {
        obj
        for obj in vars(_records).values()
        if isinstance(obj, type) and attrs.has(obj) and obj.__module__ == _records.__name__
    }


def _by_name(classes: dict[type, Any]) -> list[Any]:
    return [pytest.param(cls, id=cls.__name__) for cls in classes]


#: The converter without its fast paths: what the bytes must stay.
_PLAIN = make_converter(fast_paths=False)


def _raw(data: bytes) -> dict[str, Any]:
    """The msgpack map as stored, without cattrs: what is actually on disk."""
    raw: dict[str, Any] = msgspec.msgpack.decode(data)
    return raw


# --- round trip ------------------------------------------------------------------------


def test_every_record_type_has_a_strategy() -> None:
    # A new record type must get a strategy here, or it escapes the round-trip tests.
    assert set(RECORD_STRATEGIES) == _record_classes()


@pytest.mark.parametrize("cls", _by_name(RECORD_STRATEGIES))
@given(data=st.data())
def test_loads_dumps_round_trips(cls: type, data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[cls])
    decoded: object = loads(cls, dumps(record))
    assert decoded == record
    assert type(decoded) is cls


@pytest.mark.parametrize("cls", _by_name(RECORD_STRATEGIES))
@given(data=st.data())
def test_fast_paths_write_the_same_bytes(cls: type, data: st.DataObject) -> None:
    # The hooks that only speed writing up (optional plain fields, enums) store exactly
    # what cattrs' own hooks stored.
    record = data.draw(RECORD_STRATEGIES[cls])
    assert dumps(record) == msgspec.msgpack.encode(_PLAIN.unstructure(record))


@given(journal_entries)
def test_fast_paths_write_the_same_journal_bytes(entry: JournalEntry) -> None:
    assert dumps_entry(entry) == msgspec.msgpack.encode(_PLAIN.unstructure(entry, JournalEntry))


@given(journal_entries)
@example(StateKeysEntry(()))
@example(ClearStateEntry(None))
@example(CallEntry("c", Target("A", "h"), b"", Failure("boom", 409)))
def test_loads_entry_dumps_entry_round_trips(entry: JournalEntry) -> None:
    decoded = loads_entry(dumps_entry(entry))
    assert decoded == entry
    assert type(decoded) is type(entry)


@given(st.lists(texts, max_size=5))
def test_state_keys_come_back_as_a_tuple(names: list[str]) -> None:
    decoded = loads_entry(dumps_entry(StateKeysEntry(tuple(names))))
    assert isinstance(decoded, StateKeysEntry)
    assert type(decoded.names) is tuple
    assert decoded.names == tuple(names)


# --- payloads are the caller's bytes ---------------------------------------------------

ALL_BYTES = bytes(range(256))


@given(st.binary(max_size=4096))
@example(ALL_BYTES)
@example(b"")
def test_payloads_are_stored_verbatim(payload: bytes) -> None:
    target = Target("Counter", "add", "alice")
    records: list[tuple[object, str]] = [
        (InvocationRecord("inv", target, payload, InvocationStatus.PENDING, 0.0), "payload"),
        (CallEntry("callee", target, payload), "payload"),
        (SendEntry("callee", target, payload), "payload"),
        (Success(payload), "value"),
        (GetStateEntry("n", payload), "value"),
        (IdempotencyRecord("inv", payload), "request_digest"),
    ]
    for record, field in records:
        data = dumps(record)
        # Binary in the msgpack map, not base64 or a list of ints: the exact bytes.
        assert _raw(data)[field] == payload
        assert type(_raw(data)[field]) is bytes
        assert payload in data
        decoded = loads(type(record), data)
        assert getattr(decoded, field) == payload
        assert type(getattr(decoded, field)) is bytes


# --- the on-disk names are frozen ------------------------------------------------------


def test_journal_tags_are_frozen() -> None:
    # Written to disk: a change here makes every stored journal unreadable.
    tags = _records.JOURNAL_TAGS
    assert tags == {
        RunEntry: "run",
        GetStateEntry: "get",
        SetStateEntry: "set",
        ClearStateEntry: "clear",
        StateKeysEntry: "keys",
        TimeEntry: "time",
        CallEntry: "call",
        SendEntry: "send",
        SleepEntry: "sleep",
        PromiseEntry: "promise",
        AwakeableEntry: "awakeable",
        SelectEntry: "select",
        PromisePeekEntry: "peek",
        ResolveEntry: "resolve",
        CancelledEntry: "cancelled",
        AttachEntry: "attach",
        CompletedEntry: "completed",
        SignalEntry: "signal",
    }
    assert set(_records.JOURNAL_TAGS) == set(JOURNAL_STRATEGIES)


def test_outcome_tags_are_frozen() -> None:
    tags = _records.OUTCOME_TAGS
    assert tags == {Success: "ok", Failure: "err"}


def test_enum_values_are_frozen() -> None:
    assert {s.name: s.value for s in InvocationStatus} == {
        "PENDING": "pending",
        "RUNNING": "running",
        "SUSPENDED": "suspended",
        "PAUSED": "paused",
        "COMPLETED": "completed",
        "KILLED": "killed",
    }
    assert {k.name: k.value for k in TimerKind} == {
        "WAKE": "wake",
        "DELIVER": "deliver",
        "RETRY": "retry",
        "EXPIRE": "expire",
    }


@given(journal_entries)
def test_dumps_entry_writes_the_frozen_tag(entry: JournalEntry) -> None:
    assert _raw(dumps_entry(entry))["t"] == _records.JOURNAL_TAGS[type(entry)]


def test_loads_entry_reads_the_stored_format() -> None:
    # Hand-written maps in the on-disk format: data written today must stay readable.
    stored = {
        "run": (
            {"t": "run", "name": "step", "outcome": {"t": "ok", "value": b"\x00\xff"}},
            RunEntry("step", Success(b"\x00\xff")),
        ),
        "run-err": (
            {"t": "run", "name": "s", "outcome": {"t": "err", "message": "m", "status_code": 409}},
            RunEntry("s", Failure("m", 409)),
        ),
        "get": ({"t": "get", "name": "n", "value": None}, GetStateEntry("n", None)),
        "set": ({"t": "set", "name": "n"}, SetStateEntry("n")),
        "clear": ({"t": "clear", "name": None}, ClearStateEntry(None)),
        "keys": ({"t": "keys", "names": ["a", "b"]}, StateKeysEntry(("a", "b"))),
        "time": ({"t": "time", "now": 1.5}, TimeEntry(1.5)),
        "sleep": ({"t": "sleep", "wake_at": 2.0, "fired": True}, SleepEntry(2.0, fired=True)),
        "select": ({"t": "select", "winner": "a"}, SelectEntry("a")),
        "completed": ({"t": "completed", "done": [2, 0]}, CompletedEntry((2, 0))),
    }
    for name, (raw, expected) in stored.items():
        assert loads_entry(msgspec.msgpack.encode(raw)) == expected, name


@given(outcomes)
def test_every_stored_outcome_carries_its_tag(outcome: Success | Failure) -> None:
    tag = _records.OUTCOME_TAGS[type(outcome)]
    target = Target("A", "h")
    assert _raw(dumps_entry(RunEntry("s", outcome)))["outcome"]["t"] == tag
    optional_holders: list[object] = [
        InvocationRecord("i", target, b"", InvocationStatus.COMPLETED, 0.0, outcome=outcome),
        CallEntry("c", target, b"", outcome),
        PromiseEntry("p", outcome),
        AwakeableEntry("a", outcome),
        PromiseRecord("W", "id", "p", outcome),
    ]
    for record in optional_holders:
        assert _raw(dumps(record))["outcome"]["t"] == tag, type(record).__name__


# --- garbage ---------------------------------------------------------------------------

GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1", id="invalid-msgpack"),
    pytest.param(b"\x92\x01", id="truncated"),
    pytest.param(b"\x2a", id="an-int"),
    pytest.param(msgspec.msgpack.encode([1, 2]), id="a-list"),
    pytest.param(msgspec.msgpack.encode({}), id="empty-map"),
    pytest.param(dumps(SetStateEntry("x")) + b"\x00", id="trailing-bytes"),
]


@pytest.mark.parametrize("cls", _by_name(RECORD_STRATEGIES))
@pytest.mark.parametrize("data", GARBAGE)
def test_loads_garbage_raises_record_decode_error(cls: type, data: bytes) -> None:
    with pytest.raises(
        RecordDecodeError, match=rf"^stored bytes do not decode as {cls.__name__}: "
    ):
        loads(cls, data)


@pytest.mark.parametrize(
    "data",
    [*GARBAGE, pytest.param(msgspec.msgpack.encode({"t": "nope", "name": "x"}), id="unknown-tag")],
)
def test_loads_entry_garbage_raises_record_decode_error(data: bytes) -> None:
    with pytest.raises(
        RecordDecodeError, match=r"^stored bytes do not decode as a journal entry: "
    ):
        loads_entry(data)


def test_loads_entry_without_tag_raises_record_decode_error() -> None:
    with pytest.raises(RecordDecodeError):
        loads_entry(dumps(SetStateEntry("x")))  # untagged: written by dumps, not dumps_entry


def test_loads_of_another_record_type_raises_record_decode_error() -> None:
    timer = dumps(TimerRecord(TimerKind.WAKE, "inv", 1.0))
    with pytest.raises(RecordDecodeError, match=r"^stored bytes do not decode as InvocationRecord"):
        loads(InvocationRecord, timer)


def test_loads_unknown_enum_value_raises_record_decode_error() -> None:
    raw = _raw(dumps(TimerRecord(TimerKind.WAKE, "inv", 1.0)))
    raw["kind"] = "explode"
    with pytest.raises(RecordDecodeError, match=r"^stored bytes do not decode as TimerRecord"):
        loads(TimerRecord, msgspec.msgpack.encode(raw))


@pytest.mark.parametrize("cls", _by_name(RECORD_STRATEGIES))
@given(data=st.binary(max_size=64))
def test_loads_raises_only_record_decode_error(cls: type, data: bytes) -> None:
    try:
        decoded: object = loads(cls, data)
    except RecordDecodeError:
        return
    assert isinstance(decoded, cls)


@given(data=st.binary(max_size=64))
def test_loads_entry_raises_only_record_decode_error(data: bytes) -> None:
    try:
        loads_entry(data)
    except RecordDecodeError:
        return
