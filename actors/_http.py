"""HTTP plumbing of the ingress: ASGI types, responses and errors, reading a request
(path segments, headers, a size-limited body, a handler's input) and Restate's delay
syntax. No routing and no runtime here: ``_ingress`` decides what a request means."""

from __future__ import annotations

import itertools
import operator
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import msgspec

from actors.storage import DiskFullError, StoreFullError

from ._errors import (
    ActorsError,
    PersistenceError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
)
from ._limits import MAX_FAILURE_MESSAGE_CHARS, MAX_JSON_DEPTH
from ._serde import ANY, decode_input, structure_value
from ._types import RAW_BYTES

if TYPE_CHECKING:
    from ._definitions import Handler

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Restate's header on every error answer: ``invocation`` when the error is the
#: invocation's outcome (a client never retries it), ``ingress`` when the ingress refused
#: the request (its status code says whether a retry may help).
ERROR_SOURCE: Final = b"x-restate-error-source"
FROM_INGRESS: Final = ((ERROR_SOURCE, b"ingress"),)
FROM_INVOCATION: Final = ((ERROR_SOURCE, b"invocation"),)
JSON: Final = b"application/json"
OCTET_STREAM: Final = b"application/octet-stream"


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    #: Sent with a non-empty body, or with any body that is raw bytes (OCTET_STREAM).
    content_type: bytes = JSON


