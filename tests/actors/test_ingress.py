"""The Restate-compatible HTTP ingress, the paths that answer: calls, sends, delays,
attach, the seed page's ``requests`` flow on the signup workflow, idempotency keys across
a restart, awakeables and the admin paths (refusals, limits and real sockets:
test_ingress_errors.py; the server itself: test_http_server.py).

Most tests drive the ASGI application in-process through ``httpx.ASGITransport``; each
runs under trio and under asyncio (see conftest.py)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest
import trio
import trio.testing

from actors._http import parse_delay

if TYPE_CHECKING:
    from pathlib import Path


from ingress_actors import Counter, awakeable_of, error, serving

# --- handler paths ------------------------------------------------------------------------


async def test_service_call_answers_the_json_output() -> None:
    async with serving() as (made, _rt, client):
        response = await client.post("/Greeter/greet", json="ada")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == "hello ada"
        assert made.greeter.greeted == ["ada"]


async def test_handler_without_input_takes_an_empty_body_and_none_is_empty() -> None:
    async with serving() as (_made, _rt, client):
        response = await client.post("/Greeter/nothing")
        assert (response.status_code, response.content) == (200, b"")
        # A JSON null body is "no input" too.
        response = await client.post("/Greeter/nothing", content=b"null")
        assert response.status_code == 200


async def test_optional_input_accepts_an_empty_body_as_null() -> None:
    async with serving() as (_made, _rt, client):
        assert (await client.post("/Greeter/maybe")).content == b""  # None
        assert (await client.post("/Greeter/maybe", json=41)).json() == 42


async def test_structured_input_and_output_use_the_annotations() -> None:
    async with serving() as (_made, _rt, client):
        user = {"name": "pete", "email": "p@example.com"}
        response = await client.post("/Greeter/register", json=user)
        assert response.json() == {"name": "PETE", "email": "p@example.com"}


async def test_object_call_with_key_and_shared_read() -> None:
    async with serving() as (_made, rt, client):
        assert (await client.post("/Counter/alice/add", json=5)).json() == 5
        assert (await client.post("/Counter/alice/add", json=2)).json() == 7
        assert (await client.post("/Counter/alice/value")).json() == 7
        assert (await client.post("/Counter/bob/value")).json() == 0
        # Same state as the Python API sees.
        assert await rt.call(Counter.value, key="alice") == 7


async def test_keys_are_percent_decoded_per_segment() -> None:
    async with serving() as (_made, rt, client):
        assert (await client.post("/Counter/a%2Fb%20c/add", json=3)).json() == 3
        assert await rt.call(Counter.value, key="a/b c") == 3
        # One trailing slash is tolerated.
        assert (await client.post("/Counter/a%2Fb%20c/value/")).json() == 3


async def test_send_answers_202_and_the_result_can_be_attached() -> None:
    async with serving() as (_made, _rt, client):
        response = await client.post("/Counter/carol/add/send", json=4)
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "Accepted"
        invocation_id = body["invocationId"]
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert (attached.status_code, attached.json()) == (200, 4)
        output = await client.get(f"/restate/invocation/{invocation_id}/output")
        assert (output.status_code, output.json()) == (200, 4)


async def test_service_send_without_input() -> None:
    async with serving() as (_made, _rt, client):
        response = await client.post("/Greeter/nothing/send")
        assert response.status_code == 202
        invocation_id = response.json()["invocationId"]
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert (attached.status_code, attached.content) == (200, b"")


async def test_output_of_a_running_invocation_is_470_then_the_result() -> None:
    async with serving() as (made, _rt, client):
        response = await client.post("/Greeter/block/send")
        invocation_id = response.json()["invocationId"]
        await made.greeter.started.wait()
        running = await client.get(f"/restate/invocation/{invocation_id}/output")
        assert error(running)[:2] == (470, 470)
        assert "has not completed" in error(running)[2]
        made.greeter.release.set()
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert attached.json() == "released"
        assert (await client.get(f"/restate/invocation/{invocation_id}/output")).json() == (
            "released"
        )


async def test_delayed_send_runs_after_its_delay(autojump_clock: trio.testing.MockClock) -> None:
    async with serving() as (_made, _rt, client):
        start = trio.current_time()
        response = await client.post("/Counter/dora/add/send?delay=10s", json=1)
        assert response.status_code == 202
        invocation_id = response.json()["invocationId"]
        await trio.testing.wait_all_tasks_blocked()
        early = await client.get(f"/restate/invocation/{invocation_id}/output")
        assert early.status_code == 470
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert attached.json() == 1
        assert trio.current_time() - start >= 10
        response = await client.post("/Counter/dora/add/send?delay=PT1M30S", json=1)
        await client.get(f"/restate/invocation/{response.json()['invocationId']}/attach")
        assert trio.current_time() - start >= 100


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("500ms", 0.5),
        ("1m", 60),
        ("1h", 3600),
        ("1d", 86400),
        ("1m 30s", 90),
        ("1m30s", 90),
        ("2 minutes", 120),
        ("1.5s", 1.5),
        ("PT1S", 1),
        ("PT1M30S", 90),
        ("pt0.25s", 0.25),
        ("P1DT2H", 93600),
        ("P1W", 604800),
    ],
)
def test_parse_delay_accepts_units_and_iso_8601(text: str, seconds: float) -> None:
    assert parse_delay(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "-10", "PT", "P", "ten seconds", "5 fortnights", "-1s", "P1Y"]
)
def test_parse_delay_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"^delay "):
        parse_delay(text)


# --- workflows: the seed page's flow -------------------------------------------------------


async def test_seed_page_signup_flow() -> None:
    """Submit (``/run/send``), query the stage, approve with the mailed secret, attach:
    the seed page's ``requests`` snippet, plus a resubmission."""
    async with serving() as (made, _rt, client):
        payload = {"email": "user@user.com", "name": "Pete"}
        headers = {"Content-Type": "application/json"}
        url = "/signupWorkflow/myUser123/run/send"
        response = await client.post(url, json=payload, headers=headers)
        assert response.status_code == 202
        submitted = response.json()
        assert submitted["status"] == "Accepted"

        await made.mailer.sent.wait()
        stage = await client.post("/signupWorkflow/myUser123/getStage")
        assert stage.json() == "Email verification"
        output = await client.get("/restate/workflow/signupWorkflow/myUser123/output")
        assert output.status_code == 470

        # A second submission (with an idempotency key, which main ignores) is the same run.
        again = await client.post(url, json=payload, headers={"idempotency-key": "k"})
        assert again.status_code == 202
        assert again.json() == {
            "invocationId": submitted["invocationId"],
            "status": "PreviouslyAccepted",
        }

        secret = made.mailer.secrets["user@user.com"]
        approved = await client.post("/signupWorkflow/myUser123/approveEmail", json=secret)
        assert (approved.status_code, approved.content) == (200, b"")  # None

        attached = await client.get("/restate/workflow/signupWorkflow/myUser123/attach")
        assert (attached.status_code, attached.json()) == (200, True)
        assert (await client.post("/signupWorkflow/myUser123/getStage")).json() == (
            "Email verified"
        )
        output = await client.get("/restate/workflow/signupWorkflow/myUser123/output")
        assert (output.status_code, output.json()) == (200, True)
        by_id = await client.get(f"/restate/invocation/{submitted['invocationId']}/attach")
        assert by_id.json() is True
        # Calling main again answers the first run's result without running it.
        assert (await client.post("/signupWorkflow/myUser123/run", json=payload)).json() is True
        assert made.signup.runs == 1


