"""``Operations``: the handler port (``_port.HandlerPort``) over the runtime's parts.

Each method forwards to the family that owns the operation; this class only decides
who answers what, so a reader finds every context operation's implementation from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Callable
    from datetime import timedelta

    from ._definitions import Handler
    from ._futures import DurableFuture
    from ._invocation import Invocation
    from ._ops_calls import CallOps
    from ._ops_signals import SignalOps
    from ._ops_state import StateOps
    from ._ops_steps import StepOps
    from ._results import InvocationHandle
    from ._retry import RetryPolicy
    from ._waits import Waits


@final
class Operations:
    """Implements ``HandlerPort`` by forwarding to the operation families."""

    __slots__ = ("_calls", "_signals", "_state", "_steps", "_waits")

    def __init__(
        self, state: StateOps, steps: StepOps, calls: CallOps, waits: Waits, signals: SignalOps
    ) -> None:
        self._state = state
        self._steps = steps
        self._calls = calls
        self._waits = waits
        self._signals = signals

    async def get_state(self, inv: Invocation, name: str, annotation: Any) -> Any:
        return await self._state.get(inv, name, annotation)

    async def state_keys(self, inv: Invocation) -> list[str]:
        return await self._state.keys(inv)

    def set_state(self, inv: Invocation, name: str, value: object) -> None:
        self._state.set(inv, name, value)

    def clear_state(self, inv: Invocation, name: str) -> None:
        self._state.clear(inv, name)

    def clear_all_state(self, inv: Invocation) -> None:
        self._state.clear_all(inv)

    async def time(self, inv: Invocation) -> float:
        return await self._state.time(inv)

    def random(self, inv: Invocation) -> random.Random:
        return self._state.rng(inv)

    def uuid(self, inv: Invocation) -> uuid.UUID:
        return self._state.new_uuid(inv)

    def run(
        self,
        inv: Invocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        result_type: Any,
    ) -> DurableFuture[Any]:
        return self._steps.run(inv, name, fn, args, retry, result_type)

    def call(
        self, inv: Invocation, target: Handler[Any, Any], arg: object, key: str | None
    ) -> DurableFuture[Any]:
        return self._calls.call(inv, target, arg, key)

    async def send(
        self,
        inv: Invocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
    ) -> InvocationHandle:
        return await self._calls.send(inv, target, arg, key, delay)

    def sleep(self, inv: Invocation, duration: timedelta | float) -> DurableFuture[Any]:
        return self._waits.sleep(inv, duration)

    def awakeable(self, inv: Invocation, annotation: Any) -> tuple[str, DurableFuture[Any]]:
        return self._signals.awakeable(inv, annotation)

    async def complete_awakeable(
        self, inv: Invocation, awakeable_id: str, value: object, reason: str | None
    ) -> None:
        await self._signals.ctx_complete_awakeable(inv, awakeable_id, value, reason)

    def promise_value(self, inv: Invocation, name: str, annotation: Any) -> DurableFuture[Any]:
        return self._signals.promise_value(inv, name, annotation)

    async def promise_peek(self, inv: Invocation, name: str, annotation: Any) -> Any:
        return await self._signals.promise_peek(inv, name, annotation)

    async def complete_promise(
        self, inv: Invocation, name: str, annotation: Any, value: object, reason: str | None
    ) -> None:
        await self._signals.promise_complete(inv, name, annotation, value, reason)
