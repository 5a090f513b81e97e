"""virtual-actors behind its HTTP ingress (``rt.serve_http``), serving the workloads'
Counter and Steps on 127.0.0.1. Exits with status 3 when this checkout has no
``serve_http`` yet (``run.py`` shows a "not available" row).

    python bench/peers/va_http_server.py --port 18080 --durability fsync --dir DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

# This checkout's actors and bench, first: an editable install of another checkout
# would otherwise win (so a benchmark run from a worktree measures that worktree).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import actors
from bench.peers.va_embedded import Counter, Steps

NOT_AVAILABLE = 3


async def serve(directory: Path, durability: Any, port: int) -> None:
    async with actors.open_runtime(directory, [Counter, Steps], durability=durability) as rt:
        serve_http = getattr(rt, "serve_http", None)
        if serve_http is None:
            print("rt.serve_http is not available in this checkout", file=sys.stderr)
            sys.exit(NOT_AVAILABLE)
        await serve_http("127.0.0.1", port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    if not hasattr(actors.Runtime, "serve_http"):
        print("rt.serve_http is not available in this checkout", file=sys.stderr)
        sys.exit(NOT_AVAILABLE)
    trio.run(serve, args.dir, args.durability, args.port)


if __name__ == "__main__":
    main()
