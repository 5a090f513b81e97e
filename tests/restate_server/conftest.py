"""Fixtures of the tests against a real Restate server (``make test-restate``).

These tests need the pinned ``restate-server`` (installed from npm into
``~/.cache/virtual-actors/npm``) and take a minute or two, so ``make test`` leaves them
out: they are collected only when ``ACTORS_TEST_RESTATE=1``, which ``make test-restate``
sets. Without npm they fail, saying so (they are what that target is for).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import httpx
import pytest

from .harness import Endpoint, Processes, RestateNode, installed_restate_server, loopback_namespace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

if os.environ.get("ACTORS_TEST_RESTATE") != "1":
    collect_ignore_glob = ["test_*.py"]


class Single:
    """One Restate node with the endpoint registered, and a client of its ingress."""

    def __init__(self, node: RestateNode, endpoint: Endpoint, effects: Path) -> None:
        self.node = node
        self.endpoint = endpoint
        self.effects = effects
        self.ingress = httpx.Client(base_url=node.ingress, timeout=60)
        self.admin = httpx.Client(base_url=node.admin, timeout=60)

    def effects_of(self, key: str) -> list[str]:
        path = self.effects / f"{key}.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="session")
def restate_binary() -> Path:
    """The pinned ``restate-server``, installed from npm into the cache on first use. It
    runs before ``namespace`` because npm cannot reach the registry from inside it: on a
    clean machine the install hung there until the test's timeout."""
    return installed_restate_server()


@pytest.fixture(scope="session")
def namespace(restate_binary: Path) -> Iterator[str | None]:
    with loopback_namespace() as name:
        yield name


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("restate")


@pytest.fixture(scope="session")
def single(namespace: str | None, restate_binary: Path, session_dir: Path) -> Iterator[Single]:
    procs = Processes(session_dir)
    effects = session_dir / "effects"
    effects.mkdir()
    try:
        node = RestateNode(procs, restate_binary, session_dir, "single")
        node.start()
        node.wait_healthy()
        endpoint = Endpoint(procs, effects)
        endpoint.start()
        endpoint.register(node.admin)
        yield Single(node, endpoint, effects)
    except BaseException:
        print(procs.tails())
        raise
    finally:
        procs.close()


class Cluster:
    """Three Restate nodes (replication 2) with one endpoint registered."""

    def __init__(self, nodes: list[RestateNode], endpoint: Endpoint) -> None:
        self.nodes = nodes
        self.endpoint = endpoint


@pytest.fixture(scope="module")
def cluster(namespace: str | None, restate_binary: Path, session_dir: Path) -> Iterator[Cluster]:
    base = session_dir / "cluster"
    base.mkdir()
    procs = Processes(base)
    effects = base / "effects"
    effects.mkdir()
    try:
        nodes: list[RestateNode] = []
        for i in range(3):
            nodes.append(
                RestateNode(
                    procs,
                    restate_binary,
                    base,
                    f"n{i + 1}",
                    cluster=nodes,
                    provision=i == 0,
                    replication=2,
                )
            )
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_healthy(90)
        endpoint = Endpoint(procs, effects)
        endpoint.start()
        endpoint.register(nodes[0].admin)
        yield Cluster(nodes, endpoint)
    except BaseException:
        print(procs.tails())
        raise
    finally:
        procs.close()
