"""One HTTP/1.1 connection of the ingress server (``_server``), and the limits it keeps.

A connection is two tasks: ``Connection.run`` answers its requests one after another
(h11 allows pipelined requests; they are answered in order), and a reader that fills h11's
buffer when asked to and watches for the client leaving while the application runs.
Timeouts are the reader's cancel-scope deadline, moved per request, so the fast path adds
no cancel scope of its own. A request's body is read in full before the application runs.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
import urllib.parse
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs
import h11
import msgspec

if TYPE_CHECKING:
    from ._http import Message, Scope

    App = Any  # an ASGI 3 application: async (scope, receive, send) -> None

logger = logging.getLogger("actors.http")

DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: Final = 64 * 1024 * 1024
DEFAULT_READ_TIMEOUT: Final = 30.0
#: An idle keep-alive connection is closed after this many seconds without a request.
IDLE_SECONDS: Final = 5.0
#: The request line and headers together, in bytes (else 431).
MAX_HEAD_BYTES: Final = 64 * 1024

_RECEIVE_BYTES: Final = 64 * 1024
# After an error answer, unread input is drained this long before closing, so that the
# close does not reset the connection under the answer before the client has read it.
_LINGER_SECONDS: Final = 1.0
_LINGER_BYTES: Final = 1024 * 1024
_REASONS: Final = {status.value: status.phrase.encode() for status in HTTPStatus}
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_JSON: Final = (b"content-type", b"application/json")
# As on every error answer of the ingress (``_http.FROM_INGRESS``): the server refused
# the request itself, so the status code alone says whether a client may retry.
_FROM_INGRESS: Final = (b"x-restate-error-source", b"ingress")
_CLOSE: Final = (b"connection", b"close")
_REFUSED_CODINGS: Final = 501  # h11's hint for a transfer-coding it does not implement


@attrs.frozen
class ServerOptions:
    """The limits of one server (``Runtime.serve_http`` documents them)."""

    max_body: int
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __attrs_post_init__(self) -> None:
        if self.max_body < 0:
            raise ValueError(f"max_body must not be negative, not {self.max_body}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        if self.max_body_bytes_in_flight < self.max_body:
            raise ValueError(
                f"max_body_bytes_in_flight ({self.max_body_bytes_in_flight}) must be at least "
                f"max_body ({self.max_body}), or a body of max_body bytes could never be read"
            )
        if not (self.read_timeout > 0 and math.isfinite(self.read_timeout)):
            raise ValueError(f"read_timeout must be a positive number, not {self.read_timeout}")


class BodyBudget:
    """Bytes of request bodies that requests in progress hold, at most ``limit``; first
    come, first served (a large body is not overtaken forever by small ones)."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self._waiting: deque[_Waiter] = deque()

    def take_now(self, size: int) -> bool:
        if size <= self.free and not self._waiting:
            self.free -= size
            return True
        return False

    async def take(self, size: int) -> None:
        """Wait until ``size`` bytes are free and take them (the caller bounds the wait)."""
        if self.take_now(size):
            return
        waiter = _Waiter(size)
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.give(size)  # granted, but cancelled before it could use them
            else:
                self._waiting.remove(waiter)
                self._grant()
            raise

    def give(self, size: int) -> None:
        self.free += size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0].size <= self.free:
            waiter = self._waiting.popleft()
            self.free -= waiter.size
            waiter.granted.set()


class _Waiter:
    __slots__ = ("granted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.granted = anyio.Event()


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True).encode()]
    date: bytes = _date_cache[1]
    return date


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, app: App, options: ServerOptions) -> None:
        self.app = app
        self.options = options
        self.budget = BodyBudget(options.max_body_bytes_in_flight)
        self.stopping = False


