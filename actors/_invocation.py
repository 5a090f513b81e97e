"""An invocation held in memory, and its journal cursor.

The journal is the invocation's memory across crashes: every context operation that
observes the world appends an entry, at the index it was made at. An attempt starts by
loading the durable journal; while the cursor is inside it the operations are *replayed*
(each returns its recorded value, and must be the same kind of operation with the same
name, else ``NonDeterminismError``); past its end they run *live* and append new entries.

New entries are buffered (``unflushed``) and written with the next batch the invocation
submits: before an externally visible effect (the output gate) or with its completion.
An entry lost in a crash is simply re-done live by the next attempt: that is exactly the
guarantee ``ctx.run`` gives (a body re-runs only if its result was not yet durable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs

from actors.storage import InvocationRecord, InvocationStatus, JournalEntry, Outcome, Target

from ._errors import NonDeterminismError

if TYPE_CHECKING:
    import random

    from actors.storage import CommitTicket

    from ._definitions import ActorEntry, Handler
    from ._runtime import _Activation

E = TypeVar("E", bound=JournalEntry)

UNDECODED: Any = object()


class Suspended(BaseException):
    """Unwinds a handler whose invocation waits too long: its coroutine is dropped and
    it is resumed by replay when what it waits for completes. A BaseException, so
    ``except Exception`` in handler code does not swallow it (``finally`` blocks run)."""


@attrs.define(eq=False)
class Invocation:
    """An invocation from dispatch to completion (or eviction)."""

    invocation_id: str
    target: Target
    entry: ActorEntry
    spec: Handler[Any, Any]
    payload: bytes
    arg: Any
    accepted_at: float
    caller_id: str | None = None
    caller_index: int | None = None
    idempotency_key: str | None = None
    #: The inbox key once the acceptance was submitted; None while the invocation is
    #: known only in memory (a ``call`` not yet past its first flush).
    inbox_key: bytes | None = None
    acceptance_ticket: CommitTicket | None = None
    activation: _Activation | None = None
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: Outcome | None = None
    error: Exception | None = None
    holds_slot: bool = False
    attempt: int = 0
    not_before: float | None = None
    # --- the current attempt ---
    replay: list[JournalEntry] = attrs.field(factory=list)
    index: int = 0
    unflushed: list[tuple[int, JournalEntry]] = attrs.field(factory=list)
    writes: dict[str, bytes | None] = attrs.field(factory=dict)
    cleared_all: bool = False
    last_ticket: CommitTicket | None = None  # chain of a non-exclusive invocation
    in_run: str | None = None
    rng: random.Random | None = None
    # --- suspension and pausing ---
    running: bool = False
    suspended: bool = False
    wake_pending: bool = False
    paused_reason: str | None = None
    resume: anyio.Event | None = None

    @property
    def exclusive(self) -> bool:
        """Whether the invocation holds its key while it runs."""
        return self.spec.kind in ("exclusive", "main")

    @property
    def replaying(self) -> bool:
        """Whether the cursor is still inside the durable journal."""
        return self.index < len(self.replay)

    def start_attempt(self, journal: list[JournalEntry]) -> None:
        """Reset the per-attempt state and position the cursor at the journal's start."""
        self.replay = journal
        self.index = 0
        self.unflushed = []
        self.writes = {}
        self.cleared_all = False
        self.in_run = None
        self.rng = None

    def next_replayed(self, kind: type[E], name: str | None, what: str) -> E | None:
        """The recorded entry for the operation about to run, or None when live.

        Raises ``NonDeterminismError`` when the journal recorded a different operation
        (or the same one with a different name) at this index.
        """
        if self.index >= len(self.replay):
            return None
        entry = self.replay[self.index]
        if type(entry) is not kind or (name is not None and getattr(entry, "name", name) != name):
            raise NonDeterminismError(
                f"invocation {self.invocation_id} ({self.spec.qualname}) diverged from its "
                f"journal at entry {self.index}: the handler now does {what}, but the journal "
                f"recorded {_describe(entry)}"
            )
        self.index += 1
        return entry

    def append(self, entry: JournalEntry) -> int:
        """Record a live operation; returns its journal index."""
        index = self.index
        self.unflushed.append((index, entry))
        self.index += 1
        return index

    def record(
        self, status: InvocationStatus, outcome: Outcome | None = None, now: float | None = None
    ) -> InvocationRecord:
        """The stored record of this invocation in ``status``."""
        return InvocationRecord(
            invocation_id=self.invocation_id,
            target=self.target,
            payload=self.payload,
            status=status,
            accepted_at=self.accepted_at,
            attempt=self.attempt,
            caller_id=self.caller_id,
            caller_index=self.caller_index,
            idempotency_key=self.idempotency_key,
            outcome=outcome,
            completed_at=now if outcome is not None else None,
            next_attempt_at=self.not_before,
            pause_reason=self.paused_reason,
        )


def _describe(entry: JournalEntry) -> str:
    name = getattr(entry, "name", None)
    kind = type(entry).__name__.removesuffix("Entry").lower()
    return f"{kind}({name!r})" if name is not None else kind
