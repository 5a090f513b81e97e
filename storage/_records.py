"""The records kept in the store.

Records are frozen attrs classes; ``_codec`` turns them into bytes with one cattrs
converter. Payloads (handler inputs, results, state values, promise values) are kept as
the bytes the caller produced: the storage layer never interprets them, so a value is
decoded once, by the layer that knows its type.

Journal entries are a tagged union (``JournalEntry``); the tag of each kind is frozen in
``JOURNAL_TAGS`` because it is written to disk: renaming a class must not change it.
"""

from __future__ import annotations

import enum

import attrs


class InvocationStatus(enum.Enum):
    """Where an invocation is in its life. Stored by value: do not renumber."""

    PENDING = "pending"  # accepted, waiting for its key or a worker
    RUNNING = "running"  # started at least once; may be suspended and replayed
    SUSPENDED = "suspended"  # waiting for a call, timer or promise; no coroutine held
    PAUSED = "paused"  # retries exhausted or non-deterministic; waits for resume/cancel
    COMPLETED = "completed"  # has an outcome; kept for retention
    KILLED = "killed"  # ended without compensation


@attrs.frozen
class Success:
    """A successful outcome: the encoded value."""

    value: bytes


@attrs.frozen
class Failure:
    """A terminal failure: what the caller sees as ``TerminalError``."""

    message: str
    status_code: int = 500
    #: The failure is a ``DeadlockError`` (a wait-for cycle), whatever its message says.
    deadlock: bool = False
    #: The ``TerminalError``'s metadata, as (name, value) pairs in its order. Left out
    #: of the stored form when empty, so failures without it are stored as before.
    metadata: tuple[tuple[str, str], ...] = ()


Outcome = Success | Failure


@attrs.frozen
class Target:
    """Which handler an invocation addresses. ``key`` is None for services."""

    actor: str
    handler: str
    key: str | None = None


@attrs.frozen
class InvocationRecord:
    """An accepted invocation, from acceptance to retention expiry."""

    invocation_id: str
    target: Target
    payload: bytes
    status: InvocationStatus
    accepted_at: float
    attempt: int = 0
    caller_id: str | None = None
    caller_index: int | None = None  # the caller's CallEntry to complete, if a ctx.call
    idempotency_key: str | None = None
    outcome: Outcome | None = None
    completed_at: float | None = None
    next_attempt_at: float | None = None
    pause_reason: str | None = None
    cancel_requested: bool = False  # set by cancel(); raised at the next durable await
    kill_requested: bool = False  # set offline (the ``actors kill`` command); done at open
    #: The headers it was called with (``ctx.request().headers``); None when it had none.
    #: Written only when present (``_codec``), so records without headers are as
    #: before, and records written before this field existed read back as None.
    headers: dict[str, str] | None = None
    #: When each retry cycle in progress began, for a ``max_duration`` retry limit that
    #: must hold across restarts: (journal index of the ``ctx.run`` step, or -1 for the
    #: invocation itself, wall-clock seconds). Empty unless such a limit is in use;
    #: not written when empty (``_codec``), so other records are as before.
    retry_since: tuple[tuple[int, float], ...] = ()


# --- journal entries -----------------------------------------------------------------


@attrs.frozen
class RunEntry:
    """The outcome of one ``ctx.run`` step."""

    name: str
    outcome: Outcome


@attrs.frozen
class GetStateEntry:
    """The value a state read observed (None: absent)."""

    name: str
    value: bytes | None


@attrs.frozen
class SetStateEntry:
    """A state write; the value itself lives in the ``state`` table."""

    name: str


@attrs.frozen
class ClearStateEntry:
    """A state clear; ``name`` None clears every key of the object."""

    name: str | None


@attrs.frozen
class StateKeysEntry:
    """The state key names a ``state_keys()`` call observed."""

    names: tuple[str, ...]


@attrs.frozen
class TimeEntry:
    """The clock reading a ``ctx.time()`` call observed (seconds since the epoch)."""

    now: float


