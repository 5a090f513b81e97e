"""Retry policies for invocations and ``ctx.run`` steps."""

from __future__ import annotations

from datetime import timedelta
from typing import final

import attrs


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@final
@attrs.frozen
class RetryPolicy:
    """Exponential backoff: the n-th retry waits ``initial_interval * factor**(n-1)``,
    capped at ``max_interval``; after ``max_attempts`` attempts (None: no limit) the
    invocation is paused, or the ``ctx.run`` step raises ``TerminalError``. The default
    gives up after 10 attempts, about 20 seconds.

    Intervals are seconds or ``timedelta``.
    """

    initial_interval: float = attrs.field(default=0.05, converter=_seconds)
    factor: float = 2.0
    max_interval: float = attrs.field(default=10.0, converter=_seconds)
    max_attempts: int | None = 10

    def __attrs_post_init__(self) -> None:
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("retry intervals must not be negative")
        if self.factor < 1:
            raise ValueError("retry factor must be at least 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 is the first retry)."""
        if attempt <= 1:
            return 0.0
        try:
            delay = self.initial_interval * self.factor ** (attempt - 2)
        except OverflowError:  # a policy without a limit, retried a thousand times
            return self.max_interval
        return min(delay, self.max_interval)

    def exhausted(self, attempts: int) -> bool:
        """Whether ``attempts`` attempts used up the policy."""
        return self.max_attempts is not None and attempts >= self.max_attempts
