"""The ``actors`` command line: look into a data directory and steer its invocations.

Reading (``invocations``, ``journal``, ``state``) opens the directory read-only
(``StoreReader``), so it works while a runtime owns the directory and never changes it.

Steering (``cancel``, ``kill``, ``resume``) goes through whoever owns the directory
(``_cli_steer``). A damaged store is an error (exit 1) with the storage layer's message,
never an empty listing or a traceback; an invocation id must have the shape of one.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import msgspec

from actors.storage import (
    JOURNAL_TAGS,
    Failure,
    InvocationRecord,
    InvocationStatus,
    JournalEntry,
    Outcome,
    RecordDecodeError,
    StorageError,
    StoreReader,
    Success,
    Table,
    decode_key,
    encode_key,
    loads,
    loads_entry,
)

from ._cli_steer import TOKEN_ENV, damage_reported, steer
from ._cli_steer import CommandError as CommandError  # raised by every command
from ._errors import ActorsError
from ._util import is_invocation_id

if TYPE_CHECKING:
    from collections.abc import Sequence

_DATA_ENV = "ACTORS_DATA"


# --- rendering ---------------------------------------------------------------------------


def _payload(data: bytes | None) -> object:
    """A stored value as JSON data; bytes that are not JSON are shown as a string."""
    if data is None:
        return None
    try:
        value: object = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data.decode("utf-8", "backslashreplace")
    return value


def _outcome(outcome: Outcome | None) -> dict[str, object] | None:
    if outcome is None:
        return None
    if isinstance(outcome, Success):
        return {"value": _payload(outcome.value)}
    assert isinstance(outcome, Failure)
    error: dict[str, object] = {"error": outcome.message, "code": outcome.status_code}
    if outcome.metadata:
        error["metadata"] = dict(outcome.metadata)
    return error


def _timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    try:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:  # changed bytes in a stored float
        raise RecordDecodeError(f"a stored time ({seconds!r}) is not a valid time") from exc
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _target_name(actor: str, key: str | None, handler: str) -> str:
    return f"{actor}/{key}/{handler}" if key is not None else f"{actor}/{handler}"


def _invocation_row(record: InvocationRecord) -> dict[str, object]:
    target = record.target
    return {
        "id": record.invocation_id,
        "status": record.status.value,
        "target": _target_name(target.actor, target.key, target.handler),
        "actor": target.actor,
        "key": target.key,
        "handler": target.handler,
        "attempt": record.attempt,
        "accepted_at": _timestamp(record.accepted_at),
        "completed_at": _timestamp(record.completed_at),
        "caller": record.caller_id,
        "idempotency_key": record.idempotency_key,
        "pause_reason": record.pause_reason,
        "cancel_requested": record.cancel_requested,
        "kill_requested": record.kill_requested,
        "input": _payload(record.payload) if record.payload else None,
        "outcome": _outcome(record.outcome),
    }


def _entry_row(index: int, entry: JournalEntry) -> dict[str, object]:
    fields: dict[str, object] = {}
    for field in attrs.fields(type(entry)):
        value = getattr(entry, field.name)
        if isinstance(value, Success | Failure):
            fields[field.name] = _outcome(value)
        elif isinstance(value, bytes):
            fields[field.name] = _payload(value)
        elif attrs.has(type(value)):
            fields[field.name] = attrs.asdict(value)
        else:
            fields[field.name] = value
    return {"index": index, "kind": JOURNAL_TAGS[type(entry)], **fields}


def _requested(row: dict[str, object]) -> str:
    if row["outcome"] is not None:
        return ""
    if row["kill_requested"]:
        return " (kill requested)"
    return " (cancel requested)" if row["cancel_requested"] else ""


def _short(value: object, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def _outcome_text(outcome: object) -> str:
    if not isinstance(outcome, dict):
        return ""
    if "error" in outcome:
        return f"error {outcome['code']}: {outcome['error']}"
    return _short(outcome["value"], 40)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


# --- reading -----------------------------------------------------------------------------


def _open_reader(data: Path) -> StoreReader:
    try:
        return StoreReader.open(data)
    except StorageError as exc:
        raise CommandError(str(exc)) from exc


def _load_record(reader: StoreReader, invocation_id: str) -> InvocationRecord:
    with reader.read() as view:
        raw = view.get(Table.INVOCATIONS, invocation_id.encode())
    if raw is None:
        raise CommandError(f"no invocation {invocation_id!r} in {reader.path}")
    return loads(InvocationRecord, raw)


def cmd_invocations(args: argparse.Namespace) -> int:
    statuses = set(args.status) if args.status else None
    rows: list[dict[str, object]] = []
    with damage_reported(args.data), _open_reader(args.data) as reader, reader.read() as view:
        for _, raw in view.scan(Table.INVOCATIONS):
            record = loads(InvocationRecord, raw)
            if args.actor is not None and record.target.actor != args.actor:
                continue
            row = _invocation_row(record)
            if record.status is InvocationStatus.PENDING and view.scan(
                Table.JOURNAL, encode_key((record.invocation_id,)), children=True, limit=1
            ):
                # The runtime does not rewrite the record when a sent invocation starts
                # (that would cost a commit per invocation); a journal proves it did.
                row["status"] = InvocationStatus.RUNNING.value
            if statuses is not None and row["status"] not in statuses:
                continue
            rows.append(row)
    rows.sort(key=lambda row: str(row["accepted_at"]))
    if args.limit is not None:
        rows = rows[-args.limit :]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no invocations")
        return 0
    _print_table(
        ["ID", "STATUS", "TARGET", "ATTEMPT", "ACCEPTED", "RESULT"],
        [
            [
                str(row["id"]),
                str(row["status"]) + _requested(row),
                str(row["target"]),
                str(row["attempt"]),
                str(row["accepted_at"]),
                _outcome_text(row["outcome"]) or str(row["pause_reason"] or ""),
            ]
            for row in rows
        ],
    )
    return 0


def cmd_journal(args: argparse.Namespace) -> int:
    with damage_reported(args.data):
        with _open_reader(args.data) as reader:
            record = _load_record(reader, args.id)
            with reader.read() as view:
                stored = view.scan(Table.JOURNAL, encode_key((args.id,)), children=True)
        entries = []
        for key, raw in stored:
            index = decode_key(key)[-1]
            assert isinstance(index, int)
            entries.append(_entry_row(index, loads_entry(raw)))
        row = _invocation_row(record)
    if args.json:
        _print_json({"invocation": row, "entries": entries})
        return 0
    print(f"{row['id']}  {row['target']}  {row['status']}  attempt {row['attempt']}")
    if row["outcome"] is not None:
        print(f"result: {_outcome_text(row['outcome'])}")
    if not entries:
        print("no journal entries")
        return 0
    _print_table(
        ["#", "KIND", "ENTRY"],
        [
            [
                str(entry["index"]),
                str(entry["kind"]),
                _short({k: v for k, v in entry.items() if k not in ("index", "kind")}, 100),
            ]
            for entry in entries
        ],
    )
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    values: dict[str, object] = {}
    with damage_reported(args.data):
        with _open_reader(args.data) as reader, reader.read() as view:
            stored = view.scan(Table.STATE, encode_key((args.actor, args.key)), children=True)
        for key, raw in stored:
            name = decode_key(key)[-1]
            assert isinstance(name, str)
            values[name] = _payload(raw)
    if args.json:
        _print_json(values)
        return 0
    if not values:
        print(f"no state for {args.actor}/{args.key}")
        return 0
    _print_table(["NAME", "VALUE"], [[name, _short(value, 100)] for name, value in values.items()])
    return 0


# --- serving -----------------------------------------------------------------------------


def load_actors(spec: str) -> list[Any]:
    """The actors named by ``MODULE:ATTR``: a list (or tuple) of actor classes or
    instances, or a callable returning one. The current directory is importable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(f"expected MODULE:ATTR (e.g. myapp:ACTORS), not {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        value: Any = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(value) and not isinstance(value, type) and not hasattr(value, "__actors__"):
        value = value()
    if isinstance(value, type):
        value = [value]
    if not isinstance(value, list | tuple) and hasattr(value, "__actors__"):
        value = [value]  # what restate.app([...]) returns
    if isinstance(value, list | tuple):
        from ._definitions import expand_registrations

        try:
            value = expand_registrations(value)  # Restate services stand for their actors
        except TypeError as exc:
            raise CommandError(f"{spec}: {exc}") from exc
    if not isinstance(value, list | tuple) or not value:
        raise CommandError(
            f"{spec} must be a non-empty list of actor classes or instances "
            f"(or a function returning one), not {type(value).__name__}"
        )
    return list(value)


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    import anyio

    from ._definitions import registration_entry
    from ._http_connection import ServerOptions
    from ._open import open_runtime

    if args.restate:
        from .restate import install  # before MODULE imports restate

        try:
            install()
        except ImportError as exc:
            raise CommandError(str(exc)) from exc
    actors = load_actors(args.app)
    for item in actors:
        try:
            registration_entry(item)
        except TypeError as exc:
            raise CommandError(f"{args.app}: {exc}") from exc
    token = args.token or os.environ.get(TOKEN_ENV)
    limits = {
        "max_body": args.max_body,
        "max_connections": args.max_connections,
        "max_body_bytes_in_flight": args.max_body_bytes_in_flight,
        "read_timeout": args.read_timeout,
    }
    try:
        ServerOptions(**limits)  # checked before the data directory is opened
    except ValueError as exc:
        raise CommandError(str(exc).replace("_", "-")) from exc

    async def serve() -> None:
        # SIGINT and SIGTERM stop the server cleanly: requests in progress are answered,
        # ingress.json is removed and the data directory is closed.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with (
                open_runtime(args.data, actors, durability=args.durability) as rt,
                anyio.create_task_group() as tg,
            ):
                port = await tg.start(
                    functools.partial(rt.serve_http, args.host, args.port, token=token, **limits)
                )
                names = ", ".join(sorted(entry.name for entry in map(registration_entry, actors)))
                print(
                    f"serving {names} from {args.data} at http://{args.host}:{port}",
                    flush=True,
                )
                async for signum in signals:
                    print(f"stopping ({signal.Signals(signum).name})", flush=True)
                    tg.cancel_scope.cancel()
                    break

    try:
        # Restate code awaits asyncio primitives (asyncio.sleep in a step...): --restate
        # runs the same server on an asyncio event loop.
        anyio.run(serve, backend="asyncio" if args.restate else "trio")
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    except ActorsError as exc:
        raise CommandError(str(exc)) from exc
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    """Serve the actors as a Restate deployment endpoint (``actors.endpoint``, imported
    only here: it needs the ``restate`` extra)."""
    try:
        import asyncio

        import actors.endpoint as endpoint
        from actors.endpoint._serve import serve as serve_endpoint
    except ImportError as exc:
        raise CommandError(
            f"actors endpoint needs the restate extra ({exc}): "
            "pip install 'virtual-actors[restate]'"
        ) from exc
    try:
        app = endpoint.app(load_actors(args.app))
    except TypeError as exc:
        raise CommandError(f"{args.app}: {exc}") from exc
    print(f"Restate endpoint for {args.app} at http://{args.host}:{args.port}", flush=True)
    try:
        asyncio.run(serve_endpoint(app, args.host, args.port))
    except OSError as exc:
        raise CommandError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    return 0


