"""A mixed crash-recovery workload: many sources of exclusive work on each object key at
once, SIGKILLed at random moments; and the oracle that checks what survived.

Why another workload: ``crash_workload.py`` drives one exclusive handler with sequential
sends from one client, so every key only ever has one kind of work queued, in one
order. Lost updates after a crash need several sources of exclusive work on the same key
at the same time (a delayed send accepted before an immediate one, a send accepted while
a plain call holds the key...), so that recovery can re-deliver a key's work in an order
other than the one it ran in. This workload creates exactly that.

Run as a script (one *life*; the parent kills it and starts it again until it prints
``DONE``)::

    python tests/crash_mixed.py WORKDIR [--jobs N] [--keys K] [--lanes L] [--callers C]
        [--plain-calls P] [--step-seconds S] [--durability process|fsync]

WORKDIR holds ``data/`` (the runtime), ``counter.log`` and ``chain.log`` (the fsync'd
side effects of steps), ``stderr`` and, from the final life, ``summary.json``.

Every counter increment is ``Counter.incr`` (or ``Counter.slow_incr``, which sleeps on a
durable timer between its read and its step): read ``n`` with ``ctx.get``, run a
``ctx.run`` step (a short blocking pause and an fsync'd log line: the window where kills
land), set ``n + 1`` and ``by{n+1} = tag``, return ``n + 1``. Each increment carries a
unique *tag*, so the key's ``by*`` entries say which increment produced each value. The
deterministic plan (``make_plan``) gives every key, over and over, work from:

* ``rt.send`` with an idempotency key (``s*``), and delayed by 0.1..1 s of real time (``d*``);
* ``rt.call`` with an idempotency key (``c*``, durable first);
* ``Relay.fan``, a service that ``ctx.send`` s one increment (``r*s``, sometimes delayed)
  and ``ctx.call`` s another (``r*c``);
* ``Counter.slow_incr`` (``t*``): a durable timer inside an exclusive handler;
* the ``Chain`` workflow (``w*``): chained ``ctx.run`` steps, each returning its input and
  a fresh nonce (``StepOut``) and checking, when replayed, that the journaled input is
  the current output of the step before; a durable ``ctx.sleep``; ``ctx.call`` of an
  increment (``w*a``); a wait on a durable promise resolved by ``Chain.approve`` (a
  shared handler) that ``Relay.approve`` calls from another actor (``a*``); another
  increment (``w*b``);

while ``--callers`` tasks make ``--plain-calls`` plain ``rt.call`` increments each (no
idempotency key: tag ``p<life>.<caller>.<j>``; such a call dies with its caller, but one
that completed counts). The jobs run in ``--lanes`` concurrent lanes.

Progress lines on stdout (flushed), printed only for progress this life observed:

* ``accepted TAG ID``: a send answered ``Accepted`` (its acceptance is durable);
* ``done TAG KEY VALUE``: an increment completed with VALUE, and TAG was not in the
  key's history when this life started (so every line is new progress, except after a
  lost update, where a completed tag may be missing from the history);
* ``failed TAG MESSAGE``: a job ended with a ``TerminalError`` (always a violation);
* ``DONE``: every job finished, the summary is written, the runtime closed.

The parent side is ``tests/crash_mixed_oracle.py``: it drives the lives, collects the
evidence and checks it (``verify``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script, tests/ comes first on sys.path, and the test folder tests/actors/
    # would shadow the actors package.
    del sys.path[0]

import trio

import actors

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

Durability = Literal["fsync", "process"]

#: The job kinds, in the order the plan cycles through them. Delayed sends come often:
#: they are the source most likely to be admitted out of running order.
KINDS: tuple[str, ...] = (
    "send",
    "delayed",
    "icall",
    "relay",
    "delayed",
    "slow",
    "send",
    "chain",
    "relay",
    "delayed",
    "icall",
)
_PREFIX = {
    "send": "s",
    "delayed": "d",
    "icall": "c",
    "relay": "r",
    "slow": "t",
    "chain": "w",
}
#: Plain-call tags: ``p<life>.<caller>.<j>``.
PLAIN = re.compile(r"p[0-9a-f]+\.\d+\.\d+")


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The workload's size; the plan is a function of it."""

    jobs: int = 60
    keys: int = 3
    lanes: int = 6
    callers: int = 2
    plain_calls: int = 6
    step_seconds: float = 0.004

    def argv(
        self, workdir: str | os.PathLike[str], durability: Durability = "process"
    ) -> list[str]:
        """The command line of one life, run with this interpreter."""
        return [
            sys.executable,
            os.fspath(Path(__file__).resolve()),
            os.fspath(workdir),
            *("--jobs", str(self.jobs), "--keys", str(self.keys), "--lanes", str(self.lanes)),
            *("--callers", str(self.callers), "--plain-calls", str(self.plain_calls)),
            *("--step-seconds", str(self.step_seconds), "--durability", durability),
        ]


