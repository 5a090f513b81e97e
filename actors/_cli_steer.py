"""The ``actors`` command line's steering: cancel, kill and resume an invocation.

A steering command (``cancel``, ``kill``, ``resume``) must go through whoever owns the
directory, because only the owning runtime may run handlers and write:

* When a runtime has the directory open and serves the HTTP ingress, it announced its
  address in ``<data>/ingress.json``; the command asks it over HTTP
  (``PATCH /restate/invocation/{id}/cancel|kill|resume``) and reports its answer.
* When nobody has the directory open, the command records the request durably in the
  invocation's record and the runtime carries it out when it next opens the directory:
  a cancellation reaches the handler at its next durable await, a kill ends it before
  anything else runs, a resumed invocation starts its attempts again.
* A runtime that has the directory open without serving HTTP cannot be reached; the
  command says so and changes nothing.

Hostile input changes nothing: the parser lets through only ids of an id's shape
(``_util.is_invocation_id``), and the id is percent-encoded in the URL all the same;
only http(s) URLs are asked; a directory that does not exist, or holds no store, is
refused before ``Store.open`` could create one; ``ingress.json`` is never read through
a link (``_files``).

Rejected: a second writer beside the owner (the store's ``flock`` forbids it, and it
would break the single-writer invariants) and a private control socket (the ingress
already has an authenticated HTTP surface).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs

from actors.storage import (
    InvocationRecord,
    InvocationStatus,
    RecordDecodeError,
    StorageError,
    Store,
    Table,
    WriteBatch,
    dumps,
    loads,
    lock_holder,
)

from ._errors import ActorsError
from ._files import DATA_DIR_FILES, read_ingress_file

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from pathlib import Path

TOKEN_ENV = "ACTORS_TOKEN"


class CommandError(Exception):
    """A command that cannot be carried out; printed as ``actors: error: ...``."""


@contextmanager
def damage_reported(data: Path) -> Iterator[None]:
    """Errors met reading and decoding ``data`` as one clean ``CommandError``: the
    storage layer's message, or, for stored bytes that no longer decode (a record, a
    key), one that names the directory as damaged."""
    try:
        yield
    except RecordDecodeError as exc:
        raise CommandError(
            f"store {data} is damaged: {exc} (restore the directory from a backup)"
        ) from exc
    except StorageError as exc:
        raise CommandError(str(exc)) from exc
    except (ValueError, AssertionError) as exc:  # a key whose bytes were changed
        raise CommandError(
            f"store {data} is damaged: a stored key does not decode ({exc}) (restore the "
            "directory from a backup)"
        ) from exc


def _announced_url(data: Path) -> str | None:
    """The URL in ``data/ingress.json``, or None when no server announced one."""
    try:
        raw = read_ingress_file(data)
    except ActorsError as exc:  # a link or not a file: refused, never followed
        raise CommandError(str(exc)) from None
    if raw is None:
        return None
    try:
        url = json.loads(raw)["url"]
    except (ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None


def _http_url(url: str) -> str:
    """``url`` if it is an http(s) URL, else a ``CommandError`` (urllib would also open
    ``file:`` and ``ftp:`` URLs)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise CommandError(f"not an http:// or https:// URL: {url!r}")
    return url


def _ask_server(args: argparse.Namespace, operation: str, holder: int) -> str:
    url = args.url
    if url is None:
        url = _announced_url(args.data)
        if url is None:
            raise CommandError(
                f"{args.data} is open by process {holder}, which serves no HTTP ingress: "
                f"{operation} it from that program (rt.{operation}), or serve the runtime "
                "over HTTP (rt.serve_http or `actors serve`) and try again"
            )
    _http_url(url)
    # The id has an id's shape (the parser checked it); encoded all the same, so that it
    # can only ever be one path segment.
    segment = urllib.parse.quote(args.id, safe="")
    try:
        request = urllib.request.Request(
            f"{url.rstrip('/')}/restate/invocation/{segment}/{operation}", method="PATCH"
        )
    except ValueError as exc:
        raise CommandError(f"not a usable URL: {url!r} ({exc})") from None
    token = args.token or os.environ.get(TOKEN_ENV)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CommandError(f"{message} (HTTP {exc.code})") from None
    except (ValueError, http.client.InvalidURL) as exc:  # a space, a control character
        raise CommandError(f"not a usable URL: {url!r} ({exc})") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise CommandError(
            f"cannot reach the runtime serving {args.data} at {url}: {exc}"
        ) from None
    return f"{operation} of {args.id}: done by the runtime at {url}"


def _record_offline(args: argparse.Namespace, operation: str) -> str:
    # Store.open would create a store in a missing or empty directory: look first.
    if not args.data.is_dir():
        raise CommandError(f"data directory {args.data} does not exist")
    if not (args.data / "data.mdb").is_file():
        raise CommandError(f"no virtual-actors store in {args.data} (no data.mdb)")
    try:
        store = Store.open(args.data, extra_files=DATA_DIR_FILES)
    except StorageError as exc:
        raise CommandError(str(exc)) from exc
    try:
        raw = store.get(Table.INVOCATIONS, args.id.encode())
        if raw is None:
            raise CommandError(f"no invocation {args.id!r} in {args.data}")
        with damage_reported(args.data):
            record = loads(InvocationRecord, raw)
        if record.outcome is not None or record.status in (
            InvocationStatus.COMPLETED,
            InvocationStatus.KILLED,
        ):
            raise CommandError(f"invocation {args.id} has already completed")
        if operation == "cancel":
            updated = attrs.evolve(record, cancel_requested=True)
        elif operation == "kill":
            updated = attrs.evolve(record, kill_requested=True)
        else:
            if record.status is not InvocationStatus.PAUSED:
                raise CommandError(
                    f"invocation {args.id} is not paused (it is {record.status.value})"
                )
            # The attempt count is an epoch and never goes back; the retry budget
            # starts afresh when the runtime rebuilds it (its time limit too).
            updated = attrs.evolve(
                record, status=InvocationStatus.RUNNING, pause_reason=None, retry_since=()
            )
        batch = WriteBatch()
        batch.put(Table.INVOCATIONS, args.id.encode(), dumps(updated))
        store.commit_blocking(batch)
    except StorageError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        store.close()
    return (
        f"{operation} of {args.id} recorded; nobody has {args.data} open, so it takes "
        "effect when a runtime next opens it"
    )


def steer(args: argparse.Namespace, operation: str) -> int:
    holder = lock_holder(args.data)
    if args.url is not None or holder is not None:
        message = _ask_server(args, operation, holder or 0)
    else:
        message = _record_offline(args, operation)
    print(message)
    return 0
