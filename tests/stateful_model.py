"""The model of ``tests/actors/test_stateful.py`` (whose docstring says what it checks):
the actors a program runs, its operations, and ``Model``, which knows only what the API
answered and checks each answer as it arrives and at the end."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio
import trio.lowlevel
import trio.testing

import actors

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.testing import CrashPlan


KEYS = ("a", "b", "c")
FLOWS = ("w0", "w1")
#: The sleep of the increment behind each idempotency key: one key, one request.
IDEM_SLEEP = (0.0, 1.0)
FLOW_SLEEP = 3.0
#: Mock seconds: what the settling life allows beyond the sum of every sleep and delay
#: submitted (the most that serial work on one key can add up to) for all the
#: invocations it knows of to complete, and the time it then lets pass for the rest.
MARGIN = 120.0
SETTLE = 1_000.0
RETENTION = timedelta(days=30)  # no idempotency key or workflow id expires in a program


# --- the actors ------------------------------------------------------------------------------


@attrs.frozen
class Incr:
    tag: str
    sleep: float


@attrs.frozen
class Snapshot:
    """``n``, the log, ``n`` again: each ``ctx.get`` of a shared handler reads the state
    committed at that moment (there is no snapshot across reads), so ``before <=
    len(log) <= after``, with equality when no commit came in between."""

    before: int
    log: tuple[str, ...]
    after: int


class Probe:
    """Step bodies that ran: (life, tag), in order."""

    def __init__(self) -> None:
        self.life = 0
        self.effects: list[tuple[int, str]] = []

    async def effect(self, tag: str) -> None:
        self.effects.append((self.life, tag))


class Counter(actors.VirtualObject):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.exclusive
    async def incr(self, ctx: actors.ObjectContext, arg: Incr) -> int:
        n = (await ctx.get("n", int)) or 0
        log = (await ctx.get("log", list[str])) or []
        await ctx.run("step", self.probe.effect, arg.tag)
        if arg.sleep:
            await ctx.sleep(arg.sleep)
        # No durable await after the writes: they commit with the result, so a reader
        # sees both or neither, and a cancelled or killed increment writes nothing.
        ctx.set("n", n + 1)
        ctx.set("log", [*log, arg.tag])
        return n + 1

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> Snapshot:
        before = (await ctx.get("n", int)) or 0
        log = (await ctx.get("log", list[str])) or []
        after = (await ctx.get("n", int)) or 0
        return Snapshot(before, tuple(log), after)


class Flow(actors.Workflow):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        assert ctx.key is not None
        await ctx.run("step", self.probe.effect, ctx.key)
        value = await ctx.promise("p", str).value()
        await ctx.sleep(FLOW_SLEEP)
        return value

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, value: str) -> None:
        await ctx.promise("p", str).resolve(value)

    @actors.shared
    async def peek(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.promise("p", str).peek()


# --- the operations ----------------------------------------------------------------------------


@attrs.frozen
class Call:
    key: str
    sleep: float
    ikey: int | None  # with an idempotency key the sleep is IDEM_SLEEP[ikey]


@attrs.frozen
class Send:
    key: str
    sleep: float
    delay: float | None
    ikey: int | None


@attrs.frozen
class Read:
    key: str


@attrs.frozen
class Stop:
    kill: bool
    pick: int  # which of the invocations with a known id (modulo their number)


@attrs.frozen
class Conflict:
    key: str
    ikey: int


@attrs.frozen
class StartFlow:
    wid: str


@attrs.frozen
class Resolve:
    wid: str


@attrs.frozen
class Pause:
    seconds: float


@attrs.frozen
class Restart:
    plan: CrashPlan | None  # for the next life
    gap: float


Op = Call | Send | Read | Stop | Conflict | StartFlow | Resolve | Pause | Restart


# --- the model ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class Tracked:
    """What the test knows of one increment (one tag) or one workflow run."""

    tag: str
    key: str
    kind: Literal["incr", "flow"]
    exact: bool = False  # one submission with known delay and sleep (no idempotency key)
    min_duration: float = 0.0
    ids: set[str] = attrs.Factory(set)
    result: Any = None
    done: bool = False
    error: str | None = None  # the 409 message it ended with
    stops: list[str] = attrs.Factory(list)  # "cancel" / "kill" requested
    killed: bool = False  # a kill returned
    done_at: int | None = None  # len(probe.effects) when its outcome was answered
    offered: set[str] = attrs.Factory(set)  # flow: values a resolution was tried with
    resolved: str | None = None  # flow: the value whose resolution succeeded

    @property
    def known_accepted(self) -> bool:
        return bool(self.ids) or self.done or self.error is not None


class Model:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.tracked: dict[str, Tracked] = {}
        self.submitted: dict[str, set[str]] = {key: set() for key in KEYS}
        self.longest: dict[str, tuple[str, ...]] = {key: () for key in KEYS}
        self.floor: dict[str, int] = dict.fromkeys(KEYS, 0)
        self.violations: list[AssertionError] = []
        self.serial = 0
        self.busy = 0.0  # every sleep and delay submitted, in seconds
        self.fault = 0  # test_the_oracle_fails_on_an_injected_fault sets it
        #: Checks of answers a crash may make meaningless, run when the life ends.
        self.deferred: list[Callable[[bool], None]] = []

    # --- submissions ---

    def incr(self, key: str, ikey: int | None, sleep: float, delay: float | None) -> Tracked:
        self.busy += sleep + (delay or 0.0)
        if ikey is None:
            self.serial += 1
            tag = f"{key}{self.serial}"
            t = Tracked(tag, key, "incr", exact=True, min_duration=(delay or 0.0) + sleep)
            self.tracked[tag] = t
        else:
            tag = f"{key}~{ikey}"
            t = self.tracked.setdefault(tag, Tracked(tag, key, "incr"))
        self.submitted[key].add(tag)
        return t

    def flow(self, wid: str) -> Tracked:
        self.busy += FLOW_SLEEP
        return self.tracked.setdefault(wid, Tracked(wid, wid, "flow"))

    def accepted(self, t: Tracked, invocation_id: str, status: str, known_before: bool) -> None:
        """A send answered; ``known_before``: an acceptance of the same request was known
        when it was made."""
        if t.exact:
            assert status == "Accepted", (t.tag, status)
        if known_before:
            assert status == "PreviouslyAccepted", f"{t.tag}: accepted again as {status}"
        assert t.ids <= {invocation_id}, f"{t.tag}: one request, two invocations {t.ids}"
        t.ids.add(invocation_id)

    # --- outcomes ---

    def completed(self, t: Tracked, value: Any, started: float | None = None) -> None:
        assert t.error is None, f"{t.tag} failed ({t.error}) and then returned {value!r}"
        assert not t.killed, f"{t.tag}: a kill returned, yet it returned {value!r}"
        if t.done:
            assert value == t.result, f"{t.tag} returned {t.result!r}, then {value!r}"
            return
        if t.kind == "incr":
            assert isinstance(value, int), (t.tag, value)
            assert value >= 1, (t.tag, value)
            value += self.fault
            twins = [
                o.tag
                for o in self.tracked.values()
                if o.key == t.key and o.kind == "incr" and o.done and o.result == value
            ]
            assert not twins, f"lost update: {t.tag} and {twins} both returned {value}"
            longest = self.longest[t.key]
            if len(longest) >= value:
                assert longest[value - 1] == t.tag, f"{t.tag} returned {value}; a read: {longest}"
            self.floor[t.key] = max(self.floor[t.key], value)
            if t.exact and started is not None:
                elapsed = trio.current_time() - started
                assert elapsed >= t.min_duration - 1e-6, f"{t.tag} ended early: {elapsed}"
        else:
            assert value in t.offered, f"{t.tag} returned {value!r}; tried: {t.offered}"
            if t.resolved is not None:
                assert value == t.resolved, f"{t.tag} returned {value!r}, not {t.resolved!r}"
        t.done, t.result = True, value
        t.done_at = len(self.probe.effects)

    def failed(self, t: Tracked, exc: actors.TerminalError) -> None:
        # Allowed: a 409 naming a stop that was asked for. (A cancellation may also come
        # too late to be seen, after the last durable await: then it returns; see completed.)
        message = exc.message
        named = ("was killed" in message and "kill" in t.stops) or (
            "was cancelled" in message and "cancel" in t.stops
        )
        assert exc.status_code == 409, f"{t.tag} failed with {exc!r}"
        assert named, f"{t.tag} failed with {exc!r}; stops asked for: {t.stops}"
        assert not t.done, f"{t.tag} returned {t.result!r}, then failed with {message!r}"
        if t.error is not None:
            assert message == t.error, f"{t.tag} failed with {t.error!r}, then {message!r}"
        t.error = message
        t.done_at = len(self.probe.effects)

    def stop_returned(self, t: Tracked, kind: str) -> None:
        if kind == "kill":
            # A kill returns once the killed outcome is durable; in a life that crashed it
            # may return when its commit failed. So this counts when the life ends whole.
            self.deferred.append(functools.partial(self._killed, t))

    def _killed(self, t: Tracked, crashed: bool) -> None:
        if not crashed:
            assert not t.done, f"a kill of {t.tag} returned; it returned {t.result!r}"
            t.killed = True

    def stop_refused(self, t: Tracked, exc: actors.TerminalError) -> None:
        # Allowed: 409 "already completed" (the stop came after its outcome; the outcome
        # stays whatever it was; the final life checks that it has one), and in a life
        # that crashed, 409 "not running in this runtime" (a dead runtime dropped it).
        assert exc.status_code == 409, (t.tag, exc)
        if "not running in this runtime" in exc.message:
            self.deferred.append(functools.partial(self._not_running, t, exc))
        else:
            assert "already completed" in exc.message, (t.tag, exc)

    def _not_running(self, t: Tracked, exc: actors.TerminalError, crashed: bool) -> None:
        assert crashed, f"stopping {t.tag} in a live runtime: {exc!r}"

    def life_ended(self, crashed: bool) -> None:
        deferred, self.deferred = self.deferred, []
        for check in deferred:
            check(crashed)

    # --- promises ---

    def resolved(self, t: Tracked, value: str) -> None:
        assert t.resolved is None, f"{t.tag}: resolved with {t.resolved!r} and {value!r}"
        if t.done:
            assert t.result == value, f"{t.tag} returned {t.result!r}; {value!r} resolved it"
        t.resolved = value

    def resolve_refused(self, t: Tracked, value: str, exc: actors.TerminalError) -> None:
        # Allowed: 409 "already completed" while another resolution was tried (it may be
        # one whose answer was lost with its life).
        assert exc.status_code == 409, (t.tag, exc)
        assert "already completed" in exc.message, (t.tag, exc)
        assert t.offered - {value}, f"{t.tag}: {value!r} refused, yet nothing else was tried"

    # --- reads ---

    def read(self, key: str, floor: int, snap: Snapshot) -> None:
        log = snap.log
        assert snap.before <= len(log) <= snap.after, f"partial write on {key}: {snap}"
        assert len(set(log)) == len(log), f"an increment counted twice on {key}: {log}"
        unknown = set(log) - self.submitted[key]
        assert not unknown, f"{key}: {unknown} were never submitted: {log}"
        assert snap.after <= len(self.submitted[key]), f"{key}: {snap} > increments started"
        assert snap.before >= floor, f"{key}: read {snap}, yet {floor} were committed before"
        longest = self.longest[key]
        short, long = sorted((log, longest), key=len)
        assert long[: len(short)] == short, f"{key}: two histories {log} and {longest}"
        if len(log) > len(longest):
            self.longest[key] = log
        self.floor[key] = max(self.floor[key], snap.after)
        for t in self.tracked.values():
            if t.key != key:
                continue
            if t.done and t.result <= len(log):
                assert log[t.result - 1] == t.tag, f"{t.tag} returned {t.result}; log {log}"
            if t.error is not None:
                assert t.tag not in log, f"{t.tag} failed ({t.error}) but wrote: {log}"

    # --- the end ---

    def check_final(self, logs: dict[str, tuple[str, ...]]) -> None:
        for t in self.tracked.values():
            if t.known_accepted:
                assert t.done or t.error is not None, f"{t.tag} was accepted, never completed"
            if t.killed:
                assert t.error is not None, f"a kill of {t.tag} returned; it did not end killed"
            if t.kind == "incr" and t.done:
                log = logs[t.key]
                assert len(log) >= t.result, f"{t.tag} returned {t.result}; final log {log}"
        seen: set[tuple[int, str]] = set()
        for index, effect in enumerate(self.probe.effects):
            assert effect not in seen, f"a step body ran twice in one life: {effect}"
            seen.add(effect)
            t = self.tracked[effect[1]]
            assert t.done_at is None or index < t.done_at, (
                f"{t.tag}'s step ran after its outcome was answered ({t.result!r} {t.error!r})"
            )
