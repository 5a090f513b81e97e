"""``Runtime.statistics``: a snapshot of the runtime's in-memory load, counted from the
parts that hold it (nothing here is kept up to date on the call path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import attrs

from ._lifecycle import Phase

if TYPE_CHECKING:
    from ._admission import Admission
    from ._kernel import Kernel
    from ._scheduler import Scheduler
    from ._timers import Timers

#: Phases of an invocation held in memory without its coroutine (or giving it up).
_SUSPENDED = frozenset({Phase.SUSPENDED, Phase.UNWINDING, Phase.WOKEN_UNWINDING})


@final
@attrs.frozen
class RuntimeStatistics:
    """A snapshot of the runtime's in-memory load."""

    in_flight: int  #: invocations held in memory
    activations: int  #: keys with a live mailbox
    queued_exclusive: int  #: exclusive invocations waiting for their key
    suspended: int  #: invocations whose coroutine was dropped while waiting
    paused: int  #: invocations waiting for ``resume``
    parked: int = 0  #: suspended invocations dropped from memory entirely
    timers: int = 0  #: timers scheduled (sleeps, delayed sends, retention expiry)


def statistics_of(
    kernel: Kernel, scheduler: Scheduler, timers: Timers, admission: Admission
) -> RuntimeStatistics:
    invocations = kernel.invocations.values()
    return RuntimeStatistics(
        parked=len(kernel.parked),
        timers=len(timers.heap),
        in_flight=len(kernel.invocations),
        activations=len(scheduler.activations),
        queued_exclusive=sum(
            a.mailbox.statistics().queued_exclusive for a in scheduler.activations.values()
        )
        + sum(1 for inv in admission.accepted if inv.exclusive and inv.not_before is None),
        suspended=sum(1 for inv in invocations if inv.life.phase in _SUSPENDED)
        + len(kernel.parked),
        paused=sum(1 for inv in invocations if inv.paused_reason is not None),
    )
