"""``actors export``: everything a data directory holds that outlives an invocation, as
one JSON document, for moving to a Restate cluster (``actors load-state``).

What it writes (``"format": "virtual-actors-export"``, ``"version": 1``):

* ``objects``: every (actor, key) that has state, virtual objects and workflow ids
  alike, with each state entry's value as JSON (the bytes Restate would store for it are
  that JSON, encoded compactly, as the endpoint encodes state).
* ``workflows``: every workflow id that ran (within retention): its ``main``
  invocation id, status, and the output or failure of a finished run.
* ``in_flight``: invocations that had not finished (pending, running, suspended,
  paused). They are *not* carried over: Restate cannot adopt a journal written by
  another engine. Drain them first (let them finish, or cancel them), or resubmit
  them to the cluster; the command warns on stderr when there are any.

It reads one LMDB snapshot and never writes, so it may run beside a live runtime; the
snapshot is then the state of that moment.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from actors.storage import (
    Failure,
    InvocationRecord,
    InvocationStatus,
    Outcome,
    StorageError,
    StoreReader,
    Success,
    Table,
    WorkflowRecord,
    decode_key,
    loads,
)

from ._cli_steer import CommandError, damage_reported

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

FORMAT = "virtual-actors-export"
_FINISHED = frozenset({InvocationStatus.COMPLETED, InvocationStatus.KILLED})


def _json(data: bytes) -> object:
    try:
        value: object = msgspec.json.decode(data)
    except msgspec.DecodeError:  # a raw ``bytes`` value: kept as text, marked
        return {"$bytes": data.decode("utf-8", "backslashreplace")}
    return value


def _outcome(outcome: Outcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    if isinstance(outcome, Success):
        return {"value": _json(outcome.value) if outcome.value else None}
    assert isinstance(outcome, Failure)
    return {"error": outcome.message, "code": outcome.status_code}


def export(data: Path) -> dict[str, Any]:
    """The export document of the data directory ``data`` (see the module docstring)."""
    try:
        reader = StoreReader.open(data)
    except StorageError as exc:
        raise CommandError(str(exc)) from exc
    objects: dict[tuple[str, str], dict[str, object]] = {}
    workflows: list[dict[str, object]] = []
    in_flight: list[dict[str, object]] = []
    with reader, reader.read() as view:
        for key, raw in view.scan(Table.STATE):
            actor, object_key, name = decode_key(key)
            assert isinstance(actor, str)
            assert isinstance(object_key, str)
            objects.setdefault((actor, object_key), {})[str(name)] = _json(raw)
        records = {
            record.invocation_id: record
            for record in (loads(InvocationRecord, raw) for _, raw in view.scan(Table.INVOCATIONS))
        }
        for key, raw in view.scan(Table.WORKFLOWS):
            actor, workflow_id = decode_key(key)
            run = loads(WorkflowRecord, raw)
            record = records.get(run.invocation_id)
            workflows.append(
                {
                    "workflow": actor,
                    "id": workflow_id,
                    "invocation_id": run.invocation_id,
                    "status": record.status.value if record is not None else "expired",
                    "outcome": _outcome(record.outcome) if record is not None else None,
                }
            )
    for record in sorted(records.values(), key=lambda r: r.accepted_at):
        if record.status not in _FINISHED:
            target = record.target
            in_flight.append(
                {
                    "id": record.invocation_id,
                    "actor": target.actor,
                    "key": target.key,
                    "handler": target.handler,
                    "status": record.status.value,
                }
            )
    return {
        "format": FORMAT,
        "version": 1,
        "objects": [
            {"actor": actor, "key": key, "state": state}
            for (actor, key), state in sorted(objects.items())
        ],
        "workflows": workflows,
        "in_flight": in_flight,
    }


def cmd_export(args: argparse.Namespace) -> int:
    with damage_reported(args.data):
        document = export(args.data)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.out is None or str(args.out) == "-":
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    if document["in_flight"]:
        print(
            f"actors: warning: {len(document['in_flight'])} invocation(s) had not finished "
            "and are not carried over (listed under in_flight): let them finish or cancel "
            "them, then export again, or resubmit them to the cluster",
            file=sys.stderr,
        )
    return 0
