"""The ingress server's fast path (``actors._http_parse``), without an event loop: on
generated heads it accepts only what h11 accepts and reads it as h11 does (the module's
invariant), finds a head's end where h11 does, and writes responses h11 would write."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._http_parse import (
    MAX_HEAD_BYTES,
    UNUSUAL,
    HeadParser,
    RequestHead,
    chunk,
    parse_head,
    response_head,
)

LINE_ENDS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"]
METHODS = [b"GET", b"POST", b"HEAD", b"PATCH", b"CONNECT", b"G T", b"", b"P\x00"]
TARGETS = [b"/", b"/Counter/k/add", b"/a?b=c", b"*", b"/\x7f", b"/a b", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.12"]
NAMES = [b"Host", b"host", b"Content-Length", b"Connection", b"Transfer-Encoding", b"Expect"]
NAMES += [b"Upgrade", b"x-a", b"Idempotency-Key", b"bad name", b"", b"a\x01"]
VALUES = [b"x", b"", b" x ", b"1", b"01", b"-1", b"1, 1", b"1,2", b"close", b"Keep-Alive, close"]
VALUES += [b"chunked", b"100-continue", b"a\x01b", b"\x80\xff", b"a\tb", b"9" * 19, b"a\x00"]


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    end = draw(st.sampled_from(LINE_ENDS))
    line = b" ".join(
        [
            draw(st.sampled_from(METHODS)),
            draw(st.sampled_from(TARGETS)),
            draw(st.sampled_from(VERSIONS)),
        ]
    )
    lines = [line]
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        separator = draw(st.sampled_from([b": ", b":", b" : ", b":\t"]))
        lines.append(name + separator + draw(st.sampled_from(VALUES)))
        if draw(st.integers(0, 20)) == 0:
            lines.append(b" folded")  # obsolete line folding
    if draw(st.booleans()):
        lines.insert(1, b"Host: x")
    return end.join(lines) + draw(st.sampled_from([b"\r\n\r\n", b"\n\n", b"\r\n\n"]))


def h11_reads(data: bytes) -> tuple[h11.Request, int] | None:
    """h11's request and the length of its head, or None if h11 refuses or wants more."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    connection.receive_data(data)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    return event, len(data) - len(connection.trailing_data[0])


@settings(max_examples=1500, deadline=None)
@given(heads(), st.sampled_from([b"", b"GET / HTTP/1.1\r\nHost: y\r\n\r\n", b"abc\r\n\r\n"]))
def test_the_fast_path_reads_a_subset_of_what_h11_reads_and_reads_it_the_same(
    head: bytes, after: bytes
) -> None:
    parsed = HeadParser().parse(bytearray(head + after))
    if parsed is None:
        raise AssertionError(f"a complete head is not incomplete: {head!r}")
    if parsed is UNUSUAL:
        return  # h11's to answer, whatever it says
    assert isinstance(parsed, tuple)
    ours, size = parsed
    theirs = h11_reads(head + after)
    assert theirs is not None, f"the fast path took what h11 refuses: {head!r}"
    request, h11_size = theirs
    assert size == h11_size == len(head)
    assert (ours.method, ours.target, ours.http_version) == (
        request.method,
        request.target,
        request.http_version,
    )
    assert ours.headers == list(request.headers)
    lengths = [int(v) for n, v in request.headers if n == b"content-length"]
    assert ours.content_length == (lengths[0] if lengths else 0)
    closing = any(
        b"close" in [t.strip() for t in v.lower().split(b",")]
        for n, v in request.headers
        if n == b"connection"
    )
    assert ours.keep_alive == (not closing)


