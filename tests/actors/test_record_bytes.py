"""``Invocation.record_bytes`` (the acceptance's and the completion's record, written
without making an ``InvocationRecord``) writes exactly ``dumps(Invocation.record(...))``,
for the invocations a runtime makes: calls between actors, sends with idempotency keys,
workflows and their promises, failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import actors
from actors._invocation import Invocation
from actors.storage import InvocationStatus, dumps
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Wf(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, n: int) -> str:
        doubled = await ctx.call(Doubler.double, n)
        return f"{doubled}:{await ctx.promise('p', str).value()}"

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
        await ctx.promise("p", str).resolve(value)


class Doubler(actors.Service):
    @actors.handler
    async def double(self, ctx: actors.Context, n: int) -> int:
        return 2 * n

    @actors.handler
    async def fail(self, ctx: actors.Context) -> None:
        raise actors.TerminalError("no", 409)


async def test_record_bytes_are_the_records_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[InvocationStatus] = []
    original = Invocation.record_bytes

    def checked(self: Invocation, status: InvocationStatus, *args: Any) -> bytes:
        data = original(self, status, *args)
        assert data == dumps(self.record(status, *args))
        written.append(status)
        return data

    monkeypatch.setattr(Invocation, "record_bytes", checked)
    async with open_test_runtime([Wf, Doubler], path=tmp_path) as rt:
        handle = await rt.send(Wf.run, 21, key="w")
        await rt.call(Wf.approve, "yes", key="w")
        assert await handle.result() == "42:yes"
        sent = await rt.send(Doubler.double, 2, idempotency_key="once")
        assert await sent.result() == 4
        failed = await rt.send(Doubler.fail)
        with pytest.raises(actors.TerminalError):
            await failed.result()
    assert InvocationStatus.COMPLETED in written
    assert {InvocationStatus.PENDING, InvocationStatus.RUNNING} & set(written)