def key_names(n_keys: int) -> list[str]:
    return [f"k{i}" for i in range(n_keys)]


@dataclass(frozen=True)
class Job:
    """Job ``index`` of the plan (see the module docstring for the kinds)."""

    index: int
    kind: str
    key: str  #: the counter key of its increments (relay: of the ctx.call)
    other_key: str  #: relay: the key of the ctx.send
    delay: float  #: delayed: the send's delay; relay: the ctx.send's (0: none)
    seconds: float  #: slow: the durable sleep; chain: the workflow's sleep
    steps: int  #: chain: how many chained ctx.run steps

    @property
    def tag(self) -> str:
        """The job's own tag: its idempotency key, or its workflow id."""
        return f"{_PREFIX[self.kind]}{self.index}"

    def increments(self) -> list[tuple[str, str]]:
        """(tag, key) of every counter increment the job makes."""
        if self.kind == "relay":
            return [(f"{self.tag}c", self.key), (f"{self.tag}s", self.other_key)]
        if self.kind == "chain":
            return [(f"{self.tag}a", self.key), (f"{self.tag}b", self.key)]
        return [(self.tag, self.key)]

    @property
    def seed(self) -> str:
        """chain: the input of step 0."""
        return f"seed-{self.tag}"

    @property
    def token(self) -> str:
        """chain: the value ``Relay.approve`` resolves the promise with."""
        return f"go-{self.tag}"


def make_plan(config: Config) -> list[Job]:
    """The deterministic jobs. Keys shift by one every cycle of ``KINDS``, so that over
    ``keys`` cycles every kind of work lands on every key."""
    keys = key_names(config.keys)
    plan: list[Job] = []
    for i in range(config.jobs):
        rng = random.Random(f"job-{i}")  # str seeds are stable across runs
        kind = KINDS[i % len(KINDS)]
        slot = i % len(KINDS) + i // len(KINDS)
        delay = rng.uniform(0.1, 1.0) if kind == "delayed" else 0.0
        if kind == "relay" and rng.random() < 0.5:
            delay = rng.uniform(0.1, 0.6)
        plan.append(
            Job(
                index=i,
                kind=kind,
                key=keys[slot % len(keys)],
                other_key=keys[(slot + 1) % len(keys)],
                delay=round(delay, 3),
                seconds=round(rng.uniform(0.05, 0.4), 3),
                steps=rng.randint(3, 5),
            )
        )
    return plan


# --- the actors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incr:
    tag: str


@dataclass(frozen=True)
class SlowIncr:
    tag: str
    seconds: float


@dataclass(frozen=True)
class HistoryEntry:
    value: int
    tag: str


@dataclass(frozen=True)
class History:
    """A counter key's state: ``n`` and, per value, the tag of the increment that set it."""

    n: int
    entries: list[HistoryEntry]


