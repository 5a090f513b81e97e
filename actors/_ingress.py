"""Restate-compatible HTTP ingress: an ASGI application over a ``Runtime``, and what
``Runtime.serve_http`` runs (the HTTP server itself is ``_server``).

Paths (as Restate's ingress answers them, so Restate clients and the seed page's
``requests`` snippet work unchanged)::

    POST  /{Service}/{handler}[/send]             call (200, JSON output) or send (202)
    POST  /{Object}/{key}/{handler}[/send]        the same on an object key
    POST  /{Workflow}/{id}/{handler}[/send]       main (e.g. ``run``) or a shared handler
    GET   /restate/invocation/{id}/attach|output  wait for / peek at a result (470: running)
    GET   /restate/invocation/{Service}/{handler}/{idempotency key}/attach|output
    GET   /restate/invocation/{Object}/{key}/{handler}/{idempotency key}/attach|output
    GET   /restate/workflow/{name}/{id}/attach|output
    POST  /restate/awakeables/{id}/resolve|reject JSON value / text reason (202)
    POST  /restate/a/{id}/resolve|reject          the same (Restate's clients use it)
    PATCH /restate/invocation/{id}/cancel|kill|resume   admin (the ``actors`` CLI)
    GET   /restate/health

A send answers ``{"invocationId", "status": "Accepted" | "PreviouslyAccepted"}``;
``?delay=`` (``500ms``, ``10s``, ``1m 30s``, ``PT1M30S``, or bare milliseconds)
postpones it, and the answer then says when in ``executionTime``. A None result is an
empty 200 without content type (``_wire`` has Restate's wire rules). Errors are
``{"code", "message"}`` with ``x-restate-error-source: ingress`` or, for an
invocation's own failure, ``invocation`` (and ``"source": "invocation"``): 400 bad input (JSON, type, key, delay), 401 missing bearer
token, 404 unknown actor, handler, invocation or path, 405 wrong method, 409 already
completed / cancelled / idempotency key reused for another request, 413 body too
large, 470 not ready, 503 runtime closed or server stopping, and a handler's
``TerminalError`` status code (500 unless it gave one in 400..599).

Decisions
---------
* Request bodies go through the same cattrs converter as ``rt.call`` arguments
  (``_serde``): the JSON is structured into the handler's annotated input type, so a
  wrong type, or a field the input's class does not declare, is a 400 naming the field,
  and nothing is stored for it. An empty body is
  "no input" (Restate's clients send none for a handler without input); for a handler
  with an input it is read as JSON ``null`` (fine for an ``Optional`` input, else 400).
* ``idempotency-key`` maps to ``idempotency_key=``. On a workflow's ``main`` it is
  ignored: main already runs once per workflow id, and a resubmission answers
  ``PreviouslyAccepted`` with the same invocation id (what Restate does); refusing the
  header would break clients that send one on every request.
* A ``None`` result is answered as an empty body, as Restate does: a client declaring a
  void output refuses any body, and JSON clients read empty as undefined/None.
* A handler annotated ``bytes`` (input or output) takes the body as it is and is answered
  its bytes as ``application/octet-stream`` (``_types``: raw payloads). ``attach`` and
  ``output`` read a result by id, without its handler's annotation, so they answer raw
  whenever the result is ``bytes``: always for a ``bytes`` handler, never for a result
  that JSON gave. One case differs: a handler declared ``bytes | None`` is answered raw
  on attach but as base64 JSON on the call itself.
* Results of ``attach``/``output`` are encoded from their runtime type (the stored
  handler's output type was already applied when the runtime decoded them).
* Ingress-private handlers (``ingress_private=True``) are not served: calls, sends,
  attach/output by idempotency key or by invocation id, and the workflow routes answer
  for them what they answer for what does not exist (same status, same message); an
  actor left with no served handler is absent from health too (``_wire.PublicActors``).
  Attach by id is hidden too because ids of calls are derived from their caller's, so
  a public invocation's id leads to its callees'. The admin routes (cancel, kill,
  resume, as the ``actors`` CLI sends them) and awakeable completions still act on
  them: they are the operator's and the outside world's answers, like Restate's admin
  API and its awakeable endpoints, not invocations of the handler.
* Keys and ids are taken from ``raw_path`` and percent-decoded per segment, so a key may
  contain ``/`` (as ``%2F``).
* Shutdown: requests still waiting (a call on a long handler, an attach) are cancelled
  and answered 503; their invocations are not affected (they are durable, or died with
  the caller as an in-process ``call`` would).

Rejected: a framework (Starlette...) for a dozen fixed routes, and signal handlers in the
server (the runtime is embedded in the user's program, which owns them).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import urllib.parse
from typing import TYPE_CHECKING, Any, Final, Protocol, final, overload

import anyio
import anyio.abc
import sniffio

from ._errors import (
    ActorsError,
    UnknownHandlerError,
)
from ._files import remove_ingress_file, write_ingress_file
from ._http import (
    JSON,
    Disconnected,
    HttpError,
    Receive,
    Response,
    Scope,
    Send,
    decode_json,
    error_of,
    error_response,
    handler_input,
    header,
    json_response,
    parse_delay,
    path_segments,
    public_message,
    read_body,
    require,
)
from ._limits import check_idempotency_key, check_key
from ._request import http_headers
from ._serde import ANY
from ._server import HttpServer
from ._wire import (
    IdempotentLookups,
    PublicActors,
    by_idempotency_key,
    health_response,
    result_response,
    send_response,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta
    from pathlib import Path

    from ._definitions import Actor, ActorEntry, Handler
    from ._http_connection import ServerOptions
    from ._results import InvocationHandle

logger = logging.getLogger("actors.ingress")


class Runtime(IdempotentLookups, Protocol):
    """What the ingress asks of the runtime it serves (``actors.Runtime``): its public
    API, and the registered actors by name. A protocol, so this module does not import
    the runtime that imports it."""

    @property
    def path(self) -> Path: ...
    @property
    def _entries(self) -> Mapping[str, ActorEntry]: ...
    def _handler_of(self, invocation_id: str) -> Handler[Any, Any] | None: ...
    @overload
    async def call(
        self,
        target: Handler[Any, Any],
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any: ...
    @overload
    async def call(
        self,
        target: Handler[Any, Any],
        arg: object,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any: ...
    async def send(
        self,
        target: Handler[Any, Any],
        arg: object = ...,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationHandle: ...
    async def attach(self, invocation_id: str) -> Any: ...
    async def output(self, invocation_id: str) -> Any: ...
    async def attach_workflow(self, workflow: type[Actor], workflow_id: str) -> Any: ...
    async def workflow_output(self, workflow: type[Actor], workflow_id: str) -> Any: ...
    async def resolve_awakeable(self, awakeable_id: str, value: object) -> None: ...
    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None: ...
    async def cancel(self, invocation_id: str) -> None: ...
    async def kill(self, invocation_id: str) -> None: ...
    async def resume(self, invocation_id: str) -> None: ...


DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024


# --- the application -----------------------------------------------------------------------


@final
class IngressApp:
    """The ASGI application (``asgi`` 3, ``http`` and ``lifespan`` scopes) serving a
    runtime. Runs on whichever event loop calls it, which must be the runtime's.

    Args:
      runtime: the runtime whose actors are served.
      token: when given, every request needs ``Authorization: Bearer <token>``.
      max_body: the largest request body accepted, in bytes.
    """

    def __init__(
        self, runtime: Runtime, *, token: str | None = None, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        if max_body < 0:
            raise ValueError("max_body must not be negative")
        if token is not None and not token:
            raise ValueError("token must be a non-empty string (or None for no token)")
        self._rt = runtime
        self._expected_auth = f"Bearer {token}".encode() if token is not None else None
        self._max_body = max_body
        self._requests: set[anyio.CancelScope] = set()
        self._closed = False
        self._private: tuple[str, ...] | None = None  # the data directory, hidden in answers
        self._served: PublicActors | None = None  # built on first use (``_public``)

    def close(self) -> None:
        """Answer every waiting request 503 and refuse new ones (server shutdown)."""
        self._closed = True
        for scope in self._requests:
            scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await receive()
                await send({"type": "websocket.close", "code": 1003})
            return
        try:
            response = await self._respond(scope, receive)
        except Disconnected:
            return
        raw = response.content_type != JSON
        headers = [
            *([(b"content-type", response.content_type)] if response.body or raw else []),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": False})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _respond(self, scope: Scope, receive: Receive) -> Response:
        if self._closed:
            return error_response(503, "the ingress is shutting down")
        with anyio.CancelScope() as cancel_scope:
            self._requests.add(cancel_scope)
            try:
                return await self._route(scope, receive)
            except HttpError as exc:
                message = public_message(exc.message, self._private_paths())
                return error_response(exc.status, message, exc.headers)
            except ActorsError as exc:
                return error_of(exc, self._private_paths())
            except Disconnected:
                raise
            except Exception:
                logger.exception("ingress: %s %s failed", scope.get("method"), scope.get("path"))
                return error_response(500, "internal error in the ingress (see the server's log)")
            finally:
                self._requests.discard(cancel_scope)
        return error_response(503, "the ingress is shutting down")

    def _private_paths(self) -> tuple[str, ...]:
        if self._private is None:
            path = self._rt.path
            self._private = tuple({str(path), str(path.resolve())})
        return self._private

    def _authorize(self, scope: Scope) -> None:
        if self._expected_auth is None:
            return
        given = (header(scope, b"authorization") or "").encode("latin-1")
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(given, self._expected_auth):
            raise HttpError(
                401,
                "a valid 'Authorization: Bearer <token>' header is required",
                ((b"www-authenticate", b"Bearer"),),
            )

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        self._authorize(scope)
        parts = path_segments(scope)
        method = str(scope.get("method", "GET")).upper()
        query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        if not parts:
            raise HttpError(404, "no route for /")
        if parts[0] == "restate":
            return await self._restate(scope, receive, method, parts[1:])
        return await self._invoke(scope, receive, method, parts, query)

    # --- invocations ---

    def _public(self) -> PublicActors:
        # The registry is the runtime's own, less what is ingress-private; the ingress
        # resolves names the way ``Runtime.resolve_name`` does, and needs the actor's
        # kind to parse the path.
        if self._served is None:
            self._served = PublicActors(self._rt._entries)
        return self._served

    def _hide_private(self, invocation_id: str) -> None:
        """An invocation of an ingress-private handler is answered as an unknown one (its
        id may be derived from a public caller's: ids of calls are deterministic)."""
        spec = self._rt._handler_of(invocation_id)
        if spec is not None and spec.ingress_private:
            raise UnknownHandlerError(f"no invocation {invocation_id!r}")

    @staticmethod
    def _parse_target(
        entry: ActorEntry, handlers: Mapping[str, Handler[Any, Any]], rest: list[str]
    ) -> tuple[str | None, str, bool]:
        """(key, handler name, is_send) from the path segments after the actor name;
        ``handlers`` are the served ones (their names shape the advice in errors)."""
        keyed = entry.cls.actor_kind != "service"
        want = 2 if keyed else 1
        send = len(rest) == want + 1 and rest[-1] == "send"
        if send:
            rest = rest[:-1]
        # /{Object}/{handler}/send: a send with its key missing, unless "send" is a handler.
        missing_key = keyed and len(rest) == 2 and rest[0] in handlers and rest[1] == "send"
        if len(rest) == want and not (missing_key and "send" not in handlers):
            return (rest[0], rest[1], send) if keyed else (None, rest[0], send)
        kind = entry.cls.actor_kind
        if keyed and rest and rest[0] in handlers and rest[1:] in ([], ["send"]):
            raise HttpError(
                400,
                f"{entry.name} is a keyed {kind}: use /{entry.name}/{{key}}/{rest[0]}",
            )
        if not keyed and len(rest) in (2, 3) and rest[1] in handlers and rest[2:] in ([], ["send"]):
            raise HttpError(
                400,
                f"{entry.name} is a service: its handlers take no key; use /{entry.name}/{rest[1]}",
            )
        raise HttpError(404, f"no route for /{'/'.join([entry.name, *rest])}")

    async def _invoke(
        self,
        scope: Scope,
        receive: Receive,
        method: str,
        parts: list[str],
        query: dict[str, list[str]],
    ) -> Response:
        served = self._public()
        entry, handlers = served.actor(parts[0])
        if method != "POST":
            raise HttpError(405, f"use POST to invoke a handler, not {method}", _ALLOW_POST)
        key, name, send = self._parse_target(entry, handlers, parts[1:])
        if key is not None:
            check_key(key)
        spec = served.handler(entry, handlers, name)
        delay: timedelta | None = None
        if "delay" in query:
            if not send:
                raise HttpError(400, "?delay= applies to /send only")
            try:
                delay = parse_delay(query["delay"][-1])
            except ValueError as exc:
                raise HttpError(400, str(exc)) from None
        idempotency_key = header(scope, b"idempotency-key")
        if idempotency_key is not None:
            if not idempotency_key:
                raise HttpError(400, "the idempotency-key header is empty")
            check_idempotency_key(idempotency_key)
        if spec.kind == "main":
            idempotency_key = None  # once per workflow id already (module docstring)
        args = handler_input(spec, await read_body(receive, scope, self._max_body))
        # The invocation's ``ctx.request().headers`` (``_request``: hop-by-hop dropped).
        headers = http_headers(
            scope.get("headers", ()), drop_authorization=self._expected_auth is not None
        )
        try:
            if send:
                if args:
                    handle = await self._rt.send(
                        spec,
                        args[0],
                        key=key,
                        delay=delay,
                        idempotency_key=idempotency_key,
                        headers=headers,
                    )
                else:
                    handle = await self._rt.send(
                        spec, key=key, delay=delay, idempotency_key=idempotency_key, headers=headers
                    )
                return send_response(handle)
            if args:
                result = await self._rt.call(
                    spec, args[0], key=key, idempotency_key=idempotency_key, headers=headers
                )
            else:
                result = await self._rt.call(
                    spec, key=key, idempotency_key=idempotency_key, headers=headers
                )
        except ActorsError:
            raise
        except (TypeError, ValueError) as exc:
            # The runtime's documented answers to a malformed request (key, input, delay).
            raise HttpError(400, str(exc)) from None
        return result_response(result, spec.output_type, f"output of {spec.qualname}")

    # --- /restate/... ---

    async def _restate(
        self, scope: Scope, receive: Receive, method: str, parts: list[str]
    ) -> Response:
        match parts:
            case ["health"]:
                require(method, "GET")
                return health_response(self._public())
            case ["invocation", invocation_id, ("attach" | "output") as what]:
                require(method, "GET")
                self._hide_private(invocation_id)
                if what == "attach":
                    value = await self._rt.attach(invocation_id)
                else:
                    value = await self._rt.output(invocation_id)
                return result_response(value, ANY, f"result of {invocation_id}")
            case ["invocation", invocation_id, ("cancel" | "kill" | "resume") as what]:
                require(method, "PATCH")
                return await self._admin(invocation_id, what)
            case ["invocation", *path] if len(path) in (4, 5) and path[-1] in ("attach", "output"):
                return await by_idempotency_key(self._rt, self._public(), method, path)
            case ["workflow", name, workflow_id, ("attach" | "output") as what]:
                require(method, "GET")
                served = self._public().get(name)
                if served is None or served[0].cls.actor_kind != "workflow":
                    raise UnknownHandlerError(
                        f"workflow {name!r} is not registered with this runtime"
                    )
                entry, handlers = served
                check_key(workflow_id)
                if not any(h.kind == "main" for h in handlers.values()):
                    # Its main is ingress-private: as if no run was ever submitted.
                    raise UnknownHandlerError(
                        f"no run of workflow {entry.name!r} with id {workflow_id!r}"
                    )
                if what == "attach":
                    value = await self._rt.attach_workflow(entry.cls, workflow_id)
                else:
                    value = await self._rt.workflow_output(entry.cls, workflow_id)
                return result_response(value, ANY, f"result of {name}/{workflow_id}")
            case [("awakeables" | "a"), awakeable_id, ("resolve" | "reject") as what]:
                require(method, "POST")
                body = await read_body(receive, scope, self._max_body)
                if what == "resolve":
                    value = decode_json(body, ANY, "awakeable value") if body.strip() else None
                    await self._rt.resolve_awakeable(awakeable_id, value)
                else:
                    try:
                        reason = body.decode("utf-8")
                    except UnicodeDecodeError:
                        raise HttpError(400, "the rejection reason is not UTF-8 text") from None
                    await self._rt.reject_awakeable(awakeable_id, reason or "rejected")
                return Response(202)
            case _:
                raise HttpError(404, f"no route for /restate/{'/'.join(parts)}")

    async def _admin(self, invocation_id: str, what: str) -> Response:
        if what == "cancel":
            await self._rt.cancel(invocation_id)
            return json_response(202, {"invocationId": invocation_id, "status": "CancelRequested"})
        if what == "kill":
            await self._rt.kill(invocation_id)
            return json_response(200, {"invocationId": invocation_id, "status": "Killed"})
        try:
            await self._rt.resume(invocation_id)
        except ValueError as exc:  # not paused: a conflict with its current state
            raise HttpError(409, str(exc)) from None
        return json_response(200, {"invocationId": invocation_id, "status": "Resumed"})


_ALLOW_POST: Final = ((b"allow", b"POST"),)


# --- serving -------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Listening before the port is handed back: connections made from then on wait in
    # the backlog until the server accepts them, instead of being refused.
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(
    runtime: Runtime,
    host: str,
    port: int,
    *,
    token: str | None,
    options: ServerOptions,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """``Runtime.serve_http``: serve ``runtime`` on the running event loop (trio or
    asyncio) until cancelled; ``task_status.started(port)`` once listening."""
    library = sniffio.current_async_library()
    if library not in ("trio", "asyncio"):
        raise RuntimeError(f"serve_http runs under trio or asyncio, not {library}")
    app = IngressApp(runtime, token=token, max_body=options.max_body)
    server = HttpServer(app, options)
    sock = _listen(host, port)
    bound_port: int = sock.getsockname()[1]
    info = {"url": _url(host, bound_port), "pid": os.getpid(), "token_required": token is not None}
    info_bytes = json.dumps(info).encode()
    try:
        # A stale file (a server killed with SIGKILL) is simply replaced; a link is refused.
        write_ingress_file(runtime.path, info_bytes)
    except BaseException:
        sock.close()
        raise
    listener = await anyio.abc.SocketListener.from_socket(sock)  # it owns the socket now
    stopped = anyio.Event()

    async def run_server() -> None:
        # Shielded: on cancellation the server is stopped through ``stopped`` instead, so
        # that requests in progress are answered 503 and connections close in order.
        with anyio.CancelScope(shield=True):
            await server.serve(listener, stopped)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server)
            try:
                task_status.started(bound_port)
                await anyio.sleep_forever()
            finally:
                # Also on failure: the shielded server task ends only through these.
                app.close()
                stopped.set()
    finally:
        remove_ingress_file(runtime.path, info_bytes)  # unless another server's since
