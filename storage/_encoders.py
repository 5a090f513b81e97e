"""Hand-written encoders for the records written on every resolution and completion.

cattrs' generated unstructure functions dispatch a hook per field, and the outcome
unions go through the tagged-union strategy's two wrappers. These functions build the
same msgpack maps directly: the same keys, in the same order, with the same values, so
the same bytes (tests compare them with cattrs' plain converter on records of every
shape). The rules they follow are ``_codec``'s: an invocation's headers and retry
starts are left out when empty, a failure's metadata too; an outcome field of a
record carries its tag (``"t"``, after its fields), a journal entry's does not.
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
    TimerRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._records import Outcome


def _failure(failure: Failure) -> dict[str, Any]:
    out: dict[str, Any] = {
        "message": failure.message,
        "status_code": failure.status_code,
        "deadlock": failure.deadlock,
    }
    if failure.metadata != ():
        out["metadata"] = failure.metadata
    return out


def _outcome(outcome: Outcome) -> dict[str, Any]:
    """Tagged, as ``configure_tagged_union`` writes it: the fields, then ``"t"``."""
    if type(outcome) is Success:
        return {"value": outcome.value, "t": "ok"}
    assert type(outcome) is Failure
    out = _failure(outcome)
    out["t"] = "err"
    return out


def _entry_outcome(outcome: Outcome | None) -> dict[str, Any] | None:
    """A journal entry's optional outcome: untagged (``_decoders._entry_outcome``)."""
    if outcome is None:
        return None
    if type(outcome) is Success:
        return {"value": outcome.value}
    assert type(outcome) is Failure
    return _failure(outcome)


def _target(target: Target) -> dict[str, Any]:
    return {"actor": target.actor, "handler": target.handler, "key": target.key}


def invocation_fields(
    invocation_id: str,
    target: Target,
    payload: bytes,
    status: InvocationStatus,
    accepted_at: float,
    attempt: int,
    caller_id: str | None,
    caller_index: int | None,
    idempotency_key: str | None,
    outcome: Outcome | None,
    completed_at: float | None,
    next_attempt_at: float | None,
    pause_reason: str | None,
    cancel_requested: bool,
    kill_requested: bool,
    headers: dict[str, str] | None,
    retry_since: tuple[tuple[int, float], ...],
) -> dict[str, Any]:
    """The map of the ``InvocationRecord`` of these fields (in its field order), without
    the record: ``_codec.dumps_invocation`` writes one without making it."""
    out: dict[str, Any] = {
        "invocation_id": invocation_id,
        "target": _target(target),
        "payload": payload,
        "status": status._value_,
        "accepted_at": accepted_at,
        "attempt": attempt,
        "caller_id": caller_id,
        "caller_index": caller_index,
        "idempotency_key": idempotency_key,
        "outcome": None if outcome is None else _outcome(outcome),
        "completed_at": completed_at,
        "next_attempt_at": next_attempt_at,
        "pause_reason": pause_reason,
        "cancel_requested": cancel_requested,
        "kill_requested": kill_requested,
    }
    if headers is not None:
        out["headers"] = headers
    if retry_since != ():
        out["retry_since"] = retry_since
    return out


def invocation_record(record: InvocationRecord) -> dict[str, Any]:
    return invocation_fields(
        record.invocation_id,
        record.target,
        record.payload,
        record.status,
        record.accepted_at,
        record.attempt,
        record.caller_id,
        record.caller_index,
        record.idempotency_key,
        record.outcome,
        record.completed_at,
        record.next_attempt_at,
        record.pause_reason,
        record.cancel_requested,
        record.kill_requested,
        record.headers,
        record.retry_since,
    )


def timer_record(record: TimerRecord) -> dict[str, Any]:
    return {
        "kind": record.kind._value_,
        "invocation_id": record.invocation_id,
        "due": record.due,
        "entry_index": record.entry_index,
    }


def promise_record(record: PromiseRecord) -> dict[str, Any]:
    outcome = record.outcome
    return {
        "workflow": record.workflow,
        "workflow_id": record.workflow_id,
        "name": record.name,
        "outcome": None if outcome is None else _outcome(outcome),
    }


#: The records ``dumps`` encodes without cattrs (by exact class).
RECORDS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    InvocationRecord: invocation_record,
    TimerRecord: timer_record,
    PromiseRecord: promise_record,
}


def _promise_entry(entry: PromiseEntry) -> dict[str, Any]:
    return {"name": entry.name, "outcome": _entry_outcome(entry.outcome), "t": "promise"}


def _resolve_entry(entry: ResolveEntry) -> dict[str, Any]:
    failure = entry.failure
    return {
        "target": entry.target,
        "failure": None if failure is None else _failure(failure),
        "t": "resolve",
    }


def _run_entry(entry: RunEntry) -> dict[str, Any]:
    return {"name": entry.name, "outcome": _outcome(entry.outcome), "t": "run"}


def _call_entry(entry: CallEntry) -> dict[str, Any]:
    return {
        "callee_id": entry.callee_id,
        "target": _target(entry.target),
        "payload": entry.payload,
        "outcome": _entry_outcome(entry.outcome),
        "t": "call",
    }


#: The journal entries ``dumps_entry`` encodes without cattrs (by exact class), with
#: their frozen tags (``JOURNAL_TAGS``).
JOURNAL: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    PromiseEntry: _promise_entry,
    ResolveEntry: _resolve_entry,
    RunEntry: _run_entry,
    CallEntry: _call_entry,
}
