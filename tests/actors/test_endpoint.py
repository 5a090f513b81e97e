"""``actors.endpoint`` without a server: the ASGI app's discovery manifest says what
Restate will register (names, kinds, options), and bad input is refused with a clear
error. The behaviour against a real server is tests/restate_server's (make test-restate)."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from restate_server import restate_app

import actors
import actors.endpoint
from actors.endpoint._serde import ConverterSerde

MANIFEST = "application/vnd.restate.endpointmanifest.v4+json"
REPO = Path(__file__).resolve().parents[2]


def _discover(app: Any) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://endpoint") as c:
            response = await c.get("/discover", headers={"accept": MANIFEST})
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

    return asyncio.run(get())


class Tuned(actors.VirtualObject, name="tuned", retention=60):
    @actors.exclusive(inactivity_timeout=5, retry=actors.RetryPolicy(max_attempts=3))
    async def put(self, ctx: actors.ObjectContext, data: bytes) -> bytes:
        return data

    @actors.shared(ingress_private=True)
    async def peek(self, ctx: actors.ObjectSharedContext) -> int:
        return 0


def test_endpoint_discovery_lists_every_actor_and_handler() -> None:
    manifest = _discover(actors.endpoint.app(restate_app.ACTORS))
    services = {s["name"]: s for s in manifest["services"]}
    assert set(services) == {
        "Counter",
        "Ledger",
        "Box",
        "Greeter",
        "Echo",
        "Orchestrator",
        "Signup",
        "Trip",
        "Steps",
    }
    kinds = {name: s["ty"] for name, s in services.items()}
    assert kinds["Counter"] == "VIRTUAL_OBJECT"
    assert kinds["Greeter"] == "SERVICE"
    assert kinds["Signup"] == "WORKFLOW"
    handlers = {h["name"]: h.get("ty") for h in services["Counter"]["handlers"]}
    assert handlers == {
        "add": "EXCLUSIVE",
        "value": "SHARED",
        "reset": "EXCLUSIVE",
        "add_twice": "EXCLUSIVE",
        "fail": "EXCLUSIVE",
    }
    workflow = {h["name"]: h.get("ty") for h in services["Signup"]["handlers"]}
    assert workflow == {"run": "WORKFLOW", "approve": "SHARED", "peek": "SHARED", "stage": "SHARED"}
    # a handler without input declares none
    value = next(h for h in services["Counter"]["handlers"] if h["name"] == "value")
    assert "input" not in value or value["input"].get("contentType") is None


def test_endpoint_carries_handler_options() -> None:
    manifest = _discover(actors.endpoint.app([Tuned]))
    (service,) = manifest["services"]
    assert service["name"] == "tuned"
    handlers = {h["name"]: h for h in service["handlers"]}
    put, peek = handlers["put"], handlers["peek"]
    assert put["inactivityTimeout"] == 5000
    assert put["idempotencyRetention"] == 60000
    assert put["retryPolicyMaxAttempts"] == 3
    assert put["input"]["contentType"] == "*/*"
    assert put["output"]["contentType"] == "application/octet-stream"
    assert peek["ingressPrivate"] is True


def test_endpoint_app_takes_instances_and_factories() -> None:
    by_factory = _discover(actors.endpoint.app(lambda: [restate_app.Counter()]))
    assert [s["name"] for s in by_factory["services"]] == ["Counter"]
    single = _discover(actors.endpoint.app(restate_app.Greeter))
    assert [s["name"] for s in single["services"]] == ["Greeter"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "non-empty list"),
        ("Counter", "non-empty list"),
        ([object], "is not an actor class"),
        ([restate_app.Counter, restate_app.Counter], "two actors are named 'Counter'"),
    ],
)
def test_endpoint_app_refuses_what_is_not_actors(value: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        actors.endpoint.app(value)


def test_endpoint_app_refuses_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="protocol"):
        actors.endpoint.app([restate_app.Counter], protocol="grpc")


def test_endpoint_converter_serde_round_trips_dataclasses() -> None:
    serde = ConverterSerde[Any](restate_app.User, "input", strict=True)
    user = serde.deserialize(b'{"name": "ada", "age": 36}')
    assert user == restate_app.User("ada", 36)
    assert serde.serialize(user) == b'{"name":"ada","age":36}'
    assert ConverterSerde[Any](type(None), "output").serialize(None) == b""
    assert ConverterSerde[Any](object, "output").deserialize(b"") is None
    with pytest.raises(actors.SerializationError, match="input"):
        serde.deserialize(b'{"name": 5, "age": 36}')
    with pytest.raises(actors.SerializationError):
        serde.deserialize(b'{"name": "ada", "age": 36, "extra": 1}')


def test_endpoint_cli_reports_bad_specs() -> None:
    for spec, message in [
        ("nomodule_h16:ACTORS", "cannot import"),
        ("tests.restate_server.restate_app:NOPE", "has no attribute"),
        ("tests.restate_server.restate_app:User", "is not an actor class"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "actors._cli", "endpoint", spec, "--port", "1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert message in done.stderr, done.stderr


def test_actors_never_imports_the_endpoint() -> None:
    """``actors.endpoint`` sits above ``actors``: only the CLI's ``endpoint`` command
    imports it, inside the function, so ``import actors`` never needs restate."""
    for path in sorted((REPO / "actors").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.startswith("actors.endpoint") or n == "endpoint" for n in names):
                assert path.name == "_cli.py", f"{path.name} imports actors.endpoint"
                assert node.col_offset > 0, "the CLI imports actors.endpoint lazily"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, actors; print('restate' in sys.modules, 'actors.endpoint' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False", "False"]
