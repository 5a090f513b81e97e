"""When a retry cycle began, kept durable for ``RetryPolicy(max_duration=...)``.

A time limit on retries counts from the first attempt. If that start lived only in
memory, a crash in the middle of the retries would give the step (or the invocation)
a whole new budget at every restart, and a dependency that never recovers, in a
process that keeps restarting, would be retried forever despite the limit. So the
first failure under a timed policy writes the start into the invocation's record
(``InvocationRecord.retry_since``), and a rebuilt invocation reads it back.

Only failures under a policy with ``max_duration`` get here: an invocation or step
that succeeds, or runs under an untimed policy, writes nothing more than before. An
entry stays until the invocation ends or is resumed (a resume starts every budget
afresh): a step's outcome, once journaled, is never retried again at its index, and if
that outcome is lost in a crash, the step's retries go on counting from the same start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import InvocationStatus, StorageError, Table, WriteBatch, dumps

from ._control_flow import StepFailed
from ._errors import TerminalError
from ._kernel import logger

if TYPE_CHECKING:
    from ._gate import OutputGate
    from ._invocation import Invocation


def retry_start(inv: Invocation, key: int) -> float | None:
    """When the retry cycle ``key`` of ``inv`` began (a step's journal index, or
    ``INVOCATION_RETRIES``), if it is under way."""
    since = inv.retry_since
    return None if since is None else since.get(key)


async def keep_retry_start(output: OutputGate, inv: Invocation, key: int, start: float) -> None:
    """Record ``start`` as the beginning of ``inv``'s retry cycle ``key``, in memory at
    once and durably before returning (with whatever the invocation buffered, through
    its output gate, so its own batches stay in order).

    A write that fails is logged, not raised: the retries go on, and only a crash
    before the next record write would count the limit from a later start."""
    since = inv.retry_since
    if since is None:
        since = inv.retry_since = {}
    since[key] = start
    batch = WriteBatch()
    batch.put(
        Table.INVOCATIONS,
        inv.invocation_id.encode(),
        dumps(inv.record(InvocationStatus.RUNNING)),
    )
    try:
        ticket = output.flush(inv, batch)
        if ticket is not None:
            await ticket.wait()
    except (StorageError, TerminalError, StepFailed) as exc:
        logger.warning(
            "could not record when the retries of invocation %s began: %s",
            inv.invocation_id,
            exc,
        )
