"""Names of Restate's SDK that need a Restate server, kept so that code naming them
imports; using them raises a clear error (README "Already on Restate?" says why).

* ``connect`` / ``with_connection``: open a tunnel from this process to a Restate
  Cloud environment. Embedded, there is no server to connect to: ``ConnectError``.
* ``JournalValueCodec`` / ``JournalValueCodecProvider``: a codec applied to every value
  Restate's server journals (encryption, compression). Declaring one is fine; passing
  one to ``restate.app`` or the harness is refused (``TypeError``): the embedded
  journal stores what the serdes produce.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

__all__ = [
    "ConnectError",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "connect",
    "with_connection",
]


class ConnectError(Exception):
    """Raised by ``connect`` and ``with_connection``: embedded, there is no Restate
    server or cloud environment to open a tunnel to."""


class JournalValueCodec(abc.ABC):
    """Restate's journal value codec (``encode`` after serialization, ``decode`` before
    deserialization). Not applied embedded; see the module docstring."""

    @abc.abstractmethod
    def encode(self, buf: bytes) -> bytes:
        """The stored form of ``buf``."""

    @abc.abstractmethod
    async def decode(self, buf: bytes) -> bytes:
        """The serialized form of stored ``buf``."""


JournalValueCodecProvider = Callable[[], Awaitable[JournalValueCodec]]

_NO_SERVER = (
    "restate.{what}() connects this process to a Restate server or cloud environment; "
    "the embedded runtime has none. Run the services in-process with "
    "actors.open_runtime(path, restate.app([...])) or `actors serve --restate MODULE:ATTR`"
)


async def connect(app: Any, *, name: str | None = None, key: str | None = None) -> None:
    """Raises ``ConnectError``: there is no Restate environment to connect to."""
    raise ConnectError(_NO_SERVER.format(what="connect"))


@asynccontextmanager
async def with_connection(
    app: Any, *, name: str | None = None, key: str | None = None
) -> AsyncIterator[Any]:
    """Raises ``ConnectError`` when entered: there is no Restate environment."""
    raise ConnectError(_NO_SERVER.format(what="with_connection"))
    yield  # pragma: no cover
