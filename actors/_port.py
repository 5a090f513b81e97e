"""What a handler may ask of its invocation: the one interface contexts use.

Contexts (``_context``) translate the public API into these calls, each naming the
invocation it acts for; ``_operations.Operations`` implements them with the runtime's
parts. Contexts never see the runtime itself, so what a handler can reach is exactly
this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Awaitable, Callable
    from datetime import timedelta

    from ._definitions import Handler
    from ._futures import DurableCallFuture, DurableFuture
    from ._invocation import Invocation
    from ._request import Request
    from ._results import InvocationHandle
    from ._retry import RetryPolicy


class HandlerPort(Protocol):
    """The context operations, by family: state, time and randomness; steps; calls
    and sends; durable waits; awakeables and promises."""

    async def get_state(self, inv: Invocation, name: str, annotation: Any) -> Any: ...
    async def state_keys(self, inv: Invocation) -> list[str]: ...
    def set_state(self, inv: Invocation, name: str, value: object) -> None: ...
    def clear_state(self, inv: Invocation, name: str) -> None: ...
    def clear_all_state(self, inv: Invocation) -> None: ...
    async def time(self, inv: Invocation) -> float: ...
    def random(self, inv: Invocation) -> random.Random: ...
    def uuid(self, inv: Invocation) -> uuid.UUID: ...
    def request(self, inv: Invocation) -> Request: ...

    def run(
        self,
        inv: Invocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        result_type: Any,
        blocking: bool = True,
    ) -> DurableFuture[Any]: ...

    def call(
        self,
        inv: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        idempotency_key: str | None = None,
        headers: object = None,
    ) -> DurableCallFuture[Any]: ...
    def send(
        self,
        inv: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None = None,
        headers: object = None,
    ) -> InvocationHandle: ...
    def generic_call(
        self,
        inv: Invocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        idempotency_key: str | None,
        headers: object,
    ) -> DurableCallFuture[Any]: ...
    def generic_send(
        self,
        inv: Invocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None,
        headers: object,
    ) -> InvocationHandle: ...

    def sleep(self, inv: Invocation, duration: timedelta | float) -> DurableFuture[Any]: ...

    def awakeable(self, inv: Invocation, annotation: Any) -> tuple[str, DurableFuture[Any]]: ...
    def complete_awakeable(
        self,
        inv: Invocation,
        awakeable_id: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]: ...
    def promise_value(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]: ...
    def signal(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]: ...
    def complete_signal(
        self,
        inv: Invocation,
        invocation_id: str,
        name: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]: ...
    async def promise_peek(self, inv: Invocation, name: str, annotation: Any) -> Any: ...
    def complete_promise(
        self,
        inv: Invocation,
        name: str,
        annotation: Any,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]: ...

    def cancel_invocation(self, inv: Invocation, invocation_id: str) -> Awaitable[None]: ...
    async def settle_cancels(self, inv: Invocation) -> None: ...
    def attach_invocation(
        self, inv: Invocation, invocation_id: str, annotation: Any
    ) -> DurableFuture[Any]: ...
