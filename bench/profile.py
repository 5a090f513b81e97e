"""Where a call's CPU goes, function by function: sampled profiles of the workloads whose
issue-14 targets are not met, in microseconds per call.

``bench/floors.py`` splits a call's CPU into the primitives it cannot do without (trio's
cancel scopes, checkpoints and task switches, LMDB's reads and writes) and "the runtime's
own". This script says what that own part is made of. Each workload runs in a child
process, in steady state (``durability="process"``: the CPU's work, not the disk's), and
``py-spy`` samples it from outside at ``--rate`` samples per second, counting only the
samples in which a thread was running (idle threads are not sampled). Each sample is
charged to the innermost frame that is one of:

* **the runtime**: a function of ``actors/``, ``storage/`` or ``mailbox/``. What a
  standard-library helper it calls spends (``contextvars``, ``functools``, the code
  attrs generates) is charged to it, and so is the C code it calls: LMDB's read and
  write transactions show under the storage function that opens them, msgspec's
  encoding under the serde function;
* **the loop**: a function of trio, anyio, outcome or sniffio (trio's scheduler passes,
  cancel scopes, checkpoints and task switches: floors.py's primitives);
* **the workload**: the benchmark's own code (the caller's loop, a step's body).

The garbage collector runs inside the allocation that triggers it, so its passes are
charged to whichever function allocated then: a constructor's share can hold a
collection's cost (``DurableFuture._create`` costs 0.9 us alone, yet shows ~4 us per
step at 256 invocations in flight, whose objects every collection walks).

A function's share of the samples, times the CPU per call the child measured over the
same window, is its cost per call. Sampling perturbs little (``--nonblocking``: py-spy
reads the process's memory without stopping it), but a share comes with the sampling's
error (about ``1/sqrt(samples)`` of it), so figures under ~1 us per call are noise.

Workloads (as in ``bench/objects.py``, ``bench/steps.py`` and ``bench/floors.py``):

* **w5r**: 64 tasks reading ``Counter.value`` on one key;
* **w2**: 64 tasks, task ``i`` calling ``Counter.add`` on key ``k{i}``;
* **w1**: one task calling ``Counter.add`` sequentially;
* **t256**: 256 tasks calling a service handler of ten ``ctx.run`` steps with a plain
  ``def`` body (on the runtime's step threads); the cost is per step;
* **s256**: the same with an ``async def`` body, per step.

Needs ``py-spy`` (in the ``dev`` extra) and the right to read another process's memory
(ptrace: root, or ``kernel.yama.ptrace_scope`` 0 for a child). Run::

    .venv/bin/python bench/profile.py                            # every workload, 4 s each
    .venv/bin/python bench/profile.py --workloads w2 --seconds 8 --top 25
    .venv/bin/python bench/profile.py --out bench/results
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from pathlib import Path
from typing import TYPE_CHECKING, Final

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import add_output_args, json_meta, machine_text, recording_stdout, save_results

if TYPE_CHECKING:
    from collections.abc import Sequence

TASKS: Final = 64
STEP_TASKS: Final = 256
WORKLOADS: Final = {
    "w5r": ("W5 shared read, 64 readers, 1 key", "call"),
    "w2": ("W2 exclusive add, 64 keys x 1 caller", "call"),
    "w1": ("W1 exclusive add, 1 caller", "call"),
    "t256": ("256 concurrent x 10 def steps (thread)", "step"),
    "s256": ("256 concurrent x 10 async steps", "step"),
}
RUNTIME: Final = "runtime"
LOOP: Final = "loop"
WORKLOAD: Final = "workload"
OTHER: Final = "other"

_FRAME: Final = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_OURS: Final = re.compile(r"(?:^|/)(?P<package>actors|storage|mailbox)/(?P<module>[\w/]+)\.py$")
_LOOP_PACKAGES: Final = ("trio", "anyio", "outcome", "sniffio")


# --- attribution (pure) -----------------------------------------------------------------------


def classify(file: str, function: str) -> tuple[str, str] | None:
    """``(kind, label)`` of a frame that a sample may be charged to, or None for a frame
    that charges its caller (the standard library, generated code, other packages)."""
    if "site-packages/" in file or "dist-packages/" in file:
        tail = re.split(r"(?:site|dist)-packages/", file)[-1]
    else:
        tail = file
    top = tail.split("/", 1)[0]
    if top in _LOOP_PACKAGES:
        return LOOP, f"{top}: {function}"
    if "site-packages/" not in file:
        ours = _OURS.search(file)
        if ours is not None:
            package = "actors" if ours["package"] == "actors" else f"actors.{ours['package']}"
            module = ours["module"].replace("/", ".")
            if module.startswith(("storage.", "mailbox.")):  # through the actors symlinks
                package, module = f"actors.{module.split('.', 1)[0]}", module.split(".", 1)[1]
            return RUNTIME, f"{package}.{module}.{function}"
        if re.search(r"(?:^|/)bench/[\w/]+\.py$", file):
            return WORKLOAD, f"bench: {function}"
    return None


#: The share of py-spy's output lines that may be unreadable before ``attribute`` gives up.
MAX_UNREADABLE: Final = 0.01


def attribute(lines: Sequence[str]) -> Tally[tuple[str, str]]:
    """Samples per ``(kind, label)`` from py-spy's raw output (one stack per line, root
    first, frames separated by ``;``, then the count): each stack is charged to its
    innermost frame that ``classify`` names, else to ``(OTHER, its innermost frame)``.

    A line that does not end in a count is skipped: sampling without stopping the
    process (``--nonblocking``) now and then reads a frame's name while it changes, and
    gets bytes with a line break in them. More than ``MAX_UNREADABLE`` of them raise."""
    tally: Tally[tuple[str, str]] = Tally()
    unreadable = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            unreadable += 1
            if unreadable > MAX_UNREADABLE * len(lines):
                raise ValueError(f"not a line of py-spy's raw output: {line[:120]!r}")
            continue
        frames = stack.split(";") if stack.strip() else ["(no Python frame)"]
        charged: tuple[str, str] | None = None
        for frame in reversed(frames):
            match = _FRAME.match(frame)
            if match is None:
                continue
            charged = classify(match["file"], match["function"])
            if charged is not None:
                break
        if charged is None:
            charged = (OTHER, frames[-1])
        tally[charged] += int(count)
    return tally


def group_of(label: str) -> str:
    """The module a runtime label belongs to (``actors._gate.OutputGate.flush`` ->
    ``actors._gate``)."""
    parts = label.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and i > 0:
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or label


# --- the child: one workload in steady state ----------------------------------------------------


def child(workload: str, seconds: float, directory: Path) -> None:
    """Run ``workload`` for a warm-up, print ``ready``, run it ``seconds`` more, then print
    ``{"ops": ..., "cpu": ...}`` (ops: calls, or steps for the step workloads)."""
    import trio

    import actors
    from bench.objects import Counter
    from bench.steps import Steps

    async def main() -> None:
        async with actors.open_runtime(directory, [Counter, Steps], durability="process") as rt:
            done = 0
            deadline = 0.0

            async def reader() -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    await rt.call(Counter.value, key="one")
                    done += 1

            async def adder(key: str) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    await rt.call(Counter.add, 1, key=key)
                    done += 1

            async def stepper(handler: object) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    await rt.call(handler)  # type: ignore[call-overload]
                    done += 10

            async def phase(length: float) -> None:
                nonlocal deadline
                deadline = time.monotonic() + length
                async with trio.open_nursery() as nursery:
                    if workload == "w5r":
                        for _ in range(TASKS):
                            nursery.start_soon(reader)
                    elif workload == "w2":
                        for i in range(TASKS):
                            nursery.start_soon(adder, f"k{i}")
                    elif workload == "w1":
                        nursery.start_soon(adder, "one")
                    else:
                        handler = Steps.ten_threaded if workload == "t256" else Steps.ten
                        for _ in range(STEP_TASKS):
                            nursery.start_soon(stepper, handler)

            await rt.call(Counter.add, 1, key="one")
            await phase(1.0)  # warm-up: caches, threads, the first commits
            print("ready", flush=True)
            done = 0
            start = time.process_time()
            await phase(seconds)
            cpu = time.process_time() - start
            print(json.dumps({"ops": done, "cpu": cpu}), flush=True)

    trio.run(main)


# --- the parent: sample each child -------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("bench/profile.py needs py-spy: pip install -e '.[dev]' (it is in the dev extra)")
    return found


def profile(workload: str, seconds: int, rate: int, base: str | None) -> dict[str, object]:
    """Sample one child for ``seconds``; its CPU per op and samples per label."""
    with tempfile.TemporaryDirectory(prefix="profile-", dir=base) as tmp:
        raw = Path(tmp) / "stacks.txt"
        command = [sys.executable, __file__, "--child", workload, "--seconds", str(seconds + 1)]
        command += ["--dir", str(Path(tmp) / "runtime")]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        try:
            ready = proc.stdout.readline().strip()
            if ready != "ready":
                raise RuntimeError(f"the {workload} child did not start: {ready!r}")
            sampler = subprocess.run(
                [
                    *(py_spy(), "record", "--pid", str(proc.pid), "--duration", str(seconds)),
                    *("--rate", str(rate), "--nonblocking", "--format", "raw", "-o", str(raw)),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            report = proc.stdout.readline()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if sampler.returncode != 0 or not raw.exists():
            raise RuntimeError(
                f"py-spy could not sample the {workload} child (ptrace rights?): "
                + (sampler.stderr.strip() or sampler.stdout.strip())[-400:]
            )
        if proc.returncode != 0:
            raise RuntimeError(f"the {workload} child failed (exit {proc.returncode})")
        figures = json.loads(report)
        tally = attribute(raw.read_text().splitlines())
    return {
        "ops": figures["ops"],
        "cpu_us_per_op": figures["cpu"] / max(1, figures["ops"]) * 1e6,
        "samples": {f"{kind}|{label}": n for (kind, label), n in tally.most_common()},
    }


def print_workload(workload: str, result: dict[str, object], top: int) -> None:
    label, unit = WORKLOADS[workload]
    cost = float(result["cpu_us_per_op"])  # type: ignore[arg-type]
    samples: dict[str, int] = result["samples"]  # type: ignore[assignment]
    total = sum(samples.values()) or 1
    per_op = {key: n / total * cost for key, n in samples.items()}
    print(
        f"{label}: {cost:.1f} us of CPU per {unit} ({result['ops']:,} {unit}s sampled "
        f"{total:,} times)"
    )
    print()
    kinds: dict[str, float] = dict.fromkeys((RUNTIME, LOOP, WORKLOAD, OTHER), 0.0)
    modules: dict[str, float] = {}
    for key, us in per_op.items():
        kind, name = key.split("|", 1)
        kinds[kind] += us
        if kind == RUNTIME:
            modules[group_of(name)] = modules.get(group_of(name), 0.0) + us
    print(f"{workload}: where | us per {unit} | share")
    print("-" * 60)
    for kind, title in (
        (RUNTIME, "the runtime (actors, storage, mailbox)"),
        (LOOP, "the loop (trio, anyio, outcome)"),
        (WORKLOAD, "the workload (the caller's loop, the step body)"),
        (OTHER, "other (interpreter, threads' start)"),
    ):
        print(f"{title} | {kinds[kind]:.1f} | {kinds[kind] / cost:.0%}")
    for module, us in sorted(modules.items(), key=lambda item: -item[1]):
        if us / cost >= 0.01:
            print(f"  {module} | {us:.1f} | {us / cost:.0%}")
    print()
    print(f"{workload}: top functions, self | kind | us per {unit} | share")
    print("-" * 60)
    for key, us in sorted(per_op.items(), key=lambda item: -item[1])[:top]:
        kind, name = key.split("|", 1)
        print(f"{name} | {kind} | {us:.2f} | {us / cost:.1%}")
    print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--seconds", type=int, default=4, help="sampled seconds per workload")
    parser.add_argument("--rate", type=int, default=997, help="samples per second (997)")
    parser.add_argument("--top", type=int, default=15, help="functions listed per workload")
    parser.add_argument("--child", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    add_output_args(parser)
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.rate < 10 or args.top < 1:
        parser.error("need --seconds >= 1, --rate >= 10 and --top >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child(args.child, float(args.seconds), Path(args.dir))
        return 0
    results = {w: profile(w, args.seconds, args.rate, args.dir) for w in args.workloads}
    with recording_stdout() as printed:
        print(
            f"bench/profile.py: py-spy at {args.rate} samples/s, {args.seconds} s per "
            f"workload, durability=process; {machine_text(None)}"
        )
        print()
        for workload, result in results.items():
            print_workload(workload, result, args.top)
    result = {"meta": json_meta(sys.argv[1:]), "workloads": results}
    save_results(args, "profile", printed.getvalue(), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
