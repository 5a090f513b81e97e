"""Restate-style services (``restate_services``) running embedded, under trio and
asyncio: every context method, the combinators, serdes, errors, and the runtime's own
guarantees (deadlock detection, the idempotency payload check) beneath them."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import restate_services as svc
import trio.testing

import actors
import actors.testing
from actors import restate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(autouse=True)
def _fresh() -> None:
    svc.SEEN.clear()
    svc.EVENTS.clear()


@asynccontextmanager
async def runtime(**options: Any) -> AsyncIterator[actors.Runtime]:
    async with actors.testing.open_test_runtime(svc.APP, **options) as rt:
        yield rt


def j(value: object) -> bytes:
    return json.dumps(value).encode()


async def test_object_state_get_set_gather_clear() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("counter", "add", b"2", key="a") == b"2"
        assert await rt.generic_call("counter", "add", b"3", key="a") == b"5"
        assert await rt.generic_call("counter", "current", b"", key="a") == b"5"
        assert await rt.generic_call("counter", "current", b"", key="b") == b"0"
        snap = json.loads(await rt.generic_call("counter", "snapshot", b"", key="a"))
        assert snap == {"count": 5, "label": "counter a", "keys": ["count", "label"]}
        assert await rt.generic_call("counter", "reset", b"", key="a") == b""
        assert (
            json.loads(await rt.generic_call("counter", "snapshot", b"", key="a"))["count"] is None
        )


async def test_service_serdes_follow_restate() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("greeter", "greet", b'"Ada"') == b'"Hello Ada!"'
        # A handler returning nothing answers an empty body (Restate's), not "null".
        assert await rt.generic_call("greeter", "nothing", b"") == b""
        # A dataclass input; a pydantic output is JSON with field names, not aliases.
        raw = await rt.generic_call("greeter", "place", j({"item": "tea", "quantity": 2}))
        receipt = json.loads(raw)
        assert set(receipt) == {"order_id", "total"}
        assert receipt["total"] == 6
        assert svc.SEEN["place"] == [("tea", 6)]
        assert await rt.generic_call("greeter", "echo_bytes", b"\x00abc") == b"cba\x00"
        assert json.loads(await rt.generic_call("greeter", "receipt", b"9")) == {
            "order_id": "r-1",
            "total": 9,
        }


async def test_step_result_decodes_by_the_action_annotation() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("greeter", "typed_step", b"") == b'"Receipt"'


async def test_undecodable_input_is_a_400_and_runs_nothing() -> None:
    async with runtime() as rt:
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("greeter", "place", b"{not json")
        assert caught.value.status_code == 400
        assert "input of greeter/place does not decode" in caught.value.message
        assert "place" not in svc.SEEN


async def test_request_random_uuid_time() -> None:
    async with runtime() as rt:
        raw = await rt.generic_call("greeter", "details", b"", headers={"x-trace": "t1"})
        details = json.loads(raw)
        assert details["id"].startswith("inv_")
        assert details["headers"] == {"x-trace": "t1"}
        assert details["time_is_float"] is True
        assert details["attempt_done"] is False
        assert 0 <= details["random"] < 1
        again = json.loads(await rt.generic_call("greeter", "details", b""))
        assert again["uuid"] != details["uuid"]


async def test_terminal_error_with_metadata_reaches_callers() -> None:
    async with runtime() as rt:
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("greeter", "fail", b"422")
        assert (caught.value.status_code, caught.value.metadata) == (422, {"reason": "test"})
        # Inside a Restate handler the callee's failure is Restate's TerminalError.
        raw = await rt.generic_call("orchestrator", "catch_callee", b"")
        assert json.loads(raw) == ["refused", 418, {"reason": "test"}]


async def test_retryable_error_is_retried() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("greeter", "flaky", b"2") == b"3"
        assert len(svc.SEEN["flaky"]) == 3


async def test_step_max_attempts_raise_terminal_in_the_handler() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("greeter", "step_gives_up", b"") == b'"gave up: 500"'
        assert len(svc.SEEN["attempt"]) == 2


async def test_exclusive_call_cycle_is_refused_not_hung() -> None:
    async with runtime() as rt:
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("counter", "add_to_self", b"1", key="loop")
        assert caught.value.status_code == 409
        assert json.loads(await rt.generic_call("counter", "catch_deadlock", b"", key="l")) == [
            409,
            True,
        ]


async def test_calls_sends_and_gather() -> None:
    async with runtime() as rt:
        raw = await rt.generic_call("orchestrator", "fan_out", j(["a", "b", "c"]))
        assert json.loads(raw) == ["Hello a!", "Hello b!", "Hello c!"]
        # The send was accepted before fan_out answered; the key runs it first.
        assert await rt.generic_call("counter", "add", b"0", key="fan") == b"3"
        assert await rt.generic_call("orchestrator", "call_ids", b"") == b"true"
        assert await rt.generic_call("counter", "add", b"0", key="ids") == b"11"


async def test_generic_call_and_send() -> None:
    async with runtime() as rt:
        assert await rt.generic_call("orchestrator", "generic", b"") == b'"\\"Hello generic!\\""'
        assert await rt.generic_call("counter", "add", b"0", key="generic") == b"5"


async def test_awakeable_resolved_from_another_handler() -> None:
    svc.EVENTS["awakeable"] = anyio.Event()
    async with runtime() as rt:
        handle = await rt.generic_send("orchestrator", "wait_for_approval", b"3600")
        await svc.EVENTS["awakeable"].wait()
        [awakeable_id] = svc.SEEN["awakeable"]
        await rt.generic_call("orchestrator", "approve", j(awakeable_id))
        assert json.loads(await handle.result()) == ["approved", "yes"]


async def test_awakeable_rejected_raises_terminal_error() -> None:
    svc.EVENTS["awakeable"] = anyio.Event()
    async with runtime() as rt:
        handle = await rt.generic_send("orchestrator", "wait_for_approval", b"3600")
        await svc.EVENTS["awakeable"].wait()
        [awakeable_id] = svc.SEEN["awakeable"]
        await rt.generic_call("orchestrator", "refuse", j(awakeable_id))
        with pytest.raises(actors.TerminalError) as caught:
            await handle.result()
        assert (caught.value.message, caught.value.status_code) == ("no", 403)


async def test_awakeable_resolved_from_outside_with_json() -> None:
    svc.EVENTS["awakeable"] = anyio.Event()
    async with runtime() as rt:
        handle = await rt.generic_send("orchestrator", "wait_for_approval", b"3600")
        await svc.EVENTS["awakeable"].wait()
        await rt.resolve_awakeable(svc.SEEN["awakeable"][0], "from outside")
        assert json.loads(await handle.result()) == ["approved", "from outside"]


async def test_select_timeout_sleep_and_as_completed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with runtime() as rt:
        raw = await rt.generic_call("orchestrator", "wait_for_approval", b"30")
        assert json.loads(raw) == ["timed out", None]
        raw = await rt.generic_call("orchestrator", "first_done", b"")
        assert json.loads(raw) == ["fast", "slow", "1/0"]


async def test_delayed_send(autojump_clock: trio.testing.MockClock) -> None:
    async with runtime() as rt:
        await rt.generic_call("orchestrator", "later", b"")
        assert await rt.generic_call("counter", "current", b"", key="later") == b"0"
        await trio.sleep(3601)
        assert await rt.generic_call("counter", "current", b"", key="later") == b"7"


async def test_attach_and_cancel_invocation() -> None:
    async with runtime() as rt:
        handle = await rt.generic_send("counter", "add", b"2", key="att")
        assert await rt.generic_call("orchestrator", "attach_to", j(handle.invocation_id)) == b"2"
        svc.EVENTS["awakeable"] = anyio.Event()
        waiting = await rt.generic_send("orchestrator", "wait_for_approval", b"3600")
        await svc.EVENTS["awakeable"].wait()
        await rt.generic_call("orchestrator", "cancel", j(waiting.invocation_id))
        with pytest.raises(actors.TerminalError) as caught:
            await waiting.result()
        assert caught.value.status_code == 409


async def test_signals() -> None:
    async with runtime() as rt:
        waiting = await rt.generic_send("orchestrator", "wait_signal", b"")
        await rt.generic_call("orchestrator", "send_signal", j([waiting.invocation_id, "now"]))
        assert await waiting.result() == b'"now"'


async def test_workflow_promise_resolve_peek_and_run_once() -> None:
    async with runtime() as rt:
        first = await rt.generic_send("payment", "pay", b"5", key="p1")
        again = await rt.generic_send("payment", "pay", b"5", key="p1")
        assert (first.status, again.status) == ("Accepted", "PreviouslyAccepted")
        assert again.invocation_id == first.invocation_id
        assert await rt.generic_call("payment", "decide", b'"ok"', key="p1") == b""  # peek: None
        assert await first.result() == b'"ok 5"'
        assert await rt.generic_call("payment", "status", b"", key="p1") == b'"ok"'
        assert await rt.generic_call("payment", "decide", b'"x"', key="p2") == b""
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("payment", "decide", b'"y"', key="p2")
        assert caught.value.status_code == 409  # a promise completes once


async def test_workflow_promise_rejected() -> None:
    async with runtime() as rt:
        handle = await rt.generic_send("payment", "pay", b"1", key="r1")
        await rt.generic_call("payment", "decide", b'"reject"', key="r1")
        with pytest.raises(actors.TerminalError) as caught:
            await handle.result()
        assert caught.value.status_code == 402
        assert caught.value.message == "payment rejected: declined by test"
        assert await rt.generic_call("payment", "status", b"", key="r1") == b'"rejected"'


async def test_idempotency_key_payload_check_still_holds() -> None:
    async with runtime() as rt:
        assert (
            await rt.generic_call("greeter", "greet", b'"a"', idempotency_key="k") == b'"Hello a!"'
        )
        assert (
            await rt.generic_call("greeter", "greet", b'"a"', idempotency_key="k") == b'"Hello a!"'
        )
        assert svc.SEEN["greet"] == ["a"]
        with pytest.raises(actors.TerminalError) as caught:
            await rt.generic_call("greeter", "greet", b'"b"', idempotency_key="k")
        assert caught.value.status_code == 409


async def test_crash_mid_workflow_resumes_from_the_journal(tmp_path: Any) -> None:
    path = tmp_path / "data"
    with pytest.raises(actors.testing.SimulatedCrash):
        async with actors.testing.open_test_runtime(
            svc.APP, path=path, crash=actors.testing.CrashPlan(in_run="charge")
        ) as rt:
            handle = await rt.generic_send("payment", "pay", b"7", key="c1")
            await handle.result()  # the crash ends the runtime first
    assert "charge" not in svc.SEEN  # it died before the step's body
    async with actors.testing.open_test_runtime(svc.APP, path=path) as rt:
        assert await rt.generic_call("payment", "decide", b'"ok"', key="c1") == b""
        handle = await rt.generic_send("payment", "pay", b"7", key="c1")
        assert handle.status == "PreviouslyAccepted"
        assert await handle.result() == b'"ok 7"'
    assert svc.SEEN["charge"] == [7]  # ran once, in the second life


async def test_crash_after_a_step_body_runs_it_again(tmp_path: Any) -> None:
    # The body ran but its result was not durable: the next life runs it again, with
    # the same input, and the workflow goes on from there.
    path = tmp_path / "data"
    with pytest.raises(actors.testing.SimulatedCrash):
        async with actors.testing.open_test_runtime(
            svc.APP, path=path, crash=actors.testing.CrashPlan(after_run="charge")
        ) as rt:
            handle = await rt.generic_send("payment", "pay", b"3", key="c2")
            await handle.result()
    assert svc.SEEN["charge"] == [3]
    async with actors.testing.open_test_runtime(svc.APP, path=path) as rt:
        await rt.generic_call("payment", "decide", b'"done"', key="c2")
        handle = await rt.generic_send("payment", "pay", b"3", key="c2")
        assert await handle.result() == b'"done 3"'
    assert svc.SEEN["charge"] == [3, 3]


async def test_restart_while_main_waits_does_not_repeat_the_step(tmp_path: Any) -> None:
    path = tmp_path / "data"
    async with actors.testing.open_test_runtime(svc.APP, path=path) as rt:
        await rt.generic_send("payment", "pay", b"4", key="c3")
        while await rt.generic_call("payment", "status", b"", key="c3") != b'"charged"':
            await anyio.lowlevel.checkpoint()
    async with actors.testing.open_test_runtime(svc.APP, path=path) as rt:
        await rt.generic_call("payment", "decide", b'"fine"', key="c3")
        handle = await rt.generic_send("payment", "pay", b"4", key="c3")
        assert await handle.result() == b'"fine 4"'
    assert svc.SEEN["charge"] == [4]  # its result was durable before the restart


def test_app_refuses_what_is_not_a_service() -> None:
    with pytest.raises(TypeError, match="takes Service, VirtualObject and Workflow"):
        restate.app([object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="named twice"):
        restate.app([svc.greeter, svc.greeter])
