"""An inline call's cancel scope, entered when the call first suspends (trio only).

A call that may start at once runs in its caller's task (``Scheduler.run_call``), in a
cancel scope that ``kill()`` and the runtime's close cancel. Entering and leaving a trio
``CancelScope`` costs ~5-7 us on this project's 2-core VMs: a quarter of a shared read,
which usually finishes without ever suspending. A scope can only deliver a
cancellation at a suspension, though, and nothing else runs in the loop before one. So
the call's coroutine is driven here: its first step runs with no scope; a call that
finishes in it never gets one, and one that suspends gets its scope at that moment,
before the loop sees the suspension, so every suspension of it is in the scope.

When it first suspends, the handler may have opened scopes of its own
(``move_on_after``, a nursery) that are still open, which a scope entered now would
end up *inside*; leaving them first would then corrupt trio's scope stack. In that
case the scope is put beneath them instead: its cancel status is given the caller's as
parent, and the handler's outermost open status is moved under it, as trio itself
moves a task's statuses into another nursery in ``nursery.start()``. When the handler
has left its own scopes, the task is back in ours, and leaving it is a plain
``__exit__``. That placement uses trio's internals (``CancelStatus``, a scope's
``_cancel_status``); if they are not as this module expects (``LAZY_SCOPES``), every
call enters its scope up front as before.

An exclusive call usually suspends first in the wait for its completion's commit, which
needs no scope: a completing invocation refuses kill and cancel, and the commit settles
by the store's close at the latest. It waits unscoped (``wait_unscoped``), and if the
runtime closed meanwhile, a checkpoint after it enters the scope, cancelled, so the
call ends as a cancelled wait would. Only object handlers' calls are run so: services
and workflows suspend in their steps and waits nearly always, and for them the frame
this adds to every suspension costs more than the scope it saves.

A call made inline from inside another's ``run`` (a handler calling ``rt.call`` in the
same task) enters its scope up front (``driving``). Were it lazy too, the outer call's
scope could be entered at one of the inner call's suspensions, after the inner call
began; at its next suspension the inner call would take that scope for one of its
handler's own and place its scope beneath it, inverting the two. (Tasks started
meanwhile inherit the mark, and their inline calls enter up front too: only slower.)

``run``'s own frame is protected from ``KeyboardInterrupt`` (trio delivers it at the
next checkpoint): raised between a step of the coroutine and the ``yield`` that hands
its suspension to trio, it would leave the coroutine suspended for good, its scopes
open. ``Executor.run``, the coroutine it drives, is unprotected, as a task's code is.

What differs from a scope entered up front: a ``cancel()`` made *during* the first step
(only the call itself can make one then) takes effect at its first suspension rather
than at a ``checkpoint_if_cancelled`` before it. Suspensions cost one more frame to
pass through (~0.3 us each).
"""

from __future__ import annotations

import contextvars
import types
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine, Generator

    from ._loop_primitives import CancelScopeLike


def _internals_as_expected() -> bool:
    """Whether trio's scopes and cancel statuses have what ``_place_beneath`` uses."""
    try:
        from trio._core._run import CancelStatus
    except ImportError:  # pragma: no cover - a trio that moved it
        return False
    scope = trio.CancelScope()
    parent_property = getattr(CancelStatus, "parent", None)
    return (
        hasattr(scope, "_cancel_status")
        and hasattr(scope, "_has_been_entered")
        and isinstance(parent_property, property)
        and parent_property.fset is not None
        and hasattr(trio.lowlevel.Task, "_cancel_status")
    )


#: Whether inline calls get their scope at their first suspension (see the module essay).
LAZY_SCOPES: Final = _internals_as_expected()

#: Set in a task while a ``LazyScope.run`` drives a call in it (``driving``).
_DRIVING: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar(
    "actors_lazy_scope_driving", default=False
)
#: Whether the calling task is inside a ``LazyScope.run``: then an inline call made
#: there enters its scope up front (see the module essay).
driving: Final = _DRIVING.get


