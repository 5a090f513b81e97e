"""Limits (issue 12, item 1): sizes are checked where input arrives, before anything is
stored, and a caller is told exactly what was stored.

Too large is a ``TerminalError`` 413 whose message names the limit; text that is not
valid Unicode is a 400. A context operation over a limit raises inside the handler, at
the call, so the handler may catch it; an outcome that cannot be stored becomes a 413
failure, and every caller (``rt.call``, ``handle.result()``, ``attach``, ``output``,
HTTP) is answered with the outcome that was written, never the one that was not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import actors
from actors._limits import (
    MAX_BATCH_BYTES,
    MAX_IDEMPOTENCY_KEY_BYTES,
    MAX_KEY_BYTES,
    MAX_NAME_BYTES,
    MAX_STEP_NAME_BYTES,
    MAX_VALUE_BYTES,
)
from actors.storage import Table
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors._runtime import Runtime

MiB = 1024 * 1024
#: A str of this many characters encodes (as JSON, with its quotes) one byte over the limit.
OVER_VALUE = MAX_VALUE_BYTES - 1
#: Two of these fit the value limit one by one, but not one commit together.
HALF_BATCH_PLUS = MAX_BATCH_BYTES // 2 + 1
SURROGATE = "bad\ud800key"
#: Arguments cannot carry a lone surrogate (JSON refuses it): handlers swap this in.
SURROGATE_MARK = "<surrogate>"


def unmark(text: str) -> str:
    return SURROGATE if text == SURROGATE_MARK else text


class Box(actors.VirtualObject):
    def __init__(self) -> None:
        self.step_runs = 0
        self.awakeable_made: anyio.Event | None = None
        self.awakeable: str | None = None

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.shared
    async def names(self, ctx: actors.ObjectSharedContext) -> list[str]:
        return await ctx.state_keys()

    @actors.exclusive
    async def put(self, ctx: actors.ObjectContext, size: int) -> int:
        ctx.set("v", "x" * size)
        return size

    @actors.exclusive
    async def put_caught(self, ctx: actors.ObjectContext, size: int) -> str:
        ctx.set("small", 1)
        try:
            ctx.set("v", "x" * size)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "stored"

    @actors.exclusive
    async def put_two(self, ctx: actors.ObjectContext, size: int) -> str:
        ctx.set("a", "a" * size)
        try:
            ctx.set("b", "b" * size)
        except actors.TerminalError as exc:
            return f"b {exc.status_code}: {exc.message}"
        return "both"

    @actors.exclusive
    async def echo(self, ctx: actors.ObjectContext, text: str) -> str:
        return text

    @actors.exclusive
    async def put_and_return(self, ctx: actors.ObjectContext, size: int) -> str:
        ctx.set("v", "x" * size)
        return "r" * size

    @actors.exclusive
    async def big_result(self, ctx: actors.ObjectContext, size: int) -> str:
        ctx.set("n", 1)
        return "x" * size

    @actors.exclusive
    async def big_step(self, ctx: actors.ObjectContext, size: int) -> str:
        def make() -> str:
            self.step_runs += 1
            return "x" * size

        try:
            await ctx.run("make", make)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "stored"

    @actors.exclusive
    async def two_big_steps(self, ctx: actors.ObjectContext, size: int) -> str:
        ctx.set("n", 1)
        first = ctx.run("first", lambda: "1" * size)
        second = ctx.run("second", lambda: "2" * size)
        await actors.gather(first, second)
        return "both"

    @actors.exclusive
    async def long_step_name(self, ctx: actors.ObjectContext, name: str) -> str:
        try:
            await ctx.run(unmark(name), lambda: 1)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "ran"

    @actors.exclusive
    async def set_named(self, ctx: actors.ObjectContext, name: str) -> str:
        try:
            ctx.set(unmark(name), 1)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "stored"

    @actors.exclusive
    async def get_named(self, ctx: actors.ObjectContext, name: str) -> str:
        try:
            await ctx.get(unmark(name))
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "read"

    @actors.exclusive
    async def call_with(self, ctx: actors.ObjectContext, size: int) -> str:
        try:
            ctx.call(Box.echo, "x" * size, key="callee")
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "called"

    @actors.exclusive
    async def send_with(self, ctx: actors.ObjectContext, size: int) -> str:
        try:
            await ctx.send(Box.echo, "x" * size, key="callee")
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "sent"

    @actors.exclusive
    async def call_key(self, ctx: actors.ObjectContext, key: str) -> int:
        return await ctx.call(Box.add, 1, key=unmark(key))

    @actors.exclusive
    async def wait_awakeable(self, ctx: actors.ObjectContext) -> str:
        awakeable_id, future = ctx.awakeable(str)
        self.awakeable = awakeable_id
        if self.awakeable_made is not None:
            self.awakeable_made.set()
        return await future


class Flow(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        return await ctx.promise("p", str).value()

    @actors.shared
    async def resolve(self, ctx: actors.WorkflowSharedContext, size: int) -> str:
        try:
            await ctx.promise("p", str).resolve("y" * size)
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "resolved"

    @actors.shared
    async def named(self, ctx: actors.WorkflowSharedContext, name: str) -> str:
        try:
            await ctx.promise(name, str).peek()
        except actors.TerminalError as exc:
            return f"{exc.status_code}: {exc.message}"
        return "peeked"


def stored_rows(rt: Runtime) -> dict[str, int]:
    """How many rows each table holds (the schema's meta rows aside)."""
    store = rt._store
    return {table.value: len(store.scan(table)) for table in Table if table is not Table.META}


def assert_names_limit(message: str, status: int, code: int, limit: int) -> None:
    assert status == code, message
    assert str(limit) in message, message


def assert_refused(answer: str, limit: int) -> None:
    """A handler's report of a 413 it caught (``"413: message"``), naming ``limit``."""
    assert answer.startswith("413: "), answer[:300]
    assert str(limit) in answer, answer[:300]


# --- at entry: keys, idempotency keys, arguments ----------------------------------------------


async def test_an_object_key_over_the_limit_is_413_and_nothing_is_stored() -> None:
    async with open_test_runtime([Box, Flow]) as rt:
        before = stored_rows(rt)
        for key in ("k" * 600, "k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2 + 1)):
            with pytest.raises(actors.TerminalError) as called:
                await rt.call(Box.add, 5, key=key)
            assert_names_limit(called.value.message, called.value.status_code, 413, MAX_KEY_BYTES)
            with pytest.raises(actors.TerminalError) as sent:
                await rt.send(Box.add, 5, key=key)
            assert_names_limit(sent.value.message, sent.value.status_code, 413, MAX_KEY_BYTES)
            assert str(rt.path) not in sent.value.message
            with pytest.raises(actors.TerminalError) as workflow:
                await rt.send(Flow.run, key=key)
            assert workflow.value.status_code == 413
            with pytest.raises(actors.TerminalError) as attached:
                await rt.attach_workflow(Flow, key)
            assert attached.value.status_code == 413
        assert stored_rows(rt) == before
        # At the limit is fine, and a NUL counts twice (the stored key escapes it).
        assert await rt.call(Box.add, 5, key="k" * MAX_KEY_BYTES) == 5
        assert await rt.call(Box.value, key="k" * MAX_KEY_BYTES) == 5
        assert await rt.call(Box.add, 1, key="\0" * (MAX_KEY_BYTES // 2)) == 1
        with pytest.raises(actors.TerminalError) as nul:
            await rt.call(Box.add, 1, key="\0" * (MAX_KEY_BYTES // 2 + 1))
        assert nul.value.status_code == 413


async def test_an_idempotency_key_over_the_limit_is_413_and_nothing_is_stored() -> None:
    async with open_test_runtime([Box]) as rt:
        before = stored_rows(rt)
        for call in (rt.send, rt.call):
            with pytest.raises(actors.TerminalError) as raised:
                await call(
                    Box.add, 5, key="k", idempotency_key="i" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)
                )
            error = raised.value
            assert_names_limit(error.message, error.status_code, 413, MAX_IDEMPOTENCY_KEY_BYTES)
            assert str(rt.path) not in error.message
        assert stored_rows(rt) == before
        assert await rt.call(Box.value, key="k") == 0
        handle = await rt.send(Box.add, 5, key="k", idempotency_key="i" * MAX_IDEMPOTENCY_KEY_BYTES)
        assert await handle.result() == 5


async def test_text_that_is_not_valid_unicode_is_400() -> None:
    async with open_test_runtime([Box, Flow]) as rt:
        before = stored_rows(rt)
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: rt.call(Box.add, 1, key=SURROGATE),
            lambda: rt.send(Box.add, 1, key=SURROGATE),
            lambda: rt.send(Box.add, 1, key="k", idempotency_key=SURROGATE),
            lambda: rt.call(Box.add, 1, key="k", idempotency_key=SURROGATE),
            lambda: rt.attach_workflow(Flow, SURROGATE),
            lambda: rt.attach(SURROGATE),
            lambda: rt.output(SURROGATE),
            lambda: rt.cancel(SURROGATE),
            lambda: rt.kill(SURROGATE),
            lambda: rt.resume(SURROGATE),
            lambda: rt.resolve_awakeable(SURROGATE, 1),
        ]
        for attempt in attempts:
            with pytest.raises(actors.TerminalError) as raised:
                await attempt()
            assert raised.value.status_code == 400
            assert "Unicode" in raised.value.message or "awakeable id" in raised.value.message
        assert stored_rows(rt) == before
        # Inside a handler: a call to a bad key, a state name, a step name.
        with pytest.raises(actors.TerminalError) as inner:
            await rt.call(Box.call_key, SURROGATE_MARK, key="k")
        assert inner.value.status_code == 400
        for handler in (Box.set_named, Box.get_named, Box.long_step_name):
            assert (await rt.call(handler, SURROGATE_MARK, key="k")).startswith("400: ")


async def test_an_argument_over_the_limit_is_413_and_nothing_is_stored() -> None:
    async with open_test_runtime([Box]) as rt:
        before = stored_rows(rt)
        for call in (rt.call, rt.send):
            with pytest.raises(actors.TerminalError) as raised:
                await call(Box.echo, "x" * OVER_VALUE, key="k")
            error = raised.value
            assert_names_limit(error.message, error.status_code, 413, MAX_VALUE_BYTES)
        assert stored_rows(rt) == before


# --- context operations ------------------------------------------------------------------------


async def test_a_state_value_over_the_limit_raises_at_ctx_set() -> None:
    async with open_test_runtime([Box]) as rt:
        with pytest.raises(actors.TerminalError) as raised:
            await rt.call(Box.put, OVER_VALUE, key="k")
        assert_names_limit(raised.value.message, raised.value.status_code, 413, MAX_VALUE_BYTES)
        assert await rt.call(Box.names, key="k") == []
        caught = await rt.call(Box.put_caught, OVER_VALUE, key="k")
        assert_refused(caught, MAX_VALUE_BYTES)
        # The handler caught it: what it wrote besides is stored, the value is not.
        assert await rt.call(Box.names, key="k") == ["small"]
        handle = await rt.send(Box.put, OVER_VALUE, key="sent")
        with pytest.raises(actors.TerminalError) as result:
            await handle.result()
        assert result.value.status_code == 413
        with pytest.raises(actors.TerminalError) as output:
            await rt.output(handle.invocation_id)
        assert output.value.status_code == 413
        assert await rt.call(Box.names, key="sent") == []


async def test_writes_over_one_commit_raise_at_the_ctx_set_that_passes_the_budget() -> None:
    async with open_test_runtime([Box]) as rt:
        answer = await rt.call(Box.put_two, HALF_BATCH_PLUS, key="k")
        assert answer.startswith("b "), answer[:200]
        assert_refused(answer.removeprefix("b "), MAX_BATCH_BYTES)
        assert await rt.call(Box.names, key="k") == ["a"]
        # Each fits on its own, in its own invocation.
        assert await rt.call(Box.put, HALF_BATCH_PLUS, key="k") == HALF_BATCH_PLUS
        assert await rt.call(Box.names, key="k") == ["a", "v"]


async def test_a_state_name_over_the_limit_is_413() -> None:
    async with open_test_runtime([Box]) as rt:
        answer = await rt.call(Box.set_named, "n" * (MAX_NAME_BYTES + 1), key="k")
        assert_refused(answer, MAX_NAME_BYTES)
        read = await rt.call(Box.get_named, "n" * (MAX_NAME_BYTES + 1), key="k")
        assert_refused(read, MAX_NAME_BYTES)
        assert await rt.call(Box.names, key="k") == []
        assert await rt.call(Box.set_named, "n" * MAX_NAME_BYTES, key="k") == "stored"


async def test_a_step_name_over_the_limit_is_413() -> None:
    async with open_test_runtime([Box]) as rt:
        answer = await rt.call(Box.long_step_name, "s" * (MAX_STEP_NAME_BYTES + 1), key="k")
        assert_refused(answer, MAX_STEP_NAME_BYTES)
        assert await rt.call(Box.long_step_name, "s" * MAX_STEP_NAME_BYTES, key="k") == "ran"


async def test_a_step_result_over_the_limit_is_a_recorded_413_and_the_body_runs_once() -> None:
    box = Box()
    async with open_test_runtime([box]) as rt:
        handle = await rt.send(Box.big_step, OVER_VALUE, key="k")
        answer = await handle.result()
        assert_refused(answer, MAX_VALUE_BYTES)
        assert box.step_runs == 1
        assert await rt.output(handle.invocation_id) == answer


async def test_ctx_call_and_send_arguments_over_one_commit_raise_at_the_call() -> None:
    async with open_test_runtime([Box]) as rt:
        before = stored_rows(rt)
        # The argument rides twice in the caller's commit: in its journal and in the
        # callee's record.
        called = await rt.call(Box.call_with, HALF_BATCH_PLUS, key="k")
        assert_refused(called, MAX_BATCH_BYTES)
        sent = await rt.call(Box.send_with, HALF_BATCH_PLUS, key="k")
        assert_refused(sent, MAX_BATCH_BYTES)
        over = await rt.call(Box.call_with, OVER_VALUE, key="k")
        assert_refused(over, MAX_VALUE_BYTES)
        assert stored_rows(rt) == before
        assert await rt.call(Box.call_with, 10, key="k") == "called"


async def test_promise_and_awakeable_values_over_the_limit_are_413_and_leave_them_open() -> None:
    box = Box()
    box.awakeable_made = anyio.Event()
    async with open_test_runtime([box, Flow]) as rt:
        handle = await rt.send(Flow.run, key="w")
        answer = await rt.call(Flow.resolve, OVER_VALUE, key="w")
        assert_refused(answer, MAX_VALUE_BYTES)
        assert await rt.call(Flow.resolve, 3, key="w") == "resolved"
        assert await handle.result() == "yyy"
        named = await rt.call(Flow.named, "p" * (MAX_NAME_BYTES + 1), key="w")
        assert_refused(named, MAX_NAME_BYTES)

        waiting = await rt.send(Box.wait_awakeable, key="a")
        await box.awakeable_made.wait()
        awakeable_id = box.awakeable
        assert awakeable_id is not None
        with pytest.raises(actors.TerminalError) as raised:
            await rt.resolve_awakeable(awakeable_id, "z" * OVER_VALUE)
        error = raised.value
        assert_names_limit(error.message, error.status_code, 413, MAX_VALUE_BYTES)
        assert str(rt.path) not in error.message
        await rt.resolve_awakeable(awakeable_id, "ok")
        assert await waiting.result() == "ok"


# --- outcomes: the caller is told what was stored ----------------------------------------------


async def test_a_result_over_the_limit_is_a_413_for_every_caller() -> None:
    async with open_test_runtime([Box]) as rt:
        with pytest.raises(actors.TerminalError) as called:
            await rt.call(Box.big_result, OVER_VALUE, key="k")
        assert_names_limit(called.value.message, called.value.status_code, 413, MAX_VALUE_BYTES)
        # As a TerminalError raised at its return: the state it wrote is kept.
        assert await rt.call(Box.value, key="k") == 1
        handle = await rt.send(Box.big_result, OVER_VALUE, key="k")
        with pytest.raises(actors.TerminalError) as result:
            await handle.result()
        assert result.value.status_code == 413
        with pytest.raises(actors.TerminalError) as attached:
            await rt.attach(handle.invocation_id)
        assert attached.value.message == result.value.message


async def test_send_handle_answers_the_outcome_that_was_stored() -> None:
    """An argument and a result that each fit, but not together in the completed
    record: the record says 413, and so does every caller (before: the handle returned
    the handler's value while the record said 413)."""
    text = "t" * HALF_BATCH_PLUS
    async with open_test_runtime([Box]) as rt:
        handle = await rt.send(Box.echo, text, key="k")
        with pytest.raises(actors.TerminalError) as result:
            await handle.result()
        assert result.value.status_code == 413
        with pytest.raises(actors.TerminalError) as output:
            await rt.output(handle.invocation_id)
        assert (output.value.status_code, output.value.message) == (413, result.value.message)
        with pytest.raises(actors.TerminalError) as idempotent:
            await rt.call(Box.echo, text, key="k", idempotency_key="once")
        assert idempotent.value.status_code == 413
        # A plain call records nothing but its answer: the result reaches the caller.
        assert await rt.call(Box.echo, text, key="k") == text


async def test_pending_writes_and_a_large_result_are_stored_in_two_commits() -> None:
    """A step's writes and the completion that carries a large result do not fit one
    commit together: the writes go first, then the completion, and all is stored."""

    async with open_test_runtime([Box]) as rt:
        handle = await rt.send(Box.put_and_return, HALF_BATCH_PLUS, key="k")
        assert await handle.result() == "r" * HALF_BATCH_PLUS
        assert await rt.output(handle.invocation_id) == "r" * HALF_BATCH_PLUS
        assert await rt.call(Box.names, key="k") == ["v"]
        # The same through a plain call, which records nothing unless it must.
        assert await rt.call(Box.put_and_return, HALF_BATCH_PLUS, key="p") == "r" * HALF_BATCH_PLUS
        assert await rt.call(Box.names, key="p") == ["v"]


async def test_step_results_that_fit_no_commit_together_are_a_recorded_413() -> None:
    """Two steps raced in one gather each fit, but their results, journaled together
    after both ran, fit no commit: the invocation fails with a 413 that every caller
    gets; what was durable before the steps (their gate) stays."""
    async with open_test_runtime([Box]) as rt:
        handle = await rt.send(Box.two_big_steps, HALF_BATCH_PLUS, key="k")
        with pytest.raises(actors.TerminalError) as result:
            await handle.result()
        assert_names_limit(result.value.message, result.value.status_code, 413, MAX_BATCH_BYTES)
        with pytest.raises(actors.TerminalError) as output:
            await rt.output(handle.invocation_id)
        assert output.value.message == result.value.message
        assert await rt.call(Box.names, key="k") == ["n"]


# --- over HTTP, on a real socket -----------------------------------------------------------------


async def test_http_keys_over_the_limit_are_413_json(tmp_path: Path) -> None:
    path = tmp_path / "data"
    long_key = "k" * 600
    async with open_test_runtime([Box], path=path) as rt, anyio.create_task_group() as tg:
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answers = [
                await client.post(f"/Box/{long_key}/add", json=5),
                await client.post(f"/Box/{long_key}/add/send", json=5),
                await client.post("/Box/k/add", json=5, headers={"idempotency-key": "i" * 600}),
                await client.post(
                    "/Box/k/add/send", json=5, headers={"idempotency-key": "i" * 600}
                ),
            ]
            for answer in answers:
                assert answer.status_code == 413, answer.text
                body = answer.json()
                assert body["code"] == 413
                assert str(MAX_KEY_BYTES) in body["message"], body
                assert str(path) not in body["message"]
            value = await client.post("/Box/k/value")
            assert (value.status_code, value.json()) == (200, 0)
            value = await client.post(f"/Box/{'k' * MAX_KEY_BYTES}/add", json=2)
            assert (value.status_code, value.json()) == (200, 2)
        tg.cancel_scope.cancel()


def test_readme_documents_the_limits() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Limits", 1)[1].split("\n## ", 1)[0]
    for figure in (
        f"{MAX_KEY_BYTES} bytes",
        f"{MAX_IDEMPOTENCY_KEY_BYTES} bytes",
        f"{MAX_NAME_BYTES} bytes",
        f"{MAX_STEP_NAME_BYTES} bytes",
        f"{MAX_VALUE_BYTES // MiB} MiB",
        f"{MAX_BATCH_BYTES // MiB} MiB",
        "413",
        "400",
    ):
        assert figure in section, figure
