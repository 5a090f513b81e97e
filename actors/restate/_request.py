"""Restate's ``Request``, ``AttemptFinishedEvent`` and ``RunOptions`` (plain data)."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

from .serde import DefaultSerde, Serde

if TYPE_CHECKING:
    from datetime import timedelta

    import actors

T = TypeVar("T")


class AttemptFinishedEvent(abc.ABC):  # noqa: B024
    """Set when the current attempt of the invocation ends (success, failure, or the
    runtime dropping its coroutine); ``await wait()`` to run cleanup then."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def is_set(self) -> bool:
        """Whether the attempt has finished."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until the attempt has finished."""
        await self._event.wait()

    def _set(self) -> None:
        self._event.set()


@dataclass
class Request:
    """What the invocation was called with (Restate's ``Request``).

    ``headers`` are the invocation's headers; ``attempt_headers`` are the same (the
    embedded runtime has no per-attempt transport headers); ``body`` the input bytes.
    """

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    attempt_finished_event: AttemptFinishedEvent
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


def request_of(request: actors.Request, attempt: AttemptFinishedEvent) -> Request:
    headers = dict(request.headers)
    return Request(
        id=request.id,
        headers=headers,
        attempt_headers=dict(headers),
        body=request.body,
        attempt_finished_event=attempt,
        idempotency_key=request.idempotency_key,
    )


@dataclass
class RunOptions(Generic[T]):
    """Options of ``ctx.run_typed``: the serde and type hint of the result and the
    step's retry limits (``max_duration`` or its older name ``max_retry_duration``
    bounds the time spent retrying); unset fields keep the runtime's policy."""

    serde: Serde[T] = field(default_factory=lambda: DefaultSerde())
    type_hint: type[T] | None = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    max_retry_duration: timedelta | None = None
