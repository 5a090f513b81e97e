"""The actors and helpers the cancel and kill tests share (test_cancel_kill.py,
test_kill.py): a ``Probe`` of what handlers did outside the journal, a trip workflow
whose saga books and compensates, objects that nap, delegate and queue work."""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.lowlevel

import actors

LONG = timedelta(days=30)
# For tests that skip months of virtual time: no expiry meanwhile, and few idle sweeps.
YEAR = timedelta(days=365)
IDLE = timedelta(days=10).total_seconds()


class Probe:
    """What handlers did, outside the journal: step bodies that ran (``effects``),
    Python-level ``finally`` blocks, invocation ids, and arrival events."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.finally_ran: list[str] = []
        self.ids: dict[str, str] = {}
        self.awakeables: dict[str, str] = {}
        self.caught: list[tuple[int, str]] = []
        self._events: dict[str, anyio.Event] = {}

    def event(self, name: str) -> anyio.Event:
        return self._events.setdefault(name, anyio.Event())

    def reset(self, name: str) -> None:
        self._events.pop(name, None)

    def arrive(self, name: str) -> None:
        self.event(name).set()

    async def arrived(self, name: str) -> None:
        await self.event(name).wait()

    async def effect(self, name: str) -> str:
        self.effects.append(name)
        return name


async def _long_wait(ctx: actors.Context, kind: str) -> None:
    """Wait on something that does not happen by itself."""
    if kind == "sleep":
        await ctx.sleep(LONG)
    elif kind == "awakeable":
        _, fut = ctx.awakeable(str)
        await fut
    elif kind == "promise":
        assert isinstance(ctx, actors.WorkflowSharedContext)
        await ctx.promise("confirm", str).value()
    elif kind == "select":
        _, fut = ctx.awakeable(str)
        await actors.select(nap=ctx.sleep(LONG), signal=fut)
    elif kind == "gather":
        _, fut = ctx.awakeable(str)
        await actors.gather(ctx.sleep(LONG), fut)
    else:  # pragma: no cover
        raise AssertionError(kind)


async def _saga(probe: Probe, ctx: actors.Context, plan: str) -> str:
    """Book a flight and a hotel, then wait; on a TerminalError undo the bookings in
    reverse order with durable steps, then re-raise / absorb / convert it."""
    kind, mode = plan.split()
    booked: list[str] = []
    try:
        for item in ("flight", "hotel"):
            await ctx.run(f"book {item}", probe.effect, f"book {item}")
            booked.append(item)
        probe.arrive("waiting")
        await _long_wait(ctx, kind)
        return "confirmed"
    except actors.TerminalError as exc:
        probe.caught.append((exc.status_code, exc.message))
        for item in reversed(booked):
            await ctx.run(f"cancel {item}", probe.effect, f"cancel {item}")
        if mode == "absorb":
            return "rolled back"
        if mode == "convert":
            raise actors.TerminalError("trip rolled back", 422) from exc
        raise


class Trip(actors.Workflow, name="trip"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, plan: str) -> str:
        self.probe.ids["trip"] = ctx.invocation_id
        return await _saga(self.probe, ctx, plan)

    @actors.shared
    async def confirm(self, ctx: actors.WorkflowSharedContext, answer: str) -> None:
        await ctx.promise("confirm", str).resolve(answer)


class Booking(actors.VirtualObject, name="booking"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def book(self, ctx: actors.ObjectContext, plan: str) -> str:
        self.probe.ids["booking"] = ctx.invocation_id
        return await _saga(self.probe, ctx, plan)


SAGA = ["book flight", "book hotel", "cancel hotel", "cancel flight"]
BOOKED = ["book flight", "book hotel"]


def _assert_cancelled(exc: actors.TerminalError) -> None:
    assert exc.status_code == 409
    assert "cancel" in exc.message


class Napper(actors.VirtualObject, name="napper"):
    """An exclusive handler that sleeps for a month, compensating if cancelled."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def nap(self, ctx: actors.ObjectContext) -> str:
        self.probe.ids[f"nap {ctx.key}"] = ctx.invocation_id
        try:
            self.probe.arrive(f"nap {ctx.key}")
            await ctx.sleep(LONG)
            return "rested"
        except actors.TerminalError:
            await ctx.run(f"wake {ctx.key}", self.probe.effect, f"wake {ctx.key}")
            raise
        finally:
            self.probe.finally_ran.append(f"nap {ctx.key}")

    @actors.exclusive
    async def ping(self, ctx: actors.ObjectContext) -> str:
        return f"pong {ctx.key}"


async def _delegate(probe: Probe, ctx: actors.Context, keys: str) -> str:
    calls = [ctx.call(Napper.nap, key=key) for key in keys.split()]
    try:
        if len(calls) == 1:
            return await calls[0]
        return " ".join(await actors.gather(*calls))
    except actors.TerminalError as exc:
        probe.caught.append((exc.status_code, exc.message))
        await ctx.run("boss compensates", probe.effect, "boss compensates")
        raise


class Boss(actors.VirtualObject, name="boss"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def delegate(self, ctx: actors.ObjectContext, keys: str) -> str:
        return await _delegate(self.probe, ctx, keys)


class BossFlow(actors.Workflow, name="bossFlow"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, keys: str) -> str:
        return await _delegate(self.probe, ctx, keys)


class Watcher(actors.VirtualObject, name="watcher"):
    """Calls a napper and reports how the call ended."""

    @actors.exclusive
    async def watch(self, ctx: actors.ObjectContext, key: str) -> str:
        try:
            return await ctx.call(Napper.nap, key=key)
        except actors.TerminalError as exc:
            return f"{exc.status_code}"


class Desk(actors.VirtualObject, name="desk"):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def hold(self, ctx: actors.ObjectContext) -> str:
        """Hold the key until an awakeable is resolved."""
        self.probe.ids["hold"] = ctx.invocation_id
        try:
            awk_id, fut = ctx.awakeable(str)
            self.probe.awakeables["hold"] = awk_id
            self.probe.arrive("hold")
            return await fut
        except actors.TerminalError:
            await ctx.run("compensate hold", self.probe.effect, "compensate hold")
            raise
        finally:
            self.probe.finally_ran.append("hold")

    @actors.exclusive
    async def work(self, ctx: actors.ObjectContext, tag: str) -> str:
        self.probe.effects.append(f"work {tag}")
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + 1)
        return f"worked {tag}"

    @actors.shared
    async def count(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


async def _park(rt: actors.Runtime) -> None:
    await anyio.sleep(10)  # past suspend_after: the waiting workflow is parked
    assert rt.statistics().parked == 1
    assert rt.statistics().in_flight == 0
