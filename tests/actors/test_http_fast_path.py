"""The server's two parsers on one connection (``_http_connection``): usual requests take
the fast path, unusual ones go to h11, and a keep-alive connection goes back and forth
between them without losing or reordering a byte; and its sockets (``_http_io``) with
large bodies and a client that does not read. Under trio and under asyncio."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from raw_http import connect, exchange, request
from test_http_server import CHUNKED, served

from actors._http_parse import UNUSUAL, HeadParser

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def add(key: str, delta: int, *, close: bool = False) -> bytes:
    return request("POST", f"/Tally/{key}/add", str(delta).encode(), close=close)


async def test_pipelined_fast_unusual_fast_requests_are_answered_in_order(tmp_path: Path) -> None:
    chunked = b"POST /Tally/a/add HTTP/1.1\r\nHost: x\r\n" + CHUNKED + b"\r\n1\r\n2\r\n0\r\n\r\n"
    continued = b"POST /Tally/a/add HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    continued += b"Content-Length: 1\r\n\r\n3"
    old = b"POST /Tally/a/add HTTP/1.0\r\nContent-Length: 1\r\n\r\n4"
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        answers = await exchange(port, add("a", 1) + chunked + add("a", 1) + continued + old)
    statuses = [answer.status for answer in answers]
    values = [answer.json() for answer in answers if answer.status == 200]
    assert statuses == [200, 200, 200, 100, 200, 200]
    assert values == [1, 3, 4, 7, 11]


async def test_one_request_split_over_many_writes(tmp_path: Path) -> None:
    data = add("b", 5, close=True)
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        [answer] = await exchange(port, *(data[i : i + 7] for i in range(0, len(data), 7)))
    assert (answer.status, answer.json()) == (200, 5)
    assert answer.headers["connection"] == "close"


async def test_connection_close_is_answered_and_then_closes(tmp_path: Path) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        answers = await exchange(port, add("c", 1, close=True) + add("c", 1))
    assert [(a.status, a.json(), a.headers["connection"]) for a in answers] == [(200, 1, "close")]


async def test_keep_alive_answers_have_a_length_and_no_close(tmp_path: Path) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        connection = await connect(port)
        try:
            with anyio.fail_after(10):
                for expected in (1, 2, 3):
                    await connection.send(add("d", 1))
                    answer = await connection.response()
                    assert answer is not None
                    assert (answer.status, answer.json()) == (200, expected)
                    assert "connection" not in answer.headers
                    assert answer.headers["content-length"] == str(len(answer.body))
        finally:
            await connection.aclose()


async def test_a_body_cut_short_by_the_client_is_answered_400(tmp_path: Path) -> None:
    head = b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        answers = await exchange(port, head + b"12345", half_close=True)
        assert [a.error()[:2] for a in answers] == [(400, 400)]
        assert "expected 10" in answers[0].error()[2]
        [ok] = await exchange(port, request("GET", "/restate/health"))
        assert ok.status == 200


async def test_a_malformed_request_after_usual_ones_is_refused_after_their_answers(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        answers = await exchange(port, add("e", 1) + add("e", 1) + b"GET / HTTP/1.1\r\n\r\n")
    assert [a.status for a in answers] == [200, 200, 400]
    assert answers[2].error()[:2] == (400, 400)
    assert answers[2].headers["connection"] == "close"


async def test_a_declared_body_over_max_body_on_the_fast_path(tmp_path: Path) -> None:
    async with served(tmp_path, max_body=10) as (_rt, port, _echo, _tg):
        [answer] = await exchange(port, request("POST", "/Echo/echo", b"1" * 11))
    assert answer.error() == (413, 413, "the request body (11 bytes) is over 10 bytes")


# --- the sockets (``_http_io``): read-ahead bounds and writes to a client that does not read


async def test_a_large_body_arrives_whole(tmp_path: Path) -> None:
    """Over the streams' read-ahead bound (asyncio pauses reading past 256 KiB unread)."""
    text = "x" * (3 * 1024 * 1024)
    body = b'"' + text.encode() + b'"'
    async with served(tmp_path, max_body=len(body)) as (_rt, port, _echo, _tg):
        [answer] = await exchange(port, request("POST", "/Echo/echo", body))
    assert answer.json() == text


async def test_a_client_that_does_not_read_its_large_answer_holds_only_its_connection(
    tmp_path: Path,
) -> None:
    body = b'"' + b"y" * (8 * 1024 * 1024) + b'"'
    async with served(tmp_path, max_body=len(body)) as (_rt, port, _echo, _tg):
        connection = await connect(port)
        await connection.send(request("POST", "/Echo/echo", body, close=False))
        # The server reads the body and blocks writing 8 MiB that nobody reads; the other
        # connections are served meanwhile, and closing this one ends its write.
        [ok] = await exchange(port, request("GET", "/restate/health"))
        assert ok.status == 200
        await connection.aclose()
        [ok] = await exchange(port, request("GET", "/restate/health"))
        assert ok.status == 200


async def test_a_parker_wakes_its_waiter_and_can_be_cancelled_and_reused() -> None:
    import sniffio

    from actors._http_io import acceptor

    with socket.create_server(("127.0.0.1", 0)) as listening:
        listening.setblocking(False)
        port = listening.getsockname()[1]
        accepting = acceptor(listening, sniffio.current_async_library())
        async with await anyio.connect_tcp("127.0.0.1", port):
            stream = await accepting.accept()
            parker = stream.parker()
            parker.unpark()  # nobody waits: nothing happens
            with anyio.CancelScope() as scope:
                scope.cancel()
                await parker.park()  # cancelled: it stops waiting
            assert scope.cancelled_caught
            woken: list[str] = []

            async def wait() -> None:
                await parker.park()
                woken.append("woken")

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await _let_it_park()
                parker.unpark()
            assert woken == ["woken"]
            await stream.aclose()


async def _let_it_park() -> None:
    # A few checkpoints: the task started just before is parked by then, on either loop.
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


EQUIVALENT = [
    b"GET /restate/health HTTP/1.1\r\nHOST: x\r\n\r\n",
    b"GET /restate/health HTTP/1.1\r\nhost:x\r\nx-empty:\r\nx-spaces: \t a  b \t\r\n\r\n",
    b"GET /restate/health HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
    b"GET /restate/health?x=1&y HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b'POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n"a b c"',
    b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 000003\r\n\r\n[1]",
    b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[1",
    b"POST /Tally/k%2Fy/add HTTP/1.1\r\nHost: x\r\ncontent-length: 1\r\n\r\n5",
    b"POST /Tally/k/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nIdempotency-Key: i\r\n\r\n2",
    b"POST /Tally/k/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nIdempotency-Key: i\r\n\r\n2",
    b"GET /Nobody/x HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /restate/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /restate/health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: Close\r\n\r\n",
]


async def test_the_fast_path_answers_as_h11_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same requests, pipelined on one connection, to a server with the fast path and
    to one where h11 parses everything: the same answers, byte for byte but the date."""

    async def answers(directory: Path) -> list[tuple[int, dict[str, str], bytes]]:
        async with served(directory) as (_rt, port, _echo, _tg):
            got = await exchange(port, b"".join(EQUIVALENT))  # the last one closes
        return [
            (a.status, {k: v for k, v in a.headers.items() if k != "date"}, a.body) for a in got
        ]

    fast = await answers(tmp_path / "fast")
    assert len(fast) == len(EQUIVALENT)
    with monkeypatch.context() as patch:
        patch.setattr(HeadParser, "parse", lambda self, buffer: UNUSUAL)
        slow = await answers(tmp_path / "h11")
    assert fast == slow
