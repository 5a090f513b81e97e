"""Virtual-object benchmark: calls/s and latency of ``actors`` on a durable Counter.

The object under test is a ``Counter`` VirtualObject with an exclusive
``add(delta: int) -> int`` (one state get + one set) and a shared ``value() -> int``.
Every call goes through ``rt.call`` of a runtime opened with ``open_runtime(...,
durability=...)``, so every figure includes acceptance, per-key scheduling, the handler,
the completion commit (group-committed, fsync'd in ``"fsync"`` mode) and the output gate.

Measured in every run, in this order, each in a fresh temporary directory:

* **raw LMDB, 1 record/commit** (baseline): one thread, one ``sync=True`` write
  transaction per ~100-byte record, sequentially (``sync=False`` with
  ``--durability process``). Commits/s and per-commit p50/p99.
* **raw ping-pong, 64 clients** (baseline): 64 client tasks each send a request over a
  memory channel (``trio.open_memory_channel``; ``asyncio.Queue`` with
  ``--backend asyncio``) to one server task and wait for its reply on their own channel.
  Round trips/s: what the event loop does with no storage and no runtime around.
* **W2**: 64 tasks, task ``i`` loops ``rt.call(Counter.add, 1, key=f"k{i}")``. Calls/s.
* **W3**: 64 tasks, all on key ``"one"``. Calls/s; then the final ``value()`` must equal
  the number of ``add`` calls made (correctness, printed).
* **W5**: 64 reader tasks loop ``rt.call(Counter.value, key="one")`` while 16 writer
  tasks loop ``add`` on the same key. Reads/s, with writes/s alongside.
* **W1**: one task, sequential ``add`` calls on one key. p50/p99 latency.

Each runtime measurement warms up for ``--warmup`` seconds, then runs for ``--seconds``
or ``--max-calls`` calls, whichever comes first (a task finishes the call it is in).
The whole set is repeated ``--runs`` times, interleaved, and the table shows the median
with [min-max]. Ratios are computed within each run against that run's baselines, and
the median of the per-run ratios is shown. The ``commit`` column is invocations (or raw
records) per LMDB commit, from the store's counters.

Targets (defined for ``"fsync"``, on the 2-core machine of the issue): W2 >= 10,000
calls/s, W3 >= 2,000 calls/s, W5 >= 20,000 reads/s, W1 p50 <= 2x the raw commit p50.
For scale, a Restate server with its Python SDK measured about 550 calls/s (64 keys) and
155 calls/s (one key) on this kind of machine; the peer ratio is ours / Restate. Targets
are printed as PASS/FAIL lines; only a failed correctness check fails the script.

Run::

    .venv/bin/python bench/objects.py                        # fsync, trio, 5 runs x 2 s
    .venv/bin/python bench/objects.py --runs 3 --backend asyncio
    .venv/bin/python bench/objects.py --durability process --json out.json
    .venv/bin/python bench/objects.py --out bench/results   # also objects.md and .json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import anyio
import trio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import actors

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

from bench._common import (
    HANG_MARGIN,
    Backend,
    Durability,
    add_output_args,
    add_run_args,
    fmt_rate,
    in_fresh_dir,
    json_meta,
    machine_text,
    median,
    perf_counter,
    print_checks,
    raw_label,
    recording_stdout,
    run_raw,
    save_results,
    summarize,
)

KEYS: Final = 64  # W2: tasks, one key each
CALLERS: Final = 64  # W3: tasks on one key; ping-pong clients
READERS: Final = 64  # W5
WRITERS: Final = 16  # W5
ONE_KEY: Final = "one"
TEMP_PREFIX: Final = "bench-objects-"

# Targets of the issue ("fsync", 2-core machine) and the peer figures for scale.
W2_TARGET: Final = 10_000.0  # calls/s over 64 keys
W3_TARGET: Final = 2_000.0  # calls/s on one key
W5_TARGET: Final = 20_000.0  # shared reads/s on one key while writes run
W1_TARGET: Final = 2.0  # p50 of one call at most this times the raw commit p50
RESTATE_W2: Final = 550.0  # Restate server + Python SDK, calls/s over 64 keys
RESTATE_W3: Final = 155.0  # Restate server + Python SDK, calls/s on one key


class Counter(actors.VirtualObject):
    """The object under test: a durable counter per key."""

    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        n += delta
        ctx.set("n", n)
        return n

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


@dataclass
class Sample:
    """One measurement of one configuration."""

    rate: float  # operations (calls, commits, round trips) per second
    p50_ms: float
    p99_ms: float
    per_commit: float  # operations per LMDB commit (nan when not applicable)
    ops: int
    seconds: float
    check: str = ""  # what the correctness check compared, empty when there is none
    counted: int = 0  # the value(s) read back after the measurement
    adds: int = 0  # the adds made (warmup included); correct when counted == adds


@dataclass
class Row:
    """One configuration across runs."""

    key: str
    label: str
    unit: str
    samples: list[Sample] = field(default_factory=list)
    raw_ratios: list[float] = field(default_factory=list)  # rate / raw commit rate
    pp_ratios: list[float] = field(default_factory=list)  # rate / ping-pong rate
    p50_ratios: list[float] = field(default_factory=list)  # p50 / raw commit p50


def make_sample(ops: int, seconds: float, latencies: list[float], commits: int | None) -> Sample:
    rate, p50_ms, p99_ms = summarize(ops, seconds, latencies)
    return Sample(
        rate=rate,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        per_commit=ops / commits if commits else float("nan"),
        ops=ops,
        seconds=seconds,
    )


# --- baseline: raw LMDB ------------------------------------------------------------------


def measure_raw(
    directory: Path, durability: Durability, seconds: float, warmup: float, cap: int
) -> Sample:
    """Raw LMDB with the store's environment settings, one thread, one record per commit."""
    records, elapsed, latencies = run_raw(
        directory, durability, seconds=seconds, warmup=warmup, cap=cap
    )
    return make_sample(records, elapsed, latencies, records)


