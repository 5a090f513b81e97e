"""Hand-written decoders for the records read on every resolution and replay.

cattrs' generated structure functions call one hook per field, and an optional field
goes through a generic wrapper (``BaseConverter._structure_optional``): decoding an
``InvocationRecord`` cost ~6x its msgpack decoding, and a resolved workflow reads its
record, its promise and its journal each time it is revived. These functions build
the same records from the same msgpack maps directly.

They are what cattrs' converter returns for every map ``_codec.dumps`` writes (a test
compares both on every field, with records of every shape, including maps written
before a field existed: a missing optional field takes its default). Values are taken
as msgpack decoded them, since this code wrote them: only floats are converted, as
cattrs converts them (a float field may have been written from an int). A map that is
not a record's (a missing key, another type) raises, and ``loads`` turns that into
``RecordDecodeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ._records import (
    CallEntry,
    Failure,
    InvocationRecord,
    InvocationStatus,
    PromiseEntry,
    PromiseRecord,
    ResolveEntry,
    RunEntry,
    Success,
    Target,
    TimerKind,
    TimerRecord,
    WorkflowRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._records import JournalEntry, Outcome

_STATUS: Final = {status.value: status for status in InvocationStatus}
_TIMER_KIND: Final = {kind.value: kind for kind in TimerKind}


def outcome(raw: Any) -> Outcome:
    """A tagged ``Success`` or ``Failure`` map (``OUTCOME_TAGS``)."""
    tag = raw["t"]
    if tag == "ok":
        return Success(raw["value"])
    if tag == "err":
        return _failure(raw)
    raise ValueError(f"unknown outcome tag {tag!r}")


def _failure(raw: Any) -> Failure:
    return Failure(
        raw["message"],
        raw.get("status_code", 500),
        raw.get("deadlock", False),
        tuple((name, value) for name, value in raw.get("metadata", ())),
    )


def _optional_outcome(raw: Any) -> Outcome | None:
    return None if raw is None else outcome(raw)


def _entry_outcome(raw: Any) -> Outcome | None:
    """A journal entry's optional outcome: stored without its tag (the entries' hooks
    were built before the tagged optional outcome's, and the bytes are frozen since),
    so cattrs tells the two apart by their fields, as here."""
    if raw is None:
        return None
    if "message" in raw:
        return _failure(raw)
    if "value" in raw:
        return Success(raw["value"])
    raise ValueError("an outcome with neither a value nor a message")


def _target(raw: Any) -> Target:
    return Target(raw["actor"], raw["handler"], raw.get("key"))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def invocation_record(raw: Any) -> InvocationRecord:
    get = raw.get
    headers = get("headers")
    retry_since = get("retry_since")
    return InvocationRecord(
        raw["invocation_id"],
        _target(raw["target"]),
        raw["payload"],
        _STATUS[raw["status"]],
        float(raw["accepted_at"]),
        get("attempt", 0),
        get("caller_id"),
        get("caller_index"),
        get("idempotency_key"),
        _optional_outcome(get("outcome")),
        _optional_float(get("completed_at")),
        _optional_float(get("next_attempt_at")),
        get("pause_reason"),
        get("cancel_requested", False),
        get("kill_requested", False),
        None if headers is None else dict(headers),
        () if retry_since is None else tuple((int(index), float(at)) for index, at in retry_since),
    )


def promise_record(raw: Any) -> PromiseRecord:
    return PromiseRecord(
        raw["workflow"], raw["workflow_id"], raw["name"], _optional_outcome(raw.get("outcome"))
    )


def workflow_record(raw: Any) -> WorkflowRecord:
    return WorkflowRecord(raw["invocation_id"])


def timer_record(raw: Any) -> TimerRecord:
    return TimerRecord(
        _TIMER_KIND[raw["kind"]], raw["invocation_id"], float(raw["due"]), raw.get("entry_index")
    )


#: The records ``loads`` decodes without cattrs: their classes' field names, in order,
#: are checked by the tests against ``attrs.fields`` (a new field must be added here).
RECORDS: Final[dict[type, Callable[[Any], Any]]] = {
    InvocationRecord: invocation_record,
    PromiseRecord: promise_record,
    WorkflowRecord: workflow_record,
    TimerRecord: timer_record,
}


def _promise_entry(raw: Any) -> PromiseEntry:
    return PromiseEntry(raw["name"], _entry_outcome(raw.get("outcome")))


def _run_entry(raw: Any) -> RunEntry:
    return RunEntry(raw["name"], outcome(raw["outcome"]))


def _resolve_entry(raw: Any) -> ResolveEntry:
    failure = raw.get("failure")
    # A resolve's failure is stored without a tag (a plain ``Failure`` field).
    return ResolveEntry(raw["target"], None if failure is None else _failure(failure))


def _call_entry(raw: Any) -> CallEntry:
    return CallEntry(
        raw["callee_id"],
        _target(raw["target"]),
        raw["payload"],
        _entry_outcome(raw.get("outcome")),
    )


#: Journal entries replayed most (by their frozen tag, ``JOURNAL_TAGS``); the others
#: take cattrs' tagged union.
JOURNAL: Final[dict[str, Callable[[Any], JournalEntry]]] = {
    "promise": _promise_entry,
    "run": _run_entry,
    "resolve": _resolve_entry,
    "call": _call_entry,
}