def _append_fsynced(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


class Counter(actors.VirtualObject):
    """The object every source increments. Its step is slow enough (a pause and an fsync)
    that kills land inside it, between the journaled read and the write."""

    def __init__(self, log_file: str | os.PathLike[str], step_seconds: float = 0.004) -> None:
        self.log_file = Path(log_file)
        self.step_seconds = step_seconds

    def _effect(self, invocation_id: str, tag: str) -> str:
        time.sleep(random.uniform(0, 2 * self.step_seconds))
        nonce = secrets.token_hex(8)
        _append_fsynced(self.log_file, f"{invocation_id} {tag} {nonce}\n")
        return nonce

    async def _increment(self, ctx: actors.ObjectContext, tag: str, n: int) -> int:
        await ctx.run("effect", self._effect, ctx.invocation_id, tag)
        ctx.set("n", n + 1)
        ctx.set(f"by{n + 1}", tag)
        return n + 1

    @actors.exclusive
    async def incr(self, ctx: actors.ObjectContext, arg: Incr) -> int:
        n = (await ctx.get("n", int)) or 0
        return await self._increment(ctx, arg.tag, n)

    @actors.exclusive
    async def slow_incr(self, ctx: actors.ObjectContext, arg: SlowIncr) -> int:
        n = (await ctx.get("n", int)) or 0
        await ctx.sleep(arg.seconds)  # holds the key, with its read journaled
        return await self._increment(ctx, arg.tag, n)

    @actors.shared
    async def history(self, ctx: actors.ObjectSharedContext) -> History:
        n = (await ctx.get("n", int)) or 0
        entries = []
        for name in await ctx.state_keys():
            if name.startswith("by"):
                entries.append(HistoryEntry(int(name[2:]), (await ctx.get(name, str)) or ""))
        return History(n, sorted(entries, key=lambda e: e.value))


@dataclass(frozen=True)
class Fan:
    call_tag: str
    call_key: str
    send_tag: str
    send_key: str
    delay: float


@dataclass(frozen=True)
class Fanned:
    called: int
    sent_id: str


@dataclass(frozen=True)
class Approve:
    workflow_id: str
    token: str


class Relay(actors.Service):
    """Exclusive work on counters that comes from another actor, not from the client."""

    @actors.handler
    async def fan(self, ctx: actors.Context, fan: Fan) -> Fanned:
        sent = await ctx.send(
            Counter.incr, Incr(fan.send_tag), key=fan.send_key, delay=fan.delay or None
        )
        called = await ctx.call(Counter.incr, Incr(fan.call_tag), key=fan.call_key)
        return Fanned(called, sent.invocation_id)

    @actors.handler
    async def approve(self, ctx: actors.Context, approve: Approve) -> None:
        await ctx.call(Chain.approve, approve.token, key=approve.workflow_id)


@dataclass(frozen=True)
class ChainSpec:
    tag: str  #: increments are tagged ``{tag}a`` and ``{tag}b``
    key: str  #: their counter key
    steps: int
    sleep: float
    seed: str
    token: str


@dataclass(frozen=True)
class StepOut:
    """A chain step's result: its input (the previous step's nonce) and its own nonce."""

    k: int
    nonce: str
    prev: str


@dataclass(frozen=True)
class ChainResult:
    steps: list[StepOut]
    token: str
    values: list[int]  #: what the ``a`` and ``b`` increments returned


class Chain(actors.Workflow):
    """Chained steps around a timer, a call and a promise; each step's body logs
    ``WF K NONCE PREV`` (fsync'd), so the oracle sees every execution and its input."""

    def __init__(self, log_file: str | os.PathLike[str]) -> None:
        self.log_file = Path(log_file)

    def _step(self, workflow_id: str, k: int, prev: str) -> StepOut:
        nonce = secrets.token_hex(8)
        _append_fsynced(self.log_file, f"{workflow_id} {k} {nonce} {prev}\n")
        return StepOut(k, nonce, prev)

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, spec: ChainSpec) -> ChainResult:
        prev = spec.seed
        steps: list[StepOut] = []
        values: list[int] = []
        for k in range(spec.steps):
            out = await ctx.run(f"step{k}", self._step, ctx.key, k, prev)
            if out.k != k or out.prev != prev:
                # A journaled step k whose input is not what step k-1 returned in this
                # execution: the journal and the replay disagree.
                raise actors.TerminalError(
                    f"chain broken at step {k}: journaled {out}, step {k - 1} gave {prev}"
                )
            steps.append(out)
            prev = out.nonce
            if k == 0:
                await ctx.sleep(spec.sleep)
            elif k == 1:
                values.append(await ctx.call(Counter.incr, Incr(f"{spec.tag}a"), key=spec.key))
        token = await ctx.promise("go", str).value()
        if token != spec.token:
            raise actors.TerminalError(f"promise resolved with {token!r}, not {spec.token!r}")
        values.append(await ctx.call(Counter.incr, Incr(f"{spec.tag}b"), key=spec.key))
        return ChainResult(steps, token, values)

    @actors.shared
    async def approve(self, ctx: actors.WorkflowSharedContext, token: str) -> None:
        await ctx.promise("go", str).resolve(token)


