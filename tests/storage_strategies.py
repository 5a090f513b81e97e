"""Hypothesis strategies for the storage records and journal entries, shared by the codec
tests (tests/storage/test_codec.py, test_fast_codec.py): every record type and every
journal entry, with every field drawn."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
    WorkflowRecord,
)

texts = st.text(max_size=20)
payloads = st.binary(max_size=64)
opt_texts = st.none() | texts
# NaN never equals itself, so it cannot round-trip by ==; infinities and -0.0 can.
floats = st.floats(allow_nan=False)
opt_floats = st.none() | floats
#: A float field written from an int comes back as a float (both decoders convert it).
float_fields = floats | st.integers(-(10**6), 10**6)
# msgpack integers are 64-bit; records hold counters and status codes, never more.
ints = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)

targets = st.builds(Target, actor=texts, handler=texts, key=opt_texts)
successes = st.builds(Success, value=payloads)
failures = st.builds(
    Failure,
    message=texts,
    status_code=ints,
    deadlock=st.booleans(),
    metadata=st.lists(st.tuples(texts, texts), max_size=3).map(tuple),
)
outcomes = st.one_of(successes, failures)
opt_outcomes = st.none() | outcomes


def invocation_records(times: st.SearchStrategy[Any]) -> st.SearchStrategy[InvocationRecord]:
    """Every field drawn, the rare ones too (headers, retry starts, a caller's index);
    ``times`` for its times (``floats``, or floats and ints: a float field may have been
    written from an int)."""
    return st.builds(
        InvocationRecord,
        invocation_id=texts,
        target=targets,
        payload=payloads,
        status=st.sampled_from(InvocationStatus),
        accepted_at=times,
        attempt=ints,
        caller_id=opt_texts,
        caller_index=st.none() | ints,
        idempotency_key=opt_texts,
        outcome=opt_outcomes,
        completed_at=st.none() | times,
        next_attempt_at=st.none() | times,
        pause_reason=opt_texts,
        cancel_requested=st.booleans(),
        kill_requested=st.booleans(),
        headers=st.none() | st.dictionaries(texts, texts, max_size=3),
        retry_since=st.lists(st.tuples(ints, floats), max_size=3).map(tuple),
    )


def timer_records(times: st.SearchStrategy[Any]) -> st.SearchStrategy[TimerRecord]:
    return st.builds(
        TimerRecord,
        kind=st.sampled_from(TimerKind),
        invocation_id=texts,
        due=times,
        entry_index=st.none() | ints,
    )


JOURNAL_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    RunEntry: st.builds(RunEntry, name=texts, outcome=outcomes),
    GetStateEntry: st.builds(GetStateEntry, name=texts, value=st.none() | payloads),
    SetStateEntry: st.builds(SetStateEntry, name=texts),
    ClearStateEntry: st.builds(ClearStateEntry, name=opt_texts),
    StateKeysEntry: st.builds(StateKeysEntry, names=st.lists(texts, max_size=5).map(tuple)),
    TimeEntry: st.builds(TimeEntry, now=floats),
    CallEntry: st.builds(
        CallEntry, callee_id=texts, target=targets, payload=payloads, outcome=opt_outcomes
    ),
    SendEntry: st.builds(
        SendEntry, callee_id=texts, target=targets, payload=payloads, deliver_at=opt_floats
    ),
    SleepEntry: st.builds(SleepEntry, wake_at=floats, fired=st.booleans()),
    PromiseEntry: st.builds(PromiseEntry, name=texts, outcome=opt_outcomes),
    AwakeableEntry: st.builds(AwakeableEntry, awakeable_id=texts, outcome=opt_outcomes),
    SelectEntry: st.builds(SelectEntry, winner=texts),
    PromisePeekEntry: st.builds(PromisePeekEntry, name=texts, outcome=opt_outcomes),
    ResolveEntry: st.builds(ResolveEntry, target=texts, failure=st.none() | failures),
    CancelledEntry: st.builds(CancelledEntry, message=texts),
    AttachEntry: st.builds(AttachEntry, invocation_id=texts, outcome=opt_outcomes),
    SignalEntry: st.builds(SignalEntry, name=texts, outcome=opt_outcomes),
    CompletedEntry: st.builds(
        CompletedEntry, done=st.lists(st.integers(0, 1000), max_size=5).map(tuple)
    ),
}
journal_entries: st.SearchStrategy[JournalEntry] = st.one_of(*JOURNAL_STRATEGIES.values())

RECORD_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    Success: successes,
    Failure: failures,
    Target: targets,
    InvocationRecord: invocation_records(floats),
    **JOURNAL_STRATEGIES,
    TimerRecord: timer_records(floats),
    PromiseRecord: st.builds(
        PromiseRecord, workflow=texts, workflow_id=texts, name=texts, outcome=opt_outcomes
    ),
    IdempotencyRecord: st.builds(
        IdempotencyRecord, invocation_id=texts, request_digest=payloads, expires_at=opt_floats
    ),
    WorkflowRecord: st.builds(WorkflowRecord, invocation_id=texts),
}
