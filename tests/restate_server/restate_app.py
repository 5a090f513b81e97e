"""The actors the Restate-server tests serve through ``actors endpoint``: plain
virtual-actors classes, written as for the embedded runtime.

Side effects that must happen once (a workflow's steps, compensations) append a line
to a file under ``$ACTORS_RESTATE_EFFECTS`` (one file per key), so a test reads what
ran, and how often, from outside every process.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import anyio

import actors


@dataclasses.dataclass
class User:
    name: str
    age: int


@dataclasses.dataclass
class Greeting:
    text: str
    user: User


def effects_file(key: str) -> Path:
    return Path(os.environ["ACTORS_RESTATE_EFFECTS"]) / f"{key}.log"


def record(key: str, what: str) -> str:
    with effects_file(key).open("a") as out:
        out.write(what + "\n")
        out.flush()
        os.fsync(out.fileno())
    return what


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.exclusive
    async def reset(self, ctx: actors.ObjectContext) -> list[str]:
        keys = await ctx.state_keys()
        ctx.clear_all()
        return keys

    @actors.exclusive
    async def add_twice(self, ctx: actors.ObjectContext, delta: int) -> int:
        """Calls its own key's exclusive handler: a deadlock, refused at the call."""
        try:
            await ctx.call(Counter.add, delta, key=ctx.key)
        except actors.DeadlockError as exc:
            return -exc.status_code
        return 0

    @actors.exclusive
    async def fail(self, ctx: actors.ObjectContext, code: int) -> int:
        raise actors.TerminalError(f"refused by {ctx.key}", code, {"key": ctx.key})


class Ledger(actors.VirtualObject):
    """Appends each entry it is given: an entry applied twice would show twice."""

    @actors.exclusive
    async def append(self, ctx: actors.ObjectContext, entry: int) -> int:
        items = (await ctx.get("items", list[int])) or []
        items.append(entry)
        ctx.set("items", items)
        return len(items)

    @actors.shared
    async def items(self, ctx: actors.ObjectSharedContext) -> list[int]:
        return (await ctx.get("items", list[int])) or []


class Box(actors.VirtualObject):
    """Holds one string per key: where a handler leaves an awakeable id for the test."""

    @actors.exclusive
    async def put(self, ctx: actors.ObjectContext, value: str) -> None:
        ctx.set("value", value)

    @actors.shared
    async def get(self, ctx: actors.ObjectSharedContext) -> str | None:
        return await ctx.get("value", str)


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, user: User) -> Greeting:
        return Greeting(f"hello {user.name}", User(user.name, user.age + 1))

    @actors.handler
    async def draws(self, ctx: actors.Context) -> list[object]:
        drawn = [ctx.random().randint(0, 10**9), str(ctx.uuid())]
        echoed = await ctx.run("echo", lambda: drawn)
        return [drawn == echoed, *drawn, await ctx.time()]

    @actors.handler
    async def threads(self, ctx: actors.Context) -> list[bool]:
        """Whether a ``blocking=False`` step ran on the loop's thread, and a plain one
        off it."""
        loop = threading.get_ident()
        on_loop = await ctx.run("on loop", lambda: threading.get_ident(), blocking=False)
        off_loop = await ctx.run("off loop", lambda: threading.get_ident())
        return [on_loop == loop, off_loop != loop]


async def _slow(value: int) -> int:
    await anyio.sleep(0.3)
    return value


def _double(value: int) -> int:
    return value * 2


