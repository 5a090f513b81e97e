"""The ingress server's sockets (``_server``, ``_http_connection``): accepting connections and
moving their bytes, one small implementation per event loop instead of anyio's streams.

Why: on the hot path anyio's socket streams cost more than the HTTP parsing around them. On
asyncio, anyio's ``receive`` resumes and pauses the transport's reading on every call (two
``epoll_ctl`` system calls) and ``send`` waits for a write event; a minimal keep-alive
server measured 45 us of CPU per request on anyio streams and 15 us on a plain asyncio
Protocol (bench/results/http.md). So on asyncio a connection is a Protocol that keeps
reading into a buffer (paused above ``_HIGH_WATER`` unread bytes), and on trio a plain
non-blocking socket with trio's readiness waits.

Both streams keep the contract the connection relies on: ``receive`` waits for bytes and
answers ``b""`` once the client has closed its side (or the connection is lost); ``send``
raises ``anyio.BrokenResourceError`` (or ``OSError``) when the client is gone and waits
while the client does not read; ``send_eof`` half-closes, so an error answer can drain
before the close; ``aclose`` closes, written bytes first. Every wait is cancellable by
the caller's cancel scope (anyio's scopes cancel the task on both loops). ``send`` and
``receive`` need not yield when they can go on at once: the connection checkpoints itself
where that matters (before each pipelined request).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final, Protocol

import anyio

# Unread bytes an asyncio connection holds before it stops reading from its socket (the
# connection's own read-ahead bound is 64 KiB; asyncio reads up to 256 KiB at once).
_HIGH_WATER: Final = 256 * 1024


class Parker(Protocol):
    """One task waits (``park``) until another wakes it (``unpark``; nothing if none
    waits). Cheaper than an ``anyio.Event`` per wait: made once per connection, reused.
    ``park`` is cancellable."""

    async def park(self) -> None: ...
    def unpark(self) -> None: ...


class ByteStream(Protocol):
    """One accepted connection's bytes (module docstring)."""

    address: tuple[Any, Any]  # (the client's, the server's)

    def parker(self) -> Parker: ...

    async def receive(self, max_bytes: int) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...
    async def aclose(self) -> None: ...


class Acceptor(Protocol):
    async def accept(self) -> ByteStream: ...
    def close(self) -> None: ...


def acceptor(sock: socket.socket, library: str) -> Acceptor:
    """Accepts connections on listening socket ``sock`` (non-blocking) for event loop
    ``library`` ("trio" or "asyncio"); it owns the socket from now on."""
    if library == "trio":
        return _TrioAcceptor(sock)
    return _AsyncioAcceptor(sock)


# --- trio ----------------------------------------------------------------------------------


class _TrioAcceptor:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def accept(self) -> ByteStream:
        import trio

        while True:
            await trio.lowlevel.wait_readable(self._sock)
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                continue  # another process took it
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _TrioStream(sock)

    def close(self) -> None:
        import trio

        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


class _TrioStream:
    """A non-blocking socket and trio's readiness waits, without trio's socket wrapper:
    ``receive`` waits for readability first, since in a keep-alive exchange the next
    request is never there yet when the last one was just read (one failed ``recv``
    system call and its exception less per request); ``send`` tries first, since the
    socket nearly always has room."""

    __slots__ = ("_sock", "address")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.address = (_address(sock.getpeername), _address(sock.getsockname))

    def parker(self) -> Parker:
        return _TrioParker()

    async def receive(self, max_bytes: int) -> bytes:
        import trio

        while True:
            await trio.lowlevel.wait_readable(self._sock)
            try:
                return self._sock.recv(max_bytes)
            except BlockingIOError:
                continue

    async def send(self, data: bytes) -> None:
        import trio

        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
                continue
            view = view[sent:]

    async def send_eof(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        import trio

        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()


class _TrioParker:
    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: Any = None

    async def park(self) -> None:
        import trio

        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def unpark(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            import trio

            trio.lowlevel.reschedule(task)


def _address(get: Any) -> Any:
    """(host, port) as ASGI has it, without IPv6's flow and scope ids."""
    try:
        address = get()
    except OSError:  # already reset by the client
        return None
    return tuple(address[:2]) if isinstance(address, tuple) else address


# --- asyncio -------------------------------------------------------------------------------


class _AsyncioAcceptor:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()

    async def accept(self) -> ByteStream:
        sock, _ = await self._loop.sock_accept(self._sock)
        try:
            _, stream = await self._loop.connect_accepted_socket(_AsyncioStream, sock)
        except BaseException:
            sock.close()
            raise
        return stream

    def close(self) -> None:
        self._sock.close()


class _AsyncioStream(asyncio.Protocol):
    """A connection as an asyncio Protocol: it reads whenever bytes come (up to
    ``_HIGH_WATER`` unread), and wakes the one task waiting in ``receive``."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._unread = 0
        self._paused = False
        self._eof = False
        self._lost = False
        self._reader: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None  # a send waits for room
        self.address: tuple[Any, Any] = (None, None)

    # The protocol's callbacks (asyncio calls them).

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        extra = transport.get_extra_info
        self.address = (_address(lambda: extra("peername")), _address(lambda: extra("sockname")))

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._unread += len(data)
        if self._unread > _HIGH_WATER and not self._paused:
            assert self._transport is not None
            self._transport.pause_reading()
            self._paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return True  # keep the transport open: the answer may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def parker(self) -> Parker:
        return _AsyncioParker()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # The stream (the connection's tasks call these).

    async def receive(self, max_bytes: int) -> bytes:
        """What has arrived (all of it: at most ``_HIGH_WATER`` plus one read, whatever
        ``max_bytes``); ``b""`` once the client closed its side."""
        if not self._chunks:
            if self._eof:
                return b""
            self._reader = reader = asyncio.get_running_loop().create_future()
            try:
                await reader
            finally:
                self._reader = None
            if not self._chunks:
                return b""
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._unread = 0
        if self._paused and not self._lost:
            assert self._transport is not None
            self._paused = False
            self._transport.resume_reading()
        return data

    async def send(self, data: bytes) -> None:
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise anyio.BrokenResourceError
        transport.write(data)
        if self._writing_paused:  # the client does not read: wait until it does
            self._drained = drained = asyncio.get_running_loop().create_future()
            try:
                await drained
            finally:
                self._drained = None
            if self._lost:
                raise anyio.BrokenResourceError

    async def send_eof(self) -> None:
        if self._transport is not None and not self._lost:
            self._transport.write_eof()

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()  # sends what is buffered, then closes


class _AsyncioParker:
    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def park(self) -> None:
        self._future = future = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            self._future = None

    def unpark(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)