def chain_spec(job: Job) -> ChainSpec:
    return ChainSpec(job.tag, job.key, job.steps, job.seconds, job.seed, job.token)


def fan_of(job: Job) -> Fan:
    (call_tag, call_key), (send_tag, send_key) = job.increments()
    return Fan(call_tag, call_key, send_tag, send_key, job.delay)


def actor_set(
    workdir: Path, step_seconds: float
) -> list[actors.VirtualObject | actors.Service | actors.Workflow]:
    return [Counter(workdir / "counter.log", step_seconds), Relay(), Chain(workdir / "chain.log")]


# --- one life of the workload (the child) -------------------------------------------------------


class Life:
    """One life: submits every job of the plan (idempotently), makes plain calls, prints
    the progress it observes and, once everything finished, the summary."""

    def __init__(self, rt: actors.Runtime, config: Config, nursery: trio.Nursery) -> None:
        self.rt = rt
        self.config = config
        self.nursery = nursery
        self.keys = key_names(config.keys)
        self.name = secrets.token_hex(4)
        self.before: set[str] = set()
        self.values: dict[str, tuple[str, int]] = {}
        self.ids: dict[str, str] = {}
        self.chains: dict[str, ChainResult] = {}

    def accepted(self, tag: str, handle: actors.InvocationHandle) -> None:
        self.ids[tag] = handle.invocation_id
        if handle.status == "Accepted":
            print(f"accepted {tag} {handle.invocation_id}", flush=True)

    def report(self, tag: str, key: str, value: int) -> None:
        self.values[tag] = (key, value)
        if tag not in self.before:
            print(f"done {tag} {key} {value}", flush=True)

    async def guarded(self, tag: str, fn: Callable[[], Any]) -> None:
        """Run a job's wait; a TerminalError is printed (a violation), not fatal."""
        try:
            await fn()
        except actors.TerminalError as exc:
            print(f"failed {tag} {' '.join(str(exc).split())}", flush=True)

    async def wait_increment(self, tag: str, key: str, handle: actors.InvocationHandle) -> None:
        self.report(tag, key, await handle.result())

    async def wait_relay(self, job: Job, handle: actors.InvocationHandle) -> None:
        (call_tag, call_key), (send_tag, send_key) = job.increments()
        fanned: Fanned = await handle.result()
        self.report(call_tag, call_key, fanned.called)
        self.ids[send_tag] = fanned.sent_id
        self.report(send_tag, send_key, await self.rt.attach(fanned.sent_id))

    async def wait_chain(self, job: Job, handle: actors.InvocationHandle) -> None:
        result: ChainResult = await handle.result()
        self.chains[job.tag] = result
        for (tag, key), value in zip(job.increments(), result.values, strict=False):
            self.report(tag, key, value)

    def spawn(self, tag: str, fn: Callable[[], Any]) -> None:
        self.nursery.start_soon(self.guarded, tag, fn)

    async def run_job(self, job: Job) -> None:
        rt, tag = self.rt, job.tag
        if job.kind in ("send", "delayed", "slow"):
            target: actors.Handler[Any, int] = (
                Counter.slow_incr if job.kind == "slow" else Counter.incr
            )
            arg = SlowIncr(tag, job.seconds) if job.kind == "slow" else Incr(tag)
            handle = await rt.send(
                target, arg, key=job.key, delay=job.delay or None, idempotency_key=tag
            )
            self.accepted(tag, handle)
            if job.kind == "send":  # the lane waits: it paces the lane
                await self.guarded(
                    tag, functools.partial(self.wait_increment, tag, job.key, handle)
                )
            else:
                self.spawn(tag, functools.partial(self.wait_increment, tag, job.key, handle))
        elif job.kind == "icall":

            async def call() -> None:
                self.report(
                    tag,
                    job.key,
                    await rt.call(Counter.incr, Incr(tag), key=job.key, idempotency_key=tag),
                )

            await self.guarded(tag, call)
        elif job.kind == "relay":
            handle = await rt.send(Relay.fan, fan_of(job), idempotency_key=tag)
            self.accepted(tag, handle)
            self.spawn(tag, functools.partial(self.wait_relay, job, handle))
        elif job.kind == "chain":
            handle = await rt.send(Chain.run, chain_spec(job), key=tag)
            self.accepted(tag, handle)
            approve_tag = f"a{job.index}"
            approval = await rt.send(
                Relay.approve, Approve(tag, job.token), idempotency_key=approve_tag
            )
            self.accepted(approve_tag, approval)
            self.spawn(tag, functools.partial(self.wait_chain, job, handle))
            self.spawn(approve_tag, approval.result)
        else:  # pragma: no cover - the plan has no other kinds
            raise AssertionError(job.kind)

    async def lane(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            await self.run_job(job)

    async def plain_caller(self, caller: int) -> None:
        rng = random.Random(f"{self.name}-{caller}")
        for j in range(self.config.plain_calls):
            key = rng.choice(self.keys)
            tag = f"p{self.name}.{caller}.{j}"
            self.report(tag, key, await self.rt.call(Counter.incr, Incr(tag), key=key))


async def run_life(workdir: Path, config: Config, durability: Durability) -> None:
    plan = make_plan(config)
    async with actors.open_runtime(
        workdir / "data", actor_set(workdir, config.step_seconds), durability=durability
    ) as rt:
        histories: dict[str, History] = {}
        async with trio.open_nursery() as nursery:
            life = Life(rt, config, nursery)
            for key in life.keys:
                life.before.update(e.tag for e in (await rt.call(Counter.history, key=key)).entries)
            for lane in range(config.lanes):
                nursery.start_soon(life.lane, plan[lane :: config.lanes])
            for caller in range(config.callers):
                nursery.start_soon(life.plain_caller, caller)
        for key in life.keys:
            histories[key] = await rt.call(Counter.history, key=key)
    summary = {
        "values": {tag: list(kv) for tag, kv in sorted(life.values.items())},
        "ids": dict(sorted(life.ids.items())),
        "chains": {tag: asdict(result) for tag, result in sorted(life.chains.items())},
        "histories": {key: asdict(history) for key, history in histories.items()},
    }
    scratch = workdir / "summary.json.tmp"
    scratch.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    scratch.replace(workdir / "summary.json")
    print("DONE", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One life of the mixed crash workload.")
    parser.add_argument("workdir", type=Path)
    defaults = Config()
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--keys", type=int, default=defaults.keys)
    parser.add_argument("--lanes", type=int, default=defaults.lanes)
    parser.add_argument("--callers", type=int, default=defaults.callers)
    parser.add_argument("--plain-calls", type=int, default=defaults.plain_calls)
    parser.add_argument("--step-seconds", type=float, default=defaults.step_seconds)
    parser.add_argument("--durability", choices=["process", "fsync"], default="process")
    args = parser.parse_args(argv)
    config = Config(
        args.jobs, args.keys, args.lanes, args.callers, args.plain_calls, args.step_seconds
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    # The parent reads stdout only: a stderr pipe nobody drains could block us, and what
    # we wrote there would be lost with the pipe.
    fd = os.open(args.workdir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    trio.run(run_life, args.workdir, config, args.durability)


if __name__ == "__main__":
    main()
