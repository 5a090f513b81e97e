"""The HTTP server under ``rt.serve_http``, over real sockets: no request can stop it, every
answer it writes itself is JSON, and its caps and timeouts hold (issue 12, item 5).

Bytes go out exactly as written (``raw_http``), malformed framing included. Tests without
a clock run under trio and under asyncio; the ones about time use trio's MockClock
(``autojump_clock``), so a 30 s timeout passes at once."""

from __future__ import annotations

import functools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing
from raw_http import RawResponse, connect, exchange, request

import actors
from actors._ingress import IngressApp
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actors._runtime import Runtime


class Echo(actors.Service):
    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()

    @actors.handler
    async def echo(self, ctx: actors.Context, value: object) -> object:
        return value

    @actors.handler
    async def block(self, ctx: actors.Context, value: object) -> str:
        self.started.set()
        await self.release.wait()
        return "released"


class Tally(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta


@asynccontextmanager
async def served(
    tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[Runtime, int, Echo, anyio.abc.TaskGroup]]:
    """A runtime serving ``Echo`` and ``Tally`` on a free port, stopped on exit."""
    echo = Echo()
    async with (
        open_test_runtime([echo, Tally], path=tmp_path / "data") as rt,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(functools.partial(rt.serve_http, "127.0.0.1", 0, **options))
        yield rt, port, echo, tg
        echo.release.set()
        tg.cancel_scope.cancel()


async def health(port: int) -> RawResponse:
    [answer] = await exchange(port, request("GET", "/restate/health"))
    return answer


CHUNKED = b"Transfer-Encoding: chunked\r\n"
MALFORMED_CHUNKS = [
    pytest.param(b"ZZ\r\nabc\r\n0\r\n\r\n", id="illegal-chunk-size"),
    pytest.param(b"2\r\nabcdef\r\n0\r\n\r\n", id="chunk-longer-than-declared"),
    pytest.param(b"3\r\nab\r\n\r\n0\r\n\r\n", id="chunk-shorter-than-declared"),
    pytest.param(b"-1\r\nx\r\n0\r\n\r\n", id="negative-chunk-size"),
    pytest.param(b"1" * 80 + b"\r\n", id="chunk-size-too-long"),
]


@pytest.mark.parametrize("token", [None, "t0ken"])
@pytest.mark.parametrize("chunks", MALFORMED_CHUNKS)
async def test_malformed_chunked_bodies_do_not_stop_the_server(
    tmp_path: Path, token: str | None, chunks: bytes
) -> None:
    """Audit: a POST to an unknown actor with an illegal chunk header, or a chunk longer
    than declared, made hypercorn's trio worker raise BusyResourceError out of
    serve_http (the process exited). Each is answered 400 JSON and closes its connection
    only; the server answers the next request. The split between head and body is tried
    at several places, since the crash was a race between two writers."""
    answers: dict[tuple[bytes, int], list[RawResponse]] = {}
    async with served(tmp_path, token=token) as (_rt, port, _echo, _tg):
        for target in (b"/Nobody/x", b"/Echo/echo", b"/Tally/k/add"):
            head = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\n" + CHUNKED + b"\r\n"
            message = head + chunks
            for cut in (len(head), len(head) + 1, len(message) - 1, len(message)):
                answers[target, cut] = await exchange(port, message[:cut], message[cut:])
        assert (await health(port)).status == (401 if token else 200)
    for attempt, answered in answers.items():
        assert [a.error()[:2] for a in answered] == [(400, 400)], attempt


MALFORMED_REQUESTS = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="no-request-line"),
    pytest.param(b"GET /restate/health HTTP/1.1\r\n\r\n", 400, id="no-host"),
    pytest.param(
        b"GET /restate/health HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", 400, id="bad-header"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400, id="bad-length"),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
        id="two-lengths",
    ),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, id="unknown-coding"
    ),
    pytest.param(
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, id="head-too-large"
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"x: y\r\n" * 20_000 + b"\r\n",
        431,
        id="headers-too-large",
    ),
    pytest.param(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400, id="tls-hello"
    ),
    # A head still incomplete past MAX_HEAD_BYTES (64 KiB) is refused without waiting.
    pytest.param(b"GET /" + b"a" * 70_000, 431, id="incomplete-head-too-large"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, id="http2-preface"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, id="http3"),
]


