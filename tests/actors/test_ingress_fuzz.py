"""The ingress fuzz (issue 12, "done when"): a few thousand generated requests over a real
socket (``tests/ingress_fuzz.py``), under trio and under asyncio. Asserts that the server
still answers, no answer is a 5xx, every error answer is JSON ``{"code", "message"}``,
nothing was logged as a failure, and the state written before the fuzz is intact.

``ACTORS_FUZZ_REQUESTS`` (default 2,500 per event loop) and ``ACTORS_FUZZ_SEED`` change
the run. The self-tests inject a fault into one route and one into the server itself,
and show that the fuzz reports them."""

from __future__ import annotations

import functools
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from ingress_fuzz import RESERVED_PREFIX, FuzzReport, fuzz
from raw_http import exchange, request

import actors
from actors._http_connection import Connection
from actors._ingress import IngressApp
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import pytest

REQUESTS = int(os.environ.get("ACTORS_FUZZ_REQUESTS", "2500"))
SEED = int(os.environ.get("ACTORS_FUZZ_SEED", "12"))


@dataclass(frozen=True)
class Item:
    name: str
    n: int


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


class Echo(actors.Service):
    @actors.handler
    async def echo(self, ctx: actors.Context, value: object) -> object:
        return value

    @actors.handler
    async def typed(self, ctx: actors.Context, item: Item) -> Item:
        return Item(item.name.upper(), item.n + 1)

    @actors.handler
    async def nothing(self, ctx: actors.Context) -> None:
        return None

    @actors.handler
    async def fail(self, ctx: actors.Context, value: object) -> str:
        raise actors.TerminalError(f"refused {value!r}"[:100], 409)


class Flow(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, name: str) -> str:
        ctx.set("name", name)
        return f"ran {name}"

    @actors.shared
    async def get(self, ctx: actors.WorkflowSharedContext) -> str:
        return (await ctx.get("name", str)) or ""


async def call(port: int, method: str, path: str, body: bytes = b"", **kw: Any) -> Any:
    [answer] = await exchange(port, request(method, path, body, **kw))
    return answer.status, json.loads(answer.body) if answer.body else None


async def write_state(port: int) -> dict[str, Any]:
    """State written through the ingress before the fuzz, and how to read it back."""
    state: dict[str, Any] = {}
    for i in range(5):
        key = f"{RESERVED_PREFIX}{i}"
        assert await call(port, "POST", f"/Counter/{key}/add", str(i + 1).encode()) == (200, i + 1)
        state[f"/Counter/{key}/value"] = i + 1
    status, sent = await call(
        port,
        "POST",
        f"/Counter/{RESERVED_PREFIX}sent/add/send",
        b"7",
        headers=(("idempotency-key", f"{RESERVED_PREFIX}once"),),
    )
    assert status == 202
    state["sent"] = sent["invocationId"]
    assert await call(port, "POST", f"/Flow/{RESERVED_PREFIX}wf/run", b'"x"') == (200, "ran x")
    return state


async def check_state(port: int, state: dict[str, Any]) -> None:
    for path, value in state.items():
        if path.startswith("/"):
            assert await call(port, "POST", path) == (200, value), path
    invocation = state["sent"]
    assert await call(port, "GET", f"/restate/invocation/{invocation}/attach") == (200, 7)
    again = await call(
        port,
        "POST",
        f"/Counter/{RESERVED_PREFIX}sent/add/send",
        b"7",
        headers=(("idempotency-key", f"{RESERVED_PREFIX}once"),),
    )
    assert again == (202, {"invocationId": invocation, "status": "PreviouslyAccepted"})
    assert await call(port, "POST", f"/Counter/{RESERVED_PREFIX}sent/value") == (200, 7)
    workflow = f"/restate/workflow/Flow/{RESERVED_PREFIX}wf/attach"
    assert await call(port, "GET", workflow) == (200, "ran x")
    assert await call(port, "POST", f"/Flow/{RESERVED_PREFIX}wf/get") == (200, "x")


@asynccontextmanager
async def fuzzed_server(tmp_path: Path) -> AsyncIterator[int]:
    async with (
        open_test_runtime([Counter, Echo(), Flow], path=tmp_path / "data") as rt,
        anyio.create_task_group() as tg,
    ):
        # A short read timeout: requests whose length lies are answered 408 quickly.
        serve = functools.partial(rt.serve_http, "127.0.0.1", 0, read_timeout=0.3)
        port = await tg.start(serve)
        yield port
        tg.cancel_scope.cancel()


async def run_fuzz(tmp_path: Path, requests: int) -> FuzzReport:
    async with fuzzed_server(tmp_path) as port:
        state = await write_state(port)
        report = await fuzz(port, seed=SEED, requests=requests)
        health = (200, {"services": ["Counter", "Echo", "Flow"]})
        assert await call(port, "GET", "/restate/health") == health
        await check_state(port, state)
    return report


async def test_fuzzed_requests_never_stop_the_server_nor_get_a_5xx(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    report = await run_fuzz(tmp_path, REQUESTS)
    print(report.summary())
    assert report.findings == [], "\n".join(report.findings[:20])
    assert report.requests >= REQUESTS
    assert report.answers >= REQUESTS // 2
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == []
    # The generator reached the runtime, not only the parser's error paths.
    assert report.statuses[200] > REQUESTS // 20
    assert report.statuses[202] > REQUESTS // 50
    assert {400, 404, 405, 408, 413} <= set(report.statuses)


async def test_the_fuzz_finds_a_route_that_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Self-test: an injected bug in one route (the admin paths) is reported."""

    async def broken_admin(self: IngressApp, invocation_id: str, what: str) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(IngressApp, "_admin", broken_admin)
    report = await run_fuzz(tmp_path, 600)
    assert any(finding.startswith("status 500") for finding in report.findings)


async def test_the_fuzz_finds_a_server_that_drops_its_error_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Self-test: a server that closes instead of answering a malformed request (here its
    error answer raises) is reported, though the server itself goes on."""

    async def broken_refuse(self: Connection, refusal: Any) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Connection, "_refuse", broken_refuse)
    report = await run_fuzz(tmp_path, 600)
    assert any("answers to" in finding for finding in report.findings)