@attrs.frozen
class CallEntry:
    """An outgoing call; ``outcome`` is filled in when the callee completes."""

    callee_id: str
    target: Target
    payload: bytes
    outcome: Outcome | None = None


@attrs.frozen
class SendEntry:
    """An outgoing one-way send, optionally delayed until ``deliver_at``."""

    callee_id: str
    target: Target
    payload: bytes
    deliver_at: float | None = None


@attrs.frozen
class SleepEntry:
    """A durable sleep: ``fired`` once the timer has gone off."""

    wake_at: float
    fired: bool = False


@attrs.frozen
class PromiseEntry:
    """A wait on a durable promise; ``outcome`` once it completed."""

    name: str
    outcome: Outcome | None = None


@attrs.frozen
class AwakeableEntry:
    """An awakeable created by the invocation; ``outcome`` once completed."""

    awakeable_id: str
    outcome: Outcome | None = None


@attrs.frozen
class SelectEntry:
    """Which of the named futures of a select finished first."""

    winner: str


@attrs.frozen
class SignalEntry:
    """A wait on a named signal of the invocation itself; ``outcome`` once received."""

    name: str
    outcome: Outcome | None = None


@attrs.frozen
class CompletedEntry:
    """Which futures of a ``wait_completed`` had finished when it returned: their
    positions in its argument list, in that order."""

    done: tuple[int, ...]


@attrs.frozen
class PromisePeekEntry:
    """What a non-blocking ``peek()`` of a durable promise observed (None: pending)."""

    name: str
    outcome: Outcome | None = None


@attrs.frozen
class ResolveEntry:
    """An attempt to complete a promise (``promise:NAME``) or an awakeable
    (``awakeable:ID``), or to cancel an invocation (``cancel:ID``); ``failure`` is the
    error it met (e.g. already completed)."""

    target: str
    failure: Failure | None = None


@attrs.frozen
class CancelledEntry:
    """The point at which the handler observed its cancellation, and what it raised."""

    message: str


@attrs.frozen
class AttachEntry:
    """A wait for the result of another invocation, named by id; ``outcome`` once it
    completed."""

    invocation_id: str
    outcome: Outcome | None = None


JournalEntry = (
    RunEntry
    | GetStateEntry
    | SetStateEntry
    | ClearStateEntry
    | StateKeysEntry
    | TimeEntry
    | CallEntry
    | SendEntry
    | SleepEntry
    | PromiseEntry
    | AwakeableEntry
    | SelectEntry
    | PromisePeekEntry
    | ResolveEntry
    | CancelledEntry
    | AttachEntry
    | CompletedEntry
    | SignalEntry
)

# Written to disk: never change a value, only add new ones.
JOURNAL_TAGS: dict[type, str] = {
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

OUTCOME_TAGS: dict[type, str] = {Success: "ok", Failure: "err"}


# --- other tables ---------------------------------------------------------------------


class TimerKind(enum.Enum):
    """What a timer does when it fires. Stored by value."""

    WAKE = "wake"  # a sleep of a suspended invocation ends
    DELIVER = "deliver"  # a delayed send becomes runnable
    RETRY = "retry"  # a failed invocation's next attempt
    EXPIRE = "expire"  # retention of a completed invocation ends


@attrs.frozen
class TimerRecord:
    """A durable timer; keyed by (due time, sequence) so the earliest sorts first."""

    kind: TimerKind
    invocation_id: str
    due: float
    entry_index: int | None = None


@attrs.frozen
class PromiseRecord:
    """A workflow's durable promise. ``outcome`` None: not completed yet."""

    workflow: str
    workflow_id: str
    name: str
    outcome: Outcome | None = None


@attrs.frozen
class IdempotencyRecord:
    """Maps an idempotency key to its invocation; ``request_digest`` detects reuse of
    the same key for a different target or payload."""

    invocation_id: str
    request_digest: bytes
    expires_at: float | None = None


@attrs.frozen
class WorkflowRecord:
    """The one ``main`` invocation of a workflow id."""

    invocation_id: str
