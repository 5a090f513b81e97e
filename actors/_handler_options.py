"""Per-handler and per-actor options: retention, inactivity timeout, ingress privacy.

Restate lets a service or a handler override what its server does by default
(``restate.VirtualObject(..., idempotency_retention=, journal_retention=,
inactivity_timeout=, abort_timeout=, ingress_private=)`` and the same keywords on each
handler decorator). The embedded runtime takes the ones that mean something without a
server, under one name each:

``retention``
    How long a completed invocation's record, result and journal, its idempotency key
    and, for a workflow's ``main``, the workflow's state, promises and run-once record
    are kept; overrides ``open_runtime(retention=)``. Restate keeps these apart
    (``journal_retention``, ``idempotency_retention``, ``workflow_retention``); here
    they are removed together by one durable ``EXPIRE`` timer (``_retention``), so one
    duration covers them all. The timer's due time is written with the completion, so
    the retention an invocation finished under is the one it keeps across restarts,
    even if the definition changes meanwhile.
``inactivity_timeout``
    How long an invocation of the handler may stay blocked in a durable wait (a call,
    sleep, promise, awakeable, or a select/gather of them) before it is suspended: its
    coroutine is dropped and it resumes by replay when what it waits for completes.
    Overrides ``open_runtime(suspend_after=)``, which is the runtime-wide form of the
    same timer (``idle_timeout`` is another thing: it drops an idle key's activation,
    which holds no invocation). This is Restate's graceful half: when its inactivity
    timeout expires Restate asks the invocation to suspend, which it can only do at a
    durable await. Restate's ``abort_timeout`` (interrupt code that cannot suspend,
    such as a hung ``ctx.run`` body, and retry the attempt) has no counterpart yet:
    embedded, the only interruption is a cancellation of the handler's coroutine,
    which the runtime reserves for ``kill`` and the runtime's own shutdown, and which
    user code can shield. Until then a hung step is bounded inside it
    (``anyio.fail_after``), which fails the step and lets its retry policy act.
``ingress_private``
    The HTTP ingress (``actors serve``, ``rt.serve_http``) treats the handler as if it
    did not exist: 404 with the unknown handler's message, on calls, sends, attach and
    output by idempotency key or by the invocation's id, and (for a whole private actor)
    on the workflow routes and in the health listing. Actors (``ctx.call``,
    ``ctx.send``) and the embedded ``rt`` still reach it: privacy is about the network
    boundary, not about the program that embeds the runtime.

A value given on the decorator wins over the one given as a class keyword
(``class Jobs(actors.VirtualObject, retention=timedelta(hours=1))``), which wins over
the runtime's; class keywords are inherited by subclasses unless they give their own.
Bad values are refused where they are written, when the decorator or the class
statement runs: ``TypeError`` for a wrong type, ``ValueError`` for a duration that is
not finite and positive. A retention may be zero: callers waiting when the invocation
finishes are answered, and nothing is kept for anyone asking later (as in Restate).
"""

from __future__ import annotations

import math
from datetime import timedelta

import attrs

#: A duration as the decorators take it: a ``timedelta`` or a number of seconds.
Duration = timedelta | float


@attrs.frozen
class HandlerOptions:
    """Options given on a decorator or as class keywords; None means "not given here"."""

    retention: float | None = None
    inactivity_timeout: float | None = None
    ingress_private: bool | None = None

    def over(self, base: HandlerOptions) -> HandlerOptions:
        """These options, with ``base``'s where these give none."""
        return HandlerOptions(
            retention=base.retention if self.retention is None else self.retention,
            inactivity_timeout=(
                base.inactivity_timeout
                if self.inactivity_timeout is None
                else self.inactivity_timeout
            ),
            ingress_private=(
                base.ingress_private if self.ingress_private is None else self.ingress_private
            ),
        )


NO_OPTIONS = HandlerOptions()


def _seconds(where: str, option: str, value: object, *, zero_ok: bool) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"{where}: {option} must be a timedelta or a number of seconds, not "
            f"{type(value).__name__} {value!r}"
        )
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        bound = "non-negative" if zero_ok else "positive"
        raise ValueError(f"{where}: {option} must be a finite, {bound} duration, not {value!r}")
    return seconds


def handler_options(
    where: str,
    *,
    retention: Duration | None,
    inactivity_timeout: Duration | None,
    ingress_private: bool | None,
) -> HandlerOptions:
    """Check the options given for ``where`` (a handler or an actor, for messages)."""
    if ingress_private is not None and not isinstance(ingress_private, bool):
        raise TypeError(
            f"{where}: ingress_private must be True or False, not "
            f"{type(ingress_private).__name__} {ingress_private!r}"
        )
    return HandlerOptions(
        retention=None
        if retention is None
        else _seconds(where, "retention", retention, zero_ok=True),
        inactivity_timeout=None
        if inactivity_timeout is None
        else _seconds(where, "inactivity_timeout", inactivity_timeout, zero_ok=False),
        ingress_private=ingress_private,
    )
