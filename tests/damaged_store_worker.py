"""Open damaged data directories in a process of their own, one after the other.

Run as a script; a SIGBUS or SIGSEGV while reading a damaged file then shows as the
worker's signal exit, and the lines it printed before say which directory did it::

    python tests/damaged_store_worker.py make DATA_DIR
    python tests/damaged_store_worker.py OPENER IDS_FILE DATA_DIR...

``make`` builds the directory the damage is done to: 120 invocations of
``Counter.add`` over 7 keys (each reads state, runs a step and writes state, so every
table has data), and prints their ids as a JSON list.

``OPENER`` is ``store`` (``Store.open`` and a scan of every table), ``reader``
(``StoreReader.open`` and the same scans), ``runtime-trio`` / ``runtime-asyncio``
(``open_runtime``, then every key's value and the result of every id in IDS_FILE) or
``cli`` (``actors invocations -d DATA_DIR``, then ``journal`` of the first id and
``state`` of the first key, in this process). For each directory it prints one JSON
line: ``{"dir", "outcome": "ok" | "error", "error", "message"}`` (for ``cli`` also
``"status"``, ``"rows"`` and ``"stderr"`` of ``invocations``, and ``"others"``: the
``[status, stderr]`` of the other two). Anything but the errors a
damaged store is allowed to give is reported with its type, never raised, so the
caller sees it in the line instead of as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script, tests/ comes first on sys.path, and the test folder tests/actors/
    # would shadow the actors package.
    del sys.path[0]

import trio

import actors
from actors._cli import main as cli_main
from actors._files import DATA_DIR_FILES
from actors.storage import Store, StoreReader, Table

if TYPE_CHECKING:
    from collections.abc import Callable

KEYS = 7
INVOCATIONS = 120


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, amount: int) -> int:
        value = (await ctx.get("value", int)) or 0
        await ctx.run("audit", lambda: f"add {amount}")
        ctx.set("value", value + amount)
        return value + amount

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("value", int)) or 0


async def make(path: Path) -> list[str]:
    async with actors.open_runtime(path, [Counter], durability="process") as rt:
        handles = [await rt.send(Counter.add, i, key=f"k{i % KEYS}") for i in range(INVOCATIONS)]
        for handle in handles:
            await handle.result()
    return [handle.invocation_id for handle in handles]


def scan_everything(scan: Callable[[Table], list[tuple[bytes, bytes]]]) -> int:
    return sum(len(scan(table)) for table in Table)


def open_store(path: Path) -> None:
    with Store.open(path, extra_files=DATA_DIR_FILES) as store:
        scan_everything(store.scan)


def open_reader(path: Path) -> None:
    with StoreReader.open(path) as reader, reader.read() as view:
        scan_everything(view.scan)


async def open_runtime(path: Path, ids: list[str]) -> None:
    async with actors.open_runtime(path, [Counter], durability="process") as rt:
        for key in range(KEYS):
            await rt.call(Counter.value, key=f"k{key}")
        for invocation_id in ids:
            with contextlib.suppress(actors.TerminalError):
                await rt.attach(invocation_id)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli_main(list(argv))
        except SystemExit as exc:
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def run_cli(path: Path, ids: list[str]) -> dict[str, object]:
    status, out, err = cli("invocations", "-d", str(path))
    others = [
        cli("journal", "-d", str(path), ids[0])[::2],
        cli("state", "-d", str(path), "Counter", "k0")[::2],
    ]
    rows = max(len(out.splitlines()) - 1, 0)
    return {"status": status, "rows": rows, "stderr": err, "others": others}


def report(path: Path, opener: str, ids: list[str]) -> dict[str, object]:
    line: dict[str, object] = {"dir": str(path), "outcome": "ok"}
    try:
        if opener == "store":
            open_store(path)
        elif opener == "reader":
            open_reader(path)
        elif opener == "runtime-trio":
            trio.run(open_runtime, path, ids)
        elif opener == "runtime-asyncio":
            asyncio.run(open_runtime(path, ids))
        elif opener == "cli":
            line.update(run_cli(path, ids))
        else:
            raise SystemExit(f"unknown opener {opener!r}")
    except Exception as exc:  # reported, not raised: the parent judges it
        line.update(outcome="error", error=type(exc).__name__, message=str(exc))
    return line


def main(argv: list[str]) -> None:
    if argv[0] == "make":
        print(json.dumps(trio.run(make, Path(argv[1]))))
        return
    opener, ids_file, *dirs = argv
    ids = json.loads(Path(ids_file).read_text())
    for data in dirs:
        print(json.dumps(report(Path(data), opener, ids)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
