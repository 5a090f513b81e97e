# The seed page's Python snippet, unchanged but for its line breaks (lost on the page),
# with what it needs around it: the imports, `User` and the two side-effect functions.
# It is Restate SDK code: it imports `restate`. Run it on the embedded runtime with
# `actors serve --restate signup:signup_workflow` or `actors.restate.install()` first
# (examples/07_restate_signup.py does both); with restate-sdk alone it is a Restate
# deployment as it stands.
import threading
import uuid

from pydantic import BaseModel
from restate import Workflow, WorkflowContext, WorkflowSharedContext
from restate.exceptions import TerminalError


class User(BaseModel):
    name: str
    email: str


MAILED: dict[str, str] = {}  # email -> the secret in the link: the "user" reads their mail
MAIL_SENT = threading.Event()


def create_user_entry(user: User) -> None:
    # One write per line (text and newline together): this runs on a step thread while
    # the example's own thread prints too.
    print(f"  created user entry for {user.name}\n", end="", flush=True)


def send_email_with_link(email: str, secret: str) -> None:
    print(
        f"  mail to {email}: click https://example.com/verify?secret={secret}\n", end="", flush=True
    )
    MAILED[email] = secret
    MAIL_SENT.set()


# --- the seed page's snippet -------------------------------------------------------------

signup_workflow = Workflow("signupWorkflow")


@signup_workflow.main()
async def run(ctx: WorkflowContext, user: User) -> bool:
    ctx.set("stage", "Creating user")
    await ctx.run("create user", lambda: create_user_entry(user))

    ctx.set("stage", "Email verification")
    secret = await ctx.run("generate secret", lambda: str(uuid.uuid4()))
    await ctx.run("send email", lambda: send_email_with_link(user.email, secret))

    click_secret = await ctx.promise("email_link_clicked").value()
    if click_secret != secret:
        ctx.set("stage", "Email verification failed")
        raise TerminalError("Wrong secret from email link")

    ctx.set("stage", "Email verified")
    return True


@signup_workflow.handler("getStage")
async def get_stage(ctx: WorkflowSharedContext) -> str:
    return await ctx.get("stage") or "unknown"


@signup_workflow.handler("approveEmail")
async def approve_email(ctx: WorkflowSharedContext, secret: str):
    await ctx.promise("email_link_clicked").resolve(secret)