def cmd_load_state(args: argparse.Namespace) -> int:
    """Load an ``actors export`` document into a Restate cluster's state."""
    from actors.endpoint._load import load_state

    try:
        document = json.loads(Path(args.file).read_text())
        written = load_state(document, args.admin)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"loaded the state of {written} key(s) into {args.admin}")
    return 0


# --- the parser --------------------------------------------------------------------------


def _data_dir(value: str) -> Path:
    return Path(value)


def _invocation_id(value: str) -> str:
    if not is_invocation_id(value):
        raise argparse.ArgumentTypeError(
            f"not an invocation id: {value!r} (ids look like inv_1a2b3c...)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actors",
        description="Inspect and steer a virtual-actors data directory, or serve it over HTTP.",
    )
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "-d",
        "--data",
        type=_data_dir,
        default=os.environ.get(_DATA_ENV),
        help=f"the data directory (default: ${_DATA_ENV})",
    )
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url", help="the runtime's HTTP ingress (default: announced in DATA/ingress.json)"
    )
    remote.add_argument("--token", help=f"bearer token for the ingress (default: ${TOKEN_ENV})")
    remote.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser(
        "invocations", parents=[data, output], help="list invocations (oldest first)"
    )
    listing.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in InvocationStatus],
        help="only this status (repeatable)",
    )
    listing.add_argument("--actor", help="only invocations of this actor")
    listing.add_argument("--limit", type=int, help="only the newest N")
    listing.set_defaults(run=cmd_invocations)

    journal = commands.add_parser(
        "journal", parents=[data, output], help="an invocation's journal, entry by entry"
    )
    journal.add_argument("id", type=_invocation_id, help="invocation id (inv_...)")
    journal.set_defaults(run=cmd_journal)

    state = commands.add_parser("state", parents=[data, output], help="the state of one key")
    state.add_argument("actor", help="actor name (object or workflow)")
    state.add_argument("key", help="object key or workflow id")
    state.set_defaults(run=cmd_state)

    for operation, text in (
        ("cancel", "cancel an invocation: its compensations run"),
        ("kill", "kill an invocation at once, without compensation"),
        ("resume", "resume a paused invocation"),
    ):
        steering = commands.add_parser(operation, parents=[data, remote], help=text)
        steering.add_argument("id", type=_invocation_id, help="invocation id (inv_...)")
        steering.set_defaults(run=functools.partial(steer, operation=operation))

    serve = commands.add_parser(
        "serve", parents=[data], help="run actors and serve them over HTTP (Restate's ingress)"
    )
    serve.add_argument("app", metavar="MODULE:ATTR", help="list of actors, or a factory")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--token", help=f"require this bearer token (default: ${TOKEN_ENV})")
    serve.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    serve.add_argument(
        "--restate",
        action="store_true",
        help="MODULE is Restate SDK code: `import restate` resolves to actors.restate, "
        "and the server runs on asyncio",
    )
    for flag, kind, default, text in (
        ("--max-body", int, 16 << 20, "largest request body in bytes, else 413 (16 MiB)"),
        ("--max-connections", int, 1000, "connections served at once; more get 503 (1000)"),
        (
            "--max-body-bytes-in-flight",
            int,
            64 << 20,
            "bytes of request bodies held by requests in progress; more wait for room, "
            "within the read timeout, else 503 (64 MiB)",
        ),
        ("--read-timeout", float, 30.0, "seconds a request may take to arrive, else 408 (30)"),
    ):
        serve.add_argument(flag, type=kind, default=default, help=text)
    serve.set_defaults(run=cmd_serve)
    endpoint = commands.add_parser(
        "endpoint", help="serve the actors as a Restate deployment endpoint (restate extra)"
    )
    endpoint.add_argument("app", metavar="MODULE:ATTR", help="list of actors, or a factory")
    endpoint.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    endpoint.add_argument("--port", type=int, default=9080, help="port (default 9080)")
    endpoint.set_defaults(run=cmd_endpoint, needs_data=False)
    from ._cli_export import cmd_export

    exporting = commands.add_parser(
        "export", parents=[data], help="every object's state and workflow outputs, as JSON"
    )
    exporting.add_argument("--out", type=Path, help="write here instead of stdout")
    exporting.set_defaults(run=cmd_export)
    loading = commands.add_parser(
        "load-state", help="load an `actors export` file into a Restate cluster (admin API)"
    )
    loading.add_argument("file", help="the file `actors export --out` wrote")
    loading.add_argument("--admin", default="http://127.0.0.1:9070", help="admin API URL")
    loading.set_defaults(run=cmd_load_state, needs_data=False)
    return parser


def _fail(message: str) -> NoReturn:
    print(f"actors: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actors`` console script. Returns the exit status: 0 on
    success, 1 when the command failed (the reason is on stderr), 2 for bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "data", None) is None and getattr(args, "needs_data", True):
        parser.error(f"the data directory is required: pass --data DIR or set ${_DATA_ENV}")
    try:
        status: int = args.run(args)
    except CommandError as exc:
        _fail(str(exc))
    except BrokenPipeError:  # `actors invocations | head`
        return 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
