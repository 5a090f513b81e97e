"""The audit's two exhaustion attacks on ``rt.serve_http`` (issue 12), as numbers.

* ``bodies``: N connections each POST a body of SIZE MiB at once (default 24 x 15 MiB);
  prints the server's resident memory before, at its peak while they are read (sampled
  every 20 ms) and after, with the answers' statuses.
* ``slow``: N connections (default 300) each send a request head declaring a 1,000-byte
  body, then one byte per second; prints how many the server still holds open after
  ``--hold`` seconds (default 40, past the 30 s default read timeout).

The server runs in a child process (``bench/http_ingress.py --serve``)::

    .venv/bin/python bench/http_exhaust.py --loop trio
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_ingress import _free_port, _wait_ready

HERE = Path(__file__).resolve().parent


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _post_body(port: int, size: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"POST /Counter/k/add HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n"
        writer.write(head.encode())
        chunk = b"7" * (1 << 20)
        sent = 0
        while sent < size:
            writer.write(chunk[: size - sent])
            sent += min(len(chunk), size - sent)
            await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1]) if status_line else 0
    except (ConnectionError, IndexError, ValueError):
        return 0
    finally:
        writer.close()


async def bodies(port: int, pid: int, count: int, size_mb: int) -> None:
    before = _rss_mb(pid)
    peak = before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    statuses = await asyncio.gather(*(_post_body(port, size_mb << 20) for _ in range(count)))
    elapsed = time.perf_counter() - started
    done.set()
    await sampler
    print(
        f"bodies: {count} x {size_mb} MiB in {elapsed:.1f} s; server RSS {before:.0f} MB "
        f"before, {peak:.0f} MB at peak, {_rss_mb(pid):.0f} MB after; "
        f"answers {dict(Counter(statuses))}"
    )


async def slow(port: int, count: int, hold: float) -> None:
    open_connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /Counter/k/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        open_connections.append((reader, writer))
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        for _, writer in open_connections:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(b"1")
        await asyncio.sleep(1.0)
    still_open = 0
    statuses: Counter[str] = Counter()
    for reader, writer in open_connections:
        try:
            line = await asyncio.wait_for(reader.readline(), 0.05)
        except TimeoutError:
            still_open += 1
            statuses["no answer yet"] += 1
        except ConnectionError:
            statuses["closed by the server"] += 1
        else:
            statuses[line.decode().strip() or "closed"] += 1
        writer.close()
    print(
        f"slow: {count} connections dripping a body; after {hold:.0f} s the server holds "
        f"{still_open} open; {dict(statuses)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", default="trio", choices=["trio", "asyncio"])
    parser.add_argument("--bodies", type=int, default=24)
    parser.add_argument("--size-mb", type=int, default=15)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--hold", type=float, default=40.0)
    args = parser.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, str(HERE / "http_ingress.py"), "--serve", args.loop]
        server = subprocess.Popen([*command, str(port), str(Path(tmp) / "data")])
        try:

            async def run() -> None:
                await _wait_ready(port, time.monotonic() + 30)
                if args.bodies:
                    await bodies(port, server.pid, args.bodies, args.size_mb)
                if args.slow:
                    await slow(port, args.slow, args.hold)

            asyncio.run(run())
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(10)
            if server.poll() is None:
                server.kill()


if __name__ == "__main__":
    main()
