"""The limits one ingress server keeps (``_server``, ``_http_connection``): its options,
checked once, and the budget of request-body bytes that requests in progress hold."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

if TYPE_CHECKING:
    App = Any  # an ASGI 3 application: async (scope, receive, send) -> None

DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: Final = 64 * 1024 * 1024
DEFAULT_READ_TIMEOUT: Final = 30.0


@attrs.frozen
class ServerOptions:
    """The limits of one server (``Runtime.serve_http`` documents them)."""

    max_body: int
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_body_bytes_in_flight: int = DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
    read_timeout: float = DEFAULT_READ_TIMEOUT

    def __attrs_post_init__(self) -> None:
        if self.max_body < 0:
            raise ValueError(f"max_body must not be negative, not {self.max_body}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        if self.max_body_bytes_in_flight < self.max_body:
            raise ValueError(
                f"max_body_bytes_in_flight ({self.max_body_bytes_in_flight}) must be at least "
                f"max_body ({self.max_body}), or a body of max_body bytes could never be read"
            )
        if not (self.read_timeout > 0 and math.isfinite(self.read_timeout)):
            raise ValueError(f"read_timeout must be a positive number, not {self.read_timeout}")


class BodyBudget:
    """Bytes of request bodies that requests in progress hold, at most ``limit``; first
    come, first served (a large body is not overtaken forever by small ones)."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self._waiting: deque[_Waiter] = deque()

    def take_now(self, size: int) -> bool:
        if size <= self.free and not self._waiting:
            self.free -= size
            return True
        return False

    async def take(self, size: int) -> None:
        """Wait until ``size`` bytes are free and take them (the caller bounds the wait)."""
        if self.take_now(size):
            return
        waiter = _Waiter(size)
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.give(size)  # granted, but cancelled before it could use them
            else:
                self._waiting.remove(waiter)
                self._grant()
            raise

    def give(self, size: int) -> None:
        self.free += size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0].size <= self.free:
            waiter = self._waiting.popleft()
            self.free -= waiter.size
            waiter.granted.set()


class _Waiter:
    __slots__ = ("granted", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.granted = anyio.Event()


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, app: App, options: ServerOptions) -> None:
        self.app = app
        self.options = options
        self.budget = BodyBudget(options.max_body_bytes_in_flight)
        self.stopping = False
