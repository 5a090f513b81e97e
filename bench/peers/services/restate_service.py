"""The workloads as a Restate Python SDK deployment (served by hypercorn in the Restate
network namespace). Runs in bench/.peers/restate, not in .venv: excluded from mypy/ruff.

Same logic as bench/peers/va_embedded.py: Counter.add (exclusive: get + set),
Counter.value (shared read), Steps.run (a workflow of 10 durable ctx.run steps).
"""

import restate
from restate import RunOptions

STEPS = 10

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    n = (await ctx.get("n", type_hint=int)) or 0
    n += delta
    ctx.set("n", n)
    return n


@counter.handler(kind="shared")
async def value(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("n", type_hint=int)) or 0


steps = restate.Workflow("Steps")


async def step_fn(i: int) -> int:
    return i


@steps.main()
async def run(ctx: restate.WorkflowContext, start: int) -> int:
    total = start
    for i in range(STEPS):
        total += await ctx.run_typed(f"step{i}", step_fn, RunOptions(), i)
    return total


app = restate.app([counter, steps])