class HttpError(Exception):
    """An error answer decided by the ingress itself (not the runtime)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Disconnected(Exception):
    """The client went away before its request body arrived."""


def json_response(status: int, value: object) -> Response:
    return Response(status, msgspec.json.encode(value))


def error_response(
    status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Response:
    body = msgspec.json.encode({"code": status, "message": message})
    return Response(status, body, (*headers, *FROM_INGRESS))


def public_message(message: str, private: tuple[str, ...]) -> str:
    """``message`` as a client may read it: each of the server's ``private`` paths (its
    data directory) replaced, and cut to ``MAX_FAILURE_MESSAGE_CHARS``."""
    for path in private:
        if path in message:
            message = message.replace(path, "<data directory>")
    if len(message) > MAX_FAILURE_MESSAGE_CHARS:
        message = message[:MAX_FAILURE_MESSAGE_CHARS] + " [cut]"
    return message


def error_of(exc: ActorsError, private: tuple[str, ...]) -> Response:
    """The answer for an error the runtime raised (see ``public_message``)."""
    if isinstance(exc, RuntimeClosedError):
        return error_response(503, public_message(str(exc), private))
    if isinstance(exc, PersistenceError) and isinstance(
        exc.__cause__, DiskFullError | StoreFullError
    ):
        # 507 Insufficient Storage: nothing was stored, and the same request can succeed
        # once there is room (the runtime itself keeps working).
        return error_response(507, public_message(str(exc), private))
    if isinstance(exc, TerminalError):
        # A handler may pick any code; only an error status can be answered as one.
        code = exc.status_code
        status = code if 400 <= code <= 599 else 500
        message = public_message(exc.message, private)
        body: dict[str, object] = {"code": code, "message": message}
        metadata = getattr(exc, "metadata", None)
        if metadata:  # the handler's own pairs, as it raised them; absent when empty
            body["metadata"] = metadata
        if exc._outcome:  # the invocation's result, as Restate answers it
            body["source"] = "invocation"
            return Response(status, msgspec.json.encode(body), FROM_INVOCATION)
        return Response(status, msgspec.json.encode(body), FROM_INGRESS)
    return error_response(exc.status_code, public_message(str(exc), private))


# --- request parsing -----------------------------------------------------------------------

_NUMBER = r"(\d+(?:\.\d+)?)"
_ISO_DURATION = re.compile(
    rf"P(?:{_NUMBER}W)?(?:{_NUMBER}D)?(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?",
    re.IGNORECASE,
)
_UNITS: Final = {
    "ms": 0.001,
    "msec": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_HUMAN_PART = rf"\s*{_NUMBER}\s*([a-z]+)"
_HUMAN_DURATION = re.compile(rf"(?:{_HUMAN_PART})+\s*", re.IGNORECASE)


MAX_DELAY: Final = timedelta(days=36500)


def parse_delay(text: str) -> timedelta:
    """A ``?delay=`` value as Restate's ingress takes it: humantime (``500ms``, ``10s``,
    ``1m 30s``, ``2h``, ``1d``) or an ISO-8601 duration (``PT1S``, ``PT1M30S``,
    ``P1DT2H``), or a bare number of milliseconds (what Restate's Python client sends),
    at most ``MAX_DELAY`` (100 years). Raises ``ValueError`` naming the value otherwise."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        value += "ms"
    iso = _ISO_DURATION.fullmatch(value)
    if iso is not None and any(iso.groups()) and not value.upper().endswith("T"):
        weeks, days, hours, minutes, seconds = (float(g) if g else 0.0 for g in iso.groups())
        total = weeks * 604800.0 + days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds
        return _bounded_delay(text, total)
    if _HUMAN_DURATION.fullmatch(value):
        total = 0.0
        for number, unit in re.findall(_HUMAN_PART, value, re.IGNORECASE):
            factor = _UNITS.get(unit.lower())
            if factor is None:
                raise ValueError(f"delay {text!r} has an unknown unit {unit!r}")
            total += float(number) * factor
        return _bounded_delay(text, total)
    raise ValueError(
        f"delay {text!r} is not a duration (use a unit, e.g. 500ms, 10s, 1m, 1h, or "
        "ISO-8601 such as PT1M30S)"
    )


def _bounded_delay(text: str, seconds: float) -> timedelta:
    # A float of the digits given is finite up to 1e308 and compares exactly enough here;
    # only a timedelta past its range raises (OverflowError).
    if not seconds <= MAX_DELAY.total_seconds():
        raise ValueError(f"delay {text!r} is too long: a delay is at most 100 years")
    return timedelta(seconds=seconds)


def path_segments(scope: Scope) -> list[str]:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).split(b"?", 1)[0].decode("ascii")
        except UnicodeDecodeError:
            raise HttpError(400, "the request path is not ASCII") from None
        try:
            parts = [urllib.parse.unquote(p, errors="strict") for p in text.split("/")]
        except UnicodeDecodeError:
            raise HttpError(400, "the request path is not valid UTF-8") from None
    else:  # raw_path is optional in ASGI: fall back on the decoded path
        parts = str(scope.get("path", "/")).split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] == "":
        parts = parts[:-1]  # one trailing slash is tolerated
    if parts == [""]:
        return []
    return parts


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    length = header(scope, b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HttpError(400, f"content-length {length!r} is not a number") from None
        if declared > limit:
            raise HttpError(413, f"the request body ({declared} bytes) is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        if message["type"] != "http.request":
            continue
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"the request body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_A_BRACKET: Final = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket becomes 2 and a closing one 0, so that minus 1 they count +1 and -1.
_BRACKET_STEPS: Final = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_TOO_DEEP: Final = f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"


def _json_depth(body: bytes) -> int:
    """How deep valid JSON ``body`` nests arrays and objects, in passes at C speed."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET)
    steps = map(operator.sub, brackets.translate(_BRACKET_STEPS), itertools.repeat(1))
    return max(itertools.accumulate(steps), default=0)


def decode_json(body: bytes, annotation: Any, what: str) -> Any:
    """The value of type ``annotation`` in JSON ``body``: ``SerializationError`` for bad
    JSON or a wrong type, 400 ``HttpError`` past ``MAX_JSON_DEPTH``. A body with at most
    that many brackets cannot be deeper: two ``bytes.count`` and no other cost."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return decode_input(body, annotation, what)
    try:
        raw = decode_input(body, ANY, what)  # valid JSON first, so the depth scan is exact
    except RecursionError:
        raise HttpError(400, f"{what}: {_TOO_DEEP}") from None
    if _json_depth(body) > MAX_JSON_DEPTH:
        raise HttpError(400, f"{what}: {_TOO_DEEP}")
    return structure_value(raw, annotation, what)


def handler_input(spec: Handler[Any, Any], body: bytes) -> tuple[object, ...]:
    """The arguments for ``spec`` from a request body: () or (value,)."""
    what = f"input of {spec.qualname}"
    if spec.input_type is RAW_BYTES:
        return (body,)  # the body as it is, empty or not
    empty = not body.strip()
    if not spec.has_input:
        if empty or body.strip() == b"null":
            return ()
        raise HttpError(400, f"{spec.qualname} takes no input, but the request has a body")
    if empty:
        try:
            return (structure_value(None, spec.input_type, what),)
        except SerializationError:
            name = getattr(spec.input_type, "__name__", None) or repr(spec.input_type)
            raise HttpError(
                400, f"{spec.qualname} takes an input of type {name}; the request body is empty"
            ) from None
    return (decode_json(body, spec.input_type, what),)


def require(method: str, allowed: str) -> None:
    if method != allowed:
        method_not_allowed(method, allowed)


def method_not_allowed(method: str, allowed: str) -> NoReturn:
    raise HttpError(
        405, f"use {allowed} here, not {method}", ((b"allow", allowed.encode("ascii")),)
    )
