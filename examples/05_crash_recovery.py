"""Crash recovery: SIGKILL a worker in the middle of a workflow, restart it on the same
data directory, and see the workflow finish with every step's side effect done once.

The script starts a worker process (this file, with the argument ``worker``) that runs
a five-step workflow. Each step is a ``ctx.run`` whose body appends a line to a
side-effect log (standing in for a charge, an email, ...) and prints ``step N ran``.

Where the kill lands: a step's body starts only once everything the workflow did
before it is durable (the output gate), so the line ``step 3 started`` proves that
step 2's result is on disk. In the first life, step 3's body then hangs before its side
effect (a stuck external call, passed as ``--hang-in 3``), and the script SIGKILLs the
worker right there: a real crash, with no cleanup and nothing flushed. The second life
replays steps 1 and 2 from the journal (their bodies do not run again), runs step 3 from
the start, then steps 4 and 5.

A body can legitimately run twice: if a crash comes after its side effect but before its
result is durable, the next life runs it again (at-least-once for the body,
exactly-once for its journaled result). Killing before step 3's side effect keeps this
demo exact: the log ends with each step once.

Run: python examples/05_crash_recovery.py
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

import actors

STEPS = ["reserve stock", "charge card", "pack parcel", "ship parcel", "email receipt"]
ORDER_ID = "order-42"


class Fulfilment(actors.Workflow):
    def __init__(self, log: Path, hang_in: int | None) -> None:
        self.log = log
        self.hang_in = hang_in

    def step(self, n: int) -> str:
        # A plain function: it runs on a worker thread, so it may block.
        print(f"step {n} started", flush=True)
        if n == self.hang_in:
            time.sleep(3600)  # stuck; the parent kills the process here
        with self.log.open("a") as f:  # the side effect, made durable at once
            f.write(f"step {n}\n")
            f.flush()
            os.fsync(f.fileno())
        print(f"step {n} ran: {STEPS[n - 1]}", flush=True)
        return STEPS[n - 1]

    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> list[str]:
        # After a restart this handler runs again from the top: steps whose results are
        # journaled return them without calling `self.step`.
        return [await ctx.run(f"step {n}", self.step, n) for n in range(1, len(STEPS) + 1)]


async def worker(data_dir: Path, log: Path, hang_in: int | None) -> None:
    """One life of the worker: submit the workflow (idempotent: a workflow id runs once)
    and wait for its result. An accepted run resumes by itself when the runtime opens."""
    async with actors.open_runtime(data_dir, [Fulfilment(log, hang_in)]) as rt:
        handle = await rt.send(Fulfilment.run, key=ORDER_ID)
        print(f"submitted {ORDER_ID}: {handle.status}", flush=True)
        result = await rt.attach_workflow(Fulfilment, ORDER_ID)
        print(f"result: {result}", flush=True)


def worker_argv(data_dir: Path, log: Path, *extra: str) -> list[str]:
    return [sys.executable, __file__, "worker", str(data_dir), str(log), *extra]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, log = Path(tmp) / "data", Path(tmp) / "side-effects.log"
        print(f"data directory: {data_dir}")

        print("life 1: starting the worker")
        proc = subprocess.Popen(
            worker_argv(data_dir, log, "--hang-in", "3"), stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        watchdog = threading.Timer(60, proc.kill)  # never hang the script itself
        watchdog.start()
        for line in proc.stdout:
            print(f"  [worker] {line.rstrip()}")
            if line.startswith("step 3 started"):
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait()
        watchdog.cancel()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, f"worker exited with {proc.returncode}"
        print("life 1: SIGKILLed the worker inside step 3 (step 2's result was durable)")

        print("life 2: restarting the worker on the same data directory")
        done = subprocess.run(
            worker_argv(data_dir, log), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"worker failed:\n{done.stdout}\n{done.stderr}"
        for line in done.stdout.splitlines():
            print(f"  [worker] {line}")
        replayed = [n for n in (1, 2) if f"step {n} started" in done.stdout]
        assert not replayed, f"journaled steps ran again: {replayed}"
        print("life 2: steps 1 and 2 came from the journal; their bodies did not run again")

        counts = collections.Counter(log.read_text().splitlines())
        print("side-effect log:", ", ".join(f"{s} x{counts[s]}" for s in sorted(counts)))
        assert counts == {f"step {n}": 1 for n in range(1, len(STEPS) + 1)}, counts
        print("every step's side effect happened exactly once")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        # worker DATA_DIR LOG [--hang-in N]
        hang = int(sys.argv[5]) if sys.argv[4:5] == ["--hang-in"] else None
        trio.run(worker, Path(sys.argv[2]), Path(sys.argv[3]), hang)
    else:
        main()
