"""What an attempt starts from (the context its handler gets, the journal it replays:
pure functions of the invocation), and one attempt's run; the executor runs the
attempts, retries and pauses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.storage import (
    Failure,
    StorageError,
    Success,
    Table,
    decode_key,
    encode_key,
    loads_entry,
)

from ._context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
    context_misuse,
)
from ._control_flow import HandlerFailed, StepFailed
from ._errors import (
    NonDeterminismError,
    SerializationError,
    TerminalError,
    UnknownHandlerError,
    persistence_error,
)
from ._failures import describe, unwinding
from ._invocation import UNDECODED
from ._kernel import logger
from ._limits import MAX_VALUE_BYTES
from ._results import failure
from ._serde import decode_value, encode_value

if TYPE_CHECKING:
    from actors.storage import JournalEntry, Outcome, Store

    from ._definitions import Handler
    from ._invocation import Invocation
    from ._port import HandlerPort


def context_class(inv: Invocation) -> type[Context]:
    """The class of the context ``inv``'s handler gets, by its kind (exclusive, service,
    workflow main, or a shared handler of a workflow or an object): decided once per
    registered handler."""
    spec = inv.spec
    known = _context_classes.get(spec)
    if known is not None:
        return known
    kind = spec.kind
    if kind == "exclusive":
        known = ObjectContext
    elif kind == "service":
        known = Context
    elif kind == "main":
        known = WorkflowContext
    elif inv.entry.cls.actor_kind == "workflow":
        known = WorkflowSharedContext
    else:
        known = ObjectSharedContext
    if len(_context_classes) >= _MAX_CACHED:  # classes made at run time cannot grow it
        _context_classes.clear()
    _context_classes[spec] = known
    return known


#: The context class of each handler seen (its kind and its actor's never change).
_context_classes: dict[Handler[Any, Any], type[Context]] = {}
_MAX_CACHED = 4096


def load_journal(store: Store, inv: Invocation) -> dict[int, JournalEntry]:
    """The durable journal of ``inv`` by entry index: empty if it was never accepted.
    A store that cannot be read raises ``PersistenceError``."""
    if inv.inbox_key is None:
        return {}
    try:
        items = store.scan(Table.JOURNAL, encode_key((inv.invocation_id,)), children=True)
    except StorageError as exc:
        raise persistence_error(exc) from exc
    journal: dict[int, JournalEntry] = {}
    for key, value in items:
        index = decode_key(key)[-1]
        assert isinstance(index, int)
        journal[index] = loads_entry(value)
    return journal


async def run_attempt(port: HandlerPort, inv: Invocation) -> Outcome:
    """One attempt of ``inv``'s handler: its outcome, or the signal that unwinds it
    (``HandlerFailed``: a failure to retry or pause on)."""
    spec = inv.spec
    has_input = spec.has_input
    try:
        if has_input and inv.arg is UNDECODED:
            inv.arg = decode_value(inv.payload, spec.input_type, f"input of {spec.qualname}")
    except SerializationError as exc:
        return Failure(str(exc), exc.status_code)
    ctx = context_class(inv)._for(port, inv)
    instance = inv.entry.instance
    try:
        result = await (spec.fn(instance, ctx, inv.arg) if has_input else spec.fn(instance, ctx))
        try:
            data = encode_value(result, spec.output_type, "")
        except SerializationError:  # again, named in its message (not formatted per call)
            data = encode_value(result, spec.output_type, f"output of {spec.qualname}")
        if len(data) > MAX_VALUE_BYTES:
            # As if the handler raised it at its return: what it wrote is kept.
            return Failure(
                f"the output of {spec.qualname} is {len(data)} bytes, over the limit "
                f"of {MAX_VALUE_BYTES} bytes",
                413,
            )
        return Success(data)
    except TerminalError as exc:
        # Restate semantics: a terminal failure keeps the state written before it.
        return failure(exc)
    except (NonDeterminismError, StepFailed):
        raise
    except SerializationError as exc:
        return Failure(str(exc), 500)
    except UnknownHandlerError as exc:
        # A call to a handler that does not exist: retrying cannot help.
        return Failure(str(exc), exc.status_code)
    except BaseException as exc:
        # Anything else is a failure of this attempt, BaseException included
        # (KeyboardInterrupt, SystemExit, a CancelledError nobody cancelled...), never
        # the end of the runtime; only the runtime's signals and an outside
        # cancellation unwind (``_failures``).
        signal = unwinding(exc)
        try:  # no local outlives the raise: this frame is in its traceback (a GC cycle)
            if signal is exc:
                raise
            if signal is not None:
                raise signal from exc
        finally:
            del signal
        misuse = context_misuse(exc)
        if misuse is not None:  # no retry fixes the handler's code: fail it now
            return failure(misuse)
        reason = describe(exc)
        logger.warning(
            "handler %s of invocation %s raised %s", spec.qualname, inv.invocation_id, reason
        )
        raise HandlerFailed(reason) from exc
