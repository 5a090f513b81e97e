"""The seed page's Restate workflow, unmodified, on the embedded runtime: in-process,
then over HTTP with the seed page's ``requests`` client against ``actors serve --restate``.

``restate_signup/signup.py`` is the page's Python snippet as it stands (it imports
``restate``), with only the imports, ``User`` and the two side-effect functions around
it; ``restate_signup/client.py`` is the page's ``requests`` client.

1. Embedded: ``actors.restate.install()`` makes ``import restate`` resolve to
   ``actors.restate``; the snippet's module is imported and its workflow runs in this
   process under ``actors.open_runtime`` (on asyncio, as Restate code expects).
2. Over HTTP: ``actors serve --restate signup:signup_workflow`` serves it on Restate's
   ingress paths; the ``requests`` client submits the workflow and attaches to it,
   while the "user" clicks the mailed link (``approveEmail``).

Run: python examples/07_restate_signup.py
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

import anyio

import actors
import actors.restate


def say(line: str) -> None:
    """Print ``line`` in one write and at once. The workflow's steps print from step
    threads, and the server's lines from a reader thread, while this thread prints too:
    ``print`` writes the text and its newline separately, so two lines could mix."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


HERE = Path(__file__).resolve().parent / "restate_signup"


async def embedded(data_dir: Path) -> None:
    # The seed's module (``from restate import Workflow, ...``), imported once install()
    # has run. By name: a type checker would take ``restate`` for the real SDK's types.
    signup: Any = importlib.import_module("signup")

    async with actors.open_runtime(data_dir, [signup.signup_workflow]) as rt:
        user = json.dumps({"name": "Pete", "email": "pete@example.com"}).encode()
        handle = await rt.generic_send("signupWorkflow", "run", user, key="pete123")
        say(f"submitted workflow pete123: {handle.status}")
        await anyio.to_thread.run_sync(signup.MAIL_SENT.wait)
        stage = await rt.generic_call("signupWorkflow", "getStage", b"", key="pete123")
        say(f"stage: {json.loads(stage)}")
        secret = json.dumps(signup.MAILED["pete@example.com"]).encode()
        await rt.generic_call("signupWorkflow", "approveEmail", secret, key="pete123")
        say("approved the email with the mailed secret")
        say(f"workflow result: {json.loads(await handle.result())}")
        stage = await rt.generic_call("signupWorkflow", "getStage", b"", key="pete123")
        say(f"stage: {json.loads(stage)}")


def over_http(data_dir: Path) -> None:
    actors_cli = Path(sys.executable).parent / "actors"
    server = subprocess.Popen(
        [
            str(actors_cli),
            "serve",
            "--restate",
            "signup:signup_workflow",
            "--data",
            str(data_dir),
            "--port",
            "0",
            "--durability",
            "process",
        ],
        cwd=HERE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        first = server.stdout.readline()
        if " at http://" not in first:
            raise SystemExit(f"actors serve did not start: {first!r}")
        url = first.rsplit(" at ", 1)[1].strip()
        say(f"actors serve --restate: serving at {url}")
        secret: list[str] = []
        mailed = threading.Event()

        def read_server() -> None:
            assert server.stdout is not None
            for line in server.stdout:
                say(f"  [server] {line.strip()}")
                if "verify?secret=" in line:
                    secret.append(line.rsplit("secret=", 1)[1].strip())
                    mailed.set()

        threading.Thread(target=read_server, daemon=True).start()
        client = subprocess.Popen([sys.executable, str(HERE / "client.py"), url])
        if not mailed.wait(60):
            raise SystemExit("the workflow never mailed the link")
        click = urllib.request.Request(
            f"{url}/signupWorkflow/myUser123/approveEmail",
            data=json.dumps(secret[0]).encode(),
            headers={"Content-Type": "application/json"},
        )
        say("  [user] clicks the mailed link (approveEmail)")
        with urllib.request.urlopen(click, timeout=30) as answer:
            assert answer.status == 200
        if client.wait(60) != 0:
            raise SystemExit("the requests client failed")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    say("server stopped")


def main() -> None:
    actors.restate.install()  # before anything imports restate
    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(embedded, Path(tmp) / "embedded", backend="asyncio")
        over_http(Path(tmp) / "served")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
