"""``actors export``: the state of every object, the runs of workflows and what was
still in flight, from a data directory, as one JSON document (exact contents)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import actors

if TYPE_CHECKING:
    from pathlib import Path


class Account(actors.VirtualObject):
    @actors.exclusive
    async def deposit(self, ctx: actors.ObjectContext, amount: int) -> int:
        balance = (await ctx.get("balance", int)) or 0
        ctx.set("balance", balance + amount)
        ctx.set("owner", {"name": ctx.key})
        return balance + amount


class Order(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, item: str) -> str:
        ctx.set("item", item)
        if item == "wait":
            await ctx.promise("paid", str).value()
        return f"shipped {item}"


def _export(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors._cli", "export", "--data", str(data), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_export_writes_state_workflows_and_in_flight(tmp_path: Path) -> None:
    data = tmp_path / "app.lmdb"
    async with actors.open_runtime(data, [Account, Order]) as rt:
        assert await rt.call(Account.deposit, 5, key="alice") == 5
        assert await rt.call(Account.deposit, 2, key="alice") == 7
        assert await rt.call(Account.deposit, 1, key="bob") == 1
        assert await rt.call(Order.run, "book", key="o1") == "shipped book"
        waiting = await rt.send(Order.run, "wait", key="o2")
        done = await rt.attach_workflow(Order, "o1")
        assert done == "shipped book"
    out = tmp_path / "export.json"
    finished = _export(data, "--out", str(out))
    assert finished.returncode == 0, finished.stderr
    assert "1 invocation(s) had not finished" in finished.stderr
    document = json.loads(out.read_text())
    assert document["format"] == "virtual-actors-export"
    assert document["version"] == 1
    assert document["objects"] == [
        {"actor": "Account", "key": "alice", "state": {"balance": 7, "owner": {"name": "alice"}}},
        {"actor": "Account", "key": "bob", "state": {"balance": 1, "owner": {"name": "bob"}}},
        {"actor": "Order", "key": "o1", "state": {"item": "book"}},
        {"actor": "Order", "key": "o2", "state": {"item": "wait"}},
    ]
    runs = {run["id"]: run for run in document["workflows"]}
    assert runs["o1"]["status"] == "completed"
    assert runs["o1"]["outcome"] == {"value": "shipped book"}
    assert runs["o2"]["invocation_id"] == waiting.invocation_id
    assert runs["o2"]["outcome"] is None
    (flight,) = document["in_flight"]
    assert flight["id"] == waiting.invocation_id
    assert (flight["actor"], flight["key"], flight["handler"]) == ("Order", "o2", "run")
    # stdout by default, the same document
    assert json.loads(_export(data).stdout) == document


def test_export_of_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    finished = _export(tmp_path / "nothing")
    assert finished.returncode == 1
    assert finished.stderr.startswith("actors: error:")
    assert "Traceback" not in finished.stderr


def test_load_state_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"objects": []}')
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors._cli",
            "load-state",
            str(path),
            "--admin",
            "http://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 1
    assert "not an `actors export` document" in finished.stderr
