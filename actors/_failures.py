"""Exceptions are data: how whatever handler code raises becomes a recorded failure.

A handler or a ``ctx.run`` body may raise anything: an ``Exception`` whose ``str()``
raises, a message of many megabytes, ``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit``, a ``BaseException`` subclass of its own, a group of them. Each is a
failure of that attempt, retried or paused by policy (DESIGN.md invariants 10 and 13),
and recorded as text built here: it always renders (falling back to the type name) and
is cut to ``MAX_FAILURE_MESSAGE_CHARS`` with a marker, so the record that says why an
invocation paused always fits in the store. Letting such an exception escape would end
the runtime's task group, and since the invocation is durable, every reopen would run it
and die again: a poison pill.

Two kinds of ``BaseException`` are not the handler's to raise and pass through
(``passes_through``):

* the runtime's own signals (``_control_flow.ControlFlow``: a failed commit, a
  suspension, a cancellation in flight; ``actors.testing.SimulatedCrash``), which unwind
  handler code on purpose;
* a cancellation from outside: the runtime closing, a kill, the user's own cancel scope
  or nursery around the runtime (trio's ``Cancelled``; asyncio's ``CancelledError`` while
  the task is really being cancelled). These stop the runtime promptly and record
  nothing, so the invocation runs again at the next open.

Under trio a ``Cancelled`` cannot be made by user code, so every one is real. Under
asyncio anyone can ``raise CancelledError()``; it is a cancellation only if a cancel
scope around the task was cancelled or the task has a cancellation request pending
(``Task.cancelling()``), and otherwise a failure like any other.

A real Ctrl-C under trio is a ``KeyboardInterrupt`` raised wherever the main task is;
one that lands inside handler code cannot be told from a handler raising it, so it is a
failure of that attempt (the next Ctrl-C, outside handler code, stops the program). An
asyncio program gets Ctrl-C as a cancellation of its main task, which passes through.
"""

from __future__ import annotations

import asyncio
import math

import anyio

from ._control_flow import ControlFlow, StepFailed, Suspended
from ._limits import MAX_FAILURE_MESSAGE_CHARS

#: Ends a cut message. It names no original length: a message may be cut more than
#: once (a cut exception text inside a longer reason), and the marker stays true.
CUT_MARKER = f"... [cut to {MAX_FAILURE_MESSAGE_CHARS} characters]"


def cut(message: str) -> str:
    """``message``, cut to ``MAX_FAILURE_MESSAGE_CHARS`` characters (marker included)."""
    if len(message) <= MAX_FAILURE_MESSAGE_CHARS:
        return message
    return message[: MAX_FAILURE_MESSAGE_CHARS - len(CUT_MARKER)] + CUT_MARKER


def type_name(exc: BaseException) -> str:
    """The exception's class name; never raises."""
    try:
        name = type(exc).__name__
    except BaseException:
        return "exception"
    return name if isinstance(name, str) else "exception"


def safe_text(value: object, fallback: str) -> str:
    """``str(value)``, or ``fallback`` if that raises or is not a str; cut to length."""
    if isinstance(value, str):
        return cut(value)  # exactly what it is: no str() of a str subclass
    try:
        text = str(value)
    except BaseException:
        return fallback
    return cut(text) if isinstance(text, str) else fallback


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` (just the type name if there is no message, or if its
    ``str()`` fails), cut to ``MAX_FAILURE_MESSAGE_CHARS``. A group names what it holds
    too: ``"ExceptionGroup: msg (2 sub-exceptions): [ValueError: a, KeyError]"``."""
    name = type_name(exc)
    text = safe_text(exc, "")
    described = f"{name}: {text}" if text else name
    if isinstance(exc, BaseExceptionGroup):
        described += f": [{', '.join(_leaves(exc))}]"
    return cut(described)


_MAX_LEAVES = 8


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[str]:
    """The first few leaves of a group, described (iteratively: groups may nest deep)."""
    found: list[str] = []
    stack: list[BaseException] = [group]
    while stack and len(found) < _MAX_LEAVES:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            name, text = type_name(exc), safe_text(exc, "")
            found.append(f"{name}: {text}" if text else name)
    if stack:
        found.append("...")
    return found


def is_outside_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the current task being cancelled from outside (see above)."""
    cancelled = anyio.get_cancelled_exc_class()
    if not isinstance(exc, cancelled):
        return False
    if cancelled is not asyncio.CancelledError:
        return True  # trio's Cancelled: only trio makes them
    if anyio.current_effective_deadline() == -math.inf:
        return True  # inside a cancelled scope (runtime closing, kill, the user's scope)
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0  # a native task.cancel()


def passes_through(exc: BaseException) -> bool:
    """Whether ``exc`` must unwind past handler code instead of becoming its failure: a
    runtime signal or an outside cancellation, or a group holding one."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(_passes_through_leaf) is not None
    return _passes_through_leaf(exc)


def _passes_through_leaf(exc: BaseException) -> bool:
    return isinstance(exc, ControlFlow) or is_outside_cancellation(exc)


def unwinding(exc: BaseException) -> BaseException | None:
    """What must unwind past the handler that raised ``exc`` (``exc`` itself, or the
    signal a task group of the handler's own carried out of a child task: act on the
    signal, not on its wrapper), or None when ``exc`` is a failure of the attempt."""
    if isinstance(exc, BaseExceptionGroup):
        signals = exc.subgroup(lambda leaf: isinstance(leaf, StepFailed | Suspended))
        if signals is not None:
            return _first_leaf(signals)
    return exc if passes_through(exc) else None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
