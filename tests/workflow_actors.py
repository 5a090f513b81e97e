"""The workflow the workflow tests share (test_workflows.py, test_workflow_promises.py,
test_workflow_retention.py): the seed page's signup, whose main sends an email and waits
for its link to be clicked on a durable promise."""

from __future__ import annotations

import anyio

import actors


class Signup(actors.Workflow, name="signupWorkflow"):
    """main: a counted step, a wait for the "email" promise, another counted step. The
    shared handlers query the stage and complete, peek or wait on the promise."""

    def __init__(self) -> None:
        self.executions = 0  # how often main's body started (a replay counts)
        self.effects: list[str] = []  # ctx.run bodies executed
        self.waiting = anyio.Event()  # set once the "before" step ran

    async def _effect(self, name: str) -> str:
        self.effects.append(name)
        if name == "before":
            self.waiting.set()
        return name

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, user: str) -> str:
        self.executions += 1
        ctx.set("stage", "waiting")
        await ctx.run("before", self._effect, "before")
        email = await ctx.promise("email", str).value()
        ctx.set("stage", "verified")
        await ctx.run("after", self._effect, "after")
        if user == "mallory":
            raise actors.TerminalError(f"{user} is banned", 403)
        return f"{user} <{email}>"

    @actors.shared(name="getStage")
    async def get_stage(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("stage", str)

    @actors.shared
    async def verify(self, ctx: actors.WorkflowSharedContext, email: str) -> None:
        await ctx.promise("email", str).resolve(email)

    @actors.shared
    async def wait_email(self, ctx: actors.WorkflowSharedContext) -> str:
        return await ctx.promise("email", str).value()

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.promise("email", str).peek()
