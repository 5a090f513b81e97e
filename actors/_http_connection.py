"""One HTTP/1.1 connection of the ingress server (``_server``); its limits are ``_http_limits``.

A connection is two tasks: ``Connection.run`` answers its requests one after another
(pipelined requests are answered in order), and a reader that fills the connection's
buffer when asked to and watches for the client leaving while the application runs.
Timeouts are the reader's cancel-scope deadline, moved per request, so the fast path adds
no cancel scope of its own. A request's body is read in full before the application runs.

Two parsers: a request whose head is in ``_http_parse``'s common subset (HTTP/1.1, a
content-length or no body, strict syntax) is parsed and answered by ``_http_parse``;
anything else is handed, with the bytes buffered so far, to an ``h11.Connection`` made for
that request, which parses it, answers it and gives back what follows it
(``trailing_data``) once both sides are done. So h11 answers every malformed request, as
before, and a keep-alive connection returns to the fast path after an unusual request.
"""

from __future__ import annotations

import logging
import math
import urllib.parse
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import h11
import msgspec

from ._http_parse import (
    MAX_HEAD_BYTES,
    HeadParser,
    RequestHead,
    chunk,
    http_date,
    response_head,
)

if TYPE_CHECKING:
    from ._http import Message, Scope
    from ._http_io import ByteStream
    from ._http_limits import ServerState

logger = logging.getLogger("actors.http")

