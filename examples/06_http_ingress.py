"""The signup workflow over HTTP, as the seed page's ``requests`` client drives it.

The runtime serves Restate's ingress paths on 127.0.0.1 (a free port); the client half of
the script speaks plain HTTP with the standard library, exactly like the seed page's
snippet: submit the workflow with ``POST /signupWorkflow/{id}/run/send``, ask for its
stage, approve the email through the shared handler, then attach with
``GET /restate/workflow/signupWorkflow/{id}/attach``. Any language's HTTP client, or a
Restate SDK client, could do the same.

Shows: ``rt.serve_http`` in a task group, ``/send`` answering 202 Accepted and then
PreviouslyAccepted, the ``/output`` lookup answering 470 while the workflow runs, a 400
for a malformed body, and the attach.

Run: python examples/06_http_ingress.py [DATA_DIR]
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import trio

import actors


def say(line: str) -> None:
    """Print ``line`` in one write: the server's steps print from its step threads, and
    ``print`` writes the text and its newline separately, so two lines could mix."""
    sys.stdout.write(f"{line}\n")


@dataclass(frozen=True)
class User:
    name: str
    email: str


class Signup(actors.Workflow, name="signupWorkflow"):
    def __init__(self) -> None:
        self.mailed: dict[str, str] = {}  # email -> secret, so the "user" can click
        self.mail_sent = trio.Event()

    def send_link(self, email: str, secret: str) -> None:
        say(f"  [server] mail to {email}: https://example.com/verify?secret={secret}")
        self.mailed[email] = secret
        trio.from_thread.run_sync(self.mail_sent.set)

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, user: User) -> bool:
        ctx.set("stage", "Creating user")
        await ctx.run("create user", lambda: say(f"  [server] created user {user.name}"))
        ctx.set("stage", "Email verification")
        secret = await ctx.run("generate secret", lambda: str(uuid.uuid4()), type=str)
        await ctx.run("send email", self.send_link, user.email, secret)
        clicked = await ctx.promise("email_link_clicked", str).value()
        if clicked != secret:
            raise actors.TerminalError("Wrong secret from email link", 400)
        ctx.set("stage", "Email verified")
        return True

    @actors.shared(name="getStage")
    async def get_stage(self, ctx: actors.WorkflowSharedContext) -> str:
        return (await ctx.get("stage", str)) or "unknown"

    @actors.shared(name="approveEmail")
    async def approve_email(self, ctx: actors.WorkflowSharedContext, secret: str) -> None:
        await ctx.promise("email_link_clicked", str).resolve(secret)


def http(method: str, url: str, payload: object = None, *, raw: bytes | None = None) -> object:
    """One request with the standard library (blocking: run it on a thread). Returns
    ``(status, decoded JSON body)``."""
    body = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def request(
    method: str, url: str, payload: object = None, *, raw: bytes | None = None
) -> object:
    answer = await trio.to_thread.run_sync(functools.partial(http, method, url, payload, raw=raw))
    say(f"  [client] {method} {url.split(':', 2)[2].split('/', 1)[1]} -> {answer}")
    return answer


async def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")
    signup = Signup()
    async with actors.open_runtime(data_dir, [signup]) as rt, trio.open_nursery() as nursery:
        port = await nursery.start(rt.serve_http, "127.0.0.1", 0)
        restate = f"http://127.0.0.1:{port}"
        print(f"serving Restate's ingress at {restate}")
        workflow_id = "myUser123"
        payload = {"email": "user@user.com", "name": "Pete"}

        # 1. Submit the workflow (twice: it runs once per id).
        await request("POST", f"{restate}/signupWorkflow/{workflow_id}/run/send", payload)
        await request("POST", f"{restate}/signupWorkflow/{workflow_id}/run/send", payload)
        await request("POST", f"{restate}/signupWorkflow/other/run/send", raw=b'{"name": 1}')

        # 2. While it waits for the click: its stage, and its output (not ready: 470).
        await signup.mail_sent.wait()
        await request("POST", f"{restate}/signupWorkflow/{workflow_id}/getStage")
        await request("GET", f"{restate}/restate/workflow/signupWorkflow/{workflow_id}/output")

        # 3. The user clicks the link in the mail.
        secret = signup.mailed[payload["email"]]
        await request("POST", f"{restate}/signupWorkflow/{workflow_id}/approveEmail", secret)

        # 4. Attach back to the workflow for its result.
        await request("GET", f"{restate}/restate/workflow/signupWorkflow/{workflow_id}/attach")
        await request("POST", f"{restate}/signupWorkflow/{workflow_id}/getStage")
        nursery.cancel_scope.cancel()  # stops the server
    print("server stopped")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp) / "signup")
