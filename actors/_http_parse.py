"""The ingress server's fast path for HTTP/1.1 (``_http_connection``): a sans-IO parser for
the common, well-formed request head, and the serialiser of responses to such requests.
No I/O here, no event loop: bytes in, values out.

Why: h11 costs about a third of the server's CPU per request (its event objects, state
machine and per-header validation both ways), more than the sockets. Nearly every request
the ingress sees has the same shape (``POST /Counter/k/add HTTP/1.1``, a Host, a
Content-Length, a few more headers), and that shape is cheap to check exactly.

Invariant: the fast path accepts a subset of what h11 accepts, and reads it the same way.
``parse_head`` answers ``UNUSUAL`` for anything outside the subset and the connection
hands that request to h11, which stays the authority for every error answer and every
rare feature (HTTP/1.0, chunked bodies, ``Expect: 100-continue``, obsolete line folding,
bare-LF line ends, ``Upgrade``, ``CONNECT``, heads near ``MAX_HEAD_BYTES``). The subset:

* the head ends at the first ``\\n\\r?\\n`` of the buffer (h11's rule, so both find the
  same end), and that end is ``\\r\\n\\r\\n``; every line ends in ``\\r\\n``;
* the request line is ``token SP vchar+ SP HTTP/1.1``;
* each header is ``token ":" OWS value OWS`` with a value of visible bytes (and obs-text)
  separated by spaces or tabs: stricter than h11, which also takes most control bytes;
* exactly one ``Host``; at most one ``Content-Length``, 1 to 18 digits; no
  ``Transfer-Encoding``, ``Expect`` or ``Upgrade``.

``tests/actors/test_http_parse.py`` checks the invariant against h11 itself on generated
heads. Rejected: dropping h11 altogether (a second implementation of chunked framing,
100-continue and HTTP/1.0 for requests that are rare, each with its own error messages),
and httptools (a C parser, another dependency, and no trio story).
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Any, Final

#: Bytes of a request line and headers together (else 431; h11 answers those).
MAX_HEAD_BYTES: Final = 64 * 1024

_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE: Final = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_VALUE_BYTE: Final = rb"[\x21-\x7e\x80-\xff]"
_HEADER: Final = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE_BYTE + rb"+(?:[ \t]+" + _VALUE_BYTE + rb"+)*)?[ \t]*"
)
_NAME: Final = re.compile(_TOKEN)
_VALUE: Final = re.compile(rb"(?:" + _VALUE_BYTE + rb"+(?:[ \t]+" + _VALUE_BYTE + rb"+)*)?")
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")  # h11's end of a head
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
# Headers that send a request to h11: each changes framing or the connection's protocol.
_UNUSUAL: Final = frozenset((b"transfer-encoding", b"expect", b"upgrade"))


class RequestHead:
    """A parsed request head; the attributes have h11.Request's names and meaning."""

    __slots__ = ("content_length", "headers", "http_version", "keep_alive", "method", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = b"1.1"
        self.headers = headers  # names lower-cased, values as sent
        self.content_length = content_length
        self.keep_alive = keep_alive


class _Unusual:
    """``parse_head``'s answer for a head outside the fast path's subset."""


UNUSUAL: Final = _Unusual()


class HeadParser:
    """Finds and parses request heads in a connection's buffer. Remembers how far it has
    searched for the end of a head, so a head arriving a byte at a time costs linear
    time, not quadratic."""

    __slots__ = ("_searched",)

    def __init__(self) -> None:
        self._searched = 0

    def parse(self, buffer: bytearray) -> tuple[RequestHead, int] | _Unusual | None:
        """The head at the start of ``buffer`` and its length in bytes; None if the head is
        still incomplete (and within ``MAX_HEAD_BYTES``); ``UNUSUAL`` for h11 to handle."""
        end = _BLANK_LINE.search(buffer, self._searched)
        if end is None:
            if len(buffer) > MAX_HEAD_BYTES or (buffer and buffer[0] < 0x21):
                return UNUSUAL  # h11 refuses both at once (a TLS hello starts with 0x16)
            self._searched = max(0, len(buffer) - 2)
            return None
        self._searched = 0
        stop = end.end()
        if stop > MAX_HEAD_BYTES or stop - end.start() != 3 or buffer[end.start() - 1] != 13:
            return UNUSUAL  # too large, or a bare LF ends a line: h11's to answer
        head = parse_head(bytes(buffer[: stop - 4]))
        if head is None:
            return UNUSUAL
        return head, stop

    def reset(self) -> None:
        self._searched = 0


def parse_head(head: bytes) -> RequestHead | None:
    """``head`` (without its final CRLF CRLF) as a request, or None if it is outside the
    fast path's subset (module docstring)."""
    lines = head.split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        return None
    method, target = request_line.groups()
    if method == b"CONNECT":
        return None
    headers: list[tuple[bytes, bytes]] = []
    hosts = 0
    content_length = -1
    keep_alive = True
    header = _HEADER.fullmatch
    for line in lines[1:]:
        field = header(line)
        if field is None:
            return None  # a bad header, obsolete folding, a stray CR or LF
        name = field[1].lower()
        value = field[2] or b""
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if content_length >= 0 or _DIGITS.fullmatch(value) is None:
                return None
            content_length = int(value)
        elif name == b"connection":
            if b"close" in (token.strip() for token in value.lower().split(b",")):
                keep_alive = False
        elif name in _UNUSUAL:
            return None
        headers.append((name, value))
    if hosts != 1:
        return None
    return RequestHead(method, target, headers, max(content_length, 0), keep_alive)


# --- responses -----------------------------------------------------------------------------

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int, reason: bytes) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


