"""Retry policies for invocations and ``ctx.run`` steps.

A policy is pure data with two questions (``delay``, ``exhausted``): how long to wait
before the next attempt, and whether to stop. The runtime asks them only after a failure,
so a policy costs nothing on the path where handlers and steps succeed.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final, Literal, final

import attrs

#: The key of an invocation's own retries in ``Invocation.retry_since`` (a ``ctx.run``
#: step's retries are kept under its journal index, which is never negative).
INVOCATION_RETRIES: Final = -1


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(value: float | timedelta | None) -> float | None:
    """``max_duration`` in seconds: a clear error for anything but a positive, finite
    number of seconds or a ``timedelta`` (or None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(
            "max_duration must be seconds (a number) or a timedelta, or None for no limit, "
            f"not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"max_duration must be a positive, finite time (or None for no limit), not {value!r}"
        )
    return seconds


@final
@attrs.frozen
class RetryPolicy:
    """How a failure is retried: an invocation whose handler raised (anything but
    ``TerminalError``) runs again from its journal, and a ``ctx.run`` body that raised
    runs again, in both cases after a backoff. The n-th retry waits
    ``initial_interval * factor**(n-1)``, capped at ``max_interval``.

    **The default retries until it succeeds**, like Restate: a transient error (a
    dependency down for a minute, or an hour) never turns into a ``TerminalError`` or a
    pause by itself, so a saga does not compensate real work because of an outage. The
    backoff starts at 50 ms (a blip costs almost nothing: four retries within 0.8 s),
    doubles, and reaches its 30 s cap after about a minute; from then on a failure that
    lasts costs two attempts a minute, and a recovered dependency is noticed within 30 s.

    Limits, whichever comes first (both None by default: no limit):

    * ``max_attempts``: attempts in all, the first included;
    * ``max_duration`` (seconds or ``timedelta``): no retry starts later than this
      after the first attempt began (for an invocation: the first one that failed since
      its last resume), measured on the runtime's clock, so a test clock skips it. That
      start is durable: the limit holds across a crash or restart (a restart past it
      runs the step or invocation once more, and a failure then is final; the attempt
      count starts again in a new process).

    When a limit is reached, a ``ctx.run`` step raises ``TerminalError`` in its handler
    (which may compensate), and an invocation does what ``on_max_attempts`` says:
    ``"pause"`` (it keeps its key, stays visible, and continues with ``resume`` or ends
    with ``cancel``; attachers get ``InvocationPausedError``) or ``"kill"`` (it ends as
    killed, without compensation, as ``kill`` ends it: its callers get a 409
    ``TerminalError``). A ``resume`` gives the invocation the whole budget again.

    ``on_max_attempts`` is about invocations: a policy given to ``ctx.run`` must leave it
    at ``"pause"`` (a step that runs out raises; it cannot pause or kill), and a handler's
    policy with ``"kill"`` applies to its steps as the same limits, raising.

    Raises ``ValueError`` for a negative interval, a factor below 1, ``max_attempts``
    below 1, ``max_duration`` not positive, an unknown ``on_max_attempts``, or
    ``on_max_attempts="kill"`` without a limit (it could never happen).
    """

    initial_interval: float = attrs.field(default=0.05, converter=_seconds)
    factor: float = 2.0
    max_interval: float = attrs.field(default=30.0, converter=_seconds)
    max_attempts: int | None = None
    max_duration: float | None = attrs.field(default=None, converter=_duration)
    on_max_attempts: Literal["pause", "kill"] = "pause"

    def __attrs_post_init__(self) -> None:
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("retry intervals must not be negative")
        if self.factor < 1:
            raise ValueError("retry factor must be at least 1")
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise ValueError(
                f"max_attempts must be an int of at least 1 (or None for no limit), "
                f"not {self.max_attempts!r}"
            )
        if self.on_max_attempts not in ("pause", "kill"):
            raise ValueError(
                f"on_max_attempts must be 'pause' or 'kill', not {self.on_max_attempts!r}"
            )
        unlimited = self.max_attempts is None and self.max_duration is None
        if self.on_max_attempts == "kill" and unlimited:
            raise ValueError(
                "on_max_attempts='kill' needs a limit to act on: set max_attempts or "
                "max_duration (without one, retries never stop)"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2 is the first retry)."""
        if attempt <= 1:
            return 0.0
        try:
            delay = self.initial_interval * self.factor ** (attempt - 2)
        except OverflowError:  # a policy without a limit, retried a thousand times
            return self.max_interval
        return min(delay, self.max_interval)

    def exhausted(self, attempts: int, elapsed: float = 0.0) -> bool:
        """Whether the policy is used up after ``attempts`` failed attempts, the first of
        which began ``elapsed`` seconds ago: the attempt limit is reached, or the next
        attempt, after its backoff, would start past ``max_duration`` (then it gives up
        now rather than wait only to give up)."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        limit = self.max_duration
        return limit is not None and elapsed + self.delay(attempts + 1) > limit
