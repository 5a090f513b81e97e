"""Restate-style services, written as Restate's documentation writes them; only the
import line differs (``actors.restate`` in place of ``restate``, so that this pytest
process keeps the real SDK for the signature comparison; ``shared_program.py`` is the
same style with ``import restate``).

Every handler records what it saw in ``SEEN`` (a test resets it), so tests check what
ran, how often, and with which values.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pydantic

from actors import restate
from actors.restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    RunOptions,
    Service,
    TerminalError,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
)
from actors.restate.exceptions import RetryableError
from actors.restate.serde import BytesSerde, JsonSerde, PydanticJsonSerde

if TYPE_CHECKING:
    import anyio

SEEN: dict[str, list[Any]] = {}


#: Events a test waits on, set by ``notify`` (on the event loop: from handlers and
#: ``async`` steps only).
EVENTS: dict[str, anyio.Event] = {}


def seen(what: str, value: Any = None) -> None:
    SEEN.setdefault(what, []).append(value)


def notify(what: str, value: Any = None) -> None:
    seen(what, value)
    if what in EVENTS:
        EVENTS[what].set()


# --- a virtual object ------------------------------------------------------------------

counter = VirtualObject("counter")


@counter.handler()
async def add(ctx: ObjectContext, delta: int) -> int:
    value = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", value + delta)
    return value + delta


@counter.handler(kind="shared")
async def current(ctx: ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def snapshot(ctx: ObjectContext) -> dict[str, Any]:
    ctx.set("label", f"counter {ctx.key()}")
    count, label = await restate.gather(ctx.get("count"), ctx.get("label"))
    return {"count": await count, "label": await label, "keys": await ctx.state_keys()}


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear("label")
    ctx.clear_all()


@counter.handler()
async def catch_deadlock(ctx: ObjectContext) -> list[Any]:
    try:
        await ctx.object_call(add, key=ctx.key(), arg=1)
    except TerminalError as exc:  # Restate's class: refused at the call
        return [exc.status_code, exc.message.startswith("deadlock")]
    return []


@counter.handler()
async def add_to_self(ctx: ObjectContext, delta: int) -> int:
    # An exclusive call to its own key: a cycle the runtime refuses at once.
    return await ctx.object_call(add, key=ctx.key(), arg=delta)


# --- a stateless service -----------------------------------------------------------------


@dataclass
class Order:
    item: str
    quantity: int


class Receipt(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    order_id: str = pydantic.Field(alias="orderId")
    total: int


greeter = Service("greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    seen("greet", name)
    return f"Hello {name}!"


@greeter.handler()
async def nothing(ctx: Context) -> None:
    seen("nothing")


@greeter.handler()
async def place(ctx: Context, order: Order) -> Receipt:
    async def price() -> int:
        if _on_asyncio():
            await asyncio.sleep(0)  # Restate code awaits asyncio inside steps
        return 3 * order.quantity

    total = await ctx.run_typed("price", price, RunOptions(max_attempts=3))
    order_id = str(ctx.uuid())
    seen("place", (order.item, total))
    return Receipt(orderId=order_id, total=total)


@greeter.handler(input_serde=BytesSerde(), output_serde=BytesSerde())
async def echo_bytes(ctx: Context, data: bytes) -> bytes:
    return data[::-1]


@greeter.handler(output_serde=PydanticJsonSerde(Receipt))
async def receipt(ctx: Context, total: int) -> Receipt:
    return Receipt(orderId="r-1", total=total)


@greeter.handler()
async def typed_step(ctx: Context) -> str:
    # The step's result decodes by its (string, under __future__) return annotation.
    def make() -> Receipt:
        return Receipt(orderId="s-1", total=1)

    receipt = await ctx.run("make", make)
    return type(receipt).__name__


@greeter.handler()
async def details(ctx: Context) -> dict[str, Any]:
    request = ctx.request()
    now = await ctx.time()
    return {
        "id": request.id,
        "headers": request.headers,
        "body": request.body.decode(),
        "random": ctx.random().random(),
        "uuid": str(ctx.uuid()),
        "time_is_float": isinstance(now, float),
        "attempt_done": request.attempt_finished_event.is_set(),
    }


@greeter.handler()
async def fail(ctx: Context, code: int) -> None:
    raise TerminalError("refused", status_code=code, metadata={"reason": "test"})


@greeter.handler()
async def flaky(ctx: Context, failures: int) -> int:
    attempt = ctx.request().id
    seen("flaky", attempt)
    if len(SEEN["flaky"]) <= failures:
        raise RetryableError("not yet", retry_after=timedelta(milliseconds=1))
    return len(SEEN["flaky"])


@greeter.handler()
async def step_gives_up(ctx: Context) -> str:
    def always_fails() -> None:
        seen("attempt")
        raise ValueError("boom")

    try:
        await ctx.run("doomed", always_fails, max_attempts=2)
    except TerminalError as exc:
        return f"gave up: {exc.status_code}"
    return "unreachable"


# --- an orchestrating service: calls, sends, awakeables, combinators -------------------------

orchestrator = Service("orchestrator")


@orchestrator.handler()
async def fan_out(ctx: Context, names: list[str]) -> list[str]:
    calls = [ctx.service_call(greet, arg=name) for name in names]
    ctx.object_send(add, key="fan", arg=len(names))
    done = await restate.gather(*calls)
    return [await call for call in done]


@orchestrator.handler()
async def call_ids(ctx: Context) -> bool:
    call = ctx.object_call(add, key="ids", arg=1)
    handle = ctx.object_send(add, key="ids", arg=10)
    call_id, send_id = await call.invocation_id(), await handle.invocation_id()
    await call
    return call_id.startswith("inv_") and send_id.startswith("inv_") and call_id != send_id


@orchestrator.handler()
async def wait_for_approval(ctx: Context, timeout_s: float) -> list[Any]:
    awakeable_id, approval = ctx.awakeable(type_hint=str)

    async def publish() -> None:
        notify("awakeable", awakeable_id)

    await ctx.run("publish", publish)
    match await restate.select(approval=approval, timeout=ctx.sleep(timedelta(seconds=timeout_s))):
        case ["approval", value]:
            return ["approved", value]
        case ["timeout", _]:
            return ["timed out", None]
    return ["unreachable", None]


@orchestrator.handler()
async def approve(ctx: Context, awakeable_id: str) -> None:
    ctx.resolve_awakeable(awakeable_id, "yes")


@orchestrator.handler()
async def refuse(ctx: Context, awakeable_id: str) -> None:
    ctx.reject_awakeable(awakeable_id, "no", 403)


@orchestrator.handler()
async def generic(ctx: Context) -> str:
    raw = await ctx.generic_call("greeter", "greet", b'"generic"')
    ctx.generic_send("counter", "add", b"5", key="generic")
    return raw.decode()


@orchestrator.handler()
async def later(ctx: Context) -> None:
    ctx.object_send(add, key="later", arg=7, send_delay=timedelta(hours=1))


@orchestrator.handler()
async def first_done(ctx: Context) -> list[str]:
    async def quick() -> str:
        return "fast"

    slow = ctx.sleep(timedelta(seconds=10))
    fast = ctx.run("fast", quick)
    order = []
    async for future in restate.as_completed(slow, fast):
        order.append("fast" if future is fast else "slow")
    done, pending = await restate.wait_completed(ctx.sleep(timedelta(seconds=1)))
    return [*order, f"{len(done)}/{len(pending)}"]


@orchestrator.handler()
async def catch_callee(ctx: Context) -> list[Any]:
    try:
        await ctx.service_call(fail, arg=418)
    except TerminalError as exc:
        return [exc.message, exc.status_code, exc.metadata]
    return []


@orchestrator.handler()
async def attach_to(ctx: Context, invocation_id: str) -> int:
    return await ctx.attach_invocation(invocation_id, type_hint=int)


@orchestrator.handler()
async def cancel(ctx: Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


@orchestrator.handler()
async def wait_signal(ctx: Context) -> str:
    return await ctx.signal("go", type_hint=str)


@orchestrator.handler()
async def send_signal(ctx: Context, target: list[str]) -> None:
    ctx.resolve_signal(target[0], "go", target[1])


# --- a workflow --------------------------------------------------------------------------

payment = Workflow("payment")


@payment.main()
async def pay(ctx: WorkflowContext, amount: int) -> str:
    ctx.set("status", "waiting")

    def charge() -> int:
        seen("charge", amount)
        return amount

    charged = await ctx.run("charge", charge)
    ctx.set("status", "charged")  # shared handlers see it once the charge is durable too
    try:
        verdict: str = await ctx.promise("verdict", serde=JsonSerde[str]()).value()
    except TerminalError as exc:
        ctx.set("status", "rejected")
        raise TerminalError(f"payment rejected: {exc.message}", 402) from exc
    ctx.set("status", verdict)
    return f"{verdict} {charged}"


@payment.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("status")


@payment.handler()
async def decide(ctx: WorkflowSharedContext, verdict: str) -> str | None:
    promise = ctx.promise("verdict", serde=JsonSerde[str]())
    before = await promise.peek()
    if verdict == "reject":
        await promise.reject("declined by test")
    else:
        await promise.resolve(verdict)
    return before


def _on_asyncio() -> bool:
    import sniffio

    return sniffio.current_async_library() == "asyncio"


APP = restate.app([counter, greeter, orchestrator, payment])
