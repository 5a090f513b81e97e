"""Checked by mypy, never run (pytest does not collect this file: no test_ prefix).

Each ``# type: ignore[code]`` marks an error the type checker must report;
``warn_unused_ignores`` fails the check if one of them disappears. Together they prove
that a shared handler's context has no writing methods, while an exclusive one's has.
"""

from __future__ import annotations

import actors


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)  # allowed: exclusive handlers write state
        ctx.clear("other")
        ctx.clear_all()
        return n + delta

    @actors.shared
    async def sneaky(self, ctx: actors.ObjectSharedContext, value: int) -> int:
        ctx.set("n", value)  # type: ignore[attr-defined]
        ctx.clear("n")  # type: ignore[attr-defined]
        ctx.clear_all()  # type: ignore[attr-defined]
        return value


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        stored = await ctx.get("name", str)  # type: ignore[attr-defined]
        return f"{ctx.key} {name} {stored}"  # type: ignore[attr-defined]


async def results_are_typed(rt: actors.Runtime) -> None:
    n: int = await rt.call(Counter.add, 5, key="alice")
    wrong: str = await rt.call(Counter.add, 5, key="alice")  # type: ignore[arg-type]
    del n, wrong


def contexts_have_no_public_constructor() -> None:
    actors.ObjectContext()  # type: ignore[call-arg]
