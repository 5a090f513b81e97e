"""The contexts handed to handlers: what a handler may do, by its kind.

Capabilities are types: ``ObjectContext`` (exclusive handlers) has the writing methods;
``ObjectSharedContext`` (shared handlers) has none, so a shared handler that tries to
write is a type error; ``Context`` (services) has no key and no state. Contexts are
created by the runtime only.

Untyped code that uses a method its context lacks (a shared handler's ``ctx.set``, a
typo) gets the plain ``AttributeError``; when it leaves the handler (or a ``ctx.run``
body), the runtime makes it a 500 ``TerminalError`` saying what to do instead
(``context_misuse``): no retry can fix the handler's code, so the invocation fails at
once rather than being retried and paused while its caller waits. Rejected: a
``__getattr__`` on the contexts, which would turn the error at its source but takes the
contexts off the interpreter's specialized attribute path, costing every context
operation (about 1.5% of a shared read call, by ``bench/instructions.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Generic, Self, TypeVar, final, overload

from ._errors import BadArgumentError, ContextMisuseError, TerminalError
from ._limits import check_name
from ._util import NO_ARG, NoPublicConstructor

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Awaitable, Callable, Coroutine, Mapping
    from datetime import timedelta

    from ._definitions import Handler
    from ._futures import DurableCallFuture, DurableFuture
    from ._invocation import Invocation
    from ._port import HandlerPort
    from ._request import Request
    from ._results import InvocationHandle
    from ._retry import RetryPolicy

T = TypeVar("T")
OutT = TypeVar("OutT")


_STATE_WRITES: Final = frozenset({"set", "clear", "clear_all"})
_KEYED: Final = frozenset({"key", "get", "state_keys"}) | _STATE_WRITES


def _misuse(ctx: Context, name: str) -> ContextMisuseError:
    kind = type(ctx).__name__
    where = f"{kind} of {ctx._inv.spec.qualname}"
    if name in _STATE_WRITES and isinstance(ctx, ObjectSharedContext):
        message = (
            f"ctx.{name}() is not available in a shared handler ({where}): shared handlers "
            "only read committed state. Write it from an @actors.exclusive handler (or a "
            "workflow's @actors.main), for example one this handler calls with ctx.call"
        )
    elif name in _KEYED and not isinstance(ctx, ObjectSharedContext):
        message = (
            f"ctx.{name} is not available in a service handler ({where}): services are "
            "stateless and have no key. Keep state in a VirtualObject or Workflow and "
            "call it with ctx.call"
        )
    elif name == "promise":
        message = (
            f"ctx.promise() is not available here ({where}): durable promises belong to "
            "workflows. Use ctx.awakeable() outside a workflow"
        )
    else:
        api = ", ".join(n for n in dir(type(ctx)) if not n.startswith("_"))
        message = f"{kind} has no attribute {name!r} ({where}); it has: {api}"
    return ContextMisuseError(message, 500)


def context_misuse(exc: BaseException) -> TerminalError | None:
    """The terminal error for ``exc`` if it is an ``AttributeError`` of a context's
    attribute (the interpreter names the object and the attribute in it), else None."""
    if not isinstance(exc, AttributeError) or isinstance(exc, TerminalError):
        return None
    ctx, name = exc.obj, exc.name
    if not isinstance(ctx, Context) or not isinstance(name, str) or name.startswith("_"):
        return None
    return _misuse(ctx, name)


class Context(metaclass=NoPublicConstructor):
    """The context of a service handler (and the base of every context)."""

    __slots__ = ("_inv", "_port")

    def __init__(self, port: HandlerPort, invocation: Invocation) -> None:
        self._port = port
        self._inv = invocation

    @classmethod
    def _for(cls, port: HandlerPort, invocation: Invocation) -> Self:
        """``_create`` with one call, not three: every attempt makes its context."""
        ctx = object.__new__(cls)
        ctx._port = port
        ctx._inv = invocation
        return ctx

    @property
    def invocation_id(self) -> str:
        """The id of the running invocation."""
        invocation_id: str = self._inv.invocation_id
        return invocation_id

    @overload
    def run(
        self,
        name: str,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: type[T] | None = None,
        blocking: bool = True,
    ) -> DurableFuture[T]: ...
    @overload
    def run(
        self,
        name: str,
        fn: Callable[..., T],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: type[T] | None = None,
        blocking: bool = True,
    ) -> DurableFuture[T]: ...
    def run(
        self,
        name: str,
        fn: Callable[..., Any],
        /,
        *args: object,
        retry: RetryPolicy | None = None,
        type: Any = None,
        blocking: bool = True,
    ) -> DurableFuture[Any]:
        """Run ``fn(*args)`` as a durable step named ``name`` and return its result.

        The body runs only once everything the invocation did before is durable, and
        its result (or terminal failure) is journaled: after a crash the step returns the
        recorded value without running again. The body runs again only if the crash came
        before its result was durable, and then with the same inputs.

        An ``async def`` body runs on the event loop. A plain function runs on one of the
        runtime's step threads, so it may block (``requests``, a database driver): a
        body that blocks holds only its own thread, and the others' bodies and every
        handler go on. Threads start on demand up to the capacity of anyio's default
        thread limiter (40 unless raised before ``open_runtime``); beyond that, bodies
        wait in order for a thread, and idle threads exit after 10 s. The body sees the
        handler's context variables; ``trio.from_thread`` and ``anyio.from_thread``
        work in it. ``blocking=False`` declares a plain function that never blocks and
        returns quickly (parsing, arithmetic, a dict lookup): it then runs on the event
        loop like an ``async def`` body, without the thread hand-off (a step then costs
        what an async one does: ``bench/instructions.py`` L256 against T256), and while
        it runs it stalls every handler of the loop (it is on the loop: no
        ``from_thread``). A cancel or kill does not interrupt a body that has started: it
        lands once the body returns; closing the runtime waits for running bodies. A
        body raising ``TerminalError`` fails the step at once;
        other exceptions are retried with ``retry`` (else the handler's, else the
        runtime's policy). The default policy retries until the body succeeds; only under
        a policy with ``max_attempts`` or ``max_duration`` is a body that keeps failing
        raised in the handler, as ``TerminalError``, when the limit is reached. The result is converted through ``type`` or ``fn``'s return
        annotation, and the handler gets the stored form (as a replay would). The body
        must not use the context.

        Returns a durable future: ``await`` it, or run several steps concurrently with
        ``actors.gather``. The body starts when the future is first awaited.
        """
        return self._port.run(self._inv, name, fn, args, retry, type, blocking)

    def sleep(self, duration: timedelta | float, /) -> DurableFuture[None]:
        """A durable timer: the future completes ``duration`` (a ``timedelta`` or
        seconds) after this call, also across restarts (at once if it is overdue by
        then). The wake-up time is journaled, so a replay does not restart the wait. A
        sleeping invocation gives up its coroutine after ``suspend_after`` and is
        rebuilt by replay when the timer fires. Negative, NaN, infinite or absurd
        (beyond 100 years) durations raise ``TerminalError`` (400)."""
        return self._port.sleep(self._inv, duration)

    @overload
    def awakeable(self, /) -> tuple[str, DurableFuture[object]]: ...
    @overload
    def awakeable(self, type: type[T], /) -> tuple[str, DurableFuture[T]]: ...
    def awakeable(self, type: Any = object, /) -> tuple[str, DurableFuture[Any]]:
        """A durable future completed from outside: returns ``(awakeable_id, future)``.

        Hand the id (an opaque, URL-safe string) to whoever will answer, e.g. from a
        ``ctx.run`` step; they complete it with ``rt.resolve_awakeable(id, value)`` /
        ``rt.reject_awakeable(id, reason)`` or from a handler with
        ``ctx.resolve_awakeable``. The value is converted to ``type`` when awaited; a
        rejection is raised as ``TerminalError``."""
        return self._port.awakeable(self._inv, type)

    def resolve_awakeable(self, awakeable_id: str, value: object, /) -> Awaitable[None]:
        """Complete an awakeable with ``value``.

        An effect (invariant 14): journaled when called, in call order, whether or not
        the result is awaited, so a replay does not complete it twice and forgetting the
        ``await`` loses nothing. The waiter is woken once this invocation's next batch
        is durable (its next durable await, or its completion); ``await`` the result to
        wait for that.

        Raises, here at the call (also on replay, as journaled): ``TerminalError`` 404
        for an unknown id, 400 for a malformed one, 409 if it was already completed;
        ``SerializationError`` for a value that does not convert."""
        return self._port.complete_awakeable(self._inv, awakeable_id, value, None)

    def reject_awakeable(
        self, awakeable_id: str, reason: str, /, code: int = 500
    ) -> Awaitable[None]:
        """Fail an awakeable: its waiter gets ``TerminalError(reason, code)``, also
        after a crash. Journaled when called and errors as ``resolve_awakeable`` (a
        reason that is not a str, or a ``code`` that is not an int from 100 to 999:
        400)."""
        return self._port.complete_awakeable(self._inv, awakeable_id, None, reason, code)

    def cancel_invocation(self, invocation_id: str, /) -> Awaitable[None]:
        """Cancel another invocation (as ``rt.cancel``: a 409 ``TerminalError`` in its
        handler at its next durable await, so its compensations run).

        An effect (invariant 14): journaled when called, whether or not awaited; the
        cancel is requested once this invocation's next batch is durable (its next
        durable await, or its completion). ``await`` the result to wait for that; it
        does not wait for the cancelled invocation to end (attach to it for that).

        Raises, here at the call (also on replay, as journaled): ``TerminalError`` 404
        for an id nobody accepted, 409 if it already completed, 400 for a malformed id.
        """
        return self._port.cancel_invocation(self._inv, invocation_id)

    @overload
    def attach_invocation(self, invocation_id: str, /) -> DurableFuture[Any]: ...
    @overload
    def attach_invocation(self, invocation_id: str, /, *, type: type[T]) -> DurableFuture[T]: ...
    def attach_invocation(self, invocation_id: str, /, *, type: Any = None) -> DurableFuture[Any]:
        """A durable future of another invocation's result (as ``rt.attach``), for an
        id from a handle (``ctx.send(...).invocation_id``, a call future's
        ``invocation_id``) or from outside.

        The result is journaled: a replay returns the recorded result without waiting,
        even after the attached invocation expired. It is converted to ``type``, by
        default the attached handler's output type. Its ``TerminalError`` (a failure,
        a cancellation) is raised when awaited, with the same message and status code.

        Raises, here at the call: ``TerminalError`` 404 for an id nobody accepted (or
        that expired), 400 for a malformed one; ``DeadlockError`` when waiting would
        never end: an attach to itself, or to an invocation that waits on this one
        (directly, through calls, or queued behind this one's key).
        """
        return self._port.attach_invocation(self._inv, invocation_id, type)

    @overload
    def signal(self, name: str, /) -> DurableFuture[object]: ...
    @overload
    def signal(self, name: str, type: type[T], /) -> DurableFuture[T]: ...
    def signal(self, name: str, type: Any = object, /) -> DurableFuture[Any]:
        """A durable future of this invocation's signal ``name``, completed by whoever
        knows ``ctx.invocation_id``: ``rt.resolve_signal(id, name, value)`` /
        ``rt.reject_signal(id, name, reason, code)``, or another handler's
        ``ctx.resolve_signal`` / ``ctx.reject_signal``.

        A signal sent before this invocation waits for it is kept; it completes once,
        and what the invocation received is journaled, so a replay gets the same. The
        value converts to ``type`` when awaited; a rejection raises ``TerminalError``
        with its reason and code. A name that is not a non-empty str (at most 64 bytes)
        raises ``TerminalError`` (400)."""
        return self._port.signal(self._inv, name, type)

    def resolve_signal(self, invocation_id: str, name: str, value: object, /) -> Awaitable[None]:
        """Complete the signal ``name`` of the invocation ``invocation_id`` with
        ``value``. An effect (invariant 14), like ``resolve_awakeable``: journaled when
        called, in call order, whether or not awaited (a replay does not send it twice);
        delivered once this invocation's next batch is durable. Raises, at the call, ``TerminalError`` 404 for an unknown invocation,
        409 if it has completed or the signal was already completed, 400 for bad
        arguments."""
        return self._port.complete_signal(self._inv, invocation_id, name, value, None)

    def reject_signal(
        self, invocation_id: str, name: str, reason: str, /, code: int = 500
    ) -> Awaitable[None]:
        """Fail the signal ``name`` of ``invocation_id``: its waiter gets
        ``TerminalError(reason, code)``. Errors as ``resolve_signal``, and 400 for a
        ``code`` that is not an int from 100 to 999."""
        return self._port.complete_signal(self._inv, invocation_id, name, None, reason, code)

    async def time(self) -> float:
        """The current time (seconds since the epoch), journaled: a replay sees the same."""
        return await self._port.time(self._inv)

    def random(self) -> random.Random:
        """A ``random.Random`` seeded from the invocation id: the same sequence on every
        attempt and replay, different per invocation."""
        return self._port.random(self._inv)

    def uuid(self) -> uuid.UUID:
        """A version-4 UUID drawn from ``random()``: stable across replays."""
        return self._port.uuid(self._inv)

    def request(self) -> Request:
        """What this invocation was called with: its id, headers, input bytes and
        attempt number (``actors.Request``). Headers and body are the same after a crash
        and resume; on an attempt after the first, the attempt number is made durable
        before anything the handler does next is visible outside, so it never repeats
        after a crash."""
        return self._port.request(self._inv)

    @overload
    def call(
        self,
        target: Handler[Any, OutT],
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DurableCallFuture[OutT]: ...
    @overload
    def call(
        self,
        target: Handler[Any, OutT],
        arg: object,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DurableCallFuture[OutT]: ...
    def call(
        self,
        target: Handler[Any, OutT],
        arg: object = NO_ARG,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DurableCallFuture[OutT]:
        """Call another handler and wait for its result.

        The callee's id is derived from this invocation's id and the call's position,
        so a re-executed handler does not deliver the same call twice. A callee's
        ``TerminalError`` is raised here with the same message and status code.

        With ``idempotency_key``, the call maps to one invocation as ``rt.send``'s key
        does: if the key was already accepted (by any caller, in this runtime, within
        retention) for the same target and input, this waits for that invocation's
        result instead of starting another. ``headers`` reach the callee's
        ``ctx.request().headers`` (they are not part of the key's request).

        Raises, at the call site and before anything is sent (left uncaught, each ends
        this invocation with a terminal failure: retrying cannot fix them):
          DeadlockError: the call is to an exclusive handler and would close a cycle of
            invocations waiting on each other's keys.
          UnknownHandlerError: no such actor or handler is registered.
          SerializationError: ``arg`` does not convert to the callee's input type.
          TerminalError (400): a key given to a service or missing for an object, an
            input given to a handler that takes none (or missing), malformed
            ``headers`` (not str to str, a name with ``:`` or a line break), an
            ``idempotency_key`` that is not a non-empty str or is given to a workflow's
            ``main``; (409) the ``idempotency_key`` was used for another request;
            (413) the key or the headers are over their limits.

        Returns a durable future; the call is delivered when the future (or any later
        durable operation) is first awaited, or with this invocation's completion. The
        future's ``invocation_id`` is the callee's, and its ``cancel()`` cancels the
        callee (``cancel_invocation``). Calling a workflow's ``main`` on an id that
        already ran waits for that run's result instead of running it again.
        """
        return self._port.call(self._inv, target, arg, key, idempotency_key, headers)

    def send(
        self,
        target: Handler[Any, Any],
        arg: object = NO_ARG,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationHandle:
        """Send a one-way invocation, optionally delivered after ``delay``.

        An effect (invariant 14): journaled when called, in call order, whether or not
        the handle is awaited; the callee is delivered once this invocation's next batch
        is durable (its next durable await, or its completion). Its id is derived like
        ``call``'s, so a re-executed handler does not send twice (the second handle says
        ``PreviouslyAccepted``).

        Returns the handle at once (``invocation_id``, ``status``, ``cancel()``);
        ``await`` it, as before, to wait until the send is durable (it gives the handle
        back). Raises at the call, before anything is journaled, as ``call`` does for
        bad targets and input, and a 400 ``TerminalError`` for a bad ``delay``.
        ``idempotency_key`` and ``headers`` as for ``call``: a key already accepted for
        the same request answers that invocation's handle (``PreviouslyAccepted``).
        """
        return self._port.send(self._inv, target, arg, key, delay, idempotency_key, headers)

    def generic_call(
        self,
        actor: str,
        handler: str,
        payload: bytes,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DurableCallFuture[bytes]:
        """``call`` by actor and handler name, with the input as bytes: ``payload`` is
        what the callee's input decoder reads (JSON, or the raw bytes of a ``bytes``
        handler; empty or ``null`` for a handler without input), kept as given (the
        callee's ``ctx.request().body``). The future's result is the callee's output as
        it was encoded (JSON bytes, or its raw bytes; ``null`` for None). Journaled and
        idempotent like ``call``.

        Raises, at the call site and before anything is sent:
          UnknownHandlerError (404): no such actor or handler is registered.
          SerializationError (400): ``payload`` is not what the callee's input decoder
            accepts (not JSON, or not of its input type).
          TerminalError: as ``call`` (400 for a bad key, a ``payload`` that is not
            bytes, input for a handler without any; 409 and 413 the same).
        """
        return self._port.generic_call(
            self._inv, actor, handler, payload, key, idempotency_key, headers
        )

    def generic_send(
        self,
        actor: str,
        handler: str,
        payload: bytes,
        /,
        *,
        key: str | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InvocationHandle:
        """``send`` by actor and handler name, with the input as bytes (as
        ``generic_call``); the handle's ``result()`` is the callee's output bytes.
        Journaled when called, like ``send``. Raises like ``generic_call``."""
        return self._port.generic_send(
            self._inv, actor, handler, payload, key, delay, idempotency_key, headers
        )


class ObjectSharedContext(Context):
    """The context of a shared handler: reads committed state only; cannot write."""

    __slots__ = ()

    @property
    def key(self) -> str:
        """The object key (or workflow id) this invocation addresses."""
        key = self._inv.target.key
        assert key is not None
        return key

    @overload
    async def get(self, name: str, /) -> object | None: ...
    @overload
    async def get(self, name: str, type: type[T], /) -> T | None: ...
    async def get(self, name: str, type: Any = object, /) -> Any:
        """The value of state ``name`` converted to ``type``, or None when absent.
        Journaled. Does not yield to other tasks (a cancellation point only)."""
        return await self._port.get_state(self._inv, name, type)

    async def state_keys(self) -> list[str]:
        """The names of the state entries this key has, sorted."""
        return await self._port.state_keys(self._inv)


@final
class ObjectContext(ObjectSharedContext):
    """The context of an exclusive handler: reads its own writes, and writes state.

    Writes are buffered in the invocation and written with its next batch, in the same
    transaction as the journal entries around them: at every output gate (before a
    ``ctx.run`` body, a delivered call or send, a durable wait) and at completion. Shared
    handlers and other keys see them only once durable; the next exclusive invocation on
    this key sees them at once (pipelining), and its own effects wait for them. A
    retried attempt drops the writes it had not yet written."""

    __slots__ = ()

    def set(self, name: str, value: object) -> None:
        """Set state ``name`` to ``value`` (any value the JSON converter handles)."""
        self._port.set_state(self._inv, name, value)

    def clear(self, name: str) -> None:
        """Remove state ``name``."""
        self._port.clear_state(self._inv, name)

    def clear_all(self) -> None:
        """Remove every state entry of this key."""
        self._port.clear_all_state(self._inv)


@final
class DurablePromise(Generic[T], metaclass=NoPublicConstructor):
    """A named promise of a workflow id, completed once, durably.

    Every waiter (``main`` and shared handlers alike) gets the value, whether it was
    resolved before or after they started waiting, even before ``main`` started. A
    second completion raises ``TerminalError`` (409) and leaves the value unchanged.
    """

    __slots__ = ("_inv", "_name", "_port", "_type")

    def __init__(self, port: HandlerPort, invocation: Invocation, name: str, type: Any) -> None:
        self._port = port
        self._inv = invocation
        self._name = name
        self._type = type

    @property
    def name(self) -> str:
        """The promise's name within its workflow id."""
        return self._name

    def value(self) -> DurableFuture[T]:
        """A durable future of the promise's value. A value that does not convert to
        this promise's type raises ``SerializationError`` here; a rejection raises
        ``TerminalError`` with the reason."""
        return self._port.promise_value(self._inv, self._name, self._type)

    async def peek(self) -> T | None:
        """The value if the promise is resolved, else None (journaled). A rejection
        raises ``TerminalError``."""
        value: T | None = await self._port.promise_peek(self._inv, self._name, self._type)
        return value

    def resolve(self, value: T) -> Awaitable[None]:
        """Complete the promise with ``value``.

        An effect (invariant 14): journaled when called, in call order, whether or not
        awaited; waiters see the value once this invocation's next batch is durable
        (its next durable await, or its completion); ``await`` the result to wait for
        that (a ``peek`` right after an un-awaited ``resolve`` may still see None).
        Raises ``TerminalError`` (409) here, at the call, if it was already completed
        (also on replay, as journaled), and ``SerializationError`` for a value that
        does not convert to the promise's type."""
        return self._port.complete_promise(self._inv, self._name, self._type, value, None)

    def reject(self, reason: str, code: int = 500) -> Awaitable[None]:
        """Fail the promise: waiters get ``TerminalError(reason, code)``, also after a
        crash. Journaled when called, like ``resolve``; raises ``TerminalError`` (409)
        at the call if it was already completed, 400 for a reason that is not a str or
        a ``code`` that is not an int from 100 to 999."""
        return self._port.complete_promise(self._inv, self._name, self._type, None, reason, code)


class WorkflowSharedContext(ObjectSharedContext):
    """The context of a workflow's shared handler (queries and signals): reads the state
    ``main`` has made durable, and uses the workflow's durable promises."""

    __slots__ = ()

    @overload
    def promise(self, name: str, /) -> DurablePromise[object]: ...
    @overload
    def promise(self, name: str, type: type[T], /) -> DurablePromise[T]: ...
    def promise(self, name: str, type: Any = object, /) -> DurablePromise[Any]:
        """The durable promise ``name`` of this workflow id, whose value converts to
        ``type``."""
        if not isinstance(name, str) or not name:
            raise BadArgumentError("a promise needs a non-empty str name")
        check_name(name, "promise name")
        return DurablePromise._create(self._port, self._inv, name, type)


@final
class WorkflowContext(WorkflowSharedContext):
    """The context of a workflow's ``main`` handler: runs once per workflow id, writes
    state, and uses the workflow's durable promises."""

    __slots__ = ()

    def set(self, name: str, value: object) -> None:
        """Set state ``name`` to ``value``; shared handlers see it once durable."""
        self._port.set_state(self._inv, name, value)

    def clear(self, name: str) -> None:
        """Remove state ``name``."""
        self._port.clear_state(self._inv, name)

    def clear_all(self) -> None:
        """Remove every state entry of this workflow id."""
        self._port.clear_all_state(self._inv)
