"""Restate-style services over HTTP: the Docker-free harness (its in-process client and
its ingress URL), ``restate.create_client`` against that ingress, and the synchronous
``test_harness``; under trio and asyncio."""

from __future__ import annotations

import json

import httpx
import pytest
import restate_services as svc

from actors import restate


@pytest.fixture(autouse=True)
def _fresh() -> None:
    svc.SEEN.clear()
    svc.EVENTS.clear()


async def test_harness_client_and_ingress() -> None:
    async with restate.create_test_harness(svc.APP) as env:
        assert env.ingress_url.startswith("http://127.0.0.1:")
        assert env.admin_api_url == ""
        assert await env.client.object_call(svc.add, "h", 2) == 2
        assert await env.client.object_call(svc.current, "h", None) == 2
        assert await env.client.service_call(svc.greet, "Ada") == "Hello Ada!"
        handle = await env.client.workflow_send(svc.payment.handlers["pay"].fn, "w1", 9)
        assert handle.invocation_id.startswith("inv_")
        async with httpx.AsyncClient(base_url=env.ingress_url) as http:
            answer = await http.post("/counter/h/add", json=3)
            assert (answer.status_code, answer.json()) == (200, 5)
            answer = await http.post("/greeter/nothing")
            assert (answer.status_code, answer.content) == (200, b"")
            answer = await http.post("/greeter/place", json={"item": "tea", "quantity": 1})
            assert set(answer.json()) == {"order_id", "total"}
            answer = await http.post("/greeter/fail", json=451)
            assert answer.status_code == 451
            assert answer.json()["message"] == "refused"
            answer = await http.post("/payment/w1/decide", json="ok")
            assert answer.status_code == 200
            answer = await http.get("/restate/workflow/payment/w1/attach")
            assert (answer.status_code, answer.content) == (200, b'"ok 9"')


async def test_create_client_over_http() -> None:
    async with (
        restate.create_test_harness(svc.APP) as env,
        restate.create_client(env.ingress_url) as client,
    ):
        assert await client.object_call(svc.add, "c", 4) == 4
        assert await client.service_call(svc.greet, "Bo", idempotency_key="k1") == "Hello Bo!"
        assert await client.service_call(svc.greet, "Bo", idempotency_key="k1") == "Hello Bo!"
        assert svc.SEEN["greet"] == ["Bo"]
        sent = await client.object_send(svc.add, "c", 1)
        assert sent.invocation_id.startswith("inv_")
        assert await client.generic_call("counter", "add", b"0", key="c") == b"5"
        with pytest.raises(restate.HttpError) as caught:
            await client.service_call(svc.fail, 409)
        assert (caught.value.status_code, caught.value.message) == (409, "refused")


async def test_harness_client_errors_are_http_errors() -> None:
    async with restate.create_test_harness(svc.APP) as env:
        with pytest.raises(restate.HttpError) as caught:
            await env.client.service_call(svc.fail, 422)
        assert caught.value.status_code == 422
        with pytest.raises(restate.HttpError) as caught:
            await env.client.generic_call("nope", "nope", b"")
        assert caught.value.status_code == 404
        with pytest.raises(TypeError, match="not a Restate handler"):
            await env.client.service_call(print, 1)


async def test_harness_disable_retries_gives_one_attempt() -> None:
    async with restate.create_test_harness(svc.APP, disable_retries=True) as env:
        with pytest.raises(restate.HttpError) as caught:
            await env.client.service_call(svc.flaky, 5)
        assert caught.value.status_code == 500
        assert len(svc.SEEN["flaky"]) == 1


def test_sync_test_harness() -> None:
    with restate.test_harness(svc.APP) as harness, harness.ingress_client() as http:
        answer = http.post("/greeter/greet", json="sync")
        assert (answer.status_code, json.loads(answer.content)) == (200, "Hello sync!")
