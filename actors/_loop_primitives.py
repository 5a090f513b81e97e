"""The hot path's cancel scope, checkpoints, events and task starts, native to the loop.

anyio's portable primitives find the event loop on every use (``sniffio``, then the
backend's class) and, under trio, wrap trio's own objects. On this project's 2-core VMs
an ``anyio.CancelScope`` entered and left costs ~8.7 us under trio, trio's own ~5.2 us;
``anyio.lowlevel.checkpoint_if_cancelled`` adds the same lookup to trio's. Every call
that suspends enters a scope (under trio at its first suspension, ``_lazy_scope``; under
asyncio two, up front: the caller's inline scope and the handler's kill scope; see
``shielded_scope``) and every state read checkpoints, so a runtime, which
knows its event loop when it opens, takes trio's objects directly under trio. Under
asyncio these are anyio's own, which are native there.

``checkpoint`` is trio's own, too: a call that ran inline without yielding ends with one
(``Results.result_of``), so a caller looping on ``rt.call`` cannot starve the loop.

Objects that know no runtime make their events with ``new_event`` (one sniffio lookup,
trio's own event under trio), and the runtime starts its own tasks on trio's nursery
itself (``start_soon_of``).

The objects behave the same for what the runtime uses of them: ``cancel()``,
``cancel_called``, ``cancelled_caught``, and entering and leaving with ``with``; a
cancel raises the loop's own cancellation exception either way
(``anyio.get_cancelled_exc_class()``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import sniffio
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType


class CancelScopeLike(Protocol):
    """What the runtime uses of a cancel scope (anyio's or trio's)."""

    def cancel(self) -> None: ...

    @property
    def cancel_called(self) -> bool: ...

    @property
    def cancelled_caught(self) -> bool: ...

    def __enter__(self) -> CancelScopeLike: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...


@attrs.frozen
class LoopPrimitives:
    """The primitives of one event loop."""

    #: A new cancel scope, not entered yet.
    cancel_scope: Callable[[], CancelScopeLike]
    #: Raises the loop's cancellation if the task is cancelled; never yields otherwise.
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    #: Lets the loop run other tasks, and raises its cancellation if cancelled.
    checkpoint: Callable[[], Awaitable[None]]
    #: Under trio: a new shielded scope, and the cancellation it keeps out. trio's
    #: cancellation is level-triggered (every checkpoint in a cancelled scope raises,
    #: except inside a shielded scope), so code may catch a cancellation of an outer
    #: scope and go on, shielded, inside it: an inline call's handler is killed through
    #: its caller's scope, one scope less per call (``Executor.run``). None under
    #: asyncio, where anyio delivers a cancellation by cancelling the task again
    #: and again: there the handler has a kill scope of its own.
    shielded_scope: Callable[[], CancelScopeLike] | None = None
    cancelled: type[BaseException] = BaseException


_TRIO = LoopPrimitives(
    trio.CancelScope,
    trio.lowlevel.checkpoint_if_cancelled,
    trio.lowlevel.checkpoint,
    functools.partial(trio.CancelScope, shield=True),
    trio.Cancelled,
)
_PORTABLE = LoopPrimitives(
    anyio.CancelScope, anyio.lowlevel.checkpoint_if_cancelled, anyio.lowlevel.checkpoint
)


class EventLike(Protocol):
    """What the runtime uses of an event (anyio's or trio's)."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


def new_event() -> EventLike:
    """An event of the running loop: trio's own under trio (anyio's wraps it, after a
    backend lookup), anyio's otherwise. For objects that make their event lazily, in
    the first task that waits, and know no runtime (``Completion``)."""
    if sniffio.current_async_library() == "trio":
        return trio.Event()
    return anyio.Event()


async def checkpoint() -> None:
    """``checkpoint`` of the running loop, for callers that know no runtime."""
    if sniffio.current_async_library() == "trio":
        await trio.lowlevel.checkpoint()
    else:
        await anyio.lowlevel.checkpoint()


def loop_primitives() -> LoopPrimitives:
    """The primitives of the running event loop: trio's own under trio, anyio's
    otherwise (``RuntimeError`` outside any loop, as anyio would raise)."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError as exc:
        raise RuntimeError("no event loop is running") from exc
    return _TRIO if library == "trio" else _PORTABLE


def start_soon_of(task_group: anyio.abc.TaskGroup) -> Callable[..., object]:
    """``task_group.start_soon``, without anyio's wrapper around each task under trio.

    anyio (4.14 on) runs every task it starts inside a ``TaskHandle``: one more
    coroutine, cancel scope (three objects in trio) and event per task, made for a handle
    nobody here keeps, and alive as long as the task, so every pass of the cyclic GC
    meets them (revived workflows: ~20 us of CPU per spawn, GC not counted). Under trio
    the group *is* a trio nursery, whose own ``start_soon`` gives the same structure: a
    task's exception cancels the group and leaves it through the same ``__aexit__``, and
    cancelling the group's scope cancels the task. Under asyncio anyio's task group
    keeps the per-task state its cancel scopes need, so its ``start_soon`` stays."""
    nursery = getattr(task_group, "_nursery", None)  # anyio's trio backend
    if isinstance(nursery, trio.Nursery):
        return nursery.start_soon
    return task_group.start_soon
