"""The actors Restate's real clients talk to in ``test_restate_clients.py``.

Importable by ``actors serve clients_app:ACTORS`` (run in this folder) as well as by
the tests. Handlers count their runs, so a check can tell "ran once" from "answered
twice" through the HTTP API alone (``Greeter/runs``)."""

from __future__ import annotations

import actors


class Greeter(actors.Service):
    def __init__(self) -> None:
        self.failures = 0  # how often ``fail`` ran: a retried request would run it again
        self.recorded: list[str] = []

    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"

    @actors.handler
    async def nothing(self, ctx: actors.Context) -> None:
        return None

    @actors.handler
    async def record(self, ctx: actors.Context, name: str) -> int:
        """Appends ``name`` and answers how many were recorded: a second run shows."""
        self.recorded.append(name)
        return len(self.recorded)

    @actors.handler
    async def fail(self, ctx: actors.Context, code: int) -> str:
        self.failures += 1
        raise actors.TerminalError(f"no luck ({code})", code)

    @actors.handler
    async def failures_seen(self, ctx: actors.Context) -> int:
        return self.failures


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.exclusive
    async def reset(self, ctx: actors.ObjectContext) -> None:
        ctx.clear("n")

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


class Approval(actors.Workflow):
    """Waits for an awakeable that someone outside completes (resolve or reject).

    The awakeable's id is handed out through a durable promise, so a client asks for it
    with ``awakeableId`` (which waits until it exists) instead of polling."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, request: str) -> str:
        awakeable_id, decision = ctx.awakeable(str)
        await ctx.promise("awakeable", str).resolve(awakeable_id)
        return f"{request}: {await decision}"

    @actors.shared(name="awakeableId")
    async def awakeable_id(self, ctx: actors.WorkflowSharedContext) -> str:
        return await ctx.promise("awakeable", str).value()


ACTORS = [Greeter, Counter, Approval]
