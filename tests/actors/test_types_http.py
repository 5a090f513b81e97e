"""Handler inputs and outputs of every supported kind over HTTP (issue 13 item 5):
pydantic models by alias, msgspec Structs, unknown fields refused naming them unless the
class is marked ``actors.allow_extra_fields``, raw ``bytes`` bodies, a real socket; and
pydantic staying optional (the embedded cases: test_types.py). Every coroutine test runs
under trio and asyncio (conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

import actors
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


from typed_actors import (
    ACTORS,
    LoosePoint,
    LooseSettings,
    Point,
    Settings,
    error_message,
    open_client,
)

# --- over HTTP ---------------------------------------------------------------------------


async def test_http_pydantic_camel_case_in_and_out() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        body = {"fullName": "Ada", "age": 36, "address": {"streetName": "Main", "zipCode": "1"}}
        response = await client.post("/Shop/k/register", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {**body, "fullName": "ADA", "joined": None}
        # populate_by_name: the field names are accepted too
        by_name = {"full_name": "Bob", "age": 1}
        response = await client.post("/Shop/b/register", json=by_name)
        assert response.status_code == 200, response.text
        assert response.json()["fullName"] == "BOB"
        stored = await client.post("/Shop/b/customer")
        assert stored.json() == {"fullName": "Bob", "age": 1, "address": None, "joined": None}


async def test_http_pydantic_validation_errors_are_400_naming_the_field() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        negative = await client.post("/Shop/k/register", json={"fullName": "Ada", "age": -1})
        message = error_message(negative, 400)
        assert "$.age" in message
        assert "age must not be negative" in message
        missing = await client.post("/Shop/k/register", json={"age": 3})
        message = error_message(missing, 400)
        assert "$.fullName" in message
        assert "Field required" in message
        nested = await client.post(
            "/Shop/k/many", json=[{"fullName": "a", "age": 1}, {"fullName": "b", "age": "x"}]
        )
        assert "$[1].age" in error_message(nested, 400)
        # An alias without populate_by_name: the field name is not the wire name.
        by_name = await client.post("/Shop/k/alias_only", json={"item_id": "i"})
        assert "$.itemId" in error_message(by_name, 400)
        ok = await client.post("/Shop/k/alias_only", json={"itemId": "i"})
        assert ok.json() == {"itemId": "i"}
        # nothing was stored for the refused requests
        nothing = await client.post("/Shop/k/customer")
        assert (nothing.status_code, nothing.content) == (200, b"")  # None: an empty body


async def test_http_msgspec_struct() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        response = await client.post("/Shop/k/order", json={"orderId": "o", "quantity": 2})
        assert response.json() == {"orderId": "o", "quantity": 4}
        wrong = await client.post("/Shop/k/order", json={"orderId": "o", "quantity": "2"})
        message = error_message(wrong, 400)
        assert "$.quantity" in message
        assert "Expected `int`, got `str`" in message


async def test_http_unknown_fields_are_refused_naming_them() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        point = await client.post("/Echo/point", json={"x": 1, "y": 2, "z": 3, "w": 4})
        assert "extra fields found (w, z) @ $" in error_message(point, 400)
        nested = {"start": {"x": 1, "y": 2}, "end": {"x": 3, "y": 4, "q": 0}}
        segment = await client.post("/Echo/segment", json=nested)
        assert "extra fields found (q) @ $.end" in error_message(segment, 400)
        label = await client.post("/Echo/label", json={"text": "t", "colour": "red"})
        assert "extra fields found (colour)" in error_message(label, 400)
        settings = await client.post("/Echo/settings", json={"theme": "d", "size": 1, "x": 0})
        assert "extra fields found (x)" in error_message(settings, 400)
        # Without the unknown field, each is fine.
        assert (await client.post("/Echo/point", json={"x": 1, "y": 2})).json() == {"x": 2, "y": 1}
        assert (await client.post("/Echo/label", json={"text": "t"})).json() == {"text": "t"}


async def test_http_classes_marked_allow_extra_fields_ignore_unknown_fields() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        loose = await client.post("/Echo/loose", json={"x": 1, "y": 2, "z": 3})
        assert loose.json() == {"x": 1, "y": 2}
        label = await client.post("/Echo/loose_label", json={"text": "t", "colour": "red"})
        assert label.json() == {"text": "t"}
        settings = await client.post("/Echo/loose_settings", json={"theme": "d", "size": 1})
        assert settings.json() == {"theme": "d", "size": 1}  # a dict keeps what it got
        # Extra fields are allowed; a missing one is still an error.
        missing = await client.post("/Echo/loose", json={"x": 1, "z": 3})
        assert "required field missing @ $.y" in error_message(missing, 400)


def test_allow_extra_fields_marks_only_the_class_itself() -> None:
    @dataclass
    class Child(LoosePoint):
        z: int = 0

    assert actors.allow_extra_fields(LoosePoint) is LoosePoint
    from actors._types import extra_fields_allowed

    assert extra_fields_allowed(LoosePoint)
    assert extra_fields_allowed(LooseSettings)
    assert not extra_fields_allowed(Settings)
    assert not extra_fields_allowed(Child)
    assert not extra_fields_allowed(Point)
    with pytest.raises(TypeError, match=r"dataclass, an attrs class or a TypedDict"):
        actors.allow_extra_fields(int)


async def test_http_bytes_handler_takes_and_answers_the_raw_body() -> None:
    async with open_test_runtime(ACTORS) as rt, open_client(rt) as client:
        body = b"\x00\xff not json {"
        response = await client.post(
            "/Echo/raw", content=body, headers={"content-type": "application/octet-stream"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == body[::-1]
        empty = await client.post("/Echo/raw")
        assert (empty.status_code, empty.content) == (200, b"")
        assert empty.headers["content-type"] == "application/octet-stream"
        sent = await client.post("/Echo/raw/send", content=b"abc")
        assert sent.status_code == 202
        invocation_id = sent.json()["invocationId"]
        attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
        assert (attached.status_code, attached.content) == (200, b"cba")
        assert attached.headers["content-type"] == "application/octet-stream"
        # A JSON handler still answers JSON.
        point = await client.post("/Echo/point", json={"x": 1, "y": 2})
        assert point.headers["content-type"] == "application/json"


async def test_http_pydantic_over_a_real_socket(tmp_path: Path) -> None:
    """hypercorn (trio or asyncio worker, per the backend) decodes the body with the
    handler's model and answers with its aliases, also on attach."""
    async with (
        open_test_runtime(ACTORS, path=tmp_path / "data") as rt,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body = {"fullName": "Ada", "age": 36}
            response = await client.post("/Shop/k/register", json=body)
            assert response.json()["fullName"] == "ADA"
            sent = await client.post("/Shop/j/register/send", json=body)
            invocation_id = sent.json()["invocationId"]
            attached = await client.get(f"/restate/invocation/{invocation_id}/attach")
            assert attached.json() == {
                "fullName": "ADA",
                "age": 36,
                "address": None,
                "joined": None,
            }
            bad = await client.post("/Shop/k/register", json={"fullName": "Ada"})
            assert "$.age" in error_message(bad, 400)
            raw = await client.post("/Echo/raw", content=b"\x01\x02")
            assert raw.content == b"\x02\x01"
        tg.cancel_scope.cancel()


# --- pydantic stays optional ---------------------------------------------------------------

WITHOUT_PYDANTIC = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class NoPydantic(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pydantic" or name.startswith("pydantic."):
                raise ImportError(f"{name} is blocked by the test")
            return None

    sys.meta_path.insert(0, NoPydantic())
    try:
        import pydantic  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block pydantic")

    import dataclasses, msgspec, trio
    import actors, actors.testing

    class BaseModel:  # a class of this name is not a pydantic model
        pass

    @actors.allow_extra_fields
    @dataclasses.dataclass
    class Loose:
        x: int

    class Order(msgspec.Struct):
        quantity: int

    class Echo(actors.Service):
        @actors.handler
        async def loose(self, ctx: actors.Context, value: Loose) -> Loose:
            return value

        @actors.handler
        async def order(self, ctx: actors.Context, value: Order) -> Order:
            return value

        @actors.handler
        async def raw(self, ctx: actors.Context, value: bytes) -> bytes:
            return value

        @actors.handler
        async def plain(self, ctx: actors.Context, value: object) -> object:
            return value

    async def main():
        async with actors.testing.open_test_runtime([Echo]) as rt:
            assert await rt.call(Echo.loose, Loose(1)) == Loose(1)
            assert await rt.call(Echo.order, Order(2)) == Order(2)
            assert await rt.call(Echo.raw, b"\\x00") == b"\\x00"
            assert await rt.call(Echo.plain, {"a": 1}) == {"a": 1}
            try:
                await rt.call(Echo.plain, BaseModel())
            except actors.SerializationError as exc:
                print("refused:", exc)
        assert not any(m.split(".")[0] == "pydantic" for m in sys.modules)
        print("ok")

    trio.run(main)
    """
)


def test_actors_works_without_pydantic() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYDANTIC],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok"
    assert lines[0].startswith("refused: cannot serialize")


def test_importing_actors_does_not_import_pydantic() -> None:
    program = (
        "import sys, actors, actors.testing, actors._ingress, actors._cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