class _Refusal(Exception):
    """Ends a request with an error answer of the server's own, then the connection."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class _Done(Exception):
    """Ends the connection without a further answer (idle, gone, or already answered)."""


class Connection:
    """One accepted connection: ``run`` serves its requests until it closes, and never
    raises for anything a client sends (``HttpServer`` logs what else escapes)."""

    def __init__(self, server: ServerState, stream: anyio.abc.SocketStream, rejecting: bool):
        self.server = server
        self.options = server.options
        self.stream = stream
        self.rejecting = rejecting
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.wanted = anyio.Event()
        self.arrived = anyio.Event()
        self.reader_scope = anyio.CancelScope()
        self.reading = True  # the reader task still runs
        self.eof = False
        self.stopped = False
        self.in_app = False
        self.draining = False
        self.broken = False  # a write failed: the client is gone
        self.head_request = False
        self.started = False  # bytes of the current request have arrived
        self.connection_scope = anyio.CancelScope()
        self.addresses: tuple[Any, Any] | None = None

    # --- the reader ---

    async def _read(self) -> None:
        drained = 0
        with self.reader_scope:
            while True:
                if not self.draining:
                    await self.wanted.wait()
                try:
                    data = await self.stream.receive(_RECEIVE_BYTES)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    data = b""
                except OSError:  # a reset, say: the same as the client leaving
                    data = b""
                self.wanted = anyio.Event()
                if self.draining:
                    drained += len(data)
                    if not data or drained > _LINGER_BYTES:
                        break
                    continue
                self.h11.receive_data(data)
                if not data:
                    self.eof = True
                    if self.in_app:
                        self.connection_scope.cancel()  # the client is gone: stop waiting for it
                    break
                self.arrived.set()
        self.reading = False
        self.arrived.set()

    async def _more(self) -> None:
        """Wait until the reader has put more bytes into h11 (or met the end, a timeout
        or a stop: then ``reading`` is false)."""
        if not self.reading:
            raise _Done
        self.arrived = arrived = anyio.Event()
        self.wanted.set()
        await arrived.wait()

    def stop(self) -> None:
        """Server shutdown: end waiting for requests (in progress ones are answered 503);
        an answer being computed is sent, then the connection closes."""
        self.stopped = True
        if not self.in_app:
            self.reader_scope.cancel()

    # --- requests ---

    async def run(self) -> None:
        with self.connection_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read)
                try:
                    await self._requests()
                except _Refusal as refusal:
                    await self._refuse(refusal)
                except _Done:
                    pass
                tg.cancel_scope.cancel()

    def _timed_out(self) -> _Refusal | _Done:
        """Why the reader stopped, as the way to end the connection."""
        if self.eof:
            return _Done()  # h11 turns an end mid-request into a protocol error first
        if self.stopped:
            if self.started:
                return _Refusal(503, "the server is stopping", ((b"retry-after", b"1"),))
            return _Done()
        if not self.started:
            return _Done()  # idle: a keep-alive connection simply closes
        return _Refusal(
            408, f"the request did not arrive in full within {self.options.read_timeout:g} s"
        )

    async def _next_event(self) -> Any:
        h = self.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise _malformed(exc) from None
            if event is not h11.NEED_DATA:
                return event
            if not self.reading:
                raise self._timed_out()
            await self._more()
            if not self.started and self.reading:
                self._start_request()

    def _start_request(self) -> None:
        # The first bytes of a request: from now on it has read_timeout to arrive in full.
        self.started = True
        self.reader_scope.deadline = anyio.current_time() + self.options.read_timeout

    async def _requests(self) -> None:
        h = self.h11
        options = self.options
        while True:
            self.started = False
            self.head_request = False  # until this request's line says HEAD
            self.reader_scope.deadline = anyio.current_time() + IDLE_SECONDS
            event = await self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _Done
            assert isinstance(event, h11.Request), event
            if not self.started:  # it was already buffered (pipelined)
                self._start_request()
            self.head_request = event.method == b"HEAD"
            if self.rejecting:
                raise _Refusal(
                    503,
                    f"the server has {options.max_connections} connections open, its limit; "
                    "retry later",
                    ((b"retry-after", b"1"),),
                )
            if self.server.stopping:
                raise _Refusal(503, "the server is stopping", ((b"retry-after", b"1"),))
            if not event.http_version.startswith(b"1."):
                version = event.http_version.decode("ascii", "replace")
                raise _Refusal(505, f"HTTP/{version} is not supported: this server speaks HTTP/1.1")
            body, reserved = await self._body(event)
            self.reader_scope.deadline = math.inf
            try:
                answered = await self._answer(event, body)
            finally:
                self.server.budget.give(reserved)
            if not answered or self.stopped or h.our_state is not h11.DONE:
                raise _Done
            if h.their_state is not h11.DONE:
                raise _Done
            h.start_next_cycle()

    async def _body(self, request: h11.Request) -> tuple[bytes, int]:
        """The whole body, and the bytes of the budget it holds."""
        declared = 0
        chunked = False
        head_size = len(request.target)
        for name, value in request.headers:
            head_size += len(name) + len(value) + 4
            if name == b"content-length":
                declared = int(value)  # h11 has checked it
            elif name == b"transfer-encoding":
                chunked = True  # h11 allows only chunked, and then frames by it alone
        if head_size > MAX_HEAD_BYTES:  # h11 checks only a head that is still incomplete
            raise _Refusal(431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes")
        if chunked:
            declared = 0
        limit = self.options.max_body
        if declared > limit:
            raise _Refusal(413, f"the request body ({declared} bytes) is over {limit} bytes")
        if not declared and not chunked:
            event = await self._next_event()
            assert isinstance(event, h11.EndOfMessage), event
            return b"", 0
        budget = self.server.budget
        reserved = 0
        try:
            if declared:
                await self._reserve(declared)
                reserved = declared
            if self.h11.they_are_waiting_for_100_continue:
                await self._write(
                    self.h11.send(h11.InformationalResponse(status_code=100, headers=[]))
                )
            chunks: list[bytes] = []
            size = 0
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    data = bytes(event.data)
                    size += len(data)
                    if size > limit:
                        raise _Refusal(413, f"the request body is over {limit} bytes")
                    if size > reserved:
                        await self._reserve(size - reserved)
                        reserved = size
                    chunks.append(data)
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks), reserved
        except BaseException:
            budget.give(reserved)
            raise

    async def _reserve(self, size: int) -> None:
        budget = self.server.budget
        if budget.take_now(size):
            return
        # Slow path: wait for room until the request's own deadline.
        with anyio.move_on_after(self.reader_scope.deadline - anyio.current_time()):
            await budget.take(size)
            return
        limit = self.options.max_body_bytes_in_flight
        raise _Refusal(
            503,
            f"the server holds {limit} bytes of request bodies in flight, its limit, and no "
            f"room came for {size} more within {self.options.read_timeout:g} s; retry later",
            ((b"retry-after", b"1"),),
        )

    # --- the application ---

    async def _answer(self, request: h11.Request, body: bytes) -> bool:
        """Run the application on one request; whether its answer was sent in full."""
        target = request.target
        raw_path, _, query = target.partition(b"?")
        text = raw_path.decode("latin-1")
        if self.addresses is None:
            self.addresses = (
                self.stream.extra(anyio.abc.SocketAttribute.remote_address, None),
                self.stream.extra(anyio.abc.SocketAttribute.local_address, None),
            )
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": urllib.parse.unquote(text) if "%" in text else text,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self.addresses[0],
            "server": self.addresses[1],
        }
        responder = _Responder(self)
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()  # a gone client cancels the whole request instead
            raise AssertionError("unreachable")

        self.in_app = True
        self.wanted.set()  # watch for the client leaving while the application runs
        try:
            await self.server.app(scope, receive, responder.send)
        except Exception:
            logger.exception(
                "HTTP: the application failed on %s %s", scope["method"], scope["path"]
            )
            if not responder.started:
                raise _Refusal(500, "internal error in the server (see the server's log)") from None
            return False
        finally:
            self.in_app = False
            if self.stopped:
                self.reader_scope.cancel()
        if not responder.started:
            raise _Refusal(500, "the application sent no answer (see the server's log)")
        return responder.finished and not self.broken

    async def _write(self, data: bytes | None) -> None:
        if data and not self.broken:
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self.broken = True

    async def _refuse(self, refusal: _Refusal) -> None:
        """Send the server's own JSON error answer, if the protocol state allows one, and
        let unread input drain before the close."""
        h = self.h11
        if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = msgspec.json.encode({"code": refusal.status, "message": refusal.message})
            headers = [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (b"date", _date()),
                _CLOSE,
                _FROM_INGRESS,
                *refusal.headers,
            ]
            response = h11.Response(
                status_code=refusal.status,
                headers=headers,
                reason=_REASONS.get(refusal.status, b""),
            )
            try:
                data = h.send(response)
                if not self.head_request:
                    data = (data or b"") + (h.send(h11.Data(data=body)) or b"")
                data = (data or b"") + (h.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:
                return
            await self._write(data)
        if self.reading and not self.eof and not self.broken:
            try:
                await self.stream.send_eof()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            self.draining = True
            self.reader_scope.deadline = anyio.current_time() + _LINGER_SECONDS
            self.arrived = arrived = anyio.Event()
            self.wanted.set()
            await arrived.wait()  # set when the reader ends: at the end, a limit or the deadline


def _malformed(exc: h11.RemoteProtocolError) -> _Refusal:
    status = exc.error_status_hint
    message = (str(exc) or "malformed request")[:200]
    if status == _REFUSED_CODINGS:
        # A 5xx would say the server failed; it is the request that cannot be framed.
        status = 400
        message = "unsupported transfer-encoding: send the body with content-length or chunked"
    elif status == 431:
        message = f"the request line and headers are over {MAX_HEAD_BYTES} bytes"
    return _Refusal(status, f"malformed HTTP/1.1 request: {message}")


class _Responder:
    """The ASGI ``send`` of one request: writes the answer through h11, in one write when
    it comes as one body message (the usual case)."""

    __slots__ = ("connection", "finished", "head", "started")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.started = False
        self.finished = False
        self.head: h11.Response | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        connection = self.connection
        h = connection.h11
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            status = int(message["status"])
            headers = [*message.get("headers", ()), (b"date", _date())]
            if connection.stopped or connection.server.stopping:
                headers.append(_CLOSE)
            self.head = h11.Response(
                status_code=status, headers=headers, reason=_REASONS.get(status, b"")
            )
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("http.response.body outside of a response")
            data = b""
            if self.head is not None:
                data = h.send(self.head) or b""
                self.head = None
            body = bytes(message.get("body", b""))
            if body and not connection.head_request:
                data += h.send(h11.Data(data=body)) or b""
            if not message.get("more_body", False):
                data += h.send(h11.EndOfMessage()) or b""
                self.finished = True
            await connection._write(data)
