"""Restate's ``restate.retry_policy``: a handler's invocation retry policy, mapped onto
``actors.RetryPolicy`` (``policy_of``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import actors

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = ["InvocationRetryPolicy"]


@dataclass
class InvocationRetryPolicy:
    """How a failing invocation is retried (Restate's ``InvocationRetryPolicy``); every
    field left None keeps ``actors.RetryPolicy``'s default (retry until success, 50 ms
    doubling, capped at 30 s). ``on_max_attempts`` is ``"pause"`` (resumable) or
    ``"kill"``, as in Restate."""

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None


def policy_of(policy: InvocationRetryPolicy | None) -> actors.RetryPolicy | None:
    """The runtime's policy for ``policy`` (None for None). Raises ``ValueError`` for
    out-of-range values, as ``actors.RetryPolicy`` does."""
    if policy is None:
        return None
    if not isinstance(policy, InvocationRetryPolicy):
        raise TypeError(f"invocation_retry_policy must be an InvocationRetryPolicy, not {policy!r}")
    given: dict[str, object] = {
        "initial_interval": policy.initial_interval,
        "factor": policy.exponentiation_factor,
        "max_interval": policy.max_interval,
        "max_attempts": policy.max_attempts,
        "on_max_attempts": policy.on_max_attempts,
    }
    return actors.RetryPolicy(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
