"""``ctx.run`` for Restate code: the step's result through Restate's serde, its retry
limits as the runtime's ``RetryPolicy``; and the refusal of server-only options."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any

import actors

from ._futures import RestateDurableFuture
from ._plain import PLAIN, from_plain, to_plain
from .exceptions import TerminalError
from .serde import DefaultSerde, with_hint

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from .serde import Serde


def policy_for(
    max_attempts: int | None,
    max_duration: timedelta | None,
    initial: timedelta | None = None,
    maximum: timedelta | None = None,
    factor: float | None = None,
) -> actors.RetryPolicy | None:
    given = {
        "max_attempts": max_attempts,
        "max_duration": max_duration,
        "initial_interval": initial,
        "max_interval": maximum,
        "factor": factor,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    return actors.RetryPolicy(**chosen) if chosen else None  # type: ignore[arg-type]


def no_scope(scope: str | None, limit_key: str | None) -> None:
    if scope is not None or limit_key is not None:
        raise TerminalError(
            "scope= and limit_key= address Restate server features (scoped concurrency "
            "limits) that the embedded runtime does not have",
            400,
        )


def durable_step(
    actx: Any,
    name: str,
    action: Callable[..., Any],
    serde: Serde[Any],
    type_hint: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: actors.RetryPolicy | None,
) -> RestateDurableFuture[Any]:
    if type_hint is None and isinstance(serde, DefaultSerde):
        type_hint = _return_hint(action)
    chosen = with_hint(serde, type_hint)
    call = functools.partial(action, *args, **kwargs)
    body: Callable[[], Any]
    if inspect.iscoroutinefunction(action):

        async def body_async() -> object:
            return to_plain(chosen, await call())

        body = body_async
    else:

        def body_sync() -> object:
            return to_plain(chosen, call())

        body = body_sync
    durable = actx.run(name, body, retry=policy, type=PLAIN)
    return RestateDurableFuture(durable, None, functools.partial(from_plain, chosen))


def _return_hint(action: Callable[..., Any]) -> Any:
    """The action's return annotation, evaluated (as Restate does: a string annotation
    under ``from __future__ import annotations`` names the type); None when it has none
    or it names something undefined."""
    try:
        annotation = inspect.signature(action, eval_str=True).return_annotation
    except (NameError, TypeError, ValueError):
        return None
    return None if annotation is inspect.Signature.empty else annotation
