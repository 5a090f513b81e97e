"""One Restate program, exactly as it would be deployed on a Restate server: it imports
``restate``. ``test_same_program.py`` runs it embedded (``actors.restate.install()``
first, in a subprocess) and checks that the real SDK accepts it unchanged (its
``restate.app`` and its handler discovery), so the two never drift apart."""

from __future__ import annotations

from datetime import timedelta

import restate
from pydantic import BaseModel
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    Service,
    VirtualObject,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
)
from restate.exceptions import TerminalError


class Item(BaseModel):
    sku: str
    price: int


pricing = Service("pricing", inactivity_timeout=timedelta(minutes=5))


@pricing.handler()
async def quote(ctx: Context, item: Item) -> int:
    discount = await ctx.run("discount", lambda: 10 if item.price > 100 else 0)
    return item.price - discount


cart = VirtualObject("cart")


@cart.handler()
async def add_item(ctx: ObjectContext, item: Item) -> int:
    price = await ctx.service_call(quote, arg=item)
    items = await ctx.get("items", type_hint=list[str]) or []
    total = await ctx.get("total", type_hint=int) or 0
    ctx.set("items", [*items, item.sku])
    ctx.set("total", total + price)
    return total + price


@cart.handler(kind="shared")
async def total(ctx: ObjectSharedContext) -> int:
    return await ctx.get("total", type_hint=int) or 0


checkout = Workflow("checkout")


@checkout.main()
async def run(ctx: WorkflowContext, cart_id: str) -> str:
    amount = await ctx.object_call(total, key=cart_id, arg=None)
    if amount == 0:
        raise TerminalError("empty cart", status_code=400)
    ctx.set("amount", amount)
    confirmation = await ctx.promise("confirmed", type_hint=str).value()
    return f"{cart_id} paid {amount} ({confirmation})"


@checkout.handler()
async def confirm(ctx: WorkflowSharedContext, note: str) -> None:
    await ctx.promise("confirmed", type_hint=str).resolve(note)


@checkout.handler()
async def amount(ctx: WorkflowSharedContext) -> int | None:
    return await ctx.get("amount", type_hint=int)


SERVICES: list[Service | VirtualObject | Workflow] = [pricing, cart, checkout]
app = restate.app(SERVICES)