#: An idle keep-alive connection is closed after this many seconds without a request.
IDLE_SECONDS: Final = 5.0

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

    def __init__(self, server: ServerState, stream: ByteStream, rejecting: bool):
        self.server = server
        self.options = server.options
        self.stream = stream
        self.rejecting = rejecting
        self.buffer = bytearray()  # received, not yet parsed (while h11 is None)
        self.parser = HeadParser()
        self.h11: h11.Connection | None = None  # only while an unusual request is served
        self.wanted = stream.parker()  # the reader waits for room in the buffer
        self.arrived = stream.parker()  # the requests task waits for the reader
        self.reader_scope = anyio.CancelScope()
        self.reading = True  # the reader task still runs
        self.eof = False
        self.stopped = False
        self.in_app = False
        self.draining = False
        self.broken = False  # a write failed: the client is gone
        self.head_request = False
        self.request_keep_alive = True  # the fast-path request allows keep-alive
        self.started = False  # bytes of the current request have arrived
        self.timing = False  # started, and its read_timeout deadline not yet set
        self.waiting = False  # the requests task waits in ``_more`` (``arrived``)
        self.responded = False  # the fast path has written a response head
        self.closing = False  # the fast path's response ends the connection
        self.connection_scope = anyio.CancelScope()

    # --- the reader ---

    async def _read(self) -> None:
        drained = 0
        buffer = self.buffer
        with self.reader_scope:
            while True:
                if len(buffer) >= _RECEIVE_BYTES and not (self.waiting or self.draining):
                    # Enough unparsed input (pipelined requests): read on when asked.
                    await self.wanted.park()
                try:
                    data = await self.stream.receive(_RECEIVE_BYTES)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    data = b""
                except OSError:  # a reset, say: the same as the client leaving
                    data = b""
                if self.draining:
                    drained += len(data)
                    if not data or drained > _LINGER_BYTES:
                        break
                    continue
                if not data:
                    self.eof = True
                    if self.in_app:
                        self.connection_scope.cancel()  # the client is gone: stop waiting for it
                    break
                buffer += data
                if self.waiting:
                    self.waiting = False
                    self.arrived.unpark()
        self.reading = False
        self.arrived.unpark()

    async def _more(self) -> None:
        """Wait until the reader has put more bytes into the buffer (or met the end, a
        timeout or a stop: then ``reading`` is false)."""
        if not self.reading:
            raise _Done
        if self.timing:
            self._arm()
        self.waiting = True
        self.wanted.unpark()
        try:
            await self.arrived.park()
        finally:
            self.waiting = False

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

    def _fall_back(self) -> h11.Connection:
        """Hand the request at the start of the buffer to a new h11 connection."""
        self.h11 = h = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.parser.reset()
        self._feed(h)
        return h

    def _feed(self, h: h11.Connection) -> None:
        if self.buffer:
            h.receive_data(bytes(self.buffer))
            self.buffer.clear()
        if self.eof:
            h.receive_data(b"")

    async def _head(self) -> RequestHead | h11.Request:
        """The next request's head: parsed here when it is usual, else by h11."""
        h = self.h11
        while h is None:
            parsed = self.parser.parse(self.buffer)
            if isinstance(parsed, tuple):
                head, size = parsed
                del self.buffer[:size]
                return head
            if parsed is None and not (self.eof and self.buffer):  # incomplete
                if not self.reading:
                    raise self._timed_out()
                await self._more()
                if not self.started and self.buffer:
                    self._start_request()
                continue
            h = self._fall_back()  # unusual, or the client left mid-head: h11 answers it
        event = await self._next_event(h)
        if isinstance(event, h11.ConnectionClosed):
            raise _Done
        assert isinstance(event, h11.Request), event
        return event

    async def _next_event(self, h: h11.Connection) -> Any:
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
            self._feed(h)
            if not self.started and self.reading:
                self._start_request()

    def _start_request(self) -> None:
        # The first bytes of a request: from now on it has read_timeout to arrive in full.
        # The deadline moves only when the request has to wait for more (``_arm``): most
        # requests arrive whole in one read and are never timed.
        self.started = True
        self.timing = True

    def _arm(self) -> None:
        self.timing = False
        self.reader_scope.deadline = anyio.current_time() + self.options.read_timeout

    async def _requests(self) -> None:
        options = self.options
        while True:
            self.started = self.timing = False
            self.responded = False
            self.head_request = False  # until this request's line says HEAD
            self.reader_scope.deadline = anyio.current_time() + IDLE_SECONDS
            if self.buffer:  # it was already buffered (pipelined)
                self._start_request()
                # Neither the sockets nor a quick answer need yield: without this, a
                # client's pipelined requests would be answered without letting others run.
                await anyio.lowlevel.checkpoint()
            event = await self._head()
            if not self.started:
                self._start_request()
            self.head_request = event.method == b"HEAD"
            self.request_keep_alive = isinstance(event, RequestHead) and event.keep_alive
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
            h = self.h11
            if h is None:
                assert isinstance(event, RequestHead)
                body, reserved = await self._fast_body(event.content_length)
            else:
                assert isinstance(event, h11.Request)
                body, reserved = await self._body(h, event)
            self.reader_scope.deadline = math.inf
            try:
                answered = await self._answer(event, body)
            finally:
                self.server.budget.give(reserved)
            if not answered or self.stopped:
                raise _Done
            if h is None:
                if self.closing:
                    raise _Done
                continue
            if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                raise _Done
            # Both sides are done and the connection stays open: back to the fast path,
            # with what the client sent after this request.
            self.buffer[:0] = h.trailing_data[0]
            self.h11 = None

    async def _fast_body(self, declared: int) -> tuple[bytes, int]:
        """The body of a fast-path request, and the bytes of the budget it holds."""
        limit = self.options.max_body
        if declared > limit:
            raise _Refusal(413, f"the request body ({declared} bytes) is over {limit} bytes")
        if not declared:
            return b"", 0
        await self._reserve(declared)
        try:
            buffer = self.buffer
            while len(buffer) < declared:
                if not self.reading:
                    if self.eof:  # as h11 words it
                        raise _Refusal(
                            400,
                            "malformed HTTP/1.1 request: peer closed connection without sending"
                            f" complete message body: received {len(buffer)} bytes, expected"
                            f" {declared}",
                        )
                    raise self._timed_out()
                await self._more()
            if len(buffer) == declared:
                body = bytes(buffer)
                buffer.clear()
            else:
                body = bytes(buffer[:declared])
                del buffer[:declared]
        except BaseException:
            self.server.budget.give(declared)
            raise
        return body, declared

    async def _body(self, h: h11.Connection, request: h11.Request) -> tuple[bytes, int]:
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
            event = await self._next_event(h)
            assert isinstance(event, h11.EndOfMessage), event
            return b"", 0
        budget = self.server.budget
        reserved = 0
        try:
            if declared:
                await self._reserve(declared)
                reserved = declared
            if h.they_are_waiting_for_100_continue:
                await self._write(h.send(h11.InformationalResponse(status_code=100, headers=[])))
            chunks: list[bytes] = []
            size = 0
            while True:
                event = await self._next_event(h)
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
        if self.timing:
            self._arm()
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

    async def _answer(self, request: RequestHead | h11.Request, body: bytes) -> bool:
        """Run the application on one request; whether its answer was sent in full."""
        target = request.target
        raw_path, _, query = target.partition(b"?")
        text = raw_path.decode("latin-1")
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
            "headers": request.headers if self.h11 is None else list(request.headers),
            "client": self.stream.address[0],
            "server": self.stream.address[1],
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
        self.wanted.unpark()  # watch for the client leaving while the application runs
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
        body = msgspec.json.encode({"code": refusal.status, "message": refusal.message})
        headers = [
            _JSON,
            (b"content-length", str(len(body)).encode()),
            (b"date", http_date()),
            _CLOSE,
            _FROM_INGRESS,
            *refusal.headers,
        ]
        reason = _REASONS.get(refusal.status, b"")
        if h is None:
            if not self.responded:
                head = response_head(refusal.status, reason, headers, keep_alive=False)
                await self._write(head.data if self.head_request else head.data + body)
        elif h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            response = h11.Response(status_code=refusal.status, headers=headers, reason=reason)
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
            self.wanted.unpark()
            # Woken when the reader ends: at the end, a limit or the deadline.
            await self.arrived.park()


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
    """The ASGI ``send`` of one request: writes the answer (through h11 for a request h11
    parsed), in one write when it comes as one body message (the usual case)."""

    __slots__ = ("connection", "finished", "framing", "head", "sent", "started")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.started = False
        self.finished = False
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.framing: int | None = None  # the fast path's content-length; None: chunked
        self.sent = 0

    async def send(self, message: Message) -> None:
        kind = message["type"]
        connection = self.connection
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            headers = [*message.get("headers", ()), (b"date", http_date())]
            if connection.stopped or connection.server.stopping:
                headers.append(_CLOSE)
            self.head = (int(message["status"]), headers)
        elif kind == "http.response.body":
            if not self.started or self.finished:
                raise RuntimeError("http.response.body outside of a response")
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            h = connection.h11
            if h is None:
                data = self._fast(body, more)
            else:
                data = b""
                if self.head is not None:
                    status, headers = self.head
                    response = h11.Response(
                        status_code=status, headers=headers, reason=_REASONS.get(status, b"")
                    )
                    data = h.send(response) or b""
                    self.head = None
                if body and not connection.head_request:
                    data += h.send(h11.Data(data=body)) or b""
                if not more:
                    data += h.send(h11.EndOfMessage()) or b""
            if not more:
                self.finished = True
            await connection._write(data)

    def _fast(self, body: bytes, more: bool) -> bytes:
        """The bytes of one body message of a fast-path answer (its head before the first)."""
        connection = self.connection
        data = b""
        if self.head is not None:
            status, headers = self.head
            self.head = None
            head = response_head(
                status,
                _REASONS.get(status, b""),
                headers,
                keep_alive=connection.request_keep_alive,
            )
            connection.responded = True
            connection.closing = head.close
            self.framing = head.content_length
            data = head.data
        if connection.head_request:
            return data  # headers only, whatever the body
        if self.framing is None:
            if body:
                data += chunk(body)
            return data + chunk(b"") if not more else data
        self.sent += len(body)
        if self.sent > self.framing or (not more and self.sent != self.framing):
            raise RuntimeError(
                f"the answer's body ({self.sent} bytes so far) does not match its "
                f"content-length ({self.framing})"
            )
        return data + body
