"""Requests/s through the HTTP ingress (``rt.serve_http``), under trio and under asyncio.

The server runs in a child process (this script with ``--serve``), on one event loop, with
a ``Counter`` object on ``"process"`` durability so that storage does not hide the HTTP
layer's cost. The client is this process: keep-alive HTTP/1.1 connections over asyncio
streams (``bench/peers/http_client.py``), each sending its next request when the previous
answer arrived. Three phases per loop, each ``--seconds`` long after a short warmup:

* ``health``: ``GET /restate/health``, 16 connections (the HTTP layer alone);
* ``add-1``: ``POST /Counter/k/add`` on one connection, sequential (latency-bound);
* ``add-64``: ``POST /Counter/k{i}/add`` on 64 connections, one key each.

Prints one line per (loop, phase): requests/s, and the server process's CPU time per
request (user + system, from ``/proc``; steadier than requests/s on a shared machine), as
medians over ``--runs``. The baseline, measured in the same run: ``embedded``, the same
add on 64 keys from 64 tasks through ``rt.call`` in a child process (no HTTP), its CPU per
call; the add-64 line says how much HTTP adds to it::

    .venv/bin/python bench/http_ingress.py                  # trio and asyncio, 3 runs
    .venv/bin/python bench/http_ingress.py --loops trio --runs 1 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers.http_client import Connection

PHASES: Final = {"health": 16, "add-1": 1, "add-64": 64}
WARMUP: Final = 0.5


def _serve(loop: str, port: int, directory: Path) -> None:
    import anyio

    import actors
    from bench.peers.va_embedded import Counter

    async def main() -> None:
        async with actors.open_runtime(directory, [Counter], durability="process") as rt:
            await rt.serve_http("127.0.0.1", port)

    anyio.run(main, backend=loop)


def _embedded(loop: str, directory: Path, seconds: float) -> None:
    """Print the CPU microseconds per ``rt.call`` of add-64 without HTTP."""
    import anyio

    import actors
    from bench.peers.va_embedded import Counter

    async def main() -> None:
        async with actors.open_runtime(directory, [Counter], durability="process") as rt:
            counts = [0] * PHASES["add-64"]
            measuring = False

            async def drive(i: int, stop: float) -> None:
                while time.perf_counter() < stop:
                    await rt.call(Counter.add, 1, key=f"k{i}")
                    if measuring:
                        counts[i] += 1

            stop = time.perf_counter() + WARMUP + seconds
            async with anyio.create_task_group() as tg:
                for i in range(len(counts)):
                    tg.start_soon(drive, i, stop)
                await anyio.sleep(WARMUP)
                measuring, cpu = True, time.process_time()
            cpu = time.process_time() - cpu
            print(cpu / max(sum(counts), 1) * 1e6)

    anyio.run(main, backend=loop)


def _embedded_cpu(loop: str, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--embedded", loop, str(Path(tmp) / "data"), str(seconds)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return float(out.split()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _wait_ready(port: int, deadline: float) -> None:
    while True:
        try:
            await Connection("127.0.0.1", port).request("GET", "/restate/health")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _phase(port: int, pid: int, name: str, seconds: float) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request) of one phase."""
    connections = [Connection("127.0.0.1", port) for _ in range(PHASES[name])]
    counts = [0] * len(connections)
    measuring = False
    stop = time.perf_counter() + WARMUP + seconds

    async def drive(i: int) -> None:
        connection = connections[i]
        method, path, body = (
            ("GET", "/restate/health", b"")
            if name == "health"
            else ("POST", f"/Counter/k{i}/add", b"1")
        )
        while time.perf_counter() < stop:
            await connection.request(method, path, body)
            if measuring:
                counts[i] += 1

    tasks = [asyncio.create_task(drive(i)) for i in range(len(connections))]
    await asyncio.sleep(WARMUP)
    measuring, started, cpu = True, time.perf_counter(), _cpu_seconds(pid)
    await asyncio.gather(*tasks)
    elapsed, cpu = time.perf_counter() - started, _cpu_seconds(pid) - cpu
    for connection in connections:
        connection.close()
    done = sum(counts)
    return done / elapsed, cpu / max(done, 1) * 1e6


def _measure(loop: str, seconds: float) -> dict[str, tuple[float, float]]:
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", loop, str(port), str(Path(tmp) / "data")]
        )
        try:

            async def run() -> dict[str, tuple[float, float]]:
                await _wait_ready(port, time.monotonic() + 30)
                return {name: await _phase(port, server.pid, name, seconds) for name in PHASES}

            return asyncio.run(run())
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)
            if server.poll() is None:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops", default="trio,asyncio", help="server loops, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per phase (2)")
    parser.add_argument("--serve", nargs=3, metavar=("LOOP", "PORT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--embedded", nargs=3, metavar=("LOOP", "DIR", "S"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        loop, port, directory = args.serve
        _serve(loop, int(port), Path(directory))
        return
    if args.embedded:
        loop, directory, seconds = args.embedded
        _embedded(loop, Path(directory), float(seconds))
        return
    for loop in args.loops.split(","):
        runs = [_measure(loop, args.seconds) for _ in range(args.runs)]
        embedded = statistics.median(_embedded_cpu(loop, args.seconds) for _ in range(args.runs))
        for name in PHASES:
            rates = [run[name][0] for run in runs]
            cpu = statistics.median(run[name][1] for run in runs)
            spread = f"[{min(rates):,.0f}-{max(rates):,.0f}]"
            extra = (
                f"  (embedded {embedded:.0f} us/call, +{cpu - embedded:.0f})"
                if name == "add-64"
                else ""
            )
            print(
                f"{loop:8} {name:7} {statistics.median(rates):7,.0f} requests/s {spread:15} "
                f"server CPU {cpu:5.0f} us/request{extra}"
            )


if __name__ == "__main__":
    main()
