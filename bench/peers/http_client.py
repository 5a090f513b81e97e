"""Workload driver over HTTP: Restate's ingress or virtual-actors' ``rt.serve_http``.

Both speak the same paths: ``POST /Counter/{key}/add`` (body ``1``), ``POST
/Counter/{key}/value``, ``POST /Steps/{id}/run`` (body ``0``), ``POST
/Steps/{id}/run/send`` and, on Restate, ``GET /restate/workflow/Steps/{id}/attach``.
Standard library only: a keep-alive HTTP/1.1 connection per caller over asyncio
streams, so it runs from any interpreter (inside the Restate network namespace too).

Modes: ``workloads`` (W1-W5, prints the result line of ``bench.peers.common``),
``submit N`` (W6's submissions), ``attach N`` (W6: seconds until all N have an output,
printed as a result line), ``post PATH BODY`` (one request, e.g. a registration).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.peers.common import (
    CALLERS,
    HANG_MARGIN,
    KEYS,
    READERS,
    STEPS,
    W4_CONCURRENCY,
    WRITERS,
    Phase,
    Settings,
    asyncio_phase,
    emit,
    perf_counter,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SUBMITTERS: Final = 64


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            kind = "Content-Type: application/json\r\n" if body else ""
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"{kind}Content-Length: {len(body)}\r\n\r\n"
            )
            try:
                self.writer.write(head.encode() + body)
                return await self._response(self.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self, reader: asyncio.StreamReader) -> bytes:
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, chunked, close = -1, False, False
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif length >= 0:
            body = await reader.readexactly(length)
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        if status >= 300:
            raise HttpError(f"HTTP {status}: {body[:300]!r}")
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def pool(base: str, n: int) -> list[Connection]:
    url = urlsplit(base)
    return [Connection(url.hostname or "127.0.0.1", url.port or 80) for _ in range(n)]


async def workloads(base: str, s: Settings, only: set[str]) -> None:
    metrics: dict[str, float] = {}
    conns = pool(base, max(*W4_CONCURRENCY, READERS + WRITERS, KEYS, CALLERS))
    readers = conns[WRITERS:]
    ids = itertools.count()
    prefix = f"wf{int(perf_counter() * 1e6)}-"

    async def add_key(i: int) -> None:
        if json.loads(await conns[i].request("POST", f"/Counter/k{i}/add", b"1")) < 1:
            raise HttpError("bad counter value")

    async def add_one(i: int) -> None:
        await conns[i].request("POST", "/Counter/one/add", b"1")

    async def read_one(i: int) -> None:
        await readers[i].request("POST", "/Counter/one/value")

    async def workflow(i: int) -> None:
        out = await conns[i].request("POST", f"/Steps/{prefix}{next(ids)}/run", b"0")
        if json.loads(out) != sum(range(STEPS)):
            raise HttpError(f"bad workflow output {out!r}")

    calls: dict[str, int] = {}

    async def phase(
        workload: str, groups: list[tuple[int, Callable[[int], Awaitable[None]]]]
    ) -> list[Phase]:
        warmups = [Phase() for _ in groups]
        await asyncio_phase(
            [(p, n, c) for p, (n, c) in zip(warmups, groups, strict=True)], s.warmup, s.cap
        )
        phases = [Phase() for _ in groups]
        await asyncio_phase(
            [(p, n, c) for p, (n, c) in zip(phases, groups, strict=True)], s.seconds, s.cap
        )
        for p in (*warmups, *phases):
            calls[workload] = calls.get(workload, 0) + len(p.latencies)
        return phases

    if "w1" in only:
        (w1,) = await phase("w1", [(1, add_one)])
        metrics["w1_p50_ms"], metrics["w1_p99_ms"] = w1.percentile_ms(0.5), w1.percentile_ms(0.99)
    if "w2" in only:
        (w2,) = await phase("w2", [(KEYS, add_key)])
        metrics["w2_rate"] = w2.rate
    if "w3" in only:
        (w3,) = await phase("w3", [(CALLERS, add_one)])
        metrics["w3_rate"] = w3.rate
    if "w5" in only:
        reads, writes = await phase("w5", [(READERS, read_one), (WRITERS, add_one)])
        metrics["w5_reads"], metrics["w5_writes"] = reads.rate, writes.rate
    if "w4" in only:
        (w4,) = await phase("w4", [(1, workflow)])
        metrics["w4_p50_ms"] = w4.percentile_ms(0.5)
        for c in W4_CONCURRENCY:
            (wc,) = await phase("w4", [(c, workflow)])
            metrics[f"w4_rate_{c}"] = wc.rate
    for conn in conns:
        conn.close()
    emit(metrics, {}, calls)


async def submit(base: str, count: int) -> None:
    conns = pool(base, SUBMITTERS)

    async def submitter(j: int) -> None:
        for i in range(j, count, SUBMITTERS):
            await conns[j].request("POST", f"/Steps/r{i}/run/send", b"0")

    await asyncio.wait_for(
        asyncio.gather(*(submitter(j) for j in range(SUBMITTERS))), HANG_MARGIN * 5
    )


async def attach(base: str, count: int) -> None:
    conns = pool(base, SUBMITTERS)
    start = perf_counter()

    async def waiter(j: int) -> None:
        for i in range(j, count, SUBMITTERS):
            deadline = perf_counter() + HANG_MARGIN
            while True:
                try:
                    out = await conns[j].request("GET", f"/restate/workflow/Steps/r{i}/attach")
                    break
                except (HttpError, ConnectionError):
                    if perf_counter() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            if json.loads(out) != sum(range(STEPS)):
                raise HttpError(f"r{i}: bad output {out!r}")

    await asyncio.wait_for(asyncio.gather(*(waiter(j) for j in range(SUBMITTERS))), HANG_MARGIN * 5)
    emit({"w6_seconds": perf_counter() - start}, {"w6_seconds": f"N={count}"})


async def wait_ready(base: str, path: str, limit: float) -> None:
    """Poll ``GET path`` until it answers below 300."""
    (conn,) = pool(base, 1)
    deadline = perf_counter() + limit
    while True:
        try:
            await conn.request("GET", path)
            return
        except (HttpError, OSError, asyncio.IncompleteReadError):
            conn.close()
            if perf_counter() > deadline:
                raise
            await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", help="e.g. http://127.0.0.1:8080")
    parser.add_argument("mode", choices=["workloads", "submit", "attach", "post", "ready"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--settings", default=Settings().to_json())
    parser.add_argument("--only", default="w1,w2,w3,w4,w5")
    a = parser.parse_args()
    if a.mode == "workloads":
        asyncio.run(workloads(a.base, Settings.from_json(a.settings), set(a.only.split(","))))
    elif a.mode == "submit":
        asyncio.run(submit(a.base, int(a.args[0])))
    elif a.mode == "attach":
        asyncio.run(attach(a.base, int(a.args[0])))
    elif a.mode == "ready":
        asyncio.run(wait_ready(a.base, a.args[0], float(a.args[1])))
    else:
        (conn,) = pool(a.base, 1)
        print(asyncio.run(conn.request("POST", a.args[0], a.args[1].encode())).decode())


if __name__ == "__main__":
    main()