class ResponseHead:
    """A response head to a fast-path request, serialised; how its body is framed."""

    __slots__ = ("close", "content_length", "data")

    def __init__(self, data: bytes, content_length: int | None, close: bool) -> None:
        self.data = data
        #: None: the body goes in chunks (the application gave no content-length).
        self.content_length = content_length
        #: The connection closes after this response (one side said so).
        self.close = close


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    keep_alive: bool,
) -> ResponseHead:
    """The head of a response to a fast-path request, as h11 would write it: the same
    validation of names and values (``ValueError``, so that a bad header fails the
    application instead of splitting a response), a ``connection: close`` added when
    the request or the application closes the connection, ``transfer-encoding:
    chunked`` when there is no content-length."""
    if not 200 <= status <= 999:
        raise ValueError(f"a final response has a status in [200, 1000), not {status}")
    parts = [_status_line(status, reason)]
    content_length: int | None = None
    close = False  # the application's own connection: close
    name_ok = _NAME.fullmatch
    value_ok = _VALUE.fullmatch
    for name, value in headers:
        if name_ok(name) is None or value_ok(value) is None:
            raise ValueError(f"illegal response header {name!r}: {value!r}")
        lower = name.lower()
        if lower == b"content-length":
            if content_length is not None or _DIGITS.fullmatch(value) is None:
                raise ValueError(f"bad or repeated content-length {value!r}")
            content_length = int(value)
        elif lower == b"transfer-encoding":
            raise ValueError("transfer-encoding is the server's to choose")
        elif lower == b"connection" and b"close" in value.lower():
            close = True
        parts += (name, b": ", value, b"\r\n")
    if status in (204, 304):
        content_length = 0  # no body, whatever the headers say (h11's rule)
    elif content_length is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not (keep_alive or close):
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return ResponseHead(b"".join(parts), content_length, close or not keep_alive)


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (empty data is the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"


_date_cache: list[Any] = [0, b""]


def http_date() -> bytes:
    """The ``date`` header's value for now (formatted once a second)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True).encode()]
    date: bytes = _date_cache[1]
    return date
