"""A 3-node Restate cluster (replication 2) serving the endpoint: a few hundred
invocations through different nodes' ingresses while one node is SIGKILLed; every
accepted invocation completes exactly once."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from .harness import eventually

if TYPE_CHECKING:
    from .conftest import Cluster

INVOCATIONS = 300
LEDGERS = 10


def test_cluster_node_sigkill_every_invocation_once(cluster: Cluster) -> None:
    nodes = cluster.nodes

    def post(base: str, path: str) -> Any:
        response = httpx.post(f"{base}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    for node in nodes:  # every node's ingress serves the endpoint's actors
        eventually(
            functools.partial(post, node.ingress, "/Ledger/warm/items"),
            120,
            f"ingress of {node.name}",
            every=0.5,
        )
    victim = nodes[2]
    dead = threading.Event()
    accepted: dict[int, str] = {}
    lock = threading.Lock()

    def submit(entry: int) -> None:
        # Round robin over the nodes; a node that is down (or a request that times out
        # during fail-over) is retried on the next one with the same idempotency key,
        # so a request that was in fact accepted is not accepted twice.
        headers = {"idempotency-key": f"entry-{entry}"}
        for attempt in range(60):
            node = nodes[(entry + attempt) % len(nodes)]
            if node is victim and dead.is_set():
                continue
            try:
                response = httpx.post(
                    f"{node.ingress}/Ledger/l{entry % LEDGERS}/append/send",
                    json=entry,
                    headers=headers,
                    timeout=10,
                )
            except httpx.HTTPError:
                continue
            if response.status_code in (200, 202):
                with lock:
                    accepted[entry] = response.json()["invocationId"]
                return
        raise AssertionError(f"entry {entry} was never accepted")

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(submit, range(INVOCATIONS // 3)))
        victim.kill()  # SIGKILL, while the rest are being submitted
        dead.set()
        rest = list(pool.map(submit, range(INVOCATIONS // 3, INVOCATIONS)))
    assert len(first) + len(rest) == INVOCATIONS
    assert sorted(accepted) == list(range(INVOCATIONS))
    live = nodes[:2]

    def attached(invocation_id: str) -> int:
        for node in live:
            try:
                response = httpx.get(
                    f"{node.ingress}/restate/invocation/{invocation_id}/attach", timeout=30
                )
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                length: int = response.json()
                return length
        raise AssertionError(f"{invocation_id} not attached")

    with ThreadPoolExecutor(8) as pool:
        lengths = list(
            pool.map(
                lambda i: eventually(lambda: attached(accepted[i]), 120, "attach"),
                range(INVOCATIONS),
            )
        )
    assert all(1 <= n <= INVOCATIONS // LEDGERS for n in lengths)
    for ledger in range(LEDGERS):
        items = eventually(
            functools.partial(post, live[0].ingress, f"/Ledger/l{ledger}/items"),
            60,
            "ledger items",
        )
        # every entry of this ledger exactly once (the order is the order of acceptance)
        assert sorted(items) == list(range(ledger, INVOCATIONS, LEDGERS)), items
