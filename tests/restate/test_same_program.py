"""The same Restate program both ways: run embedded through ``actors.restate``, and
accepted unchanged by the real SDK (``restate-sdk``, the dev extra), whose handler
discovery must describe the same services, kinds and handlers as the embedded actors.

The embedded half runs in a subprocess: ``install()`` replaces ``restate`` in the
process it runs in, and this one keeps the real SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

DRIVER = textwrap.dedent(
    """
    import json, sys
    import actors.restate
    actors.restate.install()
    sys.path.insert(0, sys.argv[1])
    import anyio, actors
    import shared_program as program

    async def main():
        out = {"kinds": {}}
        for actor in program.app.__actors__():
            out["kinds"][actor.actor_name] = [
                actor.actor_kind, {h.name: h.kind for h in actor.handlers.values()}
            ]
        async with actors.open_runtime(sys.argv[2], program.app) as rt:
            item = json.dumps({"sku": "lamp", "price": 150}).encode()
            out["add"] = (await rt.generic_call("cart", "add_item", item, key="c1")).decode()
            item = json.dumps({"sku": "bulb", "price": 5}).encode()
            out["add2"] = (await rt.generic_call("cart", "add_item", item, key="c1")).decode()
            out["total"] = (await rt.generic_call("cart", "total", b"", key="c1")).decode()
            handle = await rt.generic_send("checkout", "run", b'"c1"', key="c1")
            while await rt.generic_call("checkout", "amount", b"", key="c1") == b"":
                await anyio.sleep(0)
            await rt.generic_call("checkout", "confirm", b'"card"', key="c1")
            out["checkout"] = (await handle.result()).decode()
            try:
                await rt.generic_call("checkout", "run", b'"empty"', key="empty")
            except actors.TerminalError as exc:
                out["empty"] = [exc.message, exc.status_code]
        print(json.dumps(out))

    anyio.run(main, backend=sys.argv[3])
    """
)


def run_embedded(tmp_path: Path, backend: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(HERE), str(tmp_path / "data"), backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return parsed


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_program_runs_embedded(tmp_path: Path, backend: str) -> None:
    out = run_embedded(tmp_path, backend)
    assert (out["add"], out["add2"], out["total"]) == ("140", "145", "145")
    assert out["checkout"] == '"c1 paid 145 (card)"'
    assert out["empty"] == ["empty cart", 400]


def test_the_real_sdk_accepts_the_same_source(tmp_path: Path) -> None:
    real = pytest.importorskip("restate")
    import restate.discovery
    import restate.endpoint

    if "actors.restate" in str(getattr(real, "__file__", "")):
        pytest.fail("restate is actors.restate in this process: install() leaked into pytest")
    import shared_program as program  # imports the real restate here

    assert callable(real.app(program.SERVICES))  # the real app builds (an ASGI app)
    endpoint = restate.endpoint.Endpoint()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
    endpoint.bind(*program.SERVICES)
    discovered = restate.discovery.compute_discovery(endpoint, "bidi")
    kinds = {"SERVICE": "service", "VIRTUAL_OBJECT": "object", "WORKFLOW": "workflow"}
    handler_kinds = {
        None: "service",
        "EXCLUSIVE": "exclusive",
        "SHARED": "shared",
        "WORKFLOW": "main",
    }
    theirs = {
        service.name: [
            kinds[service.ty.name],
            {h.name: handler_kinds[h.ty.name if h.ty else None] for h in service.handlers},
        ]
        for service in discovered.services
    }
    assert theirs == run_embedded(tmp_path, "asyncio")["kinds"]
