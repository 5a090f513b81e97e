"""Recovery: what a runtime does when it opens a data directory.

Every accepted, unfinished invocation is in the ``inbox``. A plain scan of it is the
recovery order (``_key_order``): per key, the invocations that had started, in the order
they were admitted, then those that had not, in acceptance order. Each is rebuilt from
its record and re-delivered; it replays its journal when it runs. A delayed send not yet
due waits for its timer again (its due time is in its record); the durable timers of
the next window are loaded; a kill recorded offline (``actors kill``) is carried out.
A rebuilt invocation that blocks parks at once: it may have waited long already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors.storage import InvocationStatus, StorageError, Table, TimerKind, encode_key

from ._errors import PersistenceError, persistence_error
from ._key_order import parse_row
from ._timers import TIMER_WINDOW

if TYPE_CHECKING:
    from ._control import Control
    from ._kernel import Kernel
    from ._key_order import KeyOrder
    from ._scheduler import Scheduler
    from ._timers import Timers


def _has_journal(kernel: Kernel, invocation_id: str) -> bool:
    try:
        return bool(
            kernel.store.scan(Table.JOURNAL, encode_key((invocation_id,)), children=True, limit=1)
        )
    except StorageError as exc:
        raise persistence_error(exc) from exc


def recover(
    kernel: Kernel, order: KeyOrder, scheduler: Scheduler, timers: Timers, control: Control
) -> int:
    """Re-deliver every accepted, unfinished invocation and load the durable timers;
    the number of invocations recovered."""
    clock = kernel.clock
    try:
        entries = kernel.store.scan(Table.INBOX)
    except StorageError as exc:
        raise persistence_error(exc) from exc
    timers.load(clock.now() + TIMER_WINDOW)
    recovered = 0
    for inbox_key, raw_id in entries:
        try:
            seq, position = parse_row(inbox_key)
            invocation_id = raw_id.decode()
        except (ValueError, AssertionError) as exc:  # bytes changed inside a row
            raise PersistenceError(
                f"store {kernel.store.path} is damaged: inbox row {inbox_key!r} does not "
                f"decode ({exc}) (restore the directory from a backup)"
            ) from exc
        order.recovered(seq)
        record = kernel.load_record(invocation_id)
        if record is None or record.outcome is not None:
            continue
        # It had started if it holds a position (an exclusive one) or has a journal:
        # then even a cancel must run it again, to compensate. Rebuilt, it parks at
        # its first wait: it may have waited long already.
        started = position is not None or _has_journal(kernel, record.invocation_id)
        inv = scheduler.rebuild(record, inbox_key, started=started)
        if inv is None:
            continue
        recovered += 1
        due = record.next_attempt_at
        if (
            position is None
            and record.status is InvocationStatus.PENDING
            and due is not None
            and due > clock.now()
            and not record.cancel_requested
            and not record.kill_requested
        ):
            kernel.invocations[inv.invocation_id] = inv
            timers.schedule(due, TimerKind.DELIVER, inv.invocation_id, None)
        else:
            scheduler.dispatch(inv)
        if record.kill_requested:  # recorded by ``actors kill`` while nobody served
            control.cancel_later(inv.invocation_id, True)
    return recovered
