"""A keyed virtual object: a counter per key, exclusive writes, shared reads.

Shows: exclusive handlers on one key run one at a time (1000 concurrent increments give
exactly 1000), shared reads run beside them, state survives closing and reopening the
runtime, calls between objects, and a call cycle failing with DeadlockError instead of
hanging.

Run: python examples/01_counter.py [DATA_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

import actors


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.exclusive
    async def transfer_to(self, ctx: actors.ObjectContext, other: str) -> int:
        """Move this counter's value onto another key."""
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", 0)
        return await ctx.call(Counter.add, n, key=other)

    @actors.exclusive
    async def ask_back(self, ctx: actors.ObjectContext, other: str) -> int:
        """Calls `other`, which calls us back while we hold our key: a cycle."""
        return await ctx.call(Counter.ask_back, ctx.key, key=other)


async def main(data_dir: Path) -> None:
    print(f"data directory: {data_dir}")
    async with actors.open_runtime(data_dir, [Counter]) as rt:
        print("add 5 to alice ->", await rt.call(Counter.add, 5, key="alice"))

        async def add_one_to_bob() -> None:
            await rt.call(Counter.add, 1, key="bob")

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(add_one_to_bob)
        print("1000 concurrent add(1) on bob ->", await rt.call(Counter.value, key="bob"))

        handle = await rt.send(Counter.add, 10, key="alice")
        print(f"sent add(10) to alice: {handle.status}, result {await handle.result()}")

        print("transfer alice -> carol:", await rt.call(Counter.transfer_to, "carol", key="alice"))
        try:
            await rt.call(Counter.ask_back, "bob", key="alice")
        except actors.DeadlockError as exc:
            print(f"DeadlockError ({exc.status_code}): {exc}")

    async with actors.open_runtime(data_dir, [Counter]) as rt:
        values = {k: await rt.call(Counter.value, key=k) for k in ("alice", "bob", "carol")}
        print("after reopening:", values)
        assert values == {"alice": 0, "bob": 1000, "carol": 15}, values
    print("state survived the restart")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trio.run(main, Path(tmp) / "counter")