def test_the_common_request_takes_the_fast_path() -> None:
    data = b"POST /Counter/k/add HTTP/1.1\r\nHost: x:1\r\nContent-Type: application/json\r\n"
    data += b"Content-Length: 1\r\nConnection: keep-alive\r\n\r\n1"
    parsed = HeadParser().parse(bytearray(data))
    assert isinstance(parsed, tuple)
    head, size = parsed
    assert data[size:] == b"1"
    assert (head.method, head.target, head.content_length, head.keep_alive) == (
        b"POST",
        b"/Counter/k/add",
        1,
        True,
    )
    assert head.headers[0] == (b"host", b"x:1")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="http-1.0"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", id="te"),
        pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", id="expect"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n", id="upgrade"),
        pytest.param(b"CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n", id="connect"),
        pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\n\r\n", id="bare-lf-at-the-end"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", id="two-hosts"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", id="list"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nA: \x01\r\n\r\n", id="control-byte"),
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", id="leading-blank-line"),
        pytest.param(b"\x16\x03\x01\x02\x00", id="incomplete-tls-hello"),
        pytest.param(b"GET /" + b"a" * MAX_HEAD_BYTES, id="incomplete-over-the-limit"),
        pytest.param(b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\n\r\n", id="over-the-limit"),
    ],
)
def test_unusual_heads_go_to_h11(data: bytes) -> None:
    assert HeadParser().parse(bytearray(data)) is UNUSUAL


def test_a_head_arriving_a_byte_at_a_time_is_found_once_complete() -> None:
    data = b"GET /restate/health HTTP/1.1\r\nHost: x\r\n\r\nGET"
    parser = HeadParser()
    buffer = bytearray()
    results = []
    for byte in data:
        buffer.append(byte)
        results.append(parser.parse(buffer))
    complete = len(data) - 3
    assert results[: complete - 1] == [None] * (complete - 1)
    found = results[complete - 1]
    assert isinstance(found, tuple)
    assert found[1] == complete
    assert isinstance(found[0], RequestHead)


def test_parse_head_refuses_what_is_outside_the_subset() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x") is not None
    assert (
        parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1") is None
    )


# --- responses -----------------------------------------------------------------------------


def test_a_response_head_is_what_h11_writes() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    ours = response_head(200, b"OK", headers, keep_alive=True)
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    connection.next_event()
    theirs = connection.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
    assert ours.data == theirs
    assert (ours.content_length, ours.close) == (2, False)


def test_a_request_that_closes_gets_connection_close_once() -> None:
    head = response_head(200, b"OK", [(b"content-length", b"0")], keep_alive=False)
    assert head.data.count(b"connection: close") == 1
    assert head.close
    own = response_head(200, b"OK", [(b"connection", b"close")], keep_alive=False)
    assert own.data.lower().count(b"connection: close") == 1
    assert own.close
    assert response_head(200, b"OK", [(b"Connection", b"close")], keep_alive=True).close


def test_without_content_length_the_body_is_chunked() -> None:
    head = response_head(200, b"OK", [], keep_alive=True)
    assert b"transfer-encoding: chunked\r\n" in head.data
    assert head.content_length is None
    assert chunk(b"abc") + chunk(b"") == b"3\r\nabc\r\n0\r\n\r\n"
    assert response_head(204, b"No Content", [], keep_alive=True).content_length == 0


@pytest.mark.parametrize(
    ("status", "headers", "message"),
    [
        pytest.param(200, [(b"x", b"a\r\nset-cookie: b")], "^illegal", id="header-injection"),
        pytest.param(200, [(b"bad name", b"v")], "^illegal", id="bad-name"),
        pytest.param(200, [(b"content-length", b"x")], "^bad or repeated", id="bad-length"),
        pytest.param(
            200, [(b"content-length", b"1"), (b"content-length", b"1")], "^bad or", id="two"
        ),
        pytest.param(200, [(b"transfer-encoding", b"chunked")], "^transfer", id="te"),
        pytest.param(101, [], r"^a final response has a status in \[200", id="informational"),
    ],
)
def test_a_bad_response_head_is_refused(
    status: int, headers: list[tuple[bytes, bytes]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        response_head(status, b"", headers, keep_alive=True)
