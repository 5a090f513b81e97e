"""A signup workflow: Restate's workflow example, embedded.

The workflow runs once per user id. Its main handler creates the user, generates a
secret, mails a verification link and then waits on a durable promise until the link is
clicked. Shared handlers query the workflow's stage and resolve the promise while main
waits. The script plays both the backend and the user: it submits the workflow, queries
its stage, "clicks" the link (approveEmail with the mailed secret) and attaches to the
workflow for its result.

Shows: ``rt.send`` on a workflow main (a second submission answers
``PreviouslyAccepted``), ``ctx.run`` steps, ``ctx.promise(...).value()``, shared
handlers reading committed state, ``rt.workflow_output`` (``NotReadyError`` while it
runs) and ``rt.attach_workflow``.

Run: python examples/02_signup.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import trio

import actors


@dataclass(frozen=True)
class User:
    name: str
    email: str


class Mailer:
    """A stand-in for an email service: it prints the mail and remembers the link's
    secret, so that the script can "click" it. `sent` is set once a mail went out."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.sent = trio.Event()

    async def send_link(self, email: str, secret: str) -> None:
        print(f"  mail to {email}: click https://example.com/verify?secret={secret}")
        self.secrets[email] = secret
        self.sent.set()


def create_user_entry(user: User) -> None:
    # A plain function runs on a worker thread, so it may block (a database insert).
    print(f"  created user entry for {user.name}")


class Signup(actors.Workflow, name="signupWorkflow"):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, user: User) -> bool:
        # State writes become durable with the next durable step, so getStage (which
        # reads committed state only) sees each stage once the following step starts.
        ctx.set("stage", "Creating user")
        await ctx.run("create user", create_user_entry, user)

        ctx.set("stage", "Email verification")
        # The secret is random, so it is produced by a step: a replay after a crash gets
        # the journaled value instead of a new one (ctx.uuid() would do as well).
        secret = await ctx.run("generate secret", lambda: str(uuid.uuid4()), type=str)
        await ctx.run("send email", self.mailer.send_link, user.email, secret)

        # A durable promise: resolved by approveEmail, possibly long after, possibly
        # after a restart (a waiting main is parked and rebuilt by replay when resolved).
        click_secret = await ctx.promise("email_link_clicked", str).value()
        if click_secret != secret:
            ctx.set("stage", "Email verification failed")
            raise actors.TerminalError("Wrong secret from email link")
        ctx.set("stage", "Email verified")
        return True

    @actors.shared(name="getStage")
    async def get_stage(self, ctx: actors.WorkflowSharedContext) -> str:
        return (await ctx.get("stage", str)) or "unknown"

    @actors.shared(name="approveEmail")
    async def approve_email(self, ctx: actors.WorkflowSharedContext, secret: str) -> None:
        await ctx.promise("email_link_clicked", str).resolve(secret)


async def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")
    mailer = Mailer()
    user = User(name="Pete", email="pete@example.com")
    workflow_id = "pete123"
    async with actors.open_runtime(data_dir, [Signup(mailer)]) as rt:
        # 1. Submit: returns once the submission is durable; the workflow runs on.
        handle = await rt.send(Signup.run, user, key=workflow_id)
        print(f"submitted workflow {workflow_id}: {handle.status}")
        again = await rt.send(Signup.run, user, key=workflow_id)
        same = again.invocation_id == handle.invocation_id
        print(f"submitted again: {again.status} (same invocation: {same})")

        # 2. While main waits on the promise, query it.
        await mailer.sent.wait()
        print("stage:", await rt.call(Signup.get_stage, key=workflow_id))
        try:
            await rt.workflow_output(Signup, workflow_id)
        except actors.NotReadyError as exc:
            print(f"output not ready yet ({exc.status_code})")

        # 3. The user clicks the link: the shared handler resolves main's promise.
        secret = mailer.secrets[user.email]
        await rt.call(Signup.approve_email, secret, key=workflow_id)
        print("approved the email with the mailed secret")

        # 4. Latch on to the workflow for its result.
        result = await rt.attach_workflow(Signup, workflow_id)
        print("workflow result:", result)
        print("stage:", await rt.call(Signup.get_stage, key=workflow_id))

    # The workflow's result and state are kept (for `retention`), also across restarts.
    async with actors.open_runtime(data_dir, [Signup(Mailer())]) as rt:
        print("after reopening, output:", await rt.workflow_output(Signup, workflow_id))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp) / "signup")
