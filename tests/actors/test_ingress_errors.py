"""The Restate-compatible HTTP ingress, its refusals: bad input, limits, unknown paths,
wrong methods, the bearer token, closing and unexpected failures, and real sockets
served under trio and under asyncio (the paths that answer: test_ingress.py).

Most tests drive the ASGI application in-process through ``httpx.ASGITransport``; each
runs under trio and under asyncio (see conftest.py)."""

from __future__ import annotations

import functools
import json
import os
import socket
import urllib.parse
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import actors
from actors._ingress import IngressApp
from actors._limits import MAX_IDEMPOTENCY_KEY_BYTES, MAX_JSON_DEPTH, MAX_KEY_BYTES
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


from ingress_actors import error, make_actors, open_client, serving

# --- errors --------------------------------------------------------------------------------


async def test_bad_input_is_400_naming_the_problem() -> None:
    async with serving() as (made, _rt, client):
        cases: list[tuple[str, bytes, str]] = [
            ("/Greeter/greet", b"{not json", "is not valid JSON"),
            ("/Greeter/greet", b"5", "expected str, got int 5"),
            ("/Greeter/register", b'{"name": "x"}', "email"),
            ("/Greeter/register", b'{"name": 1, "email": "e"}', "$.name"),
            ("/Greeter/greet", b"", "takes an input of type str; the request body is empty"),
            ("/Greeter/nothing", b'"x"', "takes no input, but the request has a body"),
            ("/Counter/add", b"1", "Counter is a keyed object: use /Counter/{key}/add"),
            ("/Counter/add/send", b"1", "Counter is a keyed object"),
            ("/Greeter/someone/greet", b'"x"', "Greeter is a service: its handlers take no key"),
            ("/Greeter/someone/greet/send", b'"x"', "Greeter is a service"),
            ("/signupWorkflow/run", b"{}", "signupWorkflow is a keyed workflow"),
        ]
        for path, body, expected in cases:
            response = await client.post(path, content=body)
            status, code, message = error(response)
            assert (status, code) == (400, 400), (path, body, message)
            assert expected in message, (path, body, message)
        assert made.greeter.greeted == []


async def test_bad_delay_and_headers_are_400() -> None:
    async with serving() as (_made, _rt, client):
        bad = await client.post("/Counter/x/add/send?delay=soon", json=1)
        assert error(bad)[:2] == (400, 400)
        assert "is not a duration" in error(bad)[2]
        on_call = await client.post("/Counter/x/add?delay=1s", json=1)
        assert error(on_call) == (400, 400, "?delay= applies to /send only")
        empty_key = await client.post("/Counter/x/add", json=1, headers={"idempotency-key": ""})
        assert error(empty_key) == (400, 400, "the idempotency-key header is empty")
        bad_length = await client.post(
            "/Counter/x/add", content=b"1", headers={"content-length": "one"}
        )
        assert error(bad_length)[:2] == (400, 400)
        bad_path = await client.post("/Counter/%FF/add", json=1)
        assert error(bad_path) == (400, 400, "the request path is not valid UTF-8")
        assert (await client.post("/Counter/x/value")).json() == 0  # nothing was run


