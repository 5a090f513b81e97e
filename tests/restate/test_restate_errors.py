"""Every public error path of ``actors.restate``: declarations, registration, misuse
inside handlers, options the embedded runtime refuses, and what needs a server."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

import actors
import actors.testing
from actors import restate
from actors.restate import Context, Service, VirtualObject, Workflow
from actors.restate.retry_policy import policy_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# --- declarations: TypeError / ValueError when the decorator runs ---------------------------


def test_handler_must_be_async_and_take_a_context_and_one_input() -> None:
    svc = Service("decl")
    with pytest.raises(TypeError, match="must be declared with 'async def'"):
        svc.handler()(lambda ctx: None)

    async def two_inputs(ctx: Context, a: int, b: int) -> None: ...

    with pytest.raises(TypeError, match="takes a context and at most one input"):
        svc.handler()(two_inputs)

    async def keyword_only(ctx: Context, *, a: int) -> None: ...

    with pytest.raises(TypeError, match="takes a context and at most one input"):
        svc.handler()(keyword_only)


def test_names_and_kinds_are_checked() -> None:
    with pytest.raises(TypeError, match="non-empty str without '/'"):
        Service("a/b")
    svc = VirtualObject("names")

    async def h(ctx: Context) -> None: ...

    with pytest.raises(TypeError, match="must be non-empty, without '/'"):
        svc.handler("x/y")(h)
    svc.handler("h")(h)
    with pytest.raises(TypeError, match="two handlers named 'h'"):
        svc.handler("h")(h)
    with pytest.raises(ValueError, match="kind must be 'exclusive' or 'shared'"):
        svc.handler("k", kind="main")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a timedelta"):
        Service("t", inactivity_timeout=5)  # type: ignore[arg-type]


def test_a_workflow_has_one_main_and_services_need_handlers() -> None:
    wf = Workflow("one_main")

    async def first(ctx: restate.WorkflowContext) -> None: ...
    async def second(ctx: restate.WorkflowContext) -> None: ...

    wf.main()(first)
    with pytest.raises(TypeError, match="already has a main handler"):
        wf.main()(second)
    with pytest.raises(TypeError, match="has no handlers"):
        Service("empty").__actors__()
    no_main = Workflow("no_main")
    no_main.handler()(second)
    with pytest.raises(TypeError, match="has no @main"):
        no_main.__actors__()


def test_no_handler_after_registration() -> None:
    svc = Service("late")

    async def a(ctx: Context) -> None: ...
    async def b(ctx: Context) -> None: ...

    svc.handler()(a)
    svc.__actors__()
    with pytest.raises(TypeError, match="already registered"):
        svc.handler()(b)


def test_retry_policy_maps_and_checks() -> None:
    policy = policy_of(
        restate.InvocationRetryPolicy(
            initial_interval=timedelta(seconds=1), max_attempts=3, on_max_attempts="kill"
        )
    )
    assert policy == actors.RetryPolicy(initial_interval=1, max_attempts=3, on_max_attempts="kill")
    assert policy_of(None) is None
    with pytest.raises(TypeError, match="must be an InvocationRetryPolicy"):
        policy_of(actors.RetryPolicy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="factor"):
        policy_of(restate.InvocationRetryPolicy(exponentiation_factor=0.5))


# --- misuse inside handlers: a terminal error at once, never a retry loop ------------------------

misuse = Service("misuse")


@misuse.handler()
async def call_a_non_handler(ctx: Context) -> None:
    await ctx.service_call(print, arg=1)  # type: ignore[arg-type]


@misuse.handler()
async def scoped(ctx: Context) -> None:
    ctx.scope("tenant")


@misuse.handler()
async def generic_scoped(ctx: Context) -> None:
    await ctx.generic_call("misuse", "scoped", b"", scope="s")


@misuse.handler()
async def unencodable(ctx: Context) -> object:
    return object()


@misuse.handler()
async def gather_a_coroutine(ctx: Context) -> None:
    await restate.gather(ctx.sleep(timedelta(0)), object())  # type: ignore[arg-type]


@misuse.handler()
async def select_nothing(ctx: Context) -> None:
    await restate.select()


entered: list[str] = []


@asynccontextmanager
async def around() -> AsyncIterator[None]:
    entered.append("enter")
    yield
    entered.append("exit")


managed = Service("managed", invocation_context_managers=[around])


@managed.handler(
    inactivity_timeout=timedelta(seconds=7),
    journal_retention=timedelta(hours=2),
    idempotency_retention=timedelta(hours=5),
    ingress_private=True,
)
async def inside(ctx: Context) -> list[str]:
    return list(entered)


@pytest.mark.parametrize(
    ("handler", "code", "text"),
    [
        ("call_a_non_handler", 400, "is not a Restate handler"),
        ("scoped", 400, "Restate server features"),
        ("generic_scoped", 400, "Restate server features"),
        ("unencodable", 500, "output of misuse/unencodable does not encode"),
        ("gather_a_coroutine", 400, "takes futures made by a Restate context"),
    ],
)
async def test_misuse_fails_the_invocation_at_once(handler: str, code: int, text: str) -> None:
    async with actors.testing.open_test_runtime([misuse]) as rt:
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("misuse", handler, b"")
        assert caught.value.status_code == code
        assert text in caught.value.message


async def test_select_without_futures_is_a_value_error() -> None:
    # Restate raises ValueError here; any non-terminal error is retried, so bound it.
    async with actors.testing.open_test_runtime(
        [misuse], retry=actors.RetryPolicy(max_attempts=1)
    ) as rt:
        with pytest.raises(actors.InvocationPausedError, match="at least one future"):
            await rt.generic_call("misuse", "select_nothing", b"")


async def test_options_and_context_managers_apply() -> None:
    entered.clear()
    [actor] = managed.__actors__()
    [spec] = actor.handlers.values()
    assert (spec.inactivity_timeout, spec.retention, spec.ingress_private) == (7.0, 18000.0, True)
    async with actors.testing.open_test_runtime([managed]) as rt:  # a list of services
        assert json.loads(await rt.generic_call("managed", "inside", b"")) == ["enter"]
    assert entered == ["enter", "exit"]


# --- what needs a Restate server ---------------------------------------------------------------


async def test_connect_and_with_connection_need_a_server() -> None:
    with pytest.raises(restate.ConnectError, match="connects this process to a Restate server"):
        await restate.connect(object())
    with pytest.raises(restate.ConnectError):
        async with restate.with_connection(object()):
            pass


class Codec(restate.JournalValueCodec):
    def encode(self, buf: bytes) -> bytes:
        return buf

    async def decode(self, buf: bytes) -> bytes:
        return buf


async def test_journal_value_codecs_are_refused() -> None:
    with pytest.raises(TypeError, match="journal_value_codec"):
        restate.app([misuse], journal_value_codec=Codec())
    with pytest.raises(TypeError, match="journal_value_codec"):
        async with restate.create_test_harness([misuse], journal_value_codec=Codec()):
            pass
    with pytest.raises(TypeError, match="journal_value_codec"):
        async with restate.create_client("http://127.0.0.1:1", journal_value_codec=Codec()):
            pass
    with pytest.raises(TypeError, match="needs the ingress URL"):
        async with restate.create_client():
            pass


async def test_embedded_app_is_not_an_asgi_app() -> None:
    with pytest.raises(TypeError, match="not an ASGI application"):
        await restate.app([misuse])({}, None, None)


def test_open_runtime_refuses_what_is_not_actors() -> None:
    from actors._definitions import expand_registrations

    with pytest.raises(TypeError, match="must be a list of actor classes"):
        expand_registrations(42)


def test_logger_and_internal_exceptions() -> None:
    logger = restate.getLogger("actors-restate-test")
    assert sum(isinstance(f, restate.RestateLoggingFilter) for f in logger.filters) == 1
    assert restate.getLogger("actors-restate-test") is logger
    assert len(logger.filters) == 1
    [only] = logger.filters
    assert isinstance(only, restate.RestateLoggingFilter)
    assert only.filter(logging.makeLogRecord({"name": "actors-restate-test"}))
    assert restate.is_internal_exception(restate.exceptions.SuspendedException())
    assert restate.is_internal_exception(KeyboardInterrupt())
    assert not restate.is_internal_exception(ValueError())
    retry = restate.exceptions.RetryableError("later", retry_after=timedelta(seconds=1))
    assert (retry.message, retry.status_code, retry.retry_after) == (
        "later",
        500,
        timedelta(seconds=1),
    )
