"""Ingress-private handlers (``ingress_private=True``, on a decorator or as a class
keyword): the HTTP ingress answers for them exactly what it answers for a handler (or
actor, or invocation) that does not exist, on every route, while actors and the
embedded runtime still call them. Each test runs under trio and asyncio, in-process
through ``httpx.ASGITransport`` (as test_ingress.py does)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import httpx

import actors
from actors._ingress import IngressApp
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from actors._runtime import Runtime


class Vault(actors.VirtualObject):
    """``secret`` and ``stash`` are private; ``reveal`` reaches them from inside."""

    @actors.exclusive(ingress_private=True)
    async def secret(self, ctx: actors.ObjectContext, n: int) -> int:
        ctx.set("n", n)
        return n * 10

    @actors.shared(ingress_private=True)
    async def stash(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)

    @actors.exclusive
    async def reveal(self, ctx: actors.ObjectContext, n: int) -> int:
        return await ctx.call(Vault.secret, n, key=f"{ctx.key}-inner")

    @actors.exclusive
    async def forward(self, ctx: actors.ObjectContext, n: int) -> str:
        handle = await ctx.send(Vault.secret, n, key=f"{ctx.key}-inner")
        return handle.invocation_id

    @actors.shared
    async def public_read(self, ctx: actors.ObjectSharedContext) -> int | None:
        return await ctx.get("n", int)


class Internal(actors.Service, ingress_private=True):
    """A whole private service, but for the one handler that opts back in."""

    @actors.handler
    async def work(self, ctx: actors.Context, n: int) -> int:
        return n + 1

    @actors.handler(ingress_private=False)
    async def status(self, ctx: actors.Context) -> str:
        return "up"


class Hidden(actors.Service, ingress_private=True):
    @actors.handler
    async def work(self, ctx: actors.Context, n: int) -> int:
        return n - 1


class Caller(actors.Service):
    @actors.handler
    async def via_hidden(self, ctx: actors.Context, n: int) -> int:
        return await ctx.call(Hidden.work, n)


class Approval(actors.Workflow):
    """Its main is private (started only by the program); the shared handlers are not."""

    @actors.main(ingress_private=True)
    async def run(self, ctx: actors.WorkflowContext, name: str) -> str:
        ctx.set("name", name)
        return f"approved {name}"

    @actors.shared
    async def name(self, ctx: actors.WorkflowSharedContext) -> str | None:
        return await ctx.get("name", str)


class Ledger(actors.Workflow, ingress_private=True):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext) -> str:
        return "booked"


ALL = [Vault, Internal, Hidden, Caller, Approval, Ledger]


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    async with open_test_runtime(ALL) as rt:
        transport = httpx.ASGITransport(app=IngressApp(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield rt, client


def answer(response: httpx.Response) -> tuple[int, dict[str, object], str]:
    return response.status_code, response.json(), response.headers["x-restate-error-source"]


def unknown(message: str, status: int = 404) -> tuple[int, dict[str, object], str]:
    return status, {"code": status, "message": message}, "ingress"


async def test_a_private_handler_answers_as_a_missing_one() -> None:
    async with serving() as (_rt, client):
        for name in ("secret", "stash", "nosuch"):
            missing = unknown(f"actor 'Vault' has no handler {name!r}")
            assert answer(await client.post(f"/Vault/k/{name}", json=1)) == missing
            assert answer(await client.post(f"/Vault/k/{name}/send", json=1)) == missing
            assert answer(await client.post(f"/Vault/k/{name}/send?delay=1s", json=1)) == missing
            # The shapes that give advice for a served handler give none for it.
            no_route = unknown(f"no route for /Vault/{name}")
            assert answer(await client.post(f"/Vault/{name}", json=1)) == no_route
            # (A missing handler's name is read as a key here, "send" as the handler.)
            as_key = unknown("actor 'Vault' has no handler 'send'")
            assert answer(await client.post(f"/Vault/{name}/send", json=1)) == as_key
        # A served handler on the same object still answers (and gets its advice).
        assert (await client.post("/Vault/k/public_read")).status_code == 200
        assert (await client.post("/Vault/public_read")).status_code == 400


async def test_a_private_handler_stores_nothing_from_the_ingress() -> None:
    async with serving() as (rt, client):
        assert (await client.post("/Vault/k/secret", json=3)).status_code == 404
        assert (await client.post("/Vault/k/secret/send", json=3)).status_code == 404
        assert await rt.call(Vault.public_read, key="k") is None
        assert rt.statistics().in_flight == 0


async def test_actors_and_the_embedded_runtime_still_call_it() -> None:
    async with serving() as (rt, client):
        response = await client.post("/Vault/k/reveal", json=4)  # public -> private
        assert (response.status_code, response.json()) == (200, 40)
        assert await rt.call(Vault.stash, key="k-inner") == 4
        assert await rt.call(Vault.secret, 5, key="k") == 50
        handle = await rt.send(Vault.secret, 6, key="k")
        assert await handle.result() == 60
        response = await client.post("/Caller/via_hidden", json=8)  # into a hidden actor
        assert (response.status_code, response.json()) == (200, 7)
        assert await rt.call(Hidden.work, 1) == 0
        assert await rt.call(Internal.work, 1) == 2


async def test_a_private_actor_answers_as_an_unregistered_one() -> None:
    async with serving() as (_rt, client):
        for name, path in (
            ("Hidden", "/Hidden/work"),
            ("Hidden", "/Hidden/work/send"),
            ("Hidden", "/Hidden/k/work"),
            ("Ledger", "/Ledger/w/run"),
            ("Ledger", "/Ledger/w/run/send"),
            ("Nowhere", "/Nowhere/work"),
        ):
            expected = unknown(f"actor {name!r} is not registered with this runtime")
            assert answer(await client.post(path, json=1)) == expected
            # Not even the method check tells it apart from one that does not exist.
            assert answer(await client.get(path)) == expected


async def test_a_class_keyword_is_overridden_by_the_handler() -> None:
    async with serving() as (_rt, client):
        response = await client.post("/Internal/status")
        assert (response.status_code, response.json()) == (200, "up")
        missing = unknown("actor 'Internal' has no handler 'work'")
        assert answer(await client.post("/Internal/work", json=1)) == missing


async def test_health_lists_only_served_actors() -> None:
    async with serving() as (_rt, client):
        response = await client.get("/restate/health")
        assert response.json() == {"services": ["Approval", "Caller", "Internal", "Vault"]}


async def test_attach_and_output_by_id_hide_private_invocations() -> None:
    async with serving() as (rt, client):
        private = await rt.send(Vault.secret, 1, key="k")
        assert await private.result() == 10
        # An invocation a public handler sent: its id reached an HTTP client.
        response = await client.post("/Vault/k/forward", json=2)
        forwarded = response.json()
        assert await rt.attach(forwarded) == 20
        public = await rt.send(Vault.public_read, key="k")
        for invocation_id in (private.invocation_id, forwarded, "inv_nosuch"):
            expected = unknown(f"no invocation {invocation_id!r}")
            for what in ("attach", "output"):
                path = f"/restate/invocation/{invocation_id}/{what}"
                assert answer(await client.get(path)) == expected
        ok = await client.get(f"/restate/invocation/{public.invocation_id}/attach")
        assert (ok.status_code, ok.json()) == (200, 1)


async def test_attach_and_output_by_idempotency_key_hide_private_handlers() -> None:
    async with serving() as (rt, client):
        handle = await rt.send(Vault.secret, 1, key="k", idempotency_key="idem")
        await handle.result()
        assert await rt.attach_idempotent(Vault.secret, "idem", key="k") == 10
        for what in ("attach", "output"):
            for name in ("secret", "nosuch"):
                path = f"/restate/invocation/Vault/k/{name}/idem/{what}"
                missing = unknown(f"actor 'Vault' has no handler {name!r}")
                assert answer(await client.get(path)) == missing
            path = f"/restate/invocation/Hidden/work/idem/{what}"
            hidden = unknown("actor 'Hidden' is not registered with this runtime")
            assert answer(await client.get(path)) == hidden
            # The key-shape advice would tell a keyed actor from a service: none here.
            path = f"/restate/invocation/Hidden/k/work/idem/{what}"
            assert answer(await client.get(path)) == hidden


async def test_workflow_routes_hide_a_private_main_and_a_private_workflow() -> None:
    async with serving() as (rt, client):
        run = await rt.send(Approval.run, "ada", key="w")
        assert await run.result() == "approved ada"
        ledger = await rt.send(Ledger.run, key="w")
        assert await ledger.result() == "booked"
        for what in ("attach", "output"):
            # A run exists, but its main is private: as if none had been submitted.
            path = f"/restate/workflow/Approval/w/{what}"
            expected = unknown("no run of workflow 'Approval' with id 'w'")
            assert answer(await client.get(path)) == expected
            path = f"/restate/workflow/Approval/other/{what}"
            expected = unknown("no run of workflow 'Approval' with id 'other'")
            assert answer(await client.get(path)) == expected
            path = f"/restate/workflow/Ledger/w/{what}"
            expected = unknown("workflow 'Ledger' is not registered with this runtime")
            assert answer(await client.get(path)) == expected
        missing = unknown("actor 'Approval' has no handler 'run'")
        assert answer(await client.post("/Approval/w2/run", json="bob")) == missing
        assert answer(await client.post("/Approval/w2/run/send", json="bob")) == missing
        response = await client.post("/Approval/w/name")  # its shared handlers are served
        assert (response.status_code, response.json()) == (200, "ada")
        assert await rt.attach_workflow(Approval, "w") == "approved ada"


async def test_serve_http_on_a_real_socket_hides_private_handlers(tmp_path: Path) -> None:
    """What ``actors serve`` runs (``rt.serve_http``), on port 0, under trio and asyncio."""
    async with (
        open_test_runtime(ALL, path=tmp_path / "data") as rt,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            missing = unknown("actor 'Vault' has no handler 'secret'")
            assert answer(await client.post("/Vault/k/secret", json=1)) == missing
            hidden = unknown("actor 'Hidden' is not registered with this runtime")
            assert answer(await client.post("/Hidden/work/send", json=1)) == hidden
            response = await client.post("/Vault/k/reveal", json=2)
            assert (response.status_code, response.json()) == (200, 20)
            health = await client.get("/restate/health")
            assert "Hidden" not in health.json()["services"]
        tg.cancel_scope.cancel()
