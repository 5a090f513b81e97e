"""What a Restate handler's context has beyond the basics: ``ctx.request()`` (id, headers,
body, attempt), idempotency keys and headers on ``ctx.call``/``ctx.send``, and
``generic_call``/``generic_send`` by name with bytes. Embedded, over HTTP, and across
crashes. Runs under trio and asyncio unless it needs the autojump clock."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing

import actors
from actors._ingress import IngressApp
from actors._request import MAX_HEADERS_BYTES, http_headers
from actors.storage import InvocationRecord, InvocationStatus, Target, dumps, loads
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actors._runtime import Runtime


@dataclass(frozen=True)
class Point:
    x: int
    y: int


SEEN: list[tuple[str, dict[str, str], bytes, int, str | None]] = []
RUNS: dict[str, int] = {}
FAILS: list[int] = []


def _seen(ctx: actors.Context) -> actors.Request:
    request = ctx.request()
    SEEN.append(
        (request.id, dict(request.headers), request.body, request.attempt, request.idempotency_key)
    )
    return request


class Echo(actors.Service):
    @actors.handler
    async def point(self, ctx: actors.Context, p: Point) -> Point:
        _seen(ctx)
        RUNS["point"] = RUNS.get("point", 0) + 1
        return Point(p.x + 1, p.y + 1)

    @actors.handler
    async def none(self, ctx: actors.Context) -> str:
        request = _seen(ctx)
        return request.headers.get("x-trace", "-")

    @actors.handler
    async def raw(self, ctx: actors.Context, data: bytes) -> bytes:
        _seen(ctx)
        return data[::-1]

    @actors.handler
    async def flaky(self, ctx: actors.Context) -> int:
        attempt = _seen(ctx).attempt
        if FAILS:
            FAILS.pop()
            raise RuntimeError("transient")
        return attempt

    @actors.handler
    async def crashy(self, ctx: actors.Context, n: int) -> int:
        request = _seen(ctx)
        await ctx.run("first", lambda: n)
        await ctx.run("step", lambda: n)
        return request.attempt


class Caller(actors.Service):
    @actors.handler
    async def call_with(self, ctx: actors.Context, spec: dict[str, Any]) -> Any:
        """Calls Echo.point with what ``spec`` says; errors come back as text."""
        p = Point(int(spec.get("x", 1)), 2)
        idem = spec.get("idem")
        headers = spec.get("headers")
        try:
            if spec.get("send"):
                handle = await ctx.send(
                    Echo.point,
                    p,
                    idempotency_key=idem,
                    headers=headers,
                )
                return [handle.invocation_id, handle.status]
            result = await ctx.call(
                Echo.point,
                p,
                idempotency_key=idem,
                headers=headers,
            )
            return [result.x, result.y]
        except actors.TerminalError as exc:
            return f"{type(exc).__name__} {exc.status_code}: {exc.message}"

    @actors.handler
    async def generic(self, ctx: actors.Context, spec: dict[str, Any]) -> Any:
        payload = str(spec["payload"]).encode("latin-1")
        try:
            if spec.get("send"):
                handle = await ctx.generic_send(
                    str(spec["actor"]),
                    str(spec["handler"]),
                    payload,
                    key=spec.get("key"),
                    headers={"x-trace": "g"},
                )
                return (await handle.result()).decode("latin-1")
            out = await ctx.generic_call(
                str(spec["actor"]),
                str(spec["handler"]),
                payload,
                key=spec.get("key"),
                idempotency_key=spec.get("idem"),
                headers={"x-trace": "g"},
            )
            return out.decode("latin-1")
        except (actors.TerminalError, actors.UnknownHandlerError, actors.SerializationError) as exc:
            return f"{type(exc).__name__} {exc.status_code}: {exc}"

    @actors.handler
    async def twice_then_crash(self, ctx: actors.Context) -> list[int]:
        first = await ctx.call(Echo.point, Point(5, 5), idempotency_key="once")
        second = await ctx.call(Echo.point, Point(5, 5), idempotency_key="once")
        await ctx.run("after", lambda: None)
        return [first.x, second.x]


class Slow(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        await ctx.sleep(100)
        return "slow done"


class Waiter(actors.Service):
    @actors.handler
    async def on_workflow(self, ctx: actors.Context) -> str:
        return await ctx.call(Slow.run, key="w")

    @actors.handler
    async def on_key(self, ctx: actors.Context) -> str:
        return await ctx.call(Sleeper.nap, idempotency_key="nap")


class Sleeper(actors.Service):
    @actors.handler
    async def nap(self, ctx: actors.Context) -> str:
        await ctx.sleep(100)
        RUNS["nap"] = RUNS.get("nap", 0) + 1
        return "rested"


class Quick(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        return f"quick {ctx.key}"


ALL = [Echo, Caller, Slow, Waiter, Sleeper, Quick]
FAST_RETRY = actors.RetryPolicy(initial_interval=0, max_interval=0)


@pytest.fixture(autouse=True)
def _reset() -> None:
    SEEN.clear()
    RUNS.clear()
    FAILS.clear()


# --- ctx.request() ------------------------------------------------------------------------


async def test_request_has_id_headers_body_and_first_attempt() -> None:
    async with open_test_runtime(ALL) as rt:
        handle = await rt.send(Echo.point, Point(1, 2), headers={"x-trace": "abc"})
        assert await handle.result() == Point(2, 3)
        assert await rt.call(Echo.none) == "-"
        assert await rt.call(Echo.raw, b"\x00\xffraw") == b"war\xff\x00"
    assert SEEN[0] == (handle.invocation_id, {"x-trace": "abc"}, b'{"x":1,"y":2}', 1, None)
    assert SEEN[1][1:] == ({}, b"", 1, None)  # no headers, no input
    assert SEEN[2][1:] == ({}, b"\x00\xffraw", 1, None)  # a bytes input as given


async def test_request_is_read_only_and_has_no_public_constructor() -> None:
    captured: list[actors.Request] = []

    class Keep(actors.Service):
        @actors.handler
        async def go(self, ctx: actors.Context) -> None:
            captured.append(ctx.request())

    async with open_test_runtime([Keep]) as rt:
        await rt.call(Keep.go, headers={"a": "1"}, idempotency_key="k1")
    request = captured[0]
    assert request.idempotency_key == "k1"
    with pytest.raises(AttributeError, match=r"^Request is read-only: cannot set 'body'$"):
        request.body = b"x"
    with pytest.raises(TypeError):
        request.headers["a"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError, match="has no public constructor"):
        actors.Request("i", {}, b"", 1, None)


async def test_attempt_grows_with_every_retry() -> None:
    FAILS.extend([1, 1])
    async with open_test_runtime(ALL, retry=FAST_RETRY) as rt:
        assert await rt.call(Echo.flaky) == 3
        FAILS.extend([1])
        handle = await rt.send(Echo.flaky)
        assert await handle.result() == 2
    assert [s[3] for s in SEEN] == [1, 2, 3, 1, 2]


async def test_headers_body_and_a_higher_attempt_after_a_crash(tmp_path: Path) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(ALL, path=tmp_path, crash=CrashPlan(in_run="step")) as rt:
            handle = await rt.send(Echo.crashy, 7, headers={"x-trace": "t1", "X-Other": "ü"})
            await handle.result()
    async with open_test_runtime(ALL, path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == 2
    first, again = SEEN
    assert first == (handle.invocation_id, {"x-trace": "t1", "X-Other": "ü"}, b"7", 1, None)
    assert again == (handle.invocation_id, {"x-trace": "t1", "X-Other": "ü"}, b"7", 2, None)


async def test_an_attempt_number_seen_is_never_repeated_after_a_crash(tmp_path: Path) -> None:
    # Attempt 2 (a retry) asks for its number, runs a step's body, and the process dies
    # before that step's result lands: the next life must say 3, not 2 again.
    FAILS.extend([1])
    seen_in_body: list[int] = []

    class Twice(actors.Service):
        @actors.handler
        async def go(self, ctx: actors.Context) -> int:
            attempt = ctx.request().attempt
            if FAILS:
                FAILS.pop()
                raise RuntimeError("transient")
            await ctx.run("body", lambda: seen_in_body.append(attempt))
            return attempt

    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [Twice], path=tmp_path, retry=FAST_RETRY, crash=CrashPlan(after_run="body")
        ) as rt:
            handle = await rt.send(Twice.go)
            await handle.result()
    async with open_test_runtime([Twice], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == 3
    assert seen_in_body == [2, 3]


async def test_attempt_grows_across_a_suspension(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    attempts: list[int] = []

    class Napper(actors.Service):
        @actors.handler
        async def go(self, ctx: actors.Context) -> None:
            attempts.append(ctx.request().attempt)
            await ctx.sleep(50)
            attempts.append(ctx.request().attempt)

    async with open_test_runtime([Napper], path=tmp_path, suspend_after=1) as rt:
        handle = await rt.send(Napper.go)
        await handle.result()
    assert attempts[0] == 1
    assert attempts[-1] > attempts[0]


# --- headers and idempotency keys from handlers ---------------------------------------------


async def test_headers_of_ctx_call_and_ctx_send_reach_the_callee() -> None:
    async with open_test_runtime(ALL) as rt:
        assert await rt.call(Caller.call_with, {"headers": {"x-trace": "c"}}) == [2, 3]
        sent = await rt.call(Caller.call_with, {"send": True, "headers": {"x-trace": "s"}})
        assert sent[1] == "Accepted"
        await rt.attach(sent[0])
    assert [s[1] for s in SEEN] == [{"x-trace": "c"}, {"x-trace": "s"}]


async def test_idempotent_sends_from_handlers_map_to_one_invocation() -> None:
    async with open_test_runtime(ALL) as rt:
        outside = await rt.send(Echo.point, Point(1, 2), idempotency_key="k")
        first = await rt.call(Caller.call_with, {"send": True, "idem": "k"})
        second = await rt.call(Caller.call_with, {"send": True, "idem": "k"})
        assert first == second == [outside.invocation_id, "PreviouslyAccepted"]
        own = await rt.call(Caller.call_with, {"send": True, "idem": "fresh"})
        assert own[1] == "Accepted"
        again = await rt.call(Caller.call_with, {"send": True, "idem": "fresh"})
        assert again == [own[0], "PreviouslyAccepted"]
        await rt.attach(own[0])
        # The key now names a handler's send: rt.send with it answers the same.
        replay = await rt.send(Echo.point, Point(1, 2), idempotency_key="fresh")
        assert (replay.invocation_id, replay.status) == (own[0], "PreviouslyAccepted")
        refused = await rt.call(Caller.call_with, {"send": True, "idem": "k", "x": 9})
    assert refused.startswith("TerminalError 409: idempotency key 'k' was already used")
    assert RUNS["point"] == 2


async def test_idempotent_calls_from_handlers_wait_for_the_one_invocation() -> None:
    async with open_test_runtime(ALL) as rt:
        assert await rt.call(Caller.call_with, {"idem": "c"}) == [2, 3]
        assert await rt.call(Caller.call_with, {"idem": "c"}) == [2, 3]
        assert await rt.call(Echo.point, Point(1, 2), idempotency_key="c") == Point(2, 3)
        refused = await rt.call(Caller.call_with, {"idem": "c", "x": 4})
        with pytest.raises(actors.TerminalError, match="already used for a different request"):
            await rt.call(Echo.point, Point(4, 2), idempotency_key="c")
    assert refused.startswith("TerminalError 409: idempotency key 'c' was already used")
    assert RUNS["point"] == 1


async def test_an_idempotent_call_is_not_issued_again_after_a_crash(tmp_path: Path) -> None:
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(ALL, path=tmp_path, crash=CrashPlan(in_run="after")) as rt:
            handle = await rt.send(Caller.twice_then_crash)
            await handle.result()
    assert RUNS["point"] == 1
    async with open_test_runtime(ALL, path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == [6, 6]
        assert await rt.call(Echo.point, Point(5, 5), idempotency_key="once") == Point(6, 6)
    assert RUNS["point"] == 1


async def test_a_suspended_caller_is_woken_by_an_invocation_it_did_not_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_test_runtime(ALL, path=tmp_path, suspend_after=1) as rt:
        await rt.send(Slow.run, key="w")
        await rt.send(Sleeper.nap, idempotency_key="nap")
        with trio.fail_after(1000):
            assert await rt.call(Waiter.on_workflow) == "slow done"
            assert await rt.call(Waiter.on_key) == "rested"
    assert RUNS["nap"] == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"headers": {"a": 1}}, "TerminalError 400: headers must map str to str, not str to int"),
        (
            {"headers": ["a"]},
            "TerminalError 400: headers must be a mapping of str to str, not list",
        ),
        ({"headers": {"a:b": "1"}}, "TerminalError 400: header name 'a:b' must be non-empty"),
        ({"headers": {"a": "1\r\n"}}, "TerminalError 400: the value of header 'a' must not"),
        ({"headers": {"a": "x" * MAX_HEADERS_BYTES}}, "TerminalError 413: the headers are"),
        ({"idem": 5}, "TerminalError 400: idempotency_key must be a str, not int"),
        ({"idem": ""}, "TerminalError 400: idempotency_key must not be empty"),
        ({"idem": "k" * 300}, "TerminalError 413: the idempotency key is 300 bytes"),
        ({"send": True, "headers": {"": "1"}}, "TerminalError 400: header name '' must be"),
        ({"send": True, "idem": 5}, "TerminalError 400: idempotency_key must be a str"),
    ],
)
async def test_bad_headers_or_keys_in_a_handler_fail_the_call(
    spec: dict[str, object], expected: str
) -> None:
    async with open_test_runtime(ALL) as rt:
        assert str(await rt.call(Caller.call_with, spec)).startswith(expected)
    assert "point" not in RUNS  # nothing was sent


async def test_an_idempotency_key_on_a_workflow_main_from_a_handler_is_refused() -> None:
    class Starter(actors.Service):
        @actors.handler
        async def go(self, ctx: actors.Context) -> str:
            try:
                await ctx.call(Slow.run, key="w", idempotency_key="k")
            except actors.TerminalError as exc:
                return f"{exc.status_code}: {exc.message}"
            return "called"

    async with open_test_runtime([Slow, Starter]) as rt:
        answer = await rt.call(Starter.go)
    assert answer.startswith("400: Slow.run runs once per workflow id already")


async def test_bad_headers_outside_handlers_are_refused_before_anything_is_stored() -> None:
    async with open_test_runtime(ALL) as rt:
        with pytest.raises(TypeError, match=r"^headers must map str to str, not bytes to str"):
            await rt.call(Echo.none, headers={b"a": "1"})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match=r"^header name 'a\\nb' must be non-empty"):
            await rt.send(Echo.none, headers={"a\nb": "1"})
        with pytest.raises(actors.TerminalError, match=r"^the headers are \d+ bytes, over"):
            await rt.send(Echo.none, headers={"a": "x" * MAX_HEADERS_BYTES})
        with pytest.raises(actors.TerminalError, match=r"not valid Unicode"):
            await rt.call(Echo.none, headers={"a": "\ud800"})
        assert rt.statistics().in_flight == 0
    assert SEEN == []


# --- generic calls and sends -----------------------------------------------------------------


async def test_generic_call_and_send_by_name_with_bytes() -> None:
    async with open_test_runtime(ALL) as rt:
        out = await rt.call(
            Caller.generic, {"actor": "Echo", "handler": "point", "payload": '{"y": 5, "x": 1}'}
        )
        assert json.loads(out) == {"x": 2, "y": 6}
        assert SEEN[-1][1:3] == ({"x-trace": "g"}, b'{"y": 5, "x": 1}')  # kept as given
        sent = {"actor": "Echo", "handler": "raw", "payload": "abc", "send": True}
        assert await rt.call(Caller.generic, sent) == "cba"
        none = {"actor": "Echo", "handler": "none", "payload": ""}
        assert await rt.call(Caller.generic, none) == '"g"'
        idem = {"actor": "Echo", "handler": "point", "payload": '{"x":0,"y":0}', "idem": "gk"}
        assert await rt.call(Caller.generic, idem) == '{"x":1,"y":1}'
        assert await rt.call(Caller.generic, idem) == '{"x":1,"y":1}'
        assert RUNS["point"] == 2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"actor": "Nope", "handler": "point"}, "UnknownHandlerError 404: actor 'Nope' is not"),
        ({"actor": "Echo", "handler": "nope"}, "UnknownHandlerError 404: actor 'Echo' has no"),
        ({"payload": "{not json"}, "SerializationError 400: input of Echo.point is not valid"),
        ({"payload": '{"x": "1", "y": 2}'}, "SerializationError 400: input of Echo.point does"),
        ({"payload": '{"x":1,"y":2}', "key": "k"}, "TerminalError 400: Echo is a service"),
        ({"handler": "none", "payload": "5"}, "TerminalError 400: Echo.none takes no input"),
    ],
)
async def test_generic_call_errors_reach_the_caller(spec: dict[str, str], expected: str) -> None:
    full = {"actor": "Echo", "handler": "point", "payload": "{}", **spec}
    async with open_test_runtime(ALL) as rt:
        assert str(await rt.call(Caller.generic, full)).startswith(expected)
        full["send"] = "yes"
        assert str(await rt.call(Caller.generic, full)).startswith(expected)
    assert "point" not in RUNS


async def test_runtime_generic_call_and_send() -> None:
    async with open_test_runtime(ALL) as rt:
        assert await rt.generic_call("Echo", "point", b'{"x":1,"y":1}') == b'{"x":2,"y":2}'
        handle = await rt.generic_send("Echo", "raw", b"xy", headers={"h": "v"})
        assert await handle.result() == b"yx"
        assert SEEN[-1][1:3] == ({"h": "v"}, b"xy")
        same = await rt.generic_call("Echo", "point", b'{"x":1,"y":1}', idempotency_key="r")
        assert same == await rt.generic_call("Echo", "point", b'{"x":1,"y":1}', idempotency_key="r")
        assert await rt.generic_call("Quick", "run", b"null", key="g") == b'"quick g"'
        with pytest.raises(actors.UnknownHandlerError, match=r"^actor 'Nope' is not registered"):
            await rt.generic_call("Nope", "x", b"")
        with pytest.raises(actors.SerializationError, match=r"^input of Echo.point is not valid"):
            await rt.generic_send("Echo", "point", b"{")
        with pytest.raises(TypeError, match=r"^a generic call's input is bytes, not str$"):
            await rt.generic_call("Echo", "point", "{}")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^Quick is a keyed workflow"):
            await rt.generic_call("Quick", "run", b"")
    assert RUNS["point"] == 2


# --- over HTTP ---------------------------------------------------------------------------------


@asynccontextmanager
async def client_of(rt: Runtime, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=IngressApp(rt, token=token))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield client


async def test_http_request_headers_reach_the_handler(tmp_path: Path) -> None:
    async with open_test_runtime(ALL, path=tmp_path) as rt, client_of(rt) as client:
        answer = await client.post(
            "/Echo/none",
            headers={"x-trace": "h1", "Connection": "keep-alive, x-hop", "x-hop": "gone"},
        )
        assert answer.status_code == 200
        assert answer.json() == "h1"
        sent = await client.post(
            "/Echo/point/send", json={"x": 1, "y": 1}, headers={"idempotency-key": "ik"}
        )
        assert sent.status_code == 202
        invocation_id = sent.json()["invocationId"]
        await rt.attach(invocation_id)
    headers = SEEN[0][1]
    assert headers["x-trace"] == "h1"
    assert "connection" not in headers
    assert "x-hop" not in headers  # named by the connection header: hop-by-hop
    assert "content-length" not in headers
    assert headers["host"] == "ingress"
    assert SEEN[1][1]["idempotency-key"] == "ik"
    assert SEEN[1][2] == b'{"x":1,"y":1}'
    assert SEEN[1][4] == "ik"
    # Durable: the record keeps them, and a reopened runtime reads the same.
    async with open_test_runtime(ALL, path=tmp_path) as rt:
        record = rt._k.load_record(invocation_id)
        assert record is not None
        assert record.headers == SEEN[1][1]


async def test_http_bearer_token_is_not_kept_with_the_invocation() -> None:
    async with open_test_runtime(ALL) as rt, client_of(rt, token="s3cret") as client:
        answer = await client.post(
            "/Echo/none", headers={"authorization": "Bearer s3cret", "x-trace": "t"}
        )
        assert answer.status_code == 200
    assert "authorization" not in SEEN[0][1]


def test_http_headers_joins_repeats_and_drops_hop_by_hop() -> None:
    raw = [
        (b"x-a", b"1"),
        (b"X-A", b"2"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"trailers"),
        (b"authorization", b"Bearer t"),
        (b"caf\xe9", b"\xff"),
    ]
    assert http_headers(raw, drop_authorization=True) == {"x-a": "1, 2", "caf\xe9": "\xff"}
    assert http_headers(raw, drop_authorization=False)["authorization"] == "Bearer t"  # type: ignore[index]
    assert http_headers([(b"connection", b"close")], drop_authorization=False) is None


# --- storage ---------------------------------------------------------------------------------


def test_a_record_without_headers_stores_no_headers_field() -> None:
    record = InvocationRecord("i", Target("A", "h"), b"1", InvocationStatus.PENDING, 0.0)
    data = dumps(record)
    assert b"headers" not in data
    assert loads(InvocationRecord, data) == record  # and old records read back as None
    with_headers = InvocationRecord(
        "i", Target("A", "h"), b"1", InvocationStatus.PENDING, 0.0, headers={"k": "v"}
    )
    assert loads(InvocationRecord, dumps(with_headers)).headers == {"k": "v"}