async def test_workflow_main_failure_reaches_attach_with_its_code() -> None:
    async with serving() as (made, _rt, client):
        payload = {"email": "eve@example.com", "name": "Eve"}
        await client.post("/signupWorkflow/eve/run/send", json=payload)
        await made.mailer.sent.wait()
        await client.post("/signupWorkflow/eve/approveEmail", json="guessed")
        attached = await client.get("/restate/workflow/signupWorkflow/eve/attach")
        assert error(attached) == (500, 500, "Wrong secret from email link")


# --- idempotency keys ----------------------------------------------------------------------


async def test_idempotency_key_maps_to_one_invocation_also_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    headers = {"idempotency-key": "order-1"}
    async with serving(path=path) as (made, _rt, client):
        first = await client.post("/Greeter/greet/send", json="ada", headers=headers)
        assert first.status_code == 202
        assert first.json()["status"] == "Accepted"
        invocation_id = first.json()["invocationId"]
        second = await client.post("/Greeter/greet/send", json="ada", headers=headers)
        assert second.json() == {"invocationId": invocation_id, "status": "PreviouslyAccepted"}
        called = await client.post("/Greeter/greet", json="ada", headers=headers)
        assert called.json() == "hello ada"
        assert made.greeter.greeted == ["ada"]
        other = await client.post("/Greeter/greet", json="bob", headers=headers)
        status, code, message = error(other)
        assert (status, code) == (409, 409)
        assert "was already used for a different request" in message
    async with serving(path=path) as (made, _rt, client):
        again = await client.post("/Greeter/greet/send", json="ada", headers=headers)
        assert again.json() == {"invocationId": invocation_id, "status": "PreviouslyAccepted"}
        assert (await client.post("/Greeter/greet", json="ada", headers=headers)).json() == (
            "hello ada"
        )
        assert made.greeter.greeted == []  # answered from the stored result
        other = await client.post("/Greeter/greet/send", json="bob", headers=headers)
        assert other.status_code == 409


