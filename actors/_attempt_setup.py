"""What an attempt starts from: the context its handler gets, and the journal it
replays (pure functions of the invocation; the executor runs the attempt)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import StorageError, Table, decode_key, encode_key, loads_entry

from ._context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from ._errors import persistence_error

if TYPE_CHECKING:
    from actors.storage import JournalEntry, Store

    from ._invocation import Invocation
    from ._port import HandlerPort


def context_for(port: HandlerPort, inv: Invocation) -> Context:
    """The context of ``inv``'s handler kind: exclusive, service, workflow main, or a
    shared handler of a workflow or an object."""
    kind = inv.spec.kind
    if kind == "exclusive":
        return ObjectContext._create(port, inv)
    if kind == "service":
        return Context._create(port, inv)
    if kind == "main":
        return WorkflowContext._create(port, inv)
    if inv.entry.cls.actor_kind == "workflow":
        return WorkflowSharedContext._create(port, inv)
    return ObjectSharedContext._create(port, inv)


def load_journal(store: Store, inv: Invocation) -> dict[int, JournalEntry]:
    """The durable journal of ``inv`` by entry index: empty if it was never accepted.
    A store that cannot be read raises ``PersistenceError``."""
    if inv.inbox_key is None:
        return {}
    try:
        items = store.scan(Table.JOURNAL, encode_key((inv.invocation_id,)), children=True)
    except StorageError as exc:
        raise persistence_error(exc) from exc
    journal: dict[int, JournalEntry] = {}
    for key, value in items:
        index = decode_key(key)[-1]
        assert isinstance(index, int)
        journal[index] = loads_entry(value)
    return journal
