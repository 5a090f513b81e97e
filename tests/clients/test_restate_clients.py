"""Restate's own clients against our ingress: the wire as they expect it.

Two real clients, pinned:

* ``@restatedev/restate-sdk-clients`` (TypeScript, ``package.json`` and
  ``package-lock.json`` here), driven by ``ts_checks.mjs`` under node;
* ``restate-sdk[client]`` (Python, the dev extra), driven by ``python_checks.py``.

Each test serves ``clients_app.py`` with ``rt.serve_http`` on 127.0.0.1 (an ephemeral
port), under trio and under asyncio, or with ``actors serve`` in a subprocess, runs one
checks script against it, and compares everything the script observed with the exact
answers Restate's ingress gives (one dict, so a failure shows every differing check).

The npm packages are installed once per lock file into
``~/.cache/virtual-actors/npm/<version>-<lock digest>`` (``$XDG_CACHE_HOME`` is honoured),
never into the repository; the tests skip, saying so, only when node or npm is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from clients_app import Approval, Counter, Greeter  # this folder: pytest puts it on sys.path

import actors

if TYPE_CHECKING:
    from collections.abc import Callable

HERE = Path(__file__).resolve().parent

#: Seconds one checks script may take (it bounds each of its requests at 10 s).
SCRIPT_TIMEOUT = 90.0

INV: Any = "<inv>"  # an invocation id, as the scripts normalise it
ACCEPTED = {"invocationId": INV, "status": "Accepted"}
PREVIOUSLY_ACCEPTED = {"invocationId": INV, "status": "PreviouslyAccepted"}


def _json_answer(body: object) -> dict[str, object]:
    return {"status": 200, "contentType": "application/json", "errorSource": None, "body": body}


#: A 200 with an empty body and no content type: what Restate answers for a None result.
EMPTY_ANSWER = {"status": 200, "contentType": None, "errorSource": None, "body": ""}


def _failure(status: int, message: str) -> dict[str, object]:
    """How the TypeScript client reports a terminal failure answered by the ingress."""
    return {
        "error": f"Request failed: {status}",
        "status": status,
        "body": {"code": status, "message": message, "source": "invocation"},
    }


TS_EXPECTED: dict[str, object] = {
    "service call": "hello ada",
    "generic call": "hello gen",
    "object call": 5,
    "object shared read": 5,
    "void handler, empty output serde": "<undefined>",
    "void handler, json output serde": "<undefined>",
    "void object handler": "<undefined>",
    "void handler on the wire": EMPTY_ANSWER,
    "idempotent call, twice": {"first": 5, "second": 5, "value": 5},
    "idempotent service call, twice": {"first": 1, "second": 1, "third": 2},
    "send": {**ACCEPTED, "attachable": False},
    "generic send": {**ACCEPTED, "attachable": False},
    "idempotent send, result, resend": {
        "handle": {**ACCEPTED, "attachable": True},
        "result": 2,
        "again": {**PREVIOUSLY_ACCEPTED, "attachable": True},
        "sameId": True,
    },
    "delayed send": {
        "handle": {**ACCEPTED, "attachable": True},
        "executionTimeFormat": True,
        "executionTimeInRange": True,
        "result": 1,
        "ranAfterItsDelay": True,
    },
    "attach and output by idempotency key, service": {
        "attach": _json_answer("hello idem"),
        "output": _json_answer("hello idem"),
    },
    "attach and output by idempotency key, object": {
        "attach": _json_answer(7),
        "output": _json_answer(7),
        "otherKey": 404,
        "otherHandler": 404,
        "unknown": 404,
    },
    "attach by idempotency key of a void handler": EMPTY_ANSWER,
    "workflow submit, output, awakeable resolve, attach": {
        "submitted": {**ACCEPTED, "attachable": True},
        "resubmitted": {**PREVIOUSLY_ACCEPTED, "attachable": True},
        "sameId": True,
        "awakeableId": "<awk>",
        "pendingReady": False,
        "attached": "order 1: approved",
        "output": {"ready": True, "result": "order 1: approved"},
    },
    "workflow awakeable reject": {"attachFailed": _failure(500, "declined")},
    "terminal error 500, retries enabled": {
        "outcome": _failure(500, "no luck (500)"),
        "requests": 1,  # x-restate-error-source: invocation tells the client not to retry
        "errorSource": "invocation",
        "handlerRuns": 1,
    },
    "terminal error 422, retries enabled": {
        "outcome": _failure(422, "no luck (422)"),
        "requests": 1,
        "errorSource": "invocation",
        "handlerRuns": 1,
    },
    "ingress error source": {"status": 404, "errorSource": "ingress"},
    "health": _json_answer({"services": ["Approval", "Counter", "Greeter"]}),
}

PY_EXPECTED: dict[str, object] = {
    "service call": "hello ada",
    "object call": 2,
    "void handler": None,
    "void object handler": None,
    "idempotent call, twice": {"first": 4, "second": 4, "value": 4},
    "idempotent service call, twice": {"first": 1, "second": 1},
    "send": INV,
    "delayed send": INV,  # the client sends ?delay=200 (bare milliseconds)
    "idempotent delayed send": INV,
    "terminal error": {
        "status": 418,
        "body": {"code": 418, "message": "no luck (418)", "source": "invocation"},
    },
    "workflow send": {"first": INV, "same": "True"},
    "generic call": 'bytes:"hello gen"',
    "generic call, empty output": "bytes:",
    "generic send": INV,
}


# --- node packages, cached per lock file ----------------------------------------------------


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "virtual-actors" / "npm"


def install_node_deps() -> Path:
    """The folder holding the pinned npm packages: installed (``npm ci``) the first
    time for this lock file, then reused. Installs into a scratch folder renamed into
    place, so concurrent test runs never see half an install."""
    manifest = (HERE / "package.json").read_bytes()
    lock = (HERE / "package-lock.json").read_bytes()
    version = json.loads(manifest)["dependencies"]["@restatedev/restate-sdk-clients"]
    digest = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:12]
    target = _cache_root() / f"{version}-{digest}"
    if (target / ".installed").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".scratch-{uuid.uuid4().hex}"
    scratch.mkdir()
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, scratch / name)
        npm = shutil.which("npm")
        assert npm is not None
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci of tests/clients/package-lock.json failed:\n{done.stderr}")
        (scratch / ".installed").touch()
        try:
            scratch.rename(target)
        except OSError:  # another run installed it meanwhile
            if not (target / ".installed").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def node_deps() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: Restate's TypeScript client cannot run")
    return install_node_deps()


# --- running a checks script against a server ----------------------------------------------


def _actors() -> list[actors.Service | actors.VirtualObject | actors.Workflow]:
    return [Greeter(), Counter(), Approval()]


async def run_script(argv: list[str]) -> dict[str, Any]:
    with anyio.fail_after(SCRIPT_TIMEOUT):
        done = await anyio.run_process(argv, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"{argv[:2]} exited {done.returncode}:\n{stderr}"
    observed: dict[str, Any] = json.loads(done.stdout)
    return observed


async def observe_in_process(tmp_path: Path, argv: Callable[[str], list[str]]) -> dict[str, Any]:
    """Serve the actors with ``rt.serve_http`` on an ephemeral port and run ``argv(url)``."""
    async with (
        actors.open_runtime(tmp_path / "data", _actors(), durability="process") as rt,
        anyio.create_task_group() as tg,
    ):
        port = await tg.start(rt.serve_http, "127.0.0.1", 0)
        observed = await run_script(argv(f"http://127.0.0.1:{port}"))
        tg.cancel_scope.cancel()
    return observed


def _ts(node_deps: Path) -> Callable[[str], list[str]]:
    node = shutil.which("node")
    assert node is not None
    return lambda url: [node, str(HERE / "ts_checks.mjs"), url, str(node_deps)]


def _python(url: str) -> list[str]:
    return [sys.executable, str(HERE / "python_checks.py"), url]


def assert_observed(observed: dict[str, Any], expected: dict[str, object]) -> None:
    """Every check observed exactly what Restate answers; the message lists each check
    that differs, observed beside expected."""
    differing = {
        name: {"observed": observed.get(name, "<not run>"), "expected": want}
        for name, want in expected.items()
        if name not in observed or observed[name] != want
    }
    assert not differing, f"{len(differing)} of {len(expected)} checks differ:\n" + json.dumps(
        differing, indent=2
    )
    assert set(observed) == set(expected), "the script ran checks this test does not know"


async def test_typescript_client(tmp_path: Path, node_deps: Path) -> None:
    assert_observed(await observe_in_process(tmp_path, _ts(node_deps)), TS_EXPECTED)


async def test_python_client(tmp_path: Path) -> None:
    assert_observed(await observe_in_process(tmp_path, _python), PY_EXPECTED)


def test_typescript_client_against_actors_serve(tmp_path: Path, node_deps: Path) -> None:
    """The same checks against the command line's server (``actors serve``)."""
    command = [sys.executable, "-m", "actors._cli", "serve", "clients_app:ACTORS"]
    command += ["-d", str(tmp_path / "data"), "--port", "0", "--durability", "process"]
    with subprocess.Popen(command, cwd=HERE, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            banner = server.stdout.readline()  # printed once the socket listens
            url = banner.split()[-1]
            assert url.startswith("http://127.0.0.1:"), banner
            done = subprocess.run(
                _ts(node_deps)(url), capture_output=True, timeout=SCRIPT_TIMEOUT, check=False
            )
            assert done.returncode == 0, done.stderr.decode(errors="replace")
            assert_observed(json.loads(done.stdout), TS_EXPECTED)
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
