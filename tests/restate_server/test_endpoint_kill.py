"""SIGKILL of the endpoint process in the middle of a workflow: a restarted endpoint
finishes it, and every step's side effect happened once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .harness import eventually

if TYPE_CHECKING:
    from .conftest import Single


def test_endpoint_sigkill_mid_workflow(single: Single) -> None:
    key = "killed-1"
    sent = single.ingress.post(f"/Steps/{key}/run/send")
    assert sent.is_success, sent.text
    # step0 is journaled and step1's body is running (blocked on the release file)
    eventually(
        lambda: True if single.effects_of(key) == ["step0", "step1 started"] else None,
        30,
        "step1 running",
    )
    single.endpoint.kill()  # SIGKILL: no cleanup, the step's thread dies with it
    assert single.endpoint.proc is not None
    assert single.endpoint.proc.returncode == -9
    single.endpoint.start()  # same port: the registered deployment
    (single.effects / f"{key}.release").touch()
    attached = single.ingress.get(f"/restate/workflow/Steps/{key}/attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == ["step0", "step1", "step2"]
    effects = single.effects_of(key)
    # step0 finished before the kill: replayed, not run again. step1 had not finished:
    # its body ran again (it started twice) and completed once; step2 ran once.
    assert effects.count("step0") == 1
    assert effects.count("step1") == 1
    assert effects.count("step2") == 1
    assert effects.count("step1 started") == 2
    assert effects[-2:] == ["step1", "step2"]