async def test_idempotency_key_on_an_object_call_runs_it_once() -> None:
    async with serving() as (_made, _rt, client):
        headers = {"idempotency-key": "add-once"}
        for _ in range(3):
            response = await client.post("/Counter/erin/add", json=10, headers=headers)
            assert response.json() == 10
        assert (await client.post("/Counter/erin/value")).json() == 10
        # The same key on another target is another request.
        response = await client.post("/Counter/frank/add", json=10, headers=headers)
        assert response.status_code == 409


# --- awakeables ----------------------------------------------------------------------------


async def test_awakeable_resolve_and_reject() -> None:
    async with serving() as (made, _rt, client):
        sent = await client.post("/Counter/gina/wait_for/send")
        await made.counter.awakeable_made.wait()
        awakeable_id = made.counter.awakeable_ids["gina"]
        resolved = await client.post(f"/restate/awakeables/{awakeable_id}/resolve", json="hi")
        assert (resolved.status_code, resolved.content) == (202, b"")
        invocation_id = sent.json()["invocationId"]
        assert (await client.get(f"/restate/invocation/{invocation_id}/attach")).json() == "hi"
        twice = await client.post(f"/restate/awakeables/{awakeable_id}/resolve", json="again")
        assert error(twice)[:2] == (409, 409)

        made.counter.awakeable_made = anyio.Event()
        sent = await client.post("/Counter/hank/wait_for/send")
        await made.counter.awakeable_made.wait()
        awakeable_id = made.counter.awakeable_ids["hank"]
        rejected = await client.post(
            f"/restate/awakeables/{awakeable_id}/reject", content="card declined"
        )
        assert rejected.status_code == 202
        attached = await client.get(f"/restate/invocation/{sent.json()['invocationId']}/attach")
        assert error(attached) == (500, 500, "card declined")


