"""Restate's test harness, without Docker: the services run in this process.

``create_test_harness(app)`` opens a runtime on a temporary data directory, serves its
HTTP ingress on a free loopback port and yields a ``HarnessEnvironment`` whose
``client`` calls the services in-process (``EmbeddedClient``) and whose
``ingress_url`` any HTTP client can use. ``test_harness(app)`` is the synchronous form
(the runtime runs on a thread with its own asyncio loop) with ``ingress_client()``.
The directory is removed on exit.

Options: ``disable_retries=True`` gives every invocation one attempt (a failure pauses
it and its caller gets a 500 at once); ``always_replay`` (replay after every step) and
the Docker options (``follow_logs``, ``restate_image``) have no embedded meaning.
"""

from __future__ import annotations

import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

import actors

from ._client import EmbeddedClient, RestateClient

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from ._unavailable import JournalValueCodec

__all__ = ["HarnessEnvironment", "create_test_harness", "test_harness"]


@dataclass
class HarnessEnvironment:
    """Where the harness runs: ``ingress_url`` (HTTP, Restate's paths),
    ``admin_api_url`` (empty: no admin API embedded) and ``client`` (in-process)."""

    ingress_url: str
    admin_api_url: str
    client: RestateClient


@asynccontextmanager
async def create_test_harness(
    app: Any,
    follow_logs: bool = False,
    restate_image: str = "docker.io/restatedev/restate:latest",
    always_replay: bool = False,
    disable_retries: bool = False,
    journal_value_codec: JournalValueCodec | None = None,
) -> AsyncGenerator[HarnessEnvironment, None]:
    """Run ``app`` (``restate.app([...])`` or a list of services) for a test."""
    if journal_value_codec is not None:
        raise TypeError("journal_value_codec is not supported embedded")
    retry = actors.RetryPolicy(max_attempts=1) if disable_retries else None
    with tempfile.TemporaryDirectory(prefix="restate-harness-") as tmp:
        async with actors.open_runtime(Path(tmp) / "data", app, retry=retry) as rt:
            try:
                async with anyio.create_task_group() as tg:
                    port = await tg.start(rt.serve_http, "127.0.0.1", 0)
                    yield HarnessEnvironment(f"http://127.0.0.1:{port}", "", EmbeddedClient(rt))
                    tg.cancel_scope.cancel()  # stops the server
            except BaseExceptionGroup as group:
                # The server task never fails on its own: a group holding one error is
                # the test body's, raised as it was.
                if len(group.exceptions) == 1:
                    raise group.exceptions[0] from None
                raise


class RestateTestHarness:
    """The synchronous harness: the runtime on a background thread (asyncio)."""

    def __init__(self, app: Any, disable_retries: bool = False) -> None:
        self._app = app
        self._disable_retries = disable_retries
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: Any = None
        self._error: BaseException | None = None
        self.ingress_url = ""

    def start(self) -> None:
        """Start the runtime and its ingress; returns once requests are served."""

        async def run() -> None:
            async with create_test_harness(self._app, disable_retries=self._disable_retries) as env:
                self.ingress_url = env.ingress_url
                self._stop = anyio.Event()
                self._token = anyio.lowlevel.current_token()
                self._ready.set()
                await self._stop.wait()

        def main() -> None:
            try:
                anyio.run(run, backend="asyncio")
            except BaseException as exc:
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=main, name="restate-harness", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop the runtime and remove its data."""
        if self._thread is not None and self._stop is not None:
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
            self._thread.join()
            self._thread = None

    def ingress_client(self) -> Any:
        """An ``httpx.Client`` for the ingress (needs httpx, as Restate's does)."""
        import httpx

        return httpx.Client(base_url=self.ingress_url)

    def __enter__(self) -> RestateTestHarness:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _sync_harness(
    app: Any,
    follow_logs: bool = False,
    restate_image: str = "docker.io/restatedev/restate:latest",
    always_replay: bool = False,
    disable_retries: bool = False,
) -> RestateTestHarness:
    """The synchronous harness (``with test_harness(app) as h: h.ingress_client()``)."""
    return RestateTestHarness(app, disable_retries=disable_retries)


#: Restate's name (assigned, so that test collectors do not take it for a test).
test_harness = _sync_harness