def nested(depth: int, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


async def test_json_nested_too_deeply_is_400() -> None:
    """Audit: JSON nested deeper than about 1,000 levels answered 500 (a RecursionError
    in the decoder, its depth depending on the stack). The limit is MAX_JSON_DEPTH levels
    of arrays and objects, for a handler's input and an awakeable's value alike; brackets
    inside strings do not count."""
    async with serving() as (_made, _rt, client):
        deepest = await client.post("/Greeter/echo", content=nested(MAX_JSON_DEPTH))
        assert deepest.status_code == 200
        assert deepest.content == nested(MAX_JSON_DEPTH)
        text = b'"' + b"[{" * 5000 + b'"'
        assert (await client.post("/Greeter/echo", content=text)).content == text
        many = b"[" + b",".join([b'{"a": [1]}'] * 1000) + b"]"  # 2,000 brackets, depth 3
        assert (await client.post("/Greeter/echo", content=many)).status_code == 200
        expected = f"nested deeper than {MAX_JSON_DEPTH} levels"
        for depth in (MAX_JSON_DEPTH + 1, 1_000, 100_000):
            for kind in ("array", "object"):
                for path in (
                    "/Greeter/echo",
                    "/Greeter/maybe",
                    "/Counter/k/add/send",
                    "/restate/awakeables/awk_x/resolve",
                ):
                    response = await client.post(path, content=nested(depth, kind))
                    status, code, message = error(response)
                    assert (status, code) == (400, 400), (depth, kind, path, message)
                    assert expected in message, message


async def test_delays_out_of_range_are_400() -> None:
    """Audit: ?delay=99999999999999999999d or PT99999999999999999999S answered 500
    (OverflowError). A delay is at most 100 years."""
    async with serving() as (_made, _rt, client):
        for delay in (
            "99999999999999999999d",
            "PT99999999999999999999S",
            "P99999999999999999999W",
            "99999999999999999999999999999999ms",
            "36501d",
            "P5218W",
        ):
            response = await client.post(f"/Counter/x/add/send?delay={delay}", json=1)
            status, code, message = error(response)
            assert (status, code) == (400, 400), (delay, message)
            assert "at most 100 years" in message, message
        accepted = await client.post("/Counter/x/add/send?delay=36500d", json=1)
        assert accepted.status_code == 202
        assert (await client.post("/Counter/x/value")).json() == 0


async def test_keys_over_the_limits_are_413_and_nothing_runs() -> None:
    """Audit: an object key over about 500 bytes answered 200 on a call and stored
    nothing, and 500 on /send with the server's data-directory path in the message; an
    idempotency key over 511 bytes did the same. Keys and workflow ids are at most
    MAX_KEY_BYTES, idempotency keys MAX_IDEMPOTENCY_KEY_BYTES, in UTF-8 bytes; over it
    is 413 naming the limit, and nothing runs."""
    async with serving() as (made, rt, client):
        at_limit = "k" * MAX_KEY_BYTES
        assert (await client.post(f"/Counter/{at_limit}/add", json=2)).json() == 2
        for key in ("k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2 + 1), "x" * 600):
            quoted = urllib.parse.quote(key, safe="")
            for method, path in (
                ("POST", f"/Counter/{quoted}/add"),
                ("POST", f"/Counter/{quoted}/add/send"),
                ("POST", f"/Counter/{quoted}/value"),
                ("POST", f"/signupWorkflow/{quoted}/run/send"),
                ("POST", f"/signupWorkflow/{quoted}/getStage"),
                ("GET", f"/restate/workflow/signupWorkflow/{quoted}/output"),
            ):
                body = b'{"name": "a", "email": "b"}' if "/run" in path else b"1"
                response = await client.request(method, path, content=body)
                status, code, message = error(response)
                assert (status, code) == (413, 413), (path, message)
                assert f"limit of {MAX_KEY_BYTES} bytes" in message, message
                assert str(rt.path) not in message
        for idempotency_key in ("i" * (MAX_IDEMPOTENCY_KEY_BYTES + 1), "i" * 600):
            for path in ("/Counter/a/add", "/Counter/a/add/send"):
                response = await client.post(
                    path, json=1, headers={"idempotency-key": idempotency_key}
                )
                status, code, message = error(response)
                assert (status, code) == (413, 413), (path, message)
                assert f"limit of {MAX_IDEMPOTENCY_KEY_BYTES} bytes" in message, message
        assert (await client.post("/Counter/a/value")).json() == 0
        assert (await client.post(f"/Counter/{at_limit}/value")).json() == 2
        assert made.mailer.secrets == {}


async def test_error_answers_never_hold_the_data_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the runtime raises, its message reaches the client without the server's
    data-directory path, and cut to a bounded length."""
    async with serving() as (_made, rt, client):
        original = rt.call

        async def failing(*args: object, **kwargs: object) -> object:
            key = kwargs.get("key")
            if key == "persistence":
                raise actors.PersistenceError(f"cannot write {rt.path}/data.mdb: disk full")
            if key == "terminal":
                raise actors.TerminalError(f"no room under {rt.path}", 507)
            if key == "long":
                raise actors.TerminalError("x" * 100_000, 400)
            return await original(*args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr(rt, "call", failing)
        for key, status in (("persistence", 500), ("terminal", 507)):
            response = await client.post(f"/Counter/{key}/add", json=1)
            got, code, message = error(response)
            assert (got, code) == (status, status)
            assert str(rt.path) not in message
            assert "<data directory>" in message
        long = error(await client.post("/Counter/long/add", json=1))
        assert long[:2] == (400, 400)
        assert len(long[2]) < 5000


async def test_unknown_targets_and_routes_are_404() -> None:
    async with serving() as (_made, _rt, client):
        cases = [
            ("POST", "/Nobody/greet", "actor 'Nobody' is not registered"),
            ("POST", "/Greeter/nobody", "actor 'Greeter' has no handler 'nobody'"),
            ("POST", "/Counter/k/nobody/send", "has no handler 'nobody'"),
            ("POST", "/Greeter/a/b/c/d", "no route"),
            ("GET", "/", "no route"),
            ("GET", "/restate/nothing", "no route"),
            ("GET", "/restate/invocation/x/explode", "no route"),
            ("GET", "/restate/workflow/Counter/k/attach", "workflow 'Counter' is not registered"),
            ("GET", "/restate/workflow/nobody/k/output", "workflow 'nobody' is not registered"),
            ("GET", "/restate/workflow/signupWorkflow/none/attach", "no run of workflow"),
            ("GET", "/restate/workflow/signupWorkflow/none/output", "no run of workflow"),
        ]
        for method, path, expected in cases:
            response = await client.request(method, path)
            status, code, message = error(response)
            assert (status, code) == (404, 404), (method, path, message)
            assert expected in message, (method, path, message)


async def test_wrong_method_is_405_with_allow() -> None:
    async with serving() as (_made, _rt, client):
        cases = [
            ("GET", "/Greeter/greet", "POST"),
            ("PUT", "/Counter/k/add/send", "POST"),
            ("POST", "/restate/health", "GET"),
            ("POST", "/restate/invocation/x/attach", "GET"),
            ("DELETE", "/restate/workflow/signupWorkflow/x/output", "GET"),
            ("GET", "/restate/invocation/x/cancel", "PATCH"),
            ("POST", "/restate/invocation/x/kill", "PATCH"),
        ]
        for method, path, allowed in cases:
            response = await client.request(method, path)
            assert error(response)[:2] == (405, 405), (method, path)
            assert response.headers["allow"] == allowed


async def test_handler_terminal_error_keeps_its_status_code() -> None:
    async with serving() as (_made, _rt, client):
        forbidden = await client.post("/Greeter/fail", json=403)
        assert error(forbidden) == (403, 403, "no such luck")
        teapot = await client.post("/Greeter/fail/send", json=418)
        invocation_id = teapot.json()["invocationId"]
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert error(attached) == (418, 418, "no such luck")
        output = await client.get(f"/restate/invocation/{invocation_id}/output")
        assert error(output) == (418, 418, "no such luck")
        assert error(await client.post("/Greeter/fail_default")) == (500, 500, "plain failure")
        # A code that is not an error status is answered 500, the code kept in the body.
        odd = await client.post("/Greeter/fail", json=200)
        assert error(odd) == (500, 200, "no such luck")


async def test_body_over_the_limit_is_413() -> None:
    async with serving(max_body=16) as (made, _rt, client):
        declared = await client.post("/Greeter/greet", json="x" * 100)
        status, code, message = error(declared)
        assert (status, code) == (413, 413)
        assert "over 16 bytes" in message

        async def chunks() -> AsyncIterator[bytes]:
            yield b'"' + b"x" * 10
            yield b"x" * 10 + b'"'

        streamed = await client.post("/Greeter/greet", content=chunks())
        assert error(streamed) == (413, 413, "the request body is over 16 bytes")
        assert (await client.post("/Greeter/greet", json="small")).json() == "hello small"
        assert made.greeter.greeted == ["small"]


async def test_bearer_token_guards_every_path() -> None:
    async with serving(token="s3cret") as (_made, _rt, client):
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"}):
            for method, path in (("GET", "/restate/health"), ("POST", "/Greeter/greet")):
                response = await client.request(method, path, json="x", headers=headers)
                assert error(response)[:2] == (401, 401), (headers, path)
                assert response.headers["www-authenticate"] == "Bearer"
        good = {"authorization": "Bearer s3cret"}
        assert (await client.get("/restate/health", headers=good)).status_code == 200
        assert (await client.post("/Greeter/greet", json="x", headers=good)).json() == "hello x"


async def test_health() -> None:
    async with serving() as (_made, _rt, client):
        response = await client.get("/restate/health")
        assert response.status_code == 200
        assert response.json() == {"services": ["Counter", "Greeter", "signupWorkflow"]}


async def test_closed_runtime_is_503() -> None:
    made = make_actors()
    async with open_test_runtime(made.all()) as rt:
        pass
    async with open_client(rt) as client:
        response = await client.post("/Greeter/greet", json="x")
        assert error(response) == (503, 503, "the runtime is closed")


async def test_closing_the_app_answers_waiting_requests_503() -> None:
    made = make_actors()
    async with open_test_runtime(made.all()) as rt:
        app = IngressApp(rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://i") as client:
            responses: list[httpx.Response] = []

            async def blocked_call() -> None:
                responses.append(await client.post("/Greeter/block"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(blocked_call)
                await made.greeter.started.wait()
                app.close()
            assert error(responses[0]) == (503, 503, "the ingress is shutting down")
            later = await client.get("/restate/health")
            assert error(later) == (503, 503, "the ingress is shutting down")
        made.greeter.release.set()


async def test_unexpected_failure_is_500_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving() as (_made, rt, client):

        async def explode(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(rt, "call", explode)
        response = await client.post("/Greeter/greet", json="x")
        assert error(response)[:2] == (500, 500)
        assert "internal error" in error(response)[2]
        assert "ingress: POST /Greeter/greet failed" in caplog.text


async def test_a_client_gone_before_its_body_is_neither_answered_nor_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It answered 500 and logged a traceback ("ingress: POST ... failed") before."""
    async with serving() as (made, rt, _client):
        app = IngressApp(rt)
        sent: list[object] = []

        async def receive() -> dict[str, object]:
            return {"type": "http.disconnect"}

        async def send(message: object) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "raw_path": b"/Greeter/greet", "headers": []}
        await app(scope, receive, send)
        assert sent == []
        assert "failed" not in caplog.text
        assert made.greeter.greeted == []


def test_app_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_body"):
        IngressApp(None, max_body=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token"):
        IngressApp(None, token="")  # type: ignore[arg-type]


async def test_lifespan_and_websocket_scopes() -> None:
    made = make_actors()
    async with open_test_runtime(made.all()) as rt:
        app = IngressApp(rt)
        sent: list[dict[str, object]] = []
        incoming: Iterator[dict[str, object]] = iter(
            [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        )

        async def receive() -> dict[str, object]:
            return next(incoming)

        async def send(message: dict[str, object]) -> None:
            sent.append(dict(message))

        await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
        assert sent == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]
        sent.clear()
        incoming = iter([{"type": "websocket.connect"}])
        await app({"type": "websocket"}, receive, send)  # type: ignore[arg-type]
        assert sent == [{"type": "websocket.close", "code": 1003}]


# --- real sockets: under trio and under asyncio -------------------------------------------


async def test_serve_http_on_a_real_socket(tmp_path: Path) -> None:
    """Runs under trio and under asyncio (conftest): the server serves
    the seed page's flow on port 0 to a real HTTP client; ingress.json describes the
    server while it runs and is removed on stop."""
    path = tmp_path / "data"
    made = make_actors()
    info_path = path / "ingress.json"
    async with open_test_runtime(made.all(), path=path) as rt:
        async with anyio.create_task_group() as tg:
            port = await tg.start(rt.serve_http, "127.0.0.1", 0)
            assert isinstance(port, int)
            assert port > 0
            info = json.loads(info_path.read_text())
            url = f"http://127.0.0.1:{port}"
            assert info == {"url": url, "pid": os.getpid(), "token_required": False}
            async with httpx.AsyncClient(base_url=url) as client:
                health = await client.get("/restate/health")
                assert health.status_code == 200
                payload = {"email": "user@user.com", "name": "Pete"}
                sent = await client.post("/signupWorkflow/myUser123/run/send", json=payload)
                assert (sent.status_code, sent.json()["status"]) == (202, "Accepted")
                await made.mailer.sent.wait()
                stage = await client.post("/signupWorkflow/myUser123/getStage")
                assert stage.json() == "Email verification"
                secret = made.mailer.secrets["user@user.com"]
                await client.post("/signupWorkflow/myUser123/approveEmail", json=secret)
                attach_url = "/restate/workflow/signupWorkflow/myUser123/attach"
                attached = await client.get(attach_url)
                assert (attached.status_code, attached.json()) == (200, True)
                missing = await client.post("/Nobody/x")
                assert error(missing)[:2] == (404, 404)
                not_ready = await client.post("/Greeter/block/send")
                output = await client.get(
                    f"/restate/invocation/{not_ready.json()['invocationId']}/output"
                )
                assert output.status_code == 470
            tg.cancel_scope.cancel()
        assert not info_path.exists()
        made.greeter.release.set()


async def test_serve_http_with_token_and_a_stale_info_file(tmp_path: Path) -> None:
    """A stale ingress.json (as a SIGKILLed server leaves it) neither stops the data
    directory from reopening nor a new server from starting; it is replaced."""
    path = tmp_path / "data"
    async with open_test_runtime(make_actors().all(), path=path):
        pass
    (path / "ingress.json").write_text('{"url": "http://127.0.0.1:1", "pid": 999999')
    async with open_test_runtime(make_actors().all(), path=path) as rt:
        assert rt.path == path
        async with anyio.create_task_group() as tg:
            port = await tg.start(functools.partial(rt.serve_http, "127.0.0.1", 0, token="t0ken"))
            info = json.loads((path / "ingress.json").read_text())
            assert info["token_required"] is True
            assert info["url"] == f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=info["url"]) as client:
                assert (await client.get("/restate/health")).status_code == 401
                ok = await client.post(
                    "/Greeter/greet", json="x", headers={"authorization": "Bearer t0ken"}
                )
                assert ok.json() == "hello x"
            tg.cancel_scope.cancel()
    assert not (path / "ingress.json").exists()


async def test_serve_http_errors(tmp_path: Path) -> None:
    """A port in use is an OSError; a closed runtime serves nothing."""
    async with open_test_runtime(make_actors().all(), path=tmp_path / "data") as rt:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            with pytest.raises(OSError, match=r"[Aa]ddress already in use"):
                await rt.serve_http("127.0.0.1", port)
        assert not (tmp_path / "data" / "ingress.json").exists()
    with pytest.raises(actors.RuntimeClosedError):
        await rt.serve_http("127.0.0.1", 0)