async def test_awakeable_errors() -> None:
    async with serving() as (_made, _rt, client):
        malformed = await client.post("/restate/awakeables/nonsense/resolve", json=1)
        assert error(malformed)[:2] == (400, 400)
        unknown = await client.post(f"/restate/awakeables/{awakeable_of('inv_nope', 1)}/reject")
        assert error(unknown)[:2] == (404, 404)
        assert "no awakeable" in error(unknown)[2]
        bad_json = await client.post("/restate/awakeables/nonsense/resolve", content=b"{")
        status, _, message = error(bad_json)
        assert status == 400
        assert "not valid JSON" in message
        not_text = await client.post("/restate/awakeables/nonsense/reject", content=b"\xff")
        assert error(not_text)[:2] == (400, 400)
        wrong_method = await client.get("/restate/awakeables/nonsense/resolve")
        assert error(wrong_method)[:2] == (405, 405)
        assert wrong_method.headers["allow"] == "POST"


async def test_awakeable_never_created_is_404() -> None:
    async with serving() as (made, _rt, client):
        await client.post("/Counter/ivan/wait_for/send")
        await made.counter.awakeable_made.wait()
        real = made.counter.awakeable_ids["ivan"]
        body = real.removeprefix("awk_")
        owner = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().rpartition("/")[0]
        # The invocation exists, but it created no awakeable at that journal index.
        response = await client.post(
            f"/restate/awakeables/{awakeable_of(owner, 99)}/resolve", json="x"
        )
        assert error(response)[:2] == (404, 404)


# --- admin paths ---------------------------------------------------------------------------


async def test_cancel_then_attach_is_409_and_cancelling_again_is_409() -> None:
    async with serving() as (made, _rt, client):
        sent = await client.post("/Counter/jack/wait_for/send")
        invocation_id = sent.json()["invocationId"]
        await made.counter.awakeable_made.wait()
        cancelled = await client.patch(f"/restate/invocation/{invocation_id}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json() == {"invocationId": invocation_id, "status": "CancelRequested"}
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert error(attached)[:2] == (409, 409)
        again = await client.patch(f"/restate/invocation/{invocation_id}/cancel")
        assert error(again)[:2] == (409, 409)


async def test_kill_ends_an_invocation() -> None:
    async with serving() as (made, _rt, client):
        sent = await client.post("/Counter/kate/wait_for/send")
        invocation_id = sent.json()["invocationId"]
        await made.counter.awakeable_made.wait()
        killed = await client.patch(f"/restate/invocation/{invocation_id}/kill")
        assert (killed.status_code, killed.json()) == (
            200,
            {"invocationId": invocation_id, "status": "Killed"},
        )
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert error(attached)[:2] == (409, 409)
        again = await client.patch(f"/restate/invocation/{invocation_id}/kill")
        assert error(again)[:2] == (409, 409)


async def test_resume_a_paused_invocation_and_409_when_not_paused() -> None:
    async with serving() as (_made, rt, client):
        sent = await client.post("/Counter/lost/broken/send")
        invocation_id = sent.json()["invocationId"]
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().paused == 1
        resumed = await client.patch(f"/restate/invocation/{invocation_id}/resume")
        assert (resumed.status_code, resumed.json()) == (
            200,
            {"invocationId": invocation_id, "status": "Resumed"},
        )
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().paused == 1  # still broken: paused again
        output = await client.get(f"/restate/invocation/{invocation_id}/output")
        assert output.status_code == 470

        done = await client.post("/Counter/fixed/broken", content=b"")
        assert done.json() == "ok"
        not_paused = await client.post("/Counter/fixed/broken/send")
        finished_id = not_paused.json()["invocationId"]
        await client.get(f"/restate/invocation/{finished_id}/attach")
        conflict = await client.patch(f"/restate/invocation/{finished_id}/resume")
        status, code, message = error(conflict)
        assert (status, code) == (409, 409)
        assert "is not paused" in message


async def test_admin_paths_on_unknown_invocations_are_404() -> None:
    async with serving() as (_made, _rt, client):
        for action in ("cancel", "kill", "resume"):
            response = await client.patch(f"/restate/invocation/inv_nope/{action}")
            assert error(response)[:2] == (404, 404), action
        for action in ("attach", "output"):
            response = await client.get(f"/restate/invocation/inv_nope/{action}")
            assert error(response)[:2] == (404, 404), action