class Orchestrator(actors.Service):
    @actors.handler
    async def calls(self, ctx: actors.Context, key: str) -> list[int]:
        first = await ctx.call(Counter.add, 5, key=key)
        both = await actors.gather(
            ctx.call(Counter.add, 10, key=key), ctx.call(Counter.add, 100, key=key + "-b")
        )
        value = await ctx.call(Counter.value, key=key)
        return [first, *both, value]

    @actors.handler
    async def failing_call(self, ctx: actors.Context, key: str) -> list[object]:
        try:
            await ctx.call(Counter.fail, 422, key=key)
        except actors.TerminalError as exc:
            return [exc.message, exc.status_code]
        return ["no error"]

    @actors.handler
    async def steps(self, ctx: actors.Context, n: int) -> list[int]:
        return await actors.gather(ctx.run("slow", _slow, n), ctx.run("double", _double, n))

    @actors.handler
    async def race(self, ctx: actors.Context) -> list[object]:
        _, never = ctx.awakeable(str)
        name, value = await actors.select(never=never, nap=ctx.sleep(0.2))
        done, pending = await actors.wait_completed(never, ctx.run("now", _double, 21))
        return [name, value, len(done), len(pending), await done[0]]

    @actors.handler
    async def parity(self, ctx: actors.Context, key: str) -> dict[str, object]:
        """Issue 13's context features: request headers, idempotency keys and headers on
        calls, generic calls, failure metadata, as_completed, rejection codes."""
        request = ctx.request()
        first = await ctx.call(Counter.add, 1, key=key, idempotency_key=f"{key}-once")
        again = await ctx.call(Counter.add, 1, key=key, idempotency_key=f"{key}-once")
        raw = await ctx.generic_call("Counter", "add", b"10", key=key)
        handle = await ctx.send(Counter.add, 0, key=key)
        sent = [handle.status, await handle.result()]
        call = ctx.call(Counter.add, 0, key=key)
        await call
        attached = await ctx.attach_invocation(call.invocation_id, type=int)
        trip = ctx.send(Trip.run, key=f"{key}-trip")  # not awaited: sent all the same
        await trip  # now its id is known
        await trip.cancel()
        try:
            await trip.result()
            cancelled = 0
        except actors.TerminalError as exc:
            cancelled = exc.status_code
        echoed = await ctx.call(Echo.headers, headers={"x-trace": key})
        try:
            await ctx.call(Counter.fail, 409, key=key)
            metadata: object = None
        except actors.TerminalError as exc:
            metadata = dict(exc.metadata)
        order = []
        async for future in actors.as_completed(ctx.run("a", _double, 1), ctx.sleep(0.05)):
            order.append(await future)
        awakeable_id, rejected = ctx.awakeable(str)
        await ctx.reject_awakeable(awakeable_id, "no thanks", code=451)
        try:
            await rejected
            code = 0
        except actors.TerminalError as exc:
            code = exc.status_code
        return {
            "header": request.headers.get("x-test"),
            "idempotent": [first, again],
            "generic": raw.decode(),
            "sent": sent,
            "attached": attached,
            "cancelled": cancelled,
            "echoed": echoed,
            "metadata": metadata,
            "completed": sorted(map(repr, order)),
            "rejected": code,
        }

    @actors.handler
    async def wait_signal(self, ctx: actors.Context, box: str) -> str:
        await ctx.send(Box.put, ctx.invocation_id, key=box)
        return await ctx.signal("go", str)

    @actors.handler
    async def give_signal(self, ctx: actors.Context, invocation_id: str) -> None:
        await ctx.resolve_signal(invocation_id, "go", "signalled")

    @actors.handler
    async def later(self, ctx: actors.Context, key: str) -> float:
        await ctx.send(Counter.add, 1, key=key, delay=1.5)
        return await ctx.time()

    @actors.handler
    async def nap(self, ctx: actors.Context, seconds: float) -> float:
        start = await ctx.time()
        await ctx.sleep(seconds)
        return await ctx.time() - start

    @actors.handler
    async def awaken(self, ctx: actors.Context, box: str) -> Greeting:
        awakeable_id, future = ctx.awakeable(User)
        await ctx.send(Box.put, awakeable_id, key=box)
        user = await future
        return Greeting(f"woken by {user.name}", user)


class Echo(actors.Service):
    @actors.handler
    async def headers(self, ctx: actors.Context) -> str | None:
        return ctx.request().headers.get("x-trace")


class Signup(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, user: User) -> str:
        ctx.set("stage", "created")
        await ctx.run("create", record, ctx.key, "create")
        clicked = await ctx.promise("clicked", str).value()
        ctx.set("stage", "confirmed")
        await ctx.run("welcome", record, ctx.key, "welcome")
        return f"{user.name}:{clicked}"

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, secret: str) -> None:
        await ctx.promise("clicked", str).resolve(secret)

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.promise("clicked", str).peek()

    @actors.shared
    async def stage(self, ctx: actors.WorkflowSharedContext) -> str:
        return (await ctx.get("stage", str)) or "unknown"


class Trip(actors.Workflow):
    """Reserves, then waits a long time; a cancel compensates, a kill does not."""

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        await ctx.run("reserve", record, ctx.key, "reserve")
        ctx.set("stage", "reserved")  # visible once the reservation is journaled
        try:
            await ctx.sleep(3600)
        except actors.TerminalError as exc:
            await ctx.run("compensate", record, ctx.key, f"compensate {exc.status_code}")
            raise
        return "slept"

    @actors.shared
    async def stage(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("stage", str)


def _blocking_step(key: str) -> str:
    """The middle step: records that it started, then waits (on a worker thread) until
    the test creates ``<key>.release``, so the endpoint can be killed inside it."""
    record(key, "step1 started")
    release = effects_file(key).with_suffix(".release")
    deadline = time.monotonic() + 60
    while not release.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("never released")
        time.sleep(0.05)
    return record(key, "step1")


class Steps(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> list[str]:
        done = [await ctx.run("step0", record, ctx.key, "step0")]
        done.append(await ctx.run("step1", _blocking_step, ctx.key))
        done.append(await ctx.run("step2", record, ctx.key, "step2"))
        return done


ACTORS = [Counter, Ledger, Box, Greeter, Echo, Orchestrator, Signup, Trip, Steps]
