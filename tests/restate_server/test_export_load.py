"""Moving from embedded to Restate: state written by the embedded runtime, exported
with ``actors export`` and loaded with ``actors load-state``, is what the same classes
read on the Restate server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio

import actors

from . import restate_app
from .harness import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Single


async def _embedded(data: Path) -> None:
    async with actors.open_runtime(data, [restate_app.Counter, restate_app.Ledger]) as rt:
        assert await rt.call(restate_app.Counter.add, 40, key="moved") == 40
        assert await rt.call(restate_app.Counter.add, 2, key="moved") == 42
        for entry in (3, 1, 2):
            await rt.call(restate_app.Ledger.append, entry, key="moved")


def test_export_then_load_into_restate(single: Single, tmp_path: Path) -> None:
    data = tmp_path / "embedded.lmdb"
    anyio.run(_embedded, data)
    out = tmp_path / "export.json"
    cli = [sys.executable, "-m", "actors._cli"]
    done = subprocess.run(
        [*cli, "export", "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["in_flight"] == []
    done = subprocess.run(
        [*cli, "load-state", str(out), "--admin", single.node.admin],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "loaded the state of 2 key(s)" in done.stdout

    def value() -> object:
        response = single.ingress.post("/Counter/moved/value")
        assert response.is_success, response.text
        return response.json()

    # the admin API applies the new state through the log: it is visible shortly after
    eventually(lambda: True if value() == 42 else None, 30, "the loaded counter")
    assert single.ingress.post("/Counter/moved/add", json=1).json() == 43
    assert single.ingress.post("/Ledger/moved/items").json() == [3, 1, 2]
    assert single.ingress.post("/Ledger/moved/append", json=9).json() == 4


def test_load_state_of_an_unknown_actor_fails_naming_it(single: Single, tmp_path: Path) -> None:
    path = tmp_path / "unknown.json"
    document = {
        "format": "virtual-actors-export",
        "version": 1,
        "objects": [{"actor": "NoSuchActor", "key": "k", "state": {"n": 1}}],
        "workflows": [],
        "in_flight": [],
    }
    path.write_text(json.dumps(document))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors._cli",
            "load-state",
            str(path),
            "--admin",
            single.node.admin,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "NoSuchActor/k" in done.stderr
