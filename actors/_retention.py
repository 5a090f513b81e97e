"""Retention: what a completed invocation leaves behind, and when it goes.

A completed invocation's record, journal and signals stay for ``retention`` (so callers can
attach and idempotent requests answer the same), and so do its idempotency key and, for
a workflow's run, the workflow's state, promises and id mapping: that is what makes a
workflow run once per id within retention. Its expiry is a durable ``EXPIRE`` timer
written with the completion; when it fires, everything is removed in one batch. A key
that was reused meanwhile (the same idempotency key or workflow id now maps to another
invocation) is left alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import IdempotencyRecord, StorageError, Table, WorkflowRecord, encode_key, loads

from ._kernel import logger
from ._rows import signal_prefix

if TYPE_CHECKING:
    from actors.storage import WriteBatch

    from ._kernel import Kernel


def expire(kernel: Kernel, invocation_id: str, batch: WriteBatch) -> None:
    """Retention is over: remove a completed invocation's record and journal, its
    idempotency key and, for a workflow run, the workflow's state and promises."""
    record = kernel.load_record(invocation_id)
    if record is None or record.outcome is None or invocation_id in kernel.invocations:
        return
    store = kernel.store
    batch.delete(Table.INVOCATIONS, invocation_id.encode())
    batch.delete_children(Table.JOURNAL, encode_key((invocation_id,)))
    batch.delete_children(Table.PROMISES, signal_prefix(invocation_id))  # its signals
    try:
        if record.idempotency_key is not None:
            row = encode_key((record.idempotency_key,))
            data = store.get(Table.IDEMPOTENCY, row)
            if data is not None and loads(IdempotencyRecord, data).invocation_id == invocation_id:
                batch.delete(Table.IDEMPOTENCY, row)
        target = record.target
        entry = kernel.entries.get(target.actor)
        if target.key is not None and entry is not None and entry.cls.actor_kind == "workflow":
            row = encode_key((target.actor, target.key))
            data = store.get(Table.WORKFLOWS, row)
            if data is not None and loads(WorkflowRecord, data).invocation_id == invocation_id:
                batch.delete(Table.WORKFLOWS, row)
                batch.delete_children(Table.STATE, row)
                batch.delete_children(Table.PROMISES, row)
    except StorageError as exc:
        logger.error("cannot expire invocation %s: %s", invocation_id, exc)
    kernel.log_id("expired", invocation_id)
