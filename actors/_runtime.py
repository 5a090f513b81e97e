"""The embedded runtime: ``open_runtime`` and the ``Runtime`` it yields.

``Runtime`` is a facade. It checks a request, hands it to the part that owns it and
answers; the parts (DESIGN.md section 5) each hold one concern:

==================  ====================================================================
``_kernel``         the state they share: store, actors, clock, invocations in memory
``_key_order``      one durable order per key: positions and inbox rows
``_resolution``     from names and handlers to targets and checked inputs
``_results``        stored outcomes, decoded for whoever waits; ``InvocationHandle``
``_scheduler``      activations, mailboxes, slots, suspension, parking and waking
``_gate``           flushing buffered work and waiting until it is durable
``_timers``         the timer heap (sleeps, delayed sends, retention expiry)
``_admission``      durable acceptance, idempotency keys, one run per workflow id
``_waits``          durable waits, cancellation delivery, select and gather, sleep
``_ops_*``          the context operations by family: state, steps, calls, signals, handles
``_operations``     the handler port the contexts talk to (``_port``)
``_executor``       attempts, retries, pauses and completion
``_control``        cancel, kill and resume
``_recovery``       what happens when a data directory is opened
==================  ====================================================================

Life of an invocation: accepted durably (``send``; a ``call`` with its first flush),
delivered to its key in order, run against its journal, flushed at every output gate,
completed in one batch, answered once that batch is durable. See each module's essay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, final, overload

import anyio
import anyio.abc
import anyio.lowlevel

from ._admission import Admission
from ._control import Control
from ._definitions import Handler
from ._errors import (
    ActorsError,
    RuntimeClosedError,
)
from ._executor import Executor
from ._gate import OutputGate
from ._kernel import Kernel
from ._key_order import KeyOrder
from ._operations import Operations
from ._ops_calls import CallOps
from ._ops_invocation_signals import InvocationSignals
from ._ops_signals import SignalOps
from ._ops_state import StateOps
from ._ops_steps import StepOps
from ._recommit import Recommits
from ._recovery import recover
from ._request import check_headers
from ._resolution import Resolver, check_invocation_id
from ._results import InvocationHandle, Results
from ._scheduler import Scheduler
from ._statistics import RuntimeStatistics, statistics_of
from ._timers import Timers
from ._util import NO_ARG, NoPublicConstructor
from ._waits import Waits

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import timedelta
    from pathlib import Path

    from actors.storage import Store

    from ._clock import Clock
    from ._definitions import Actor, ActorEntry
    from ._invocation import Activation
    from ._retry import RetryPolicy

OutT = TypeVar("OutT")

__all__ = ["InvocationHandle", "Runtime", "RuntimeStatistics"]


@final
class Runtime(metaclass=NoPublicConstructor):
    """An open runtime; created by ``open_runtime``.

    Guarantees:
      * ``send`` returns only once the invocation is durably recorded; it then completes
        exactly once, resuming from its journal after a crash or restart.
      * ``call`` waits for the result, which is returned only once the invocation's
        completion (its state writes included) is durable.
      * Per key, exclusive handlers run one at a time, in the order they reach the key
        (a delayed send when it is due); after a crash the key resumes in the order its
        work had started (``actors._key_order``). Shared handlers start at once and
        read committed state only.
      * A ``ctx.run`` body runs again only if the crash came before its result was
        durable; journaled operations replay their recorded values.
    """

    def __init__(
        self,
        store: Store,
        entries: Sequence[ActorEntry],
        task_group: anyio.abc.TaskGroup,
        *,
        idle_timeout: float,
        max_in_flight: int,
        retry: RetryPolicy,
        clock: Clock,
        suspend_after: float,
        retention: float,
    ) -> None:
        # The parts, built bottom-up: each is given the parts below it.
        kernel = Kernel(
            store,
            {entry.name: entry for entry in entries},
            task_group,
            clock,
            retry,
            suspend_after=suspend_after,
            retention=retention,
            idle_timeout=idle_timeout,
        )
        order = KeyOrder()
        resolver = Resolver(kernel.entries, clock)
        results = Results(kernel, resolver)
        scheduler = Scheduler(kernel, order, resolver, max_in_flight=max_in_flight)
        output = OutputGate(kernel, order, scheduler)
        timers = Timers(kernel, scheduler)
        admission = Admission(kernel, order, resolver, scheduler, timers, results)
        waits = Waits(kernel, output, scheduler, timers)
        signals = SignalOps(kernel, output, scheduler, waits)
        invocation_signals = InvocationSignals(kernel, output, scheduler, waits, signals)
        calls = CallOps(
            kernel,
            order=order,
            resolver=resolver,
            admission=admission,
            output=output,
            scheduler=scheduler,
            timers=timers,
            results=results,
            waits=waits,
        )
        port = Operations(
            StateOps(kernel),
            StepOps(kernel, output, waits),
            calls,
            waits,
            signals,
            invocation_signals,
        )
        executor = Executor(kernel, output, scheduler, timers, port, Recommits(kernel))
        control = Control(kernel, scheduler, results, executor)
        # The upward references: the scheduler runs what the executor executes, a
        # cancelled wait cancels what it waited on, and a policy's kill kills callees.
        scheduler.runner = executor.run
        waits.cancel_later = control.cancel_later
        executor.kill_callees = control.kill_callees  # a retry policy that says "kill"
        kernel.on_stop = self._close  # the store broke: the runtime stops (Kernel.stop)
        self._k = kernel
        self._order = order
        self._resolver = resolver
        self._results = results
        self._scheduler = scheduler
        self._timers = timers
        self._admission = admission
        self._signals = signals
        self._invocation_signals = invocation_signals
        self._control = control
        self._invocations = kernel.invocations
        self._store = store
        self._entries = kernel.entries

    @property
    def _activations(self) -> dict[tuple[str, str], Activation]:
        return self._scheduler.activations

    def _start(self, task_group: anyio.abc.TaskGroup) -> None:
        """Recover the directory's unfinished work and start the runtime's own tasks."""
        recover(self._k, self._order, self._scheduler, self._timers, self._control)
        task_group.start_soon(self._scheduler.reap_idle)
        task_group.start_soon(self._timers.run)
        task_group.start_soon(self._admission.dispatch_accepted)

    def _handler_of(self, invocation_id: str) -> Handler[Any, Any] | None:
        """The handler ``invocation_id`` runs (for the ingress to hide ingress-private
        ones), or None when it is unknown or unreadable: then attach says why."""
        inv = self._invocations.get(invocation_id)
        if inv is not None:
            return inv.spec
        try:
            return self._results.stored_spec(invocation_id)
        except ActorsError:
            return None

    def _close(self) -> None:
        self._k.closed = True
        for scope in list(self._scheduler.inline_scopes):
            scope.cancel()

    # --- public API ------------------------------------------------------------------------

    @overload
    async def call(
        self,
        target: Handler[Any, OutT],
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> OutT: ...

    @overload
    async def call(
        self,
        target: Handler[Any, OutT],
        arg: object,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> OutT: ...

    async def call(
        self,
        target: Handler[Any, OutT],
        arg: object = NO_ARG,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> OutT:
        """Invoke ``target`` (e.g. ``Counter.add``) with ``arg`` on ``key`` and wait for
        its result.

        Waits for a free slot when ``max_in_flight`` invocations are held in memory
        (backpressure). With ``idempotency_key``, a second call with the same key and the
        same request returns the first one's result instead of running again.
        ``headers`` reach the handler's ``ctx.request().headers`` (kept with the
        invocation, not part of an idempotency key's request).

        Raises:
          UnknownHandlerError: the actor is not registered or has no such handler.
          TypeError: a key given to a service, missing for an object, or an input given
            to a handler that takes none (or missing).
          SerializationError: ``arg`` does not convert to the handler's input type.
          TerminalError: the handler failed terminally; same message and status code.
            Also raised (409) when ``idempotency_key`` was used for a different request,
            (413) when the key, the idempotency key, ``arg`` or the headers are over their
            limit (README "Limits"), and (400) when a key is not valid Unicode text;
            nothing is stored.
          ValueError: a header name is empty or holds ``:``, a line break or NUL (or a
            value holds either of the last two); TypeError for headers not str to str.
          InvocationPausedError: the invocation paused (its attempts ran out): raised as
            soon as it pauses; it stays paused, ``resume`` then ``attach`` for its result.
          PersistenceError: the data directory failed.
        """
        if idempotency_key is not None or (isinstance(target, Handler) and target.kind == "main"):
            # Durably accepted first: the same key, or the same workflow id, maps to one
            # invocation, whose result (maybe an earlier run's) is returned.
            handle = await self.send(
                target, arg, key=key, idempotency_key=idempotency_key, headers=headers
            )
            result: OutT = await handle.result()
            return result
        if self._k.closed:
            self._check_open()
        entry, spec, tgt = self._resolver.resolve(target, key)
        payload, value = self._resolver.check_input(spec, arg)
        checked = check_headers(headers) if headers is not None else None
        scheduler = self._scheduler
        slots = scheduler.slots
        if slots.free:  # the common case: acquire_slot's, without its calls
            slots.free -= 1
        else:
            await scheduler.acquire_slot()
            if self._k.closed:  # it closed (or stopped) while this call waited for a slot
                slots.release()
                self._check_open()
        inv = self._resolver.new_invocation(
            entry, spec, tgt, payload, value, holds_slot=True, headers=checked
        )
        await scheduler.run_call(inv)
        result = await self._results.result_of(inv)
        return result

    async def generic_call(
        self,
        actor: str,
        handler: str,
        payload: bytes,
        /,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """``call`` by actor and handler name with the input as bytes (Restate's
        ``generic_call``): ``payload`` is what the handler's input decoder reads (JSON,
        or the raw bytes of a ``bytes`` handler; empty or ``null`` for none) and is kept
        as given; returns the handler's output as it was encoded (JSON bytes, or its raw
        bytes). Raises like ``call``: ``UnknownHandlerError`` for an unknown actor or
        handler, ``SerializationError`` for bytes the decoder refuses, ``TypeError`` for
        a payload that is not bytes (or given to a handler without input) or a key where
        none belongs; the handler's ``TerminalError`` as raised."""
        self._check_open()
        callee = self._resolver.resolve_generic(actor, handler, key)
        checked = self._resolver.check_raw_input(callee[1], payload)
        view = self._resolver.raw_view(callee[1])
        if idempotency_key is not None or view.kind == "main":
            handle = await self._admission.send(
                view,
                checked,
                key=key,
                idempotency_key=idempotency_key,
                headers=headers,
                generic=callee,
            )
            raw: bytes = await handle.result()
            return raw
        entry, spec, tgt = callee
        checked_headers = check_headers(headers) if headers is not None else None
        await self._scheduler.acquire_slot()
        if self._k.closed:
            self._scheduler.slots.release()
            self._check_open()
        inv = self._resolver.new_invocation(
            entry, spec, tgt, *checked, holds_slot=True, headers=checked_headers
        )
        await self._scheduler.run_call(inv)
        raw = await self._results.result_of(inv, view)
        return raw

    async def generic_send(
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
        """``send`` by actor and handler name with the input as bytes (as
        ``generic_call``); the handle's ``result()`` is the output's bytes. Raises like
        ``generic_call``, and like ``send`` for a bad ``delay``."""
        self._check_open()
        callee = self._resolver.resolve_generic(actor, handler, key)
        checked = self._resolver.check_raw_input(callee[1], payload)
        return await self._admission.send(
            callee[1],
            checked,
            key=key,
            delay=delay,
            idempotency_key=idempotency_key,
            headers=headers,
            generic=callee,
        )

    async def send(
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
        """Accept an invocation without waiting for it; ``delay`` postpones its start.

        Returns once the invocation is durably recorded, with a handle whose
        ``result()`` waits for the outcome. With ``idempotency_key``, a repeated request
        returns the first invocation's handle with status ``"PreviouslyAccepted"``.
        ``headers`` as for ``call``. Raises like ``call`` for bad input, and
        ``ValueError`` for a negative delay; nothing is stored for rejected input.
        """
        self._check_open()
        return await self._admission.send(
            target, arg, key=key, delay=delay, idempotency_key=idempotency_key, headers=headers
        )

    async def attach(self, invocation_id: str) -> Any:
        """Wait for the result of the invocation ``invocation_id``.

        Raises ``UnknownHandlerError`` for an id this data directory never accepted, the
        invocation's ``TerminalError`` if it failed, and ``InvocationPausedError`` while
        it is paused (at once, or as soon as it pauses)."""
        self._check_open()
        check_invocation_id(invocation_id)
        inv = self._invocations.get(invocation_id)
        spec = inv.spec if inv is not None else None  # else its record's: one read
        return await self._results.await_result(invocation_id, spec)

    async def attach_workflow(self, workflow: type[Actor], workflow_id: str) -> Any:
        """Wait for the result of ``workflow``'s run on ``workflow_id``.

        Raises ``UnknownHandlerError`` when no run was submitted for that id (or it
        expired after its retention)."""
        self._check_open()
        return await self.attach(self._admission.workflow_run_id(workflow, workflow_id))

    async def output(self, invocation_id: str) -> Any:
        """The result of a finished invocation, without waiting: raises
        ``NotReadyError`` (470) while it runs, ``UnknownHandlerError`` for an unknown id,
        and the invocation's ``TerminalError`` if it failed."""
        self._check_open()
        check_invocation_id(invocation_id)
        return self._results.output(invocation_id)

    async def workflow_output(self, workflow: type[Actor], workflow_id: str) -> Any:
        """``output`` of ``workflow``'s run on ``workflow_id``: the result if it finished,
        else ``NotReadyError``."""
        self._check_open()
        return await self.output(self._admission.workflow_run_id(workflow, workflow_id))

    async def attach_idempotent(
        self, target: Handler[Any, OutT], /, idempotency_key: str, *, key: str | None = None
    ) -> OutT:
        """Wait for the result of the invocation of ``target`` (on ``key`` for an object
        or a workflow's shared handler) accepted with ``idempotency_key``: what Restate's
        ``/restate/invocation/{target}/{idempotency key}/attach`` does.

        Raises ``UnknownHandlerError`` when that target has no invocation with that key
        (never accepted, or expired after its retention), ``TypeError`` for a workflow's
        ``main`` (use ``attach_workflow``) or a key where none belongs (or missing), and
        the invocation's ``TerminalError`` if it failed."""
        self._check_open()
        invocation_id = self._admission.idempotent_invocation(target, idempotency_key, key)
        result: OutT = await self.attach(invocation_id)
        return result

    async def idempotent_output(
        self, target: Handler[Any, OutT], /, idempotency_key: str, *, key: str | None = None
    ) -> OutT:
        """``output`` of the invocation ``attach_idempotent`` names: its result if it
        finished, else ``NotReadyError`` (470). Raises like ``attach_idempotent``."""
        self._check_open()
        invocation_id = self._admission.idempotent_invocation(target, idempotency_key, key)
        result: OutT = await self.output(invocation_id)
        return result

    async def resolve_awakeable(self, awakeable_id: str, value: object) -> None:
        """Complete the awakeable ``awakeable_id`` with ``value``; durable before this
        returns, and the waiting handler is woken (rebuilt by replay if it was parked).

        Raises ``TerminalError`` with 400 for a malformed id, 404 for an id no
        invocation created, and 409 if it was already completed (its value is kept)."""
        self._check_open()
        await self._signals.complete_awakeable(None, awakeable_id, value, None)

    async def reject_awakeable(self, awakeable_id: str, reason: str, code: int = 500) -> None:
        """Fail the awakeable: its waiter gets ``TerminalError(reason, code)``, also
        after a crash. Errors as ``resolve_awakeable``, and ``TerminalError`` 400 for a
        ``code`` that is not an int from 100 to 999."""
        self._check_open()
        await self._signals.complete_awakeable(None, awakeable_id, None, reason, code)

    async def resolve_signal(self, invocation_id: str, name: str, value: object) -> None:
        """Complete the signal ``name`` of invocation ``invocation_id`` (what its
        ``ctx.signal(name)`` returns) with ``value``. Durable before this returns; kept
        if the invocation is not waiting for it yet; its waiter is woken (rebuilt by
        replay if it was parked).

        Raises ``TerminalError`` with 404 for an unknown invocation, 409 if it has
        already completed or the signal was already completed (its value is kept), and
        400 for a name that is not a non-empty str."""
        self._check_open()
        await self._invocation_signals.complete(None, invocation_id, name, value, None)

    async def reject_signal(
        self, invocation_id: str, name: str, reason: str, code: int = 500
    ) -> None:
        """Fail the signal ``name`` of invocation ``invocation_id``: its waiter gets
        ``TerminalError(reason, code)``. Errors as ``resolve_signal``, and 400 for a
        ``code`` that is not an int from 100 to 999."""
        self._check_open()
        await self._invocation_signals.complete(None, invocation_id, name, None, reason, code)

    async def cancel(self, invocation_id: str) -> None:
        """Cancel an invocation. Durable before this returns.

        The handler gets a ``TerminalError`` with status 409 at its next durable await
        (``ctx.run``, ``sleep``, a call, a promise, ``select``...), so its ``try/except``
        compensations run; the invocations it is waiting on are cancelled too; its
        callers receive the cancellation (or whatever the handler made of it). An
        invocation that has not started completes at once as cancelled.

        Raises ``UnknownHandlerError`` for an unknown id and ``TerminalError`` (409) if
        it has already completed."""
        self._check_open()
        check_invocation_id(invocation_id)
        await self._control.cancel(invocation_id, kill=False)

    async def kill(self, invocation_id: str) -> None:
        """End an invocation at once, without compensation, and wait until that is
        durable. Its callers get a ``TerminalError`` (409) saying it was killed; the
        invocations it was waiting on are killed too; an object key it held is handed
        to the next queued invocation. A ``ctx.run`` body running on a thread finishes
        first (threads cannot be interrupted), but its result is discarded.

        Raises like ``cancel``."""
        self._check_open()
        check_invocation_id(invocation_id)
        await self._control.cancel(invocation_id, kill=True)

    async def resume(self, invocation_id: str) -> None:
        """Resume a paused invocation: its attempts start again from its journal.

        Raises ``UnknownHandlerError`` for an unknown id and ``ValueError`` when the
        invocation is not paused."""
        self._check_open()
        check_invocation_id(invocation_id)
        await self._control.resume(invocation_id)

    @property
    def path(self) -> Path:
        """The data directory this runtime owns."""
        return self._store.path

    async def serve_http(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        token: str | None = None,
        max_body: int = 16 * 1024 * 1024,
        max_connections: int = 1000,
        max_body_bytes_in_flight: int = 64 * 1024 * 1024,
        read_timeout: float = 30.0,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve Restate's HTTP ingress for this runtime until cancelled.

        Start it in a task group, which hands back the bound port (``port=0`` picks a
        free one)::

            async with anyio.create_task_group() as tg:    # or a trio nursery
                port = await tg.start(rt.serve_http, "127.0.0.1", 0)
                ...
                tg.cancel_scope.cancel()                    # stops the server

        An HTTP/1.1 server (h11) on the running loop, trio or asyncio. The socket listens
        before the port is handed back, so requests made from then on are served. While
        serving, ``<data dir>/ingress.json`` holds ``{"url", "pid", "token_required"}``;
        it is removed on stop. On cancellation requests still waiting (a call, an
        attach) are answered 503. Paths and status codes: README "HTTP ingress" and
        ``actors._ingress``.

        Guarantees: no request stops the server (a failing connection is closed and
        logged); every error answer is JSON ``{"code", "message"}``; a request must
        arrive in full within ``read_timeout`` (else 408); an idle keep-alive connection
        closes after 5 s.

        Args:
          host: the address to bind; loopback unless told otherwise.
          port: the TCP port; 0 for any free one.
          token: when given, every request needs ``Authorization: Bearer <token>``
            (else 401).
          max_body: largest request body accepted, in bytes (else 413).
          max_connections: connections served at once; more are answered 503.
          max_body_bytes_in_flight: bytes of request bodies held by requests in
            progress, at most; a body that does not fit waits for room within its read
            timeout (else 503). At least ``max_body``.
          read_timeout: seconds a request (head and body) may take to arrive, from its
            first byte.

        Raises:
          OSError: the address cannot be bound.
          PersistenceError: ``ingress.json`` cannot be written, or is a symbolic link
            (it is never written through).
          RuntimeClosedError: the runtime is closed.
          ValueError: an option is out of range (it names the option).
        """
        self._check_open()
        from ._http_limits import ServerOptions
        from ._ingress import serve  # lazily: h11 is only needed when serving

        options = ServerOptions(
            max_body=max_body,
            max_connections=max_connections,
            max_body_bytes_in_flight=max_body_bytes_in_flight,
            read_timeout=read_timeout,
        )
        await serve(self, host, port, token=token, options=options, task_status=task_status)

    def statistics(self) -> RuntimeStatistics:
        """In-memory load: invocations held, active keys, queued exclusive work."""
        return statistics_of(self._k, self._scheduler, self._timers, self._admission)

    def _check_open(self) -> None:
        if self._k.closed:
            if self._k.fatal is not None:  # it stopped by itself: say why
                raise self._k.fatal_error()
            raise RuntimeClosedError("the runtime is closed")
