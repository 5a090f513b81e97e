"""A raw HTTP/1.1 client for tests of the ingress over a real socket: it sends bytes exactly
as given (malformed framing included) and parses the answers itself, so that a test sees
what the server wrote, byte for byte, without a client library tidying it up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio
import anyio.abc

#: Longest ``exchange`` waits for the server (a guard against a hang, far above any wait
#: a test expects; under trio's MockClock it is virtual time).
ANSWER_SECONDS = 120.0


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    def error(self) -> tuple[int, int, str]:
        """(status, body code, body message) of an error answer; fails unless the body is
        exactly ``{"code", "message"}``."""
        value = self.json()
        assert isinstance(value, dict), value
        assert set(value) == {"code", "message"}, value
        return self.status, value["code"], value["message"]


class ResponseError(Exception):
    """The server's bytes are not an HTTP/1.1 response."""


@dataclass
class RawConnection:
    stream: anyio.abc.SocketStream
    buffer: bytearray = field(default_factory=bytearray)
    eof: bool = False

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def half_close(self) -> None:
        await self.stream.send_eof()

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            self.eof = True
            return False
        self.buffer += data
        return True

    async def _line(self, limit: int = 1 << 20) -> bytes | None:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > limit:
                raise ResponseError(f"no line end in {bytes(self.buffer[:200])!r}")
            if not await self._fill():
                return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise ResponseError(f"the body ended after {len(self.buffer)} of {size} bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def response(self, *, head: bool = False) -> RawResponse | None:
        """The next answer, or None if the server closed the connection before one began.
        ``head``: it answers a HEAD request (no body follows its headers)."""
        status_line = await self._line()
        if status_line is None:
            if self.buffer:
                raise ResponseError(f"a partial answer: {bytes(self.buffer[:200])!r}")
            return None
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ResponseError(f"not a status line: {status_line!r}")
        headers: dict[str, str] = {}
        while True:
            line = await self._line()
            if line is None:
                raise ResponseError("the headers ended early")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if head or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = await self._line()
                if size_line is None:
                    raise ResponseError("the chunked body ended early")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    await self._line()
                    break
                chunks.append(await self._exactly(size))
                await self._exactly(2)
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = await self._exactly(int(headers["content-length"]))
        else:
            while await self._fill():
                pass
            body, self.buffer = bytes(self.buffer), bytearray()
        return RawResponse(status, headers, body)

    async def until_closed(self) -> list[RawResponse]:
        """Every answer until the server closes the connection."""
        answers = []
        while (answer := await self.response()) is not None:
            answers.append(answer)
        return answers

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect(port: int) -> RawConnection:
    return RawConnection(await anyio.connect_tcp("127.0.0.1", port))


async def exchange(port: int, *parts: bytes, half_close: bool = False) -> list[RawResponse]:
    """Send ``parts`` in order on one new connection (each its own write), then read every
    answer until the server closes it; at most ``ANSWER_SECONDS``."""
    connection = await connect(port)
    try:
        with anyio.fail_after(ANSWER_SECONDS):
            for part in parts:
                await connection.send(part)
            if half_close:
                await connection.half_close()
            return await connection.until_closed()
    finally:
        await connection.aclose()


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = True,
) -> bytes:
    """One well-framed request (content-length), closing the connection by default."""
    lines = [f"{method} {path} HTTP/1.1", "host: test"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
