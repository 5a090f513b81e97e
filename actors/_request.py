"""``ctx.request()``: what an invocation was called with, and how its headers get there.

An invocation's headers are the ones its caller gave (``headers=`` on ``rt.call``,
``rt.send``, ``ctx.call``, ``ctx.send`` and their generic forms) or, over HTTP, the
request's headers without the hop-by-hop ones. They are kept in the invocation's record
(``InvocationRecord.headers``), beside its payload, so they come back unchanged after a
crash; a record without headers stores nothing for them. Headers are not part of an
idempotency key's request digest: a client retrying with another ``date`` or trace
header is still the same request.

The attempt number must grow across crashes and suspensions too, yet writing it at
every attempt would cost a write per attempt of every invocation. So it is written only
when a handler asks: ``ctx.request()`` on an attempt after the first submits the record
with that attempt (in the invocation's own commit chain, at once, so a later record
write such as a cancel request supersedes it) before it answers. Everything the handler
does after asking that can be seen outside (a ``ctx.run`` body, a delivered call) waits
for that commit, so a crash after such an effect always finds the higher number. The
first attempt needs no write: an invocation rebuilt with a journal (it had started)
and no recorded attempt had one, so it goes on at 2; one rebuilt without any journal
left no trace of an attempt, and starts at 1 again.

Rejected: journaling the attempt (a replay would return the old number); a separate
table (a schema change for one integer).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

from actors.storage import InvocationStatus, Table, WriteBatch, dumps

from ._errors import TerminalError
from ._limits import utf8_size
from ._util import NoPublicConstructor

if TYPE_CHECKING:
    from ._gate import OutputGate
    from ._invocation import Invocation

#: The headers of one invocation together (names and values, in UTF-8 bytes).
MAX_HEADERS_BYTES: Final = 64 * 1024

#: Headers about one HTTP connection or message framing (RFC 9110 section 7.6.1, and
#: ``content-length``), which describe the hop, not the invocation: never kept.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"content-length",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_FORBIDDEN_IN_NAME: Final = frozenset(":\r\n\0")
_FORBIDDEN_IN_VALUE: Final = frozenset("\r\n\0")


@final
class Request(metaclass=NoPublicConstructor):
    """What the running invocation was called with (``ctx.request()``); read-only.

    Attributes:
      id: the invocation id (``ctx.invocation_id``).
      headers: the headers the invocation was called with: the ``headers=`` its caller
        passed, or over HTTP the request's headers (names in lower case) without the
        hop-by-hop ones (``connection``, ``transfer-encoding``, ``content-length``...)
        and without ``authorization`` when the ingress checks a bearer token. Empty when
        there were none. Durable: the same after a crash and resume.
      body: the input as the callee's decoder reads it: the bytes given to
        ``generic_call``/``generic_send``, the request body for a ``bytes`` handler, and
        for a typed input the JSON it was recorded as (the caller's value encoded; over
        HTTP the body's value, re-encoded: formatting such as whitespace is not kept).
        Empty for a handler without input. Durable like ``headers``.
      attempt: 1 on the first attempt, higher on every later one (a retry after a
        failure, a resume after a suspension or a crash). Never repeats a number an
        attempt that did something visible outside already saw.
      idempotency_key: the idempotency key it was submitted with, if any.
    """

    __slots__ = ("attempt", "body", "headers", "id", "idempotency_key")

    def __init__(
        self,
        invocation_id: str,
        headers: Mapping[str, str],
        body: bytes,
        attempt: int,
        idempotency_key: str | None,
    ) -> None:
        self.id = invocation_id
        self.headers = headers
        self.body = body
        self.attempt = attempt
        self.idempotency_key = idempotency_key

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "idempotency_key"):  # the last one __init__ sets
            raise AttributeError(f"Request is read-only: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"<Request {self.id} attempt={self.attempt} headers={dict(self.headers)!r} "
            f"body={len(self.body)} bytes>"
        )


_NO_HEADERS: Final[Mapping[str, str]] = types.MappingProxyType({})


def request_of(inv: Invocation, output: OutputGate) -> Request:
    """``ctx.request()``: the invocation's ``Request``; on an attempt after the first,
    its attempt number is made durable first (module docstring)."""
    attempt = inv.attempt
    if attempt > 1 and attempt > inv.recorded_attempt and inv.inbox_key is not None:
        # A plain ``rt.call`` never flushed (no inbox key) dies with its caller: no
        # later attempt can follow a crash, so it needs no record.
        batch = WriteBatch()
        record = inv.record(InvocationStatus.RUNNING)
        batch.put(Table.INVOCATIONS, inv.invocation_id.encode(), dumps(record))
        output.flush(inv, batch)
        inv.recorded_attempt = attempt
    headers = inv.headers
    body = inv.payload if inv.spec.has_input else b""
    return Request._create(
        inv.invocation_id,
        types.MappingProxyType(headers) if headers else _NO_HEADERS,
        body,
        attempt,
        inv.idempotency_key,
    )


def check_headers(headers: object) -> dict[str, str] | None:
    """The headers a caller passed, copied (None for none or an empty mapping).

    Raises ``TypeError`` unless a mapping of str to str, ``ValueError`` for an empty
    name or one holding ``:``, a line break or NUL (a value may hold neither of the
    last two), and ``TerminalError`` (400 text that is not valid Unicode, 413 over
    ``MAX_HEADERS_BYTES`` together): nothing is stored for them."""
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, not {type(headers).__name__}")
    if not headers:
        return None
    checked: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(
                f"headers must map str to str, not {type(name).__name__} to "
                f"{type(value).__name__} (header {name!r})"
            )
        if not name or not _FORBIDDEN_IN_NAME.isdisjoint(name):
            raise ValueError(
                f"header name {name!r} must be non-empty, without ':', line breaks or NUL"
            )
        if not _FORBIDDEN_IN_VALUE.isdisjoint(value):
            raise ValueError(f"the value of header {name!r} must not hold line breaks or NUL")
        size += utf8_size(name, "header name") + utf8_size(value, f"value of header {name!r}")
        checked[name] = value
    if size > MAX_HEADERS_BYTES:
        raise TerminalError(
            f"the headers are {size} bytes, over the limit of {MAX_HEADERS_BYTES} bytes", 413
        )
    return checked


def check_headers_in_handler(headers: object) -> dict[str, str] | None:
    """``check_headers`` for a context operation: a malformed argument is deterministic,
    so it fails the invocation (``TerminalError`` 400) instead of being retried."""
    try:
        return check_headers(headers)
    except (TypeError, ValueError) as exc:
        raise TerminalError(str(exc), 400) from exc


def headers_size(headers: dict[str, str] | None) -> int:
    """The bytes ``headers`` add to a record (an upper bound, for ``take_room``)."""
    if not headers:
        return 0
    return sum(4 * (len(name) + len(value)) + 4 for name, value in headers.items())


def http_headers(
    raw: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...], *, drop_authorization: bool
) -> dict[str, str] | None:
    """The headers an HTTP request gives its invocation: the hop-by-hop ones (and those
    its ``connection`` header names) left out, ``authorization`` too when the ingress
    checked it (its token is the server's secret, not the invocation's), repeated names
    joined with ``", "`` (RFC 9110 section 5.3). Names are lower case, as the server
    hands them over; values are decoded as Latin-1, the bytes HTTP allows."""
    dropped = HOP_BY_HOP
    for name, value in raw:
        if name.lower() == b"connection":
            named = {part.strip().lower() for part in value.split(b",")}
            dropped = dropped | named
    headers: dict[str, str] = {}
    for name, value in raw:
        name = name.lower()
        if name in dropped or (drop_authorization and name == b"authorization"):
            continue
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        previous = headers.get(key)
        headers[key] = text if previous is None else f"{previous}, {text}"
    return headers or None
