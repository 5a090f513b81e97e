"""Drives Restate's Python ingress client (``restate.client``, from the pinned
``restate-sdk[client]`` of the dev extra) against an ingress serving ``clients_app.py``,
and prints what it observed as one JSON object: check name -> observation.
``test_restate_clients.py`` compares it with the exact answers Restate gives.

    python python_checks.py URL

A separate process: the real ``restate`` package is imported here only, never in the
test process (where ``import restate`` may mean ``actors.restate``). The client needs
Restate service definitions to name its targets; they mirror ``clients_app.py`` and
their bodies never run. Invocation ids are normalised to ``"<inv>"``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import restate
from restate.client import create_client
from restate.client_types import HttpError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from restate.client_types import RestateClient

greeter = restate.Service("Greeter")
counter = restate.VirtualObject("Counter")
approval = restate.Workflow("Approval")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    raise NotImplementedError  # only named by the client


@greeter.handler()
async def nothing(ctx: restate.Context) -> None:
    raise NotImplementedError


@greeter.handler()
async def record(ctx: restate.Context, name: str) -> int:
    raise NotImplementedError


@greeter.handler()
async def fail(ctx: restate.Context, code: int) -> str:
    raise NotImplementedError


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    raise NotImplementedError


@counter.handler(kind="shared")
async def value(ctx: restate.ObjectSharedContext) -> int:
    raise NotImplementedError


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    raise NotImplementedError


@approval.main()
async def run(ctx: restate.WorkflowContext, request: str) -> str:
    raise NotImplementedError


_INVOCATION_ID = re.compile(r"inv_[0-9a-z]+")


def normalise(value: Any) -> Any:
    if isinstance(value, bytes):
        return "bytes:" + value.decode()
    if isinstance(value, str):
        return "<inv>" if _INVOCATION_ID.fullmatch(value) else value
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


async def checks(client: RestateClient) -> dict[str, Any]:
    results: dict[str, Any] = {}

    async def check(name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            results[name] = normalise(await fn())
        except HttpError as exc:
            try:
                body = json.loads(exc.body or "")
            except ValueError:
                body = exc.body
            results[name] = {"status": exc.status_code, "body": body}
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}

    async def idempotent_add() -> dict[str, int]:
        first = await client.object_call(add, "py-idem", 4, idempotency_key="py-add")
        second = await client.object_call(add, "py-idem", 4, idempotency_key="py-add")
        return {
            "first": first,
            "second": second,
            "value": await client.object_call(value, "py-idem", None),
        }

    async def idempotent_record() -> dict[str, int]:
        first = await client.service_call(record, "p1", idempotency_key="py-record")
        second = await client.service_call(record, "p1", idempotency_key="py-record")
        return {"first": first, "second": second}

    async def send(delay: timedelta | None, idempotency_key: str | None) -> str:
        handle = await client.object_send(
            add, "py-sent", 1, send_delay=delay, idempotency_key=idempotency_key
        )
        return handle.invocation_id

    async def workflow() -> dict[str, str]:
        first = await client.workflow_send(run, "py-wf", "py order")
        again = await client.workflow_send(run, "py-wf", "py order")
        return {
            "first": first.invocation_id,
            "same": str(first.invocation_id == again.invocation_id),
        }

    await check("service call", lambda: client.service_call(greet, "ada"))
    await check("object call", lambda: client.object_call(add, "py", 2))
    await check("void handler", lambda: client.service_call(nothing, None))
    await check("void object handler", lambda: client.object_call(reset, "py", None))
    await check("idempotent call, twice", idempotent_add)
    await check("idempotent service call, twice", idempotent_record)
    await check("send", lambda: send(None, None))
    await check("delayed send", lambda: send(timedelta(milliseconds=200), None))
    await check("idempotent delayed send", lambda: send(timedelta(seconds=1), "py-send"))
    await check("terminal error", lambda: client.service_call(fail, 418))
    await check("workflow send", workflow)
    await check("generic call", lambda: client.generic_call("Greeter", "greet", b'"gen"'))
    await check(
        "generic call, empty output",
        lambda: client.generic_call("Counter", "reset", b"", key="py"),
    )
    await check(
        "generic send",
        lambda: _invocation_id(client.generic_send("Greeter", "greet", b'"gen"')),
    )
    return results


async def _invocation_id(handle: Awaitable[Any]) -> str:
    return str((await handle).invocation_id)


async def main(url: str) -> None:
    async with create_client(url) as client:
        results = await asyncio.wait_for(checks(client), timeout=60)
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
