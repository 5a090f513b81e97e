"""The ingress's wire as Restate's clients expect it (DESIGN.md section 6), in-process
through ``httpx.ASGITransport``: empty 200 answers for None, the error source of every
error answer, ``executionTime`` on delayed sends, the ``/restate/a/`` awakeable paths,
bare-millisecond delays, attach and output by idempotency key, and health.

The real clients drive the same paths over sockets in ``tests/clients``; here every
error path gets its exact answer. Each test runs under trio and asyncio unless it uses
the autojump clock."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
import trio
import trio.testing

import actors
from actors._http import parse_delay
from actors._ingress import IngressApp
from actors._limits import MAX_IDEMPOTENCY_KEY_BYTES
from actors._wire import execution_time_text
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors._runtime import Runtime


class Shop(actors.Service):
    @actors.handler
    async def quote(self, ctx: actors.Context, item: str) -> int:
        return len(item)

    @actors.handler
    async def nothing(self, ctx: actors.Context) -> None:
        return None

    @actors.handler
    async def maybe(self, ctx: actors.Context, value: int | None) -> int | None:
        return value

    @actors.handler
    async def refuse(self, ctx: actors.Context, code: int) -> str:
        raise actors.TerminalError("out of stock", code)


class Cart(actors.VirtualObject):
    def __init__(self) -> None:
        self.awakeables: dict[str, str] = {}
        self.waiting = anyio.Event()

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, n: int) -> int:
        total = (await ctx.get("n", int)) or 0
        ctx.set("n", total + n)
        return total + n

    @actors.exclusive
    async def clear(self, ctx: actors.ObjectContext) -> None:
        ctx.clear("n")

    @actors.exclusive
    async def checkout(self, ctx: actors.ObjectContext) -> str:
        awakeable_id, paid = ctx.awakeable(str)
        self.awakeables[ctx.key] = awakeable_id
        self.waiting.set()
        return await paid


class Delivery(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, address: str) -> None:
        ctx.set("address", address)

    @actors.shared
    async def address(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("address", str)


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Cart, Runtime, httpx.AsyncClient]]:
    cart = Cart()
    async with open_test_runtime([Shop(), cart, Delivery()]) as rt:
        transport = httpx.ASGITransport(app=IngressApp(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield cart, rt, client


def empty(response: httpx.Response) -> tuple[int, bytes, str | None]:
    return response.status_code, response.content, response.headers.get("content-type")


def terminal(response: httpx.Response) -> tuple[int, object, str | None]:
    """(status, body, error source) of an error answer."""
    return response.status_code, response.json(), response.headers.get("x-restate-error-source")


# --- None is an empty 200 ------------------------------------------------------------------


async def test_none_is_an_empty_answer_without_content_type() -> None:
    async with serving() as (_cart, _rt, client):
        assert empty(await client.post("/Shop/nothing")) == (200, b"", None)
        assert empty(await client.post("/Shop/maybe")) == (200, b"", None)
        assert (await client.post("/Shop/maybe", json=0)).content == b"0"  # not falsy: JSON
        assert empty(await client.post("/Cart/c1/clear")) == (200, b"", None)
        sent = await client.post("/Shop/nothing/send")
        invocation_id = sent.json()["invocationId"]
        for what in ("attach", "output"):
            answer = await client.get(f"/restate/invocation/{invocation_id}/{what}")
            assert empty(answer) == (200, b"", None)
        assert (await client.post("/Delivery/d1/run/send", json="home")).status_code == 202
        for what in ("attach", "output"):
            answer = await client.get(f"/restate/workflow/Delivery/d1/{what}")
            assert empty(answer) == (200, b"", None)
        # JSON answers keep their content type.
        quoted = await client.post("/Shop/quote", json="abc")
        assert (quoted.content, quoted.headers["content-type"]) == (b"3", "application/json")


# --- error sources -------------------------------------------------------------------------


async def test_terminal_failures_say_they_are_the_invocation_s() -> None:
    async with serving() as (cart, _rt, client):
        body = {"code": 409, "message": "out of stock", "source": "invocation"}
        assert terminal(await client.post("/Shop/refuse", json=409)) == (409, body, "invocation")
        sent = await client.post("/Shop/refuse/send", json=409)
        invocation_id = sent.json()["invocationId"]
        for what in ("attach", "output"):
            answer = await client.get(f"/restate/invocation/{invocation_id}/{what}")
            assert terminal(answer) == (409, body, "invocation")
        # An odd code is answered 500 and kept in the body, as before.
        odd = await client.post("/Shop/refuse", json=200)
        assert terminal(odd) == (
            500,
            {"code": 200, "message": "out of stock", "source": "invocation"},
            "invocation",
        )
        # A cancelled invocation's outcome is the invocation's too.
        sent = await client.post("/Cart/c2/checkout/send")
        await cart.waiting.wait()
        invocation_id = sent.json()["invocationId"]
        assert (
            await client.patch(f"/restate/invocation/{invocation_id}/cancel")
        ).status_code == 202
        cancelled = await client.get(f"/restate/invocation/{invocation_id}/attach")
        message = f"invocation {invocation_id} was cancelled"
        assert terminal(cancelled) == (
            409,
            {"code": 409, "message": message, "source": "invocation"},
            "invocation",
        )


async def test_errors_of_the_ingress_itself_say_so() -> None:
    async with serving() as (_cart, _rt, client):
        await client.post("/Shop/quote", json="a", headers={"idempotency-key": "used"})
        cases = [
            (client.post("/Nobody/quote", json="a"), 404),
            (client.post("/Shop/quote", content=b"{"), 400),
            (client.get("/Shop/quote"), 405),
            (client.post("/Shop/quote", json="b", headers={"idempotency-key": "used"}), 409),
            (client.post("/Cart/" + "k" * 5000 + "/add", json=1), 413),
            (client.get("/restate/invocation/inv_nope/output"), 404),
            (client.post("/restate/a/nonsense/resolve", json=1), 400),
        ]
        for request, status in cases:
            answer = await request
            assert answer.status_code == status, answer.text
            assert answer.headers["x-restate-error-source"] == "ingress"
            assert set(answer.json()) == {"code", "message"}  # no "source": see _wire


# --- delayed sends -------------------------------------------------------------------------


def test_execution_time_text_is_restate_s_rfc_3339() -> None:
    def at(seconds: float) -> str:
        return execution_time_text(datetime.fromtimestamp(seconds, UTC))

    assert at(1_700_000_000) == "2023-11-14T22:13:20Z"
    assert at(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert at(1_700_000_000.0009) == "2023-11-14T22:13:20Z"  # milliseconds, truncated
    assert at(1_700_000_000.0019) == "2023-11-14T22:13:20.001Z"
    assert at(0) == "1970-01-01T00:00:00Z"


async def test_a_delayed_send_answers_its_execution_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving() as (_cart, rt, client):
        # The test clock reads 1_700_000_000 at loop time 0 (2023-11-14T22:13:20Z).
        delayed = await client.post("/Cart/c3/add/send?delay=10s", json=1)
        assert delayed.json() == {
            "invocationId": delayed.json()["invocationId"],
            "status": "Accepted",
            "executionTime": "2023-11-14T22:13:30Z",
        }
        # A bare number is milliseconds: what Restate's Python client sends.
        bare = await client.post("/Cart/c3/add/send?delay=1500", json=1)
        assert bare.json()["executionTime"] == "2023-11-14T22:13:21.500Z"
        plain = await client.post("/Cart/c3/add/send", json=1)
        assert set(plain.json()) == {"invocationId", "status"}  # not delayed: no time
        handle = await rt.send(Cart.add, 1, key="c3", delay=timedelta(seconds=2))
        assert handle.execution_time == datetime.fromtimestamp(1_700_000_002, UTC)
        assert (await rt.send(Cart.add, 1, key="c3")).execution_time is None
        assert await handle.result() == 4
        attached = await client.get(f"/restate/invocation/{bare.json()['invocationId']}/attach")
        assert attached.json() == 3  # ran after 1.5 s, before the 2 s one
        assert trio.current_time() >= 2


async def test_a_resent_delayed_send_answers_without_execution_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serving() as (_cart, _rt, client):
        headers = {"idempotency-key": "once"}
        first = await client.post("/Cart/c4/add/send?delay=1m", json=1, headers=headers)
        again = await client.post("/Cart/c4/add/send?delay=1m", json=1, headers=headers)
        assert first.json()["executionTime"] == "2023-11-14T22:14:20Z"
        assert again.json() == {
            "invocationId": first.json()["invocationId"],
            "status": "PreviouslyAccepted",
        }


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("10", 0.01), ("1500", 1.5)])
def test_a_bare_number_delay_is_milliseconds(text: str, seconds: float) -> None:
    assert parse_delay(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["-10", "1e3", "\u0661\u0660", "10.5"])
def test_only_plain_digits_are_milliseconds(text: str) -> None:
    with pytest.raises(ValueError, match=r"^delay "):
        parse_delay(text)


# --- awakeables under /restate/a/ ----------------------------------------------------------


async def test_awakeables_also_answer_under_restate_a() -> None:
    async with serving() as (cart, _rt, client):
        sent = await client.post("/Cart/c5/checkout/send")
        await cart.waiting.wait()
        resolved = await client.post(f"/restate/a/{cart.awakeables['c5']}/resolve", json="ok")
        assert (resolved.status_code, resolved.content) == (202, b"")
        attached = await client.get(f"/restate/invocation/{sent.json()['invocationId']}/attach")
        assert attached.json() == "ok"

        cart.waiting = anyio.Event()
        sent = await client.post("/Cart/c6/checkout/send")
        await cart.waiting.wait()
        rejected = await client.post(f"/restate/a/{cart.awakeables['c6']}/reject", content="no")
        assert rejected.status_code == 202
        attached = await client.get(f"/restate/invocation/{sent.json()['invocationId']}/attach")
        assert terminal(attached) == (
            500,
            {"code": 500, "message": "no", "source": "invocation"},
            "invocation",
        )
        wrong_method = await client.get(f"/restate/a/{cart.awakeables['c6']}/reject")
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


# --- attach and output by idempotency key --------------------------------------------------


async def test_attach_and_output_by_idempotency_key() -> None:
    async with serving() as (cart, _rt, client):
        await client.post("/Shop/quote", json="four", headers={"idempotency-key": "q"})
        await client.post("/Cart/c7/add", json=2, headers={"idempotency-key": "a"})
        await client.post("/Shop/nothing/send", headers={"idempotency-key": "n"})
        await client.post("/Shop/refuse", json=402, headers={"idempotency-key": "r"})
        await client.post("/Delivery/d2/address", headers={"idempotency-key": "w"})
        for what in ("attach", "output"):
            quote = await client.get(f"/restate/invocation/Shop/quote/q/{what}")
            assert (quote.status_code, quote.json()) == (200, 4)
            added = await client.get(f"/restate/invocation/Cart/c7/add/a/{what}")
            assert (added.status_code, added.json()) == (200, 2)
            nothing = await client.get(f"/restate/invocation/Shop/nothing/n/{what}")
            assert empty(nothing) == (200, b"", None)
            address = await client.get(f"/restate/invocation/Delivery/d2/address/w/{what}")
            assert empty(address) == (200, b"", None)
            refused = await client.get(f"/restate/invocation/Shop/refuse/r/{what}")
            assert terminal(refused) == (
                402,
                {"code": 402, "message": "out of stock", "source": "invocation"},
                "invocation",
            )
        # Percent-encoded segments, like every other path.
        await client.post("/Cart/a%2Fb/add", json=1, headers={"idempotency-key": "x y"})
        encoded = await client.get("/restate/invocation/Cart/a%2Fb/add/x%20y/output")
        assert (encoded.status_code, encoded.json()) == (200, 1)

        await client.post("/Cart/c8/checkout/send", headers={"idempotency-key": "c"})
        await cart.waiting.wait()
        running = await client.get("/restate/invocation/Cart/c8/checkout/c/output")
        assert (running.status_code, running.json()["code"]) == (470, 470)


async def test_idempotency_key_lookups_that_find_nothing_or_make_no_sense() -> None:
    async with serving() as (_cart, _rt, client):
        await client.post("/Cart/c9/add", json=2, headers={"idempotency-key": "a"})
        cases = [
            (
                "GET",
                "/restate/invocation/Cart/other/add/a/attach",
                404,
                "no invocation of Cart.add",
            ),
            (
                "GET",
                "/restate/invocation/Cart/c9/clear/a/output",
                404,
                "no invocation of Cart.clear",
            ),
            ("GET", "/restate/invocation/Cart/c9/add/b/attach", 404, "idempotency key 'b'"),
            ("GET", "/restate/invocation/Nobody/x/add/a/attach", 404, "not registered"),
            ("GET", "/restate/invocation/Cart/c9/nope/a/attach", 404, "has no handler 'nope'"),
            ("GET", "/restate/invocation/Cart/add/a/attach", 400, "Cart is a keyed object"),
            ("GET", "/restate/invocation/Shop/k/quote/a/attach", 400, "Shop is a service"),
            ("GET", "/restate/invocation/Delivery/d/run/a/attach", 400, "once per workflow id"),
            ("POST", "/restate/invocation/Cart/c9/add/a/attach", 405, "use GET"),
            ("GET", "/restate/invocation/Cart/c9/add/a/cancel", 404, "no route"),
            (
                "GET",
                "/restate/invocation/Shop/quote/"
                + "k" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)
                + "/attach",
                413,
                "idempotency key",
            ),
        ]
        for method, path, status, message in cases:
            answer = await client.request(method, path)
            assert answer.status_code == status, (path, answer.text)
            assert message in answer.json()["message"], (path, answer.text)
            assert answer.headers["x-restate-error-source"] == "ingress"


# --- health --------------------------------------------------------------------------------


async def test_health_lists_the_services_as_restate_does() -> None:
    async with serving() as (_cart, _rt, client):
        health = await client.get("/restate/health")
        assert (health.status_code, health.json()) == (
            200,
            {"services": ["Cart", "Delivery", "Shop"]},
        )
        assert health.headers["content-type"] == "application/json"
