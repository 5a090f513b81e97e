"""The HTTP/1.1 server under ``Runtime.serve_http``: a fast path for the usual request and
h11 for the rest (``_http_parse``), anyio for tasks and timeouts and ``_http_io`` for the
sockets, so one implementation runs on trio and on asyncio. It serves an ASGI application
(``http`` scopes only) and guarantees what the ingress promises (DESIGN.md section 6):

* **No client can stop it.** Whatever a connection raises (a protocol error, the
  application, a socket error) ends that connection only, logged; accepting goes on,
  also when the process is out of file descriptors.
* **Its own answers are JSON** ``{"code", "message"}``: malformed requests (400, or 431 for
  a head over ``MAX_HEAD_BYTES``), a body over ``max_body`` (413), a request that does not
  arrive in time (408), no room (503), an application that fails before answering (500,
  the details only in the log).
* **No client can exhaust it.** A request must arrive in full, head and body, within
  ``read_timeout`` of its first byte; an idle keep-alive connection is closed after
  ``IDLE_SECONDS``. At most ``max_connections`` connections are served; the next ones are
  answered 503 (``retry-after: 1``). Request bodies are read in full before the
  application runs, and the bytes held by requests in progress are capped by
  ``max_body_bytes_in_flight``: a body waits for room (within its read timeout, else 503).
  A client that closes its connection cancels its request's wait (its invocation is not
  affected), so gone clients do not hold connections.

One connection's protocol is ``_http_connection``; this module accepts, counts and stops.

Rejected: hypercorn (its trio worker could be crashed by one malformed chunked request,
answered malformed requests with empty bodies, had no connection or body-memory cap and
cannot be given these without patching its internals), and HTTP/2 (Restate's HTTP clients
speak HTTP/1.1 to the ingress; h2c was the only form hypercorn offered without TLS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc

from ._http_connection import Connection
from ._http_limits import ServerState

if TYPE_CHECKING:
    from ._http_io import Acceptor, ByteStream
    from ._http_limits import App, ServerOptions

logger = logging.getLogger("actors.http")

#: How long a stopping server waits for its connections to finish their answers.
GRACE_SECONDS: Final = 2.0
# Connections over the cap answered 503 at once; beyond these they are closed unanswered.
_REJECTING_SLOTS: Final = 64
# When accept() fails (out of file descriptors), wait this long before the next try.
_ACCEPT_BACKOFF_SECONDS: Final = 0.1


class HttpServer:
    """Serves ``app`` on a listener until ``stopped`` is set (see the module docstring).

    ``serve`` must run where cancellation does not reach it (``serve_http`` shields it),
    so that stopping can answer what is in progress instead of dropping it."""

    def __init__(self, app: App, options: ServerOptions) -> None:
        self.options = options
        self.state = ServerState(app, options)
        self._live: set[Connection] = set()
        self._served = 0  # connections counted against max_connections
        self._rejecting = 0
        self._all_closed = anyio.Event()

    async def serve(self, listener: Acceptor, stopped: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                accepting = anyio.CancelScope()
                tg.start_soon(self._accept, listener, tg, accepting)
                await stopped.wait()
                accepting.cancel()
                self.state.stopping = True
                for connection in list(self._live):
                    connection.stop()
                with anyio.move_on_after(GRACE_SECONDS):
                    if self._live:
                        await self._all_closed.wait()
                tg.cancel_scope.cancel()
        finally:
            listener.close()

    async def _accept(
        self,
        listener: Acceptor,
        tg: anyio.abc.TaskGroup,
        accepting: anyio.CancelScope,
    ) -> None:
        with accepting:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # EMFILE, ENFILE, ENOBUFS...: retry, never stop
                    logger.warning("HTTP: cannot accept a connection (%s); retrying", exc)
                    await anyio.sleep(_ACCEPT_BACKOFF_SECONDS)
                    continue
                if self._served < self.options.max_connections:
                    self._served += 1
                    tg.start_soon(self._connection, stream, False)
                elif self._rejecting < _REJECTING_SLOTS:
                    self._rejecting += 1
                    tg.start_soon(self._connection, stream, True)
                else:
                    await stream.aclose()

    async def _connection(self, stream: ByteStream, rejecting: bool) -> None:
        connection = Connection(self.state, stream, rejecting)
        self._live.add(connection)
        try:
            await connection.run()
        except Exception:
            logger.exception("HTTP: a connection failed; it is closed, the server goes on")
        finally:
            # Counted out before the close, so a client that saw its connection end finds
            # the slot free.
            self._live.discard(connection)
            if rejecting:
                self._rejecting -= 1
            else:
                self._served -= 1
            if self.state.stopping and not self._live:
                self._all_closed.set()
            await stream.aclose()
