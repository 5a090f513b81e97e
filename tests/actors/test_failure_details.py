"""What a failure carries besides its message: ``TerminalError`` metadata (stored with
the failure, returned to every caller and over HTTP) and the status code of a rejected
awakeable or promise (its waiter gets a ``TerminalError`` with that code). Both survive
a crash."""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest

import actors
from actors._ingress import IngressApp
from actors._results import failure
from actors.storage import Failure, RunEntry, dumps, dumps_entry, loads
from actors.testing import CrashPlan, SimulatedCrash, open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path

DETAILS = {"reason": "card_declined", "retry_in": "never"}

# --- TerminalError(metadata=...) ---------------------------------------------------------


def test_metadata_is_kept_as_a_plain_dict_copy() -> None:
    given = dict(DETAILS)
    error = actors.TerminalError("declined", 402, metadata=given)
    given["reason"] = "changed"
    assert (error.message, error.status_code, error.metadata) == ("declined", 402, DETAILS)
    assert actors.TerminalError("plain").metadata == {}
    assert actors.TerminalError("none", metadata=None).metadata == {}
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.status_code, copy.metadata) == ("declined", 402, DETAILS)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (["a", "b"], r"^TerminalError metadata is a dict of str to str, not list$"),
        ("a=b", r"^TerminalError metadata is a dict of str to str, not str$"),
        ({"a": 1}, r"^TerminalError metadata is a dict of str to str, but it maps str 'a' to int$"),
        ({1: "a"}, r"^TerminalError metadata is a dict of str to str, but it maps int 1 to str$"),
        ({"a": None}, r"but it maps str 'a' to NoneType$"),
    ],
)
def test_metadata_of_the_wrong_type_is_a_type_error(metadata: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        actors.TerminalError("x", 500, metadata=metadata)


def test_metadata_over_its_limit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^TerminalError metadata holds 4097 characters, over"):
        actors.TerminalError("x", metadata={"k": "v" * 4096})
    assert actors.TerminalError("x", metadata={"k": "v" * 4095}).metadata["k"] == "v" * 4095


def test_empty_metadata_stores_nothing_and_old_failures_still_read() -> None:
    plain = msgspec.msgpack.decode(dumps(Failure("m", 409)))
    assert plain == {"message": "m", "status_code": 409, "deadlock": False}
    assert (
        "metadata"
        not in msgspec.msgpack.decode(dumps_entry(RunEntry("s", Failure("m"))))["outcome"]
    )
    # Written before the field existed: reads with no metadata.
    old = msgspec.msgpack.encode({"message": "m", "status_code": 409, "deadlock": False})
    assert loads(Failure, old) == Failure("m", 409)
    stored = Failure("m", 409, metadata=(("a", "b"),))
    assert msgspec.msgpack.decode(dumps(stored))["metadata"] == [["a", "b"]]
    assert loads(Failure, dumps(stored)) == stored


def test_metadata_replaced_by_handler_code_is_left_out_not_fatal() -> None:
    error = actors.TerminalError("x", metadata={"a": "b"})
    assert failure(error).metadata == (("a", "b"),)
    error.metadata = {"a": 1}  # type: ignore[dict-item]
    assert failure(error) == Failure("x", 500)
    error.metadata = "junk"  # type: ignore[assignment]
    assert failure(error) == Failure("x", 500)


class Payments(actors.Service):
    """Fails with metadata, directly, through a step, and through a call."""

    def __init__(self) -> None:
        self.charges = 0

    @actors.handler
    async def decline(self, ctx: actors.Context) -> str:
        raise actors.TerminalError("declined", 402, metadata=DETAILS)

    async def _charge(self) -> str:
        self.charges += 1
        raise actors.TerminalError("step declined", 402, metadata={"step": "charge"})

    async def _after(self) -> None:
        pass

    @actors.handler
    async def step(self, ctx: actors.Context) -> dict[str, str]:
        try:
            await ctx.run("charge", self._charge)
        except actors.TerminalError as exc:
            seen = {"code": str(exc.status_code), **exc.metadata}
        await ctx.run("after", self._after)
        return seen

    @actors.handler
    async def relay(self, ctx: actors.Context) -> dict[str, str]:
        try:
            await ctx.call(Payments.decline)
        except actors.TerminalError as exc:
            return {"message": exc.message, **exc.metadata}
        return {}


async def test_callers_get_the_metadata(tmp_path: Path) -> None:
    async with open_test_runtime([Payments()], path=tmp_path) as rt:
        with pytest.raises(actors.TerminalError) as info:
            await rt.call(Payments.decline)
        assert (info.value.status_code, info.value.metadata) == (402, DETAILS)
        assert await rt.call(Payments.relay) == {"message": "declined", **DETAILS}
        handle = await rt.send(Payments.decline)
        with pytest.raises(actors.TerminalError) as info:
            await handle.result()
        assert info.value.metadata == DETAILS
    # Stored with the outcome: attach after a restart answers it too.
    async with open_test_runtime([Payments()], path=tmp_path) as rt:
        for wait in (rt.attach, rt.output):
            with pytest.raises(actors.TerminalError) as info:
                await wait(handle.invocation_id)
            assert (info.value.message, info.value.metadata) == ("declined", DETAILS)


async def test_a_step_s_metadata_is_journaled_and_replayed_after_a_crash(tmp_path: Path) -> None:
    payments = Payments()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [payments], path=tmp_path, crash=CrashPlan(in_run="after")
        ) as rt:
            handle = await rt.send(Payments.step)
            await handle.result()
    assert payments.charges == 1
    async with open_test_runtime([payments], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == {"code": "402", "step": "charge"}
    assert payments.charges == 1  # the failed step was replayed, not run again


async def test_http_error_bodies_carry_the_metadata() -> None:
    async with open_test_runtime([Payments()]) as rt:
        transport = httpx.ASGITransport(app=IngressApp(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            answer = await client.post("/Payments/decline")
            body = {"code": 402, "message": "declined", "metadata": DETAILS, "source": "invocation"}
            assert (answer.status_code, answer.json()) == (402, body)
            assert answer.headers["x-restate-error-source"] == "invocation"
            sent = await client.post("/Payments/decline/send")
            invocation_id = sent.json()["invocationId"]
            for what in ("attach", "output"):
                answer = await client.get(f"/restate/invocation/{invocation_id}/{what}")
                assert answer.json() == body
            # No metadata, no field: the body is what it always was.
            answer = await client.post("/Payments/nope")
            assert "metadata" not in answer.json()


# --- codes of rejected awakeables and promises ---------------------------------------------


class Waiter(actors.VirtualObject):
    """Waits on an awakeable and reports how it ended; rejects others' awakeables."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.waiting: dict[str, anyio.Event] = {}
        self.recorded: list[str] = []

    async def _publish(self, key: str, awakeable_id: str) -> None:
        self.ids[key] = awakeable_id
        self.waiting.setdefault(key, anyio.Event()).set()

    @actors.exclusive
    async def wait(self, ctx: actors.ObjectContext) -> str:
        awakeable_id, answer = ctx.awakeable(str)
        await ctx.run("publish", self._publish, ctx.key, awakeable_id)
        try:
            outcome = f"got {await answer}"
        except actors.TerminalError as exc:
            outcome = f"rejected {exc.status_code}: {exc.message}"
        await ctx.run("record", self._record, outcome)
        return outcome

    async def _record(self, outcome: str) -> None:
        self.recorded.append(outcome)

    @actors.exclusive
    async def reject(self, ctx: actors.ObjectContext, target: list[Any]) -> str:
        awakeable_id, code = target
        try:
            await ctx.reject_awakeable(awakeable_id, "handler says no", code)
        except actors.TerminalError as exc:
            return f"{exc.status_code} {exc.message}"
        return "rejected"


async def _waiting(rt: actors.Runtime, waiter: Waiter, key: str) -> tuple[str, str]:
    handle = await rt.send(Waiter.wait, key=key)
    await waiter.waiting.setdefault(key, anyio.Event()).wait()
    return handle.invocation_id, waiter.ids[key]


async def test_an_awakeable_rejected_with_a_code_fails_its_waiter_with_it() -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        outside, outside_id = await _waiting(rt, waiter, "outside")
        await rt.reject_awakeable(outside_id, "gone", code=410)
        assert await rt.attach(outside) == "rejected 410: gone"
        default, default_id = await _waiting(rt, waiter, "default")
        await rt.reject_awakeable(default_id, "no")
        assert await rt.attach(default) == "rejected 500: no"
        inside, inside_id = await _waiting(rt, waiter, "inside")
        assert await rt.call(Waiter.reject, [inside_id, 403], key="other") == "rejected"
        assert await rt.attach(inside) == "rejected 403: handler says no"


@pytest.mark.parametrize("code", [99, 1000, -500, "500", 500.0, True, None])
async def test_a_bad_rejection_code_is_400_and_changes_nothing(code: Any) -> None:
    waiter = Waiter()
    async with open_test_runtime([waiter]) as rt:
        invocation_id, awakeable_id = await _waiting(rt, waiter, "w")
        shown = repr(code) if type(code) is int else type(code).__name__
        message = f"a rejection code is an int from 100 to 999, not {shown}"
        with pytest.raises(actors.TerminalError) as info:
            await rt.reject_awakeable(awakeable_id, "no", code=code)
        assert (info.value.status_code, info.value.message) == (400, message)
        assert await rt.call(Waiter.reject, [awakeable_id, code], key="other") == (f"400 {message}")
        # Nothing was stored: the awakeable is still open.
        await rt.resolve_awakeable(awakeable_id, "yes")
        assert await rt.attach(invocation_id) == "got yes"


async def test_an_awakeable_s_rejection_code_survives_a_crash(tmp_path: Path) -> None:
    waiter = Waiter()
    # The waiter gets the rejection; the runtime dies in the step that records it.
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [waiter], path=tmp_path, crash=CrashPlan(in_run="record")
        ) as rt:
            invocation_id, awakeable_id = await _waiting(rt, waiter, "w")
            await rt.reject_awakeable(awakeable_id, "gone", code=410)
            await rt.attach(invocation_id)
    assert waiter.recorded == []
    async with open_test_runtime([waiter], path=tmp_path) as rt:
        assert await rt.attach(invocation_id) == "rejected 410: gone"
    assert waiter.recorded == ["rejected 410: gone"]


class Order(actors.Workflow):
    """Waits for its "payment" promise; records how it ended in a step."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    async def _record(self, outcome: str) -> None:
        self.recorded.append(outcome)

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        try:
            outcome = f"paid {await ctx.promise('payment', str).value()}"
        except actors.TerminalError as exc:
            outcome = f"rejected {exc.status_code}: {exc.message}"
        await ctx.run("record", self._record, outcome)
        return outcome

    @actors.shared
    async def decline(self, ctx: actors.WorkflowSharedContext, code: Any) -> str:
        try:
            await ctx.promise("payment", str).reject("declined", code=code)
        except actors.TerminalError as exc:
            return f"{exc.status_code} {exc.message}"
        return "declined"

    @actors.shared
    async def pay(self, ctx: actors.WorkflowSharedContext, amount: str) -> None:
        await ctx.promise("payment", str).resolve(amount)


async def test_a_promise_rejected_with_a_code_survives_a_crash(tmp_path: Path) -> None:
    order = Order()
    with pytest.raises(SimulatedCrash):
        async with open_test_runtime(
            [order], path=tmp_path, crash=CrashPlan(in_run="record")
        ) as rt:
            handle = await rt.send(Order.run, key="o1")
            assert await rt.call(Order.decline, 402, key="o1") == "declined"
            await handle.result()
    assert order.recorded == []
    async with open_test_runtime([order], path=tmp_path) as rt:
        assert await rt.attach(handle.invocation_id) == "rejected 402: declined"
        # Completed once: a second rejection is refused, with the code it had.
        assert await rt.call(Order.decline, 451, key="o1") == (
            "409 promise 'payment' of Order/o1 was already completed"
        )
    assert order.recorded == ["rejected 402: declined"]


async def test_a_bad_promise_rejection_code_is_400_and_changes_nothing() -> None:
    async with open_test_runtime([Order()]) as rt:
        handle = await rt.send(Order.run, key="o1")
        assert await rt.call(Order.decline, 1000, key="o1") == (
            "400 a rejection code is an int from 100 to 999, not 1000"
        )
        assert await rt.call(Order.decline, "402", key="o1") == (
            "400 a rejection code is an int from 100 to 999, not str"
        )
        await rt.call(Order.pay, "10 EUR", key="o1")
        assert await handle.result() == "paid 10 EUR"