@pytest.mark.parametrize(("data", "status"), MALFORMED_REQUESTS)
async def test_malformed_requests_are_answered_json(
    tmp_path: Path, data: bytes, status: int
) -> None:
    """Audit: about 10% of the 4xx answers came from hypercorn itself with an empty
    body. Every answer of the server's own is a JSON {"code", "message"} with the status
    as its code, and the connection is then closed."""
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        answers = await exchange(port, data)
        assert len(answers) == 1
        got, code, message = answers[0].error()
        assert (got, code) == (status, status)
        assert message
        assert answers[0].headers["content-type"] == "application/json"
        assert (await health(port)).status == 200


async def test_a_declared_body_over_max_body_is_413_before_it_is_read(tmp_path: Path) -> None:
    async with served(tmp_path, max_body=100) as (_rt, port, _echo, _tg):
        head = b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n"
        [answer] = await exchange(port, head)  # the body is never sent
        assert answer.error() == (413, 413, "the request body (101 bytes) is over 100 bytes")
        chunked = b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\n" + CHUNKED + b"\r\n"
        [answer] = await exchange(port, chunked + b"65\r\n" + b"1" * 101 + b"\r\n0\r\n\r\n")
        assert answer.error()[:2] == (413, 413)
        [ok] = await exchange(port, request("POST", "/Echo/echo", b"[" + b"1," * 48 + b"1]"))
        assert ok.status == 200


async def test_keep_alive_pipelining_and_expect_100_continue(tmp_path: Path) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        two = request("POST", "/Tally/a/add", b"1", close=False) + request(
            "POST", "/Tally/a/add", b"2"
        )
        answers = await exchange(port, two)
        assert [(a.status, a.json()) for a in answers] == [(200, 1), (200, 3)]
        connection = await connect(port)
        try:
            with anyio.fail_after(10):
                head = b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                await connection.send(head + b"Content-Length: 4\r\n\r\n")
                interim = await connection.response()
                assert interim is not None
                assert interim.status == 100
                await connection.send(b'"hi"')
                final = await connection.response()
                assert final is not None
                assert (final.status, final.json()) == (200, "hi")
        finally:
            await connection.aclose()


async def test_head_requests_get_headers_only(tmp_path: Path) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        connection = await connect(port)
        try:
            with anyio.fail_after(10):
                await connection.send(request("HEAD", "/restate/health", close=False))
                answer = await connection.response(head=True)
                assert answer is not None
                assert answer.status == 405
                assert answer.body == b""
                await connection.send(request("GET", "/restate/health"))
                after = await connection.response()
                assert after is not None
                assert after.json() == {"services": ["Echo", "Tally"]}
        finally:
            await connection.aclose()


async def test_an_error_after_a_head_request_still_has_its_body(tmp_path: Path) -> None:
    """Found by the fuzz: after a HEAD on a keep-alive connection, the server's error
    answer to the next (malformed) request was sent without its body."""
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        connection = await connect(port)
        try:
            with anyio.fail_after(10):
                await connection.send(request("HEAD", "/restate/health", close=False))
                first = await connection.response(head=True)
                assert first is not None
                assert first.status == 405
                await connection.send(b"POST  /Echo/echo HTTP/1.1\r\nHost: x\r\n\r\n")
                second = await connection.response()
                assert second is not None
                assert second.error()[:2] == (400, 400)
        finally:
            await connection.aclose()


async def test_an_exception_in_the_app_ends_that_request_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the application raises is a 500 JSON answer and a logged traceback; an
    exception after the answer began closes that connection; the server keeps going."""
    original = IngressApp.__call__

    async def faulty(self: IngressApp, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("path") == "/boom-before":
            raise RuntimeError("injected before the answer")
        if scope.get("path") == "/boom-after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("injected after the answer began")
        await original(self, scope, receive, send)

    monkeypatch.setattr(IngressApp, "__call__", faulty)
    caplog.set_level(logging.ERROR, logger="actors.http")
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        [answer] = await exchange(port, request("GET", "/boom-before"))
        status, code, message = answer.error()
        assert (status, code) == (500, 500)
        assert "injected" not in message  # details stay in the server's log
        assert await exchange(port, request("GET", "/boom-after")) == []
        assert (await health(port)).status == 200
    assert "injected before the answer" in caplog.text
    assert "injected after the answer began" in caplog.text


# --- timeouts and caps: trio's MockClock skips the waiting ------------------------------


async def test_a_slow_request_is_408_after_the_read_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Audit: slow request bodies were held open forever (300 of 300 after 60 s). A
    request must arrive in full within ``read_timeout`` of its first byte, head and body
    alike; else 408 and the connection closes."""
    async with served(tmp_path, read_timeout=30.0) as (_rt, port, _echo, _tg):
        head = b"POST /Echo/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
        for partial in (b"GET /restate/health HTTP/1.1\r\nHost: x\r\n", head + b"12345"):
            started = trio.current_time()
            with trio.fail_after(3600):
                answers = await exchange(port, partial)
            assert [a.error()[:2] for a in answers] == [(408, 408)]
            assert trio.current_time() - started == pytest.approx(30.0, abs=1.0)
        assert (await health(port)).status == 200