# --- baseline: raw request/reply over memory channels ---------------------------------------


async def pingpong_trio(clients: int, seconds: float, cap: int) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    per_client = max(1, cap // clients)
    request_send, request_recv = trio.open_memory_channel[tuple[int, trio.MemorySendChannel[int]]](
        clients
    )

    async def server() -> None:
        async for value, reply in request_recv:
            reply.send_nowait(value + 1)

    async def client() -> None:
        reply_send, reply_recv = trio.open_memory_channel[int](1)
        record = latencies.append
        send = request_send.send
        receive = reply_recv.receive
        i = 0
        while i < per_client and perf_counter() < deadline:
            t0 = perf_counter()
            await send((i, reply_send))
            i = await receive()
            record(perf_counter() - t0)

    start = perf_counter()
    deadline = start + seconds
    with trio.move_on_after(seconds + HANG_MARGIN) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            async with trio.open_nursery() as inner:
                for _ in range(clients):
                    inner.start_soon(client)
            elapsed = perf_counter() - start
            nursery.cancel_scope.cancel()
    if scope.cancelled_caught:
        raise RuntimeError(f"ping-pong did not finish within {HANG_MARGIN} s of the end")
    return len(latencies), elapsed, latencies


async def pingpong_asyncio(
    clients: int, seconds: float, cap: int
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    per_client = max(1, cap // clients)
    requests: asyncio.Queue[tuple[int, asyncio.Queue[int]]] = asyncio.Queue(clients)

    async def server() -> None:
        while True:
            value, reply = await requests.get()
            reply.put_nowait(value + 1)

    async def client() -> None:
        replies: asyncio.Queue[int] = asyncio.Queue(1)
        record = latencies.append
        i = 0
        while i < per_client and perf_counter() < deadline:
            t0 = perf_counter()
            await requests.put((i, replies))
            i = await replies.get()
            record(perf_counter() - t0)

    start = perf_counter()
    deadline = start + seconds
    server_task = asyncio.create_task(server())
    try:
        async with asyncio.timeout(seconds + HANG_MARGIN):
            await asyncio.gather(*(client() for _ in range(clients)))
    except TimeoutError:
        raise RuntimeError(f"ping-pong did not finish within {HANG_MARGIN} s of the end") from None
    finally:
        server_task.cancel()
    return len(latencies), perf_counter() - start, latencies


def measure_pingpong(backend: Backend, seconds: float, warmup: float, cap: int) -> Sample:
    def run(secs: float) -> tuple[int, float, list[float]]:
        if backend == "trio":
            return trio.run(pingpong_trio, CALLERS, secs, cap)
        return asyncio.run(pingpong_asyncio(CALLERS, secs, cap))

    run(warmup)
    ops, elapsed, latencies = run(seconds)
    return make_sample(ops, elapsed, latencies, None)


# --- the runtime -------------------------------------------------------------------------


@dataclass
class Loop:
    """Calls made by a group of tasks in one phase."""

    latencies: list[float] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return len(self.latencies)


async def run_phase(
    tasks: Sequence[tuple[Loop, int, Callable[[], Awaitable[int]]]], seconds: float
) -> float:
    """Run every ``(loop, max_calls, call)`` task until ``seconds`` have passed or it has
    made ``max_calls`` calls; return the elapsed time once all have finished."""
    start = perf_counter()
    deadline = start + seconds

    async def task(loop: Loop, max_calls: int, call: Callable[[], Awaitable[int]]) -> None:
        record = loop.latencies.append
        made = 0
        while made < max_calls and perf_counter() < deadline:
            t0 = perf_counter()
            await call()
            record(perf_counter() - t0)
            made += 1

    with anyio.move_on_after(seconds + HANG_MARGIN) as scope:
        async with anyio.create_task_group() as tg:
            for loop, max_calls, call in tasks:
                tg.start_soon(task, loop, max_calls, call)
    if scope.cancelled_caught:
        raise RuntimeError(f"callers did not finish within {HANG_MARGIN} s of the end")
    return perf_counter() - start


def adder(rt: actors.Runtime, key: str) -> Callable[[], Awaitable[int]]:
    async def call() -> int:
        return await rt.call(Counter.add, 1, key=key)

    return call


def reader(rt: actors.Runtime, key: str) -> Callable[[], Awaitable[int]]:
    async def call() -> int:
        return await rt.call(Counter.value, key=key)

    return call


Workload = Literal["w2", "w3", "w5", "w1"]


async def measure_runtime_async(
    directory: Path,
    durability: Durability,
    workload: Workload,
    seconds: float,
    warmup: float,
    cap: int,
) -> list[Sample]:
    """One workload in a fresh runtime. W5 returns [reads, writes]; others one sample."""
    async with actors.open_runtime(directory, [Counter], durability=durability) as rt:
        store = rt._store  # private: read only for its commit counters

        def phase_tasks() -> tuple[list[tuple[Loop, int, Callable[[], Awaitable[int]]]], Loop]:
            primary, side = Loop(), Loop()
            if workload == "w2":
                return [
                    (primary, max(1, cap // KEYS), adder(rt, f"k{i}")) for i in range(KEYS)
                ], side
            if workload == "w3":
                return [(primary, max(1, cap // CALLERS), adder(rt, ONE_KEY))] * CALLERS, side
            if workload == "w1":
                return [(primary, cap, adder(rt, ONE_KEY))], side
            return [(primary, max(1, cap // READERS), reader(rt, ONE_KEY))] * READERS + [
                (side, max(1, cap // WRITERS), adder(rt, ONE_KEY))
            ] * WRITERS, side

        warm_tasks, warm_side = phase_tasks()
        await run_phase(warm_tasks, warmup)
        tasks, side = phase_tasks()
        primary = tasks[0][0]
        before = store.statistics()
        elapsed = await run_phase(tasks, seconds)
        after = store.statistics()
        commits = after.commits - before.commits
        invocations = after.batches - before.batches

        # Correctness: every add made (warmup included) is in the final value(s).
        adds = warm_tasks[0][0].calls + primary.calls
        if workload == "w2":
            values = [await rt.call(Counter.value, key=f"k{i}") for i in range(KEYS)]
            counted, what = sum(values), f"sum of the {KEYS} values"
        else:
            if workload == "w5":
                adds = warm_side.calls + side.calls
            counted, what = await rt.call(Counter.value, key=ONE_KEY), "final value"

    per_commit = invocations / commits if commits else float("nan")
    samples = [make_sample(primary.calls, elapsed, primary.latencies, None)]
    if workload == "w5":
        samples.append(make_sample(side.calls, elapsed, side.latencies, None))
    for sample in samples:
        sample.per_commit = per_commit
        sample.check, sample.counted, sample.adds = what, counted, adds
    return samples


def measure_runtime(
    directory: Path,
    durability: Durability,
    backend: Backend,
    workload: Workload,
    seconds: float,
    warmup: float,
    cap: int,
) -> list[Sample]:
    return anyio.run(
        measure_runtime_async,
        directory,
        durability,
        workload,
        seconds,
        warmup,
        cap,
        backend=backend,
    )


# --- runs and report -----------------------------------------------------------------------


def make_rows(durability: Durability, backend: Backend) -> list[Row]:
    return [
        Row("raw", raw_label(durability), "commits/s"),
        Row("pingpong", f"raw {backend} ping-pong, {CALLERS} clients", "round trips/s"),
        Row("w2", f"W2 add, {KEYS} keys x 1 caller", "calls/s"),
        Row("w3", f"W3 add, 1 key x {CALLERS} callers", "calls/s"),
        Row("w5_reads", f"W5 value, 1 key, {READERS} readers", "reads/s"),
        Row("w5_writes", f"W5   + add alongside, {WRITERS} writers", "writes/s"),
        Row("w1", "W1 add, 1 caller, sequential", "calls/s"),
    ]


def run_all(args: argparse.Namespace) -> list[Row]:
    durability: Durability = args.durability
    backend: Backend = args.backend
    rows = {row.key: row for row in make_rows(durability, backend)}
    secs, warm, cap = args.seconds, args.warmup, args.max_calls

    def runtime(workload: Workload) -> Callable[[Path], list[Sample]]:
        return lambda d: measure_runtime(d, durability, backend, workload, secs, warm, cap)

    for run in range(args.runs):
        print(f"  run {run + 1}/{args.runs} ...", end="", flush=True, file=sys.stderr)
        (raw,) = in_fresh_dir(
            args.dir, TEMP_PREFIX, lambda d: [measure_raw(d, durability, secs, warm, cap)]
        )
        pingpong = measure_pingpong(backend, secs, warm, cap)
        measured: list[tuple[str, Sample]] = [("raw", raw), ("pingpong", pingpong)]
        for workload in ("w2", "w3", "w5", "w1"):
            samples = in_fresh_dir(args.dir, TEMP_PREFIX, runtime(workload))
            if workload == "w5":
                measured += [("w5_reads", samples[0]), ("w5_writes", samples[1])]
            else:
                measured.append((workload, samples[0]))
        for key, sample in measured:
            row = rows[key]
            row.samples.append(sample)
            row.raw_ratios.append(sample.rate / raw.rate)
            row.pp_ratios.append(sample.rate / pingpong.rate)
            row.p50_ratios.append(sample.p50_ms / raw.p50_ms)
        print(" done", file=sys.stderr)
    return list(rows.values())


def print_table(args: argparse.Namespace, rows: list[Row]) -> None:
    header = (
        f"{'config':<38} | {'unit':<13} | {'rate median [min-max]':<30} | {'p50 ms':>7} | "
        f"{'p99 ms':>7} | {'/commit':>7} | {'vs raw':>8} | {'vs pp':>6} | p50 vs raw"
    )
    print()
    print(
        f"durability={args.durability!r}, backend={args.backend!r}, median of {args.runs} runs "
        f"(ratios: median of per-run ratios; raw = raw LMDB commit, pp = ping-pong)"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        samples = row.samples
        print(
            f"{row.label:<38} | {row.unit:<13} | {fmt_rate([s.rate for s in samples]):<30} | "
            f"{median([s.p50_ms for s in samples]):7.3f} | "
            f"{median([s.p99_ms for s in samples]):7.3f} | "
            f"{median([s.per_commit for s in samples]):7.1f} | "
            f"{median(row.raw_ratios):7.2f}x | {median(row.pp_ratios):5.3f}x | "
            f"{median(row.p50_ratios):6.2f}x"
        )


def correctness(rows: list[Row]) -> bool:
    print()
    all_ok = True
    for row in rows:
        if row.key in ("raw", "pingpong", "w5_writes"):
            continue
        samples = row.samples
        bad = [(i, s) for i, s in enumerate(samples) if s.counted != s.adds]
        all_ok = all_ok and not bad
        name, what = row.label, samples[0].check
        if bad:
            details = "; ".join(f"run {i + 1}: {s.counted:,} != {s.adds:,}" for i, s in bad)
            print(
                f"FAIL  {name}: {what} != adds made in {len(bad)}/{len(samples)} runs ({details})"
            )
        else:
            first = samples[0]
            print(
                f"OK    {name}: {what} == adds made in {len(samples)}/{len(samples)} runs "
                f"(run 1: {first.counted:,} == {first.adds:,})"
            )
    return all_ok


def target_checks(args: argparse.Namespace, rows: list[Row]) -> list[dict[str, object]]:
    by_key = {row.key: row for row in rows}

    def rate(key: str) -> float:
        return median([s.rate for s in by_key[key].samples])

    raw_p50 = median([s.p50_ms for s in by_key["raw"].samples])
    w1_p50 = median([s.p50_ms for s in by_key["w1"].samples])
    w1_ratio = median(by_key["w1"].p50_ratios)

    def rate_check(key: str, name: str, target: float, peer: float | None) -> dict[str, object]:
        row = by_key[key]
        value = rate(key)
        text = (
            f"{name}: {value:,.0f} {row.unit} (target >= {target:,.0f}: {value / target:.2f}x "
            f"of target; {median(row.raw_ratios):.2f}x raw commit rate, "
            f"{median(row.pp_ratios):.3f}x ping-pong)"
        )
        if peer is not None:
            text += f"; Restate ~{peer:,.0f} {row.unit} -> peer ratio {value / peer:.1f}x"
        return {
            "name": key,
            "value": value,
            "target": target,
            "ratio": value / target,
            "peer": peer,
            "peer_ratio": value / peer if peer is not None else None,
            "passed": value >= target,
            "text": text,
        }

    checks = [
        rate_check("w2", f"W2 {KEYS} keys", W2_TARGET, RESTATE_W2),
        rate_check("w3", "W3 one key", W3_TARGET, RESTATE_W3),
        rate_check("w5_reads", "W5 shared reads on one key", W5_TARGET, None),
        {
            "name": "w1",
            "value": w1_p50,
            "target": W1_TARGET,
            "ratio": w1_ratio,
            "passed": w1_ratio <= W1_TARGET,
            "text": f"W1 one call: p50 {w1_p50:.3f} ms vs raw commit p50 {raw_p50:.3f} ms = "
            f"{w1_ratio:.2f}x (target <= {W1_TARGET:g}x)",
        },
    ]
    print_checks(checks, args.durability)
    writes = by_key["w5_writes"]
    print(
        f"info  W5 writes alongside the reads: {rate('w5_writes'):,.0f} writes/s "
        f"({median(writes.raw_ratios):.2f}x raw commit rate)"
    )
    return checks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Calls/s and latency of actors virtual objects against raw baselines."
    )
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    add_run_args(parser)
    parser.add_argument(
        "--max-calls", type=int, default=1_000_000, help="cap per measurement (1,000,000)"
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0 or args.max_calls < CALLERS + WRITERS:
        parser.error("need --runs >= 1, --seconds > 0, --warmup >= 0, --max-calls >= 80")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with recording_stdout() as printed:
        print(
            f"bench/objects.py: {args.runs} runs x {args.seconds:g} s per measurement, "
            f"durability={args.durability}, backend={args.backend}; {machine_text(args.dir)}",
            flush=True,
        )
        rows = run_all(args)
        print_table(args, rows)
        ok = correctness(rows)
        checks = target_checks(args, rows)
    result = {
        "meta": json_meta(sys.argv[1:], durability=args.durability, backend=args.backend),
        "rows": [
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "rate_median": median([s.rate for s in row.samples]),
                "p50_ms_median": median([s.p50_ms for s in row.samples]),
                "p99_ms_median": median([s.p99_ms for s in row.samples]),
                "raw_ratio_median": median(row.raw_ratios),
                "pingpong_ratio_median": median(row.pp_ratios),
                "p50_ratio_median": median(row.p50_ratios),
                "samples": [asdict(s) for s in row.samples],
            }
            for row in rows
        ],
        "checks": checks,
        "correct": ok,
    }
    save_results(args, "objects", printed.getvalue(), result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
