"""The actors and helpers the ingress tests share: a greeter service, a counter object,
the seed page's signup workflow (with a mailer that records what it sent), and an
in-process ``httpx`` client of a test runtime's ingress (``serving``)."""

from __future__ import annotations

import base64
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpx

import actors
from actors._ingress import IngressApp
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from actors._definitions import Actor
    from actors._runtime import Runtime


@dataclass(frozen=True)
class User:
    name: str
    email: str


class Greeter(actors.Service):
    def __init__(self) -> None:
        self.greeted: list[str] = []
        self.started = anyio.Event()
        self.release = anyio.Event()

    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        self.greeted.append(name)
        return f"hello {name}"

    @actors.handler
    async def nothing(self, ctx: actors.Context) -> None:
        return None

    @actors.handler
    async def maybe(self, ctx: actors.Context, value: int | None) -> int | None:
        return None if value is None else value + 1

    @actors.handler
    async def register(self, ctx: actors.Context, user: User) -> User:
        return User(user.name.upper(), user.email)

    @actors.handler
    async def fail(self, ctx: actors.Context, code: int) -> str:
        raise actors.TerminalError("no such luck", code)

    @actors.handler
    async def fail_default(self, ctx: actors.Context) -> str:
        raise actors.TerminalError("plain failure")

    @actors.handler
    async def echo(self, ctx: actors.Context, value: object) -> object:
        return value

    @actors.handler
    async def block(self, ctx: actors.Context) -> str:
        self.started.set()
        await self.release.wait()
        return "released"


class Counter(actors.VirtualObject):
    def __init__(self) -> None:
        self.awakeable_ids: dict[str, str] = {}
        self.awakeable_made = anyio.Event()

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.exclusive
    async def wait_for(self, ctx: actors.ObjectContext) -> str:
        awakeable_id, future = ctx.awakeable(str)
        self.awakeable_ids[ctx.key] = awakeable_id
        self.awakeable_made.set()
        return await future

    @actors.exclusive(retry=actors.RetryPolicy(max_attempts=1))
    async def broken(self, ctx: actors.ObjectContext) -> str:
        if ctx.key != "fixed":
            raise RuntimeError("broken until fixed")
        return "ok"


class Mailer:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.sent = anyio.Event()

    async def send_link(self, email: str, secret: str) -> None:
        # async: a plain function would run on a worker thread, where the event can't be set
        self.secrets[email] = secret
        self.sent.set()


class Signup(actors.Workflow, name="signupWorkflow"):
    """The seed page's signup workflow."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self.runs = 0

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, user: User) -> bool:
        self.runs += 1
        ctx.set("stage", "Creating user")
        await ctx.run("create user", lambda: None)
        ctx.set("stage", "Email verification")
        secret = str(ctx.uuid())
        await ctx.run("send email", self.mailer.send_link, user.email, secret)
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


@dataclass
class Actors:
    greeter: Greeter
    counter: Counter
    mailer: Mailer
    signup: Signup

    def all(self) -> Sequence[Actor]:
        return [self.greeter, self.counter, self.signup]


def make_actors() -> Actors:
    mailer = Mailer()
    return Actors(Greeter(), Counter(), mailer, Signup(mailer))


@asynccontextmanager
async def open_client(
    runtime: Runtime, *, token: str | None = None, max_body: int = 1 << 20
) -> AsyncIterator[httpx.AsyncClient]:
    app = IngressApp(runtime, token=token, max_body=max_body)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
        yield client


@asynccontextmanager
async def serving(
    *, path: Path | None = None, token: str | None = None, max_body: int = 1 << 20
) -> AsyncIterator[tuple[Actors, Runtime, httpx.AsyncClient]]:
    """A test runtime with the test actors and an in-process client of its ingress."""
    made = make_actors()
    async with (
        open_test_runtime(made.all(), path=path) as rt,
        open_client(rt, token=token, max_body=max_body) as client,
    ):
        yield made, rt, client


def error(response: httpx.Response) -> tuple[int, int, str]:
    """(HTTP status, body code, body message) of an error answer. Its source is checked
    too: an invocation's own failure says so (header and body), any other error is the
    ingress's (header only); tests/actors/test_ingress_wire.py has the details."""
    body = response.json()
    source = response.headers["x-restate-error-source"]
    assert source in ("ingress", "invocation")
    if source == "invocation":
        assert body.pop("source") == "invocation"
    assert set(body) == {"code", "message"}
    return response.status_code, body["code"], body["message"]


def awakeable_of(invocation_id: str, index: int) -> str:
    """A well-formed awakeable id (the runtime's format) for tests of unknown ones."""
    raw = f"{invocation_id}/{index}".encode()
    return "awk_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
