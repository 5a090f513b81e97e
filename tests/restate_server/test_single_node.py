"""The actors of ``restate_app`` on one real Restate server, driven through its ingress
and admin API, with exact expected answers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .harness import eventually

if TYPE_CHECKING:
    from .conftest import Single


def _ok(response: Any) -> Any:
    assert response.is_success, f"{response.status_code} {response.text}"
    return response.json() if response.content else None


def _send(single: Single, path: str, body: object = None, **kw: Any) -> str:
    sent = _ok(single.ingress.post(f"{path}/send", json=body, **kw))
    assert sent["status"] in ("Accepted", "PreviouslyAccepted"), sent
    invocation_id: str = sent["invocationId"]
    return invocation_id


def _attach(single: Single, invocation_id: str) -> Any:
    return single.ingress.get(f"/restate/invocation/{invocation_id}/attach")


def test_state_calls_and_types(single: Single) -> None:
    assert _ok(single.ingress.post("/Counter/alice/add", json=5)) == 5
    assert _ok(single.ingress.post("/Counter/alice/add", json=2)) == 7
    assert _ok(single.ingress.post("/Counter/alice/value")) == 7
    assert _ok(single.ingress.post("/Counter/bob/value")) == 0
    assert _ok(single.ingress.post("/Counter/alice/reset")) == ["n"]
    assert _ok(single.ingress.post("/Counter/alice/value")) == 0
    # a dataclass in and out, through our converter
    greeting = _ok(single.ingress.post("/Greeter/greet", json={"name": "ada", "age": 36}))
    assert greeting == {"text": "hello ada", "user": {"name": "ada", "age": 37}}


def test_bad_input_is_a_400_and_not_retried(single: Single) -> None:
    response = single.ingress.post("/Greeter/greet", json={"name": 5, "age": 1})
    assert response.status_code == 400, response.text
    assert "input of Greeter.greet" in response.text
    response = single.ingress.post("/Greeter/greet", json={"name": "x", "age": 1, "extra": 1})
    assert response.status_code == 400, response.text


def test_calls_between_actors_and_gather(single: Single) -> None:
    assert _ok(single.ingress.post("/Orchestrator/calls", json="c1")) == [5, 15, 100, 15]
    assert _ok(single.ingress.post("/Counter/c1-b/value")) == 100
    assert _ok(single.ingress.post("/Orchestrator/failing_call", json="f1")) == [
        "refused by f1",
        422,
    ]
    response = single.ingress.post("/Counter/f2/fail", json=418)
    assert response.status_code == 418, response.text
    assert "refused by f2" in response.text


def test_parity_features_of_issue_13(single: Single) -> None:
    answer = _ok(single.ingress.post("/Orchestrator/parity", json="p1", headers={"x-test": "yes"}))
    assert answer == {
        "header": "yes",
        "idempotent": [1, 1],
        "generic": "11",
        "sent": ["Accepted", 11],
        "attached": 11,
        "cancelled": 409,
        "echoed": "p1",
        "metadata": {"key": "p1"},
        "completed": ["2", "None"],
        "rejected": 451,
    }
    assert _ok(single.ingress.post("/Counter/p1/value")) == 11


def test_signal_between_invocations(single: Single) -> None:
    waiting = _send(single, "/Orchestrator/wait_signal", "sig1")
    invocation_id = eventually(
        lambda: _ok(single.ingress.post("/Box/sig1/get")), 30, "the waiting invocation's id"
    )
    assert invocation_id == waiting
    assert _ok(single.ingress.post("/Orchestrator/give_signal", json=invocation_id)) is None
    assert _ok(_attach(single, waiting)) == "signalled"


def test_self_call_deadlock_is_refused(single: Single) -> None:
    assert _ok(single.ingress.post("/Counter/dl/add_twice", json=1)) == -409
    assert _ok(single.ingress.post("/Counter/dl/value")) == 0


def test_steps_select_wait_completed_random_time(single: Single) -> None:
    assert _ok(single.ingress.post("/Orchestrator/steps", json=21)) == [21, 42]
    assert _ok(single.ingress.post("/Orchestrator/race")) == ["nap", None, 1, 1, 42]
    same, number, uuid_text, now = _ok(single.ingress.post("/Greeter/draws"))
    assert same is True
    assert isinstance(number, int)
    assert len(uuid_text) == 36
    assert abs(now - time.time()) < 60
    # ctx.run(..., blocking=False) runs on the endpoint's loop, as embedded.
    assert _ok(single.ingress.post("/Greeter/threads")) == [True, True]


def test_sleep_and_delayed_send(single: Single) -> None:
    slept = _ok(single.ingress.post("/Orchestrator/nap", json=1.0))
    assert 1.0 <= slept < 30
    sent_at = _ok(single.ingress.post("/Orchestrator/later", json="d1"))
    assert _ok(single.ingress.post("/Counter/d1/value")) == 0  # not before its delay
    eventually(
        lambda: True if _ok(single.ingress.post("/Counter/d1/value")) == 1 else None,
        30,
        "the delayed send",
    )
    assert time.time() - sent_at >= 1.5
    assert _ok(single.ingress.post("/Counter/d1/value")) == 1


def test_idempotency_key(single: Single) -> None:
    headers = {"idempotency-key": "k-1"}
    assert _ok(single.ingress.post("/Counter/idem/add", json=5, headers=headers)) == 5
    assert _ok(single.ingress.post("/Counter/idem/add", json=5, headers=headers)) == 5
    assert _ok(single.ingress.post("/Counter/idem/value")) == 5
    first = _ok(
        single.ingress.post("/Counter/idem/add/send", json=1, headers={"idempotency-key": "k-2"})
    )
    again = _ok(
        single.ingress.post("/Counter/idem/add/send", json=1, headers={"idempotency-key": "k-2"})
    )
    assert again["invocationId"] == first["invocationId"]
    assert again["status"] == "PreviouslyAccepted"
    assert _ok(_attach(single, first["invocationId"])) == 6


def test_workflow_runs_once_with_promise_and_attach(single: Single) -> None:
    user = {"name": "ada", "age": 36}
    first = _ok(single.ingress.post("/Signup/w1/run/send", json=user))
    assert first["status"] == "Accepted"
    again = _ok(single.ingress.post("/Signup/w1/run/send", json=user))
    assert again == {"invocationId": first["invocationId"], "status": "PreviouslyAccepted"}
    eventually(
        lambda: True if _ok(single.ingress.post("/Signup/w1/stage")) == "created" else None,
        30,
        "stage 'created'",
    )
    assert _ok(single.ingress.post("/Signup/w1/peek")) is None
    assert _ok(single.ingress.post("/Signup/w1/approve", json="s3cret")) is None
    assert _ok(single.ingress.get("/restate/workflow/Signup/w1/attach")) == "ada:s3cret"
    assert _ok(_attach(single, first["invocationId"])) == "ada:s3cret"
    assert _ok(single.ingress.post("/Signup/w1/peek")) == "s3cret"
    assert _ok(single.ingress.post("/Signup/w1/stage")) == "confirmed"
    # resolving twice fails and keeps the value
    response = single.ingress.post("/Signup/w1/approve", json="other")
    assert not response.is_success
    assert _ok(single.ingress.post("/Signup/w1/peek")) == "s3cret"
    assert single.effects_of("w1") == ["create", "welcome"]


def test_awakeable_resolved_over_the_ingress(single: Single) -> None:
    invocation_id = _send(single, "/Orchestrator/awaken", "box1")
    awakeable_id = eventually(
        lambda: _ok(single.ingress.post("/Box/box1/get")), 30, "the awakeable id"
    )
    resolved = single.ingress.post(
        f"/restate/awakeables/{awakeable_id}/resolve", json={"name": "grace", "age": 85}
    )
    assert resolved.is_success, resolved.text
    assert _ok(_attach(single, invocation_id)) == {
        "text": "woken by grace",
        "user": {"name": "grace", "age": 85},
    }


def _admin_invocation(single: Single, invocation_id: str, action: str) -> None:
    response = single.admin.patch(f"/invocations/{invocation_id}/{action}")
    assert response.is_success, f"{action}: {response.status_code} {response.text}"


def test_cancel_runs_compensation(single: Single) -> None:
    invocation_id = _send(single, "/Trip/t-cancel/run")
    # cancel once the reservation is journaled (before, the cancel may fail the step
    # itself, and nothing was reserved that needs compensating)
    eventually(lambda: _ok(single.ingress.post("/Trip/t-cancel/stage")), 30, "the reservation")
    _admin_invocation(single, invocation_id, "cancel")
    response = _attach(single, invocation_id)
    assert response.status_code == 409, response.text
    assert single.effects_of("t-cancel") == ["reserve", "compensate 409"]


def test_kill_ends_without_compensation(single: Single) -> None:
    invocation_id = _send(single, "/Trip/t-kill/run")
    # cancel once the reservation is journaled (before, the cancel may fail the step
    # itself, and nothing was reserved that needs compensating)
    eventually(lambda: _ok(single.ingress.post("/Trip/t-kill/stage")), 30, "the reservation")
    _admin_invocation(single, invocation_id, "kill")
    response = _attach(single, invocation_id)
    assert not response.is_success, response.text
    assert single.effects_of("t-kill") == ["reserve"]