async def test_an_idle_connection_is_closed_without_an_answer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with served(tmp_path) as (_rt, port, _echo, _tg):
        connection = await connect(port)
        try:
            with trio.fail_after(3600):
                assert await connection.until_closed() == []
        finally:
            await connection.aclose()


async def test_connections_over_the_cap_are_answered_503(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Audit: no connection cap. Over ``max_connections`` a new connection is answered
    503 JSON and closed; once one closes, the next is served."""
    async with served(tmp_path, max_connections=3) as (_rt, port, _echo, _tg):
        held = [await connect(port) for _ in range(3)]
        try:
            await trio.testing.wait_all_tasks_blocked()
            [refused] = await exchange(port, request("GET", "/restate/health"))
            status, code, message = refused.error()
            assert (status, code) == (503, 503)
            assert "3 connections" in message
            assert refused.headers["retry-after"] == "1"
            # The server's own refusal: a client may retry it (Restate's error source).
            assert refused.headers["x-restate-error-source"] == "ingress"
            await held.pop().aclose()
            await trio.testing.wait_all_tasks_blocked()
            assert (await health(port)).status == 200
        finally:
            for connection in held:
                await connection.aclose()


async def test_request_bodies_in_flight_are_capped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Audit: 24 concurrent 15 MiB bodies took the server from 38 MB to 542 MB. Bytes of
    request bodies held by requests in progress are capped by
    ``max_body_bytes_in_flight``: a body that does not fit waits for room, within the
    read timeout, else 503."""
    options = {"max_body": 100, "max_body_bytes_in_flight": 150, "read_timeout": 30.0}
    async with served(tmp_path, **options) as (_rt, port, echo, tg):
        body = b'"' + b"x" * 78 + b'"'  # 80 bytes
        blocked: list[RawResponse] = []

        async def call_block() -> None:
            blocked.extend(await exchange(port, request("POST", "/Echo/block", body)))

        tg.start_soon(call_block)
        await echo.started.wait()  # holds 80 of the 150 bytes until it is answered
        started = trio.current_time()
        [refused] = await exchange(port, request("POST", "/Echo/echo", body))
        assert refused.error()[:2] == (503, 503)
        assert "in flight" in refused.error()[2]
        assert trio.current_time() - started == pytest.approx(30.0, abs=1.0)
        [small] = await exchange(port, request("POST", "/Echo/echo", b'"' + b"y" * 60 + b'"'))
        assert small.json() == "y" * 60  # 62 bytes fit beside the 80
        echo.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert [a.json() for a in blocked] == ["released"]
        [answer] = await exchange(port, request("POST", "/Echo/echo", body))
        assert answer.json() == "x" * 78


async def test_a_client_that_goes_away_cancels_its_waiting_request(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A request whose client closed the connection stops waiting (the invocation is
    not affected), so that gone clients do not hold connections."""
    async with served(tmp_path, max_connections=1) as (_rt, port, echo, _tg):
        connection = await connect(port)
        await connection.send(request("POST", "/Echo/block", b"1"))
        await echo.started.wait()
        await connection.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert (await health(port)).status == 200  # the one connection slot is free again


async def test_stopping_answers_requests_in_progress_503(tmp_path: Path) -> None:
    """Cancelling serve_http answers a request still waiting 503 and then stops."""
    echo = Echo()
    answers: list[RawResponse] = []
    async with open_test_runtime([echo], path=tmp_path / "data") as rt:
        async with anyio.create_task_group() as outer, anyio.create_task_group() as server:
            port = await server.start(rt.serve_http, "127.0.0.1", 0)

            async def waiting_call() -> None:
                answers.extend(await exchange(port, request("POST", "/Echo/block", b"1")))

            outer.start_soon(waiting_call)
            await echo.started.wait()
            server.cancel_scope.cancel()
        echo.release.set()
    assert [a.error()[:2] for a in answers] == [(503, 503)]


def test_server_options_are_checked() -> None:
    async def main() -> None:
        async with open_test_runtime([Echo()]) as rt:
            for bad in (
                {"max_connections": 0},
                {"max_body_bytes_in_flight": 10, "max_body": 100},
                {"read_timeout": 0.0},
                {"read_timeout": float("nan")},
                {"max_body": -1},
            ):
                with pytest.raises(ValueError, match=next(iter(bad))):
                    await rt.serve_http("127.0.0.1", 0, **bad)

    trio.run(main)