class LazyScope:
    """A cancel scope that exists once its call first suspends (``run``). Before that,
    ``cancel()`` is remembered and the scope is entered already cancelled."""

    __slots__ = ("_cancel_requested", "_scope", "_unscoped", "cancelled_caught")

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        #: Whether the scope caught its own cancellation (as ``CancelScope``'s).
        self.cancelled_caught = False
        self._unscoped = False  # in ``wait_unscoped``

    @property
    def entered(self) -> bool:
        """Whether the call has suspended in this scope, so that a cancel reaches it."""
        return self._scope is not None

    def cancel(self) -> None:
        if self._scope is None:
            self._cancel_requested = True
        else:
            self._scope.cancel()

    @property
    def cancel_called(self) -> bool:
        scope = self._scope
        return self._cancel_requested if scope is None else scope.cancel_called

    def __enter__(self) -> CancelScopeLike:  # pragma: no cover - driven by ``run``
        raise TypeError("a LazyScope is entered by its run(), not with 'with'")

    def __exit__(self, *exc_info: object) -> bool:  # pragma: no cover - see __enter__
        raise TypeError("a LazyScope is entered by its run(), not with 'with'")

    async def wait_unscoped(self, wait: Awaitable[None]) -> None:
        """Await ``wait`` with no scope (if the call has not entered its own yet: a wait
        that needs none, see the module essay); then, if ``cancel()`` was called
        meanwhile (the runtime closed), raise the cancellation as a wait in the scope
        would have: the checkpoint enters the scope, cancelled."""
        self._unscoped = True
        try:
            await wait
        except Exception:
            # (A failed commit, say: after a close, what would handle it is gone.)
            self._unscoped = False
            if self._cancel_requested:
                await trio.lowlevel.checkpoint()
            raise
        finally:
            self._unscoped = False
        if self._cancel_requested:
            await trio.lowlevel.checkpoint()

    @trio.lowlevel.enable_ki_protection
    @types.coroutine
    def run(self, coro: Coroutine[Any, Any, object]) -> Generator[Any, Any, object]:
        """Run ``coro`` to its end in the calling task, in this scope from its first
        suspension on (but for those in ``wait_unscoped``). Its result, or None when the
        scope caught its own cancellation (``cancelled_caught``)."""
        token = _DRIVING.set(True)
        try:
            return (yield from self._drive(coro))
        finally:
            _DRIVING.reset(token)

    def _drive(self, coro: Coroutine[Any, Any, object]) -> Generator[Any, Any, object]:
        task = trio.lowlevel.current_task()
        outside = task._cancel_status
        try:
            trap = coro.send(None)
            while self._unscoped:  # suspended in a wait that needs no scope
                try:
                    sent = yield trap
                except BaseException as exc:  # thrown into the task: pass it on
                    trap = coro.throw(exc)
                else:
                    trap = coro.send(sent)
        except StopIteration as done:  # finished with no scope at all
            return done.value
        scope = self._scope = trio.CancelScope()
        if task._cancel_status is outside:
            scope.__enter__()
        else:
            _place_beneath(scope, outside, task._cancel_status)
        if self._cancel_requested:
            scope.cancel()
        with _Leaving(scope):
            while True:
                try:
                    sent = yield trap
                except BaseException as exc:
                    try:
                        trap = coro.throw(exc)
                    except StopIteration as done:
                        return done.value
                else:
                    try:
                        trap = coro.send(sent)
                    except StopIteration as done:
                        return done.value
        self.cancelled_caught = True  # (reached only when the scope caught it)
        return None


class _Leaving:
    """``with`` for a scope already entered (or placed): only its ``__exit__``."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: Any) -> bool:
        return self._scope.__exit__(*exc_info)


def _place_beneath(scope: trio.CancelScope, outside: Any, innermost: Any) -> None:
    """Make ``scope`` entered, with ``outside`` (the caller's status) as its parent and
    the outermost status the handler opened since (an ancestor of ``innermost``) moved
    under it: as if ``scope`` had been entered before the handler's own scopes."""
    from trio._core._run import CancelStatus

    opened = innermost
    while opened.parent is not outside:
        opened = opened.parent
        if opened is None:  # pragma: no cover - the task left its caller's scope
            raise RuntimeError("an inline call's task is no longer in its caller's scope")
    scope._has_been_entered = True
    status = CancelStatus(scope=scope, parent=outside)
    scope._cancel_status = status
    opened.parent = status
