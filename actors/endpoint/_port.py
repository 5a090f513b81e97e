"""Our context operations, carried out by a Restate SDK context.

``RestatePort`` implements ``actors._port.HandlerPort``, the one interface our contexts
talk to, on top of ``restate.Context``: a handler served by the endpoint gets a real
``actors.ObjectContext`` (or ``Context``, ``WorkflowContext``...), whose every method
lands here and becomes the Restate operation of the same meaning. Restate journals,
replays, retries and suspends; this module only translates names, values (through our
converter) and errors (``restate.TerminalError`` <-> ``actors.TerminalError``).

Durable futures stay ``actors.DurableFuture``: each one is created with an
``EndpointInvocation`` (``_driver``) as its driver, which keeps the Restate future
behind it.
``actors.gather``/``select``/``wait_completed`` dispatch on the futures' driver, so on
the endpoint they become ``restate.gather``/``select``/``wait_completed`` over those
Restate futures (Restate journals which future won), with no change to user code.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import typing
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import restate
from restate.serde import BytesSerde

from actors import DeadlockError, DurableFuture, Handler, Request, TerminalError
from actors._errors import BadArgumentError
from actors._limits import check_blocking, check_idempotency_key, check_key, check_name
from actors._request import check_headers_in_handler
from actors._resolution import delay_seconds
from actors._serde import ANY, check_value, decode_value, encode_value
from actors._types import payload_type
from actors._util import NO_ARG

from ._driver import (
    DONE,
    EndpointInvocation,
    Later,
    call_future,
    send_handle,
    to_actors_error,
    to_restate_error,
)
from ._serde import ConverterSerde

if TYPE_CHECKING:
    import random
    import uuid
    from collections.abc import Awaitable, Callable

    from actors import RetryPolicy
    from actors._results import InvocationHandle

_BYTES: Any = BytesSerde()
_MAX_SLEEP_SECONDS = 100 * 365 * 24 * 3600.0


def _target_of(spec: object, key: str | None) -> tuple[Handler[Any, Any], str, str | None]:
    if not isinstance(spec, Handler) or spec.owner is None:
        raise BadArgumentError(
            f"ctx.call/ctx.send take a handler such as Counter.add, not {spec!r}"
        )
    spec.resolve_annotations(getattr(spec.owner, "_localns", None))
    keyed = spec.owner.actor_kind != "service"
    if keyed and key is None:
        raise TerminalError(f"{spec.qualname} needs key=", 400)
    if not keyed and key is not None:
        raise TerminalError(f"{spec.qualname} is a service handler; it takes no key", 400)
    if key is not None:
        if not isinstance(key, str):
            raise TerminalError(f"key must be a str, not {type(key).__name__}", 400)
        check_key(key)
    return spec, spec.owner.actor_name, key


def _check_self_call(
    inv: EndpointInvocation, spec: Handler[Any, Any], actor: str, key: str | None
) -> None:
    """The one wait-for cycle the endpoint can see alone: an exclusive handler calling an
    exclusive handler of its own key waits for itself forever on Restate. Longer cycles
    (A -> B -> A) span invocations the endpoint cannot see; Restate lets them wait."""
    caller = inv.spec
    if (
        caller.kind == "exclusive"
        and spec.kind == "exclusive"
        and caller.owner is not None
        and caller.owner.actor_name == actor
        and inv.target.key == key
    ):
        raise DeadlockError(
            f"{caller.qualname} on key {key!r} calls {spec.qualname} on the same key: an "
            "exclusive handler would wait for itself (use ctx.send, or a shared handler)"
        )


def _payload(spec: Handler[Any, Any], arg: object) -> bytes:
    if not spec.has_input:
        if arg is not NO_ARG:
            raise TerminalError(f"{spec.qualname} takes no input", 400)
        return b""
    if arg is NO_ARG:
        raise TerminalError(f"{spec.qualname} takes an input", 400)
    data, _ = check_value(arg, spec.input_type, f"input of {spec.qualname}")
    return data


def _options(idempotency_key: str | None, headers: object) -> tuple[str | None, Any]:
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise TerminalError("idempotency_key must be a non-empty str", 400)
        check_idempotency_key(idempotency_key)
    return idempotency_key, check_headers_in_handler(headers)


def _delay(delay: timedelta | float | None, what: str) -> timedelta | None:
    try:
        seconds = delay_seconds(delay)
    except (ValueError, TypeError) as exc:
        raise TerminalError(f"{what}: {exc}", 400) from exc
    if seconds > _MAX_SLEEP_SECONDS:
        raise TerminalError(f"{what}: {seconds:.0f} s is beyond 100 years", 400)
    return timedelta(seconds=seconds) if delay is not None else None


#: fn -> {(step name, result type): (its RunOptions, whether fn is async)}: reading a
#: function's annotations costs more than the rest of a step's setup, and a handler's
#: steps name the same functions every time. Weak: a lambda's entry goes with it.
_STEPS: weakref.WeakKeyDictionary[Any, dict[tuple[str, Any], tuple[Any, bool]]] = (
    weakref.WeakKeyDictionary()
)


def _step_options(fn: Callable[..., Any], name: str, given: Any) -> tuple[Any, bool]:
    """The (shared, never mutated) RunOptions of a step and whether ``fn`` is async."""
    try:
        by_step = _STEPS[fn]
    except (KeyError, TypeError):
        by_step = {}
        try:
            _STEPS[fn] = by_step
        except TypeError:  # not weak-referenceable (a builtin): not cached
            pass
    try:
        return by_step[(name, given)]
    except (KeyError, TypeError):
        pass
    serde: Any = ConverterSerde(_result_type(fn, given), f"result of step {name!r}")
    entry = (restate.RunOptions(serde=serde), inspect.iscoroutinefunction(fn))
    with contextlib.suppress(TypeError):  # an unhashable result type: not cached
        by_step[(name, given)] = entry
    return entry


def _result_type(fn: Callable[..., Any], given: Any) -> Any:
    if given is not None:
        return payload_type(given)
    try:
        hint = typing.get_type_hints(fn).get("return", ANY)
    except Exception:  # an unresolvable or absent annotation: plain JSON
        hint = ANY
    if hint is None:
        return type(None)
    return payload_type(hint)


class RestatePort:
    """``HandlerPort`` on Restate: one instance serves every invocation."""

    __slots__ = ()

    # --- state ---------------------------------------------------------------------------

    async def get_state(self, inv: EndpointInvocation, name: str, annotation: Any) -> Any:
        data = await cast("Any", inv.restate).get(name, serde=_BYTES)
        if data is None or data == b"":
            return None
        return decode_value(data, annotation, f"state {name!r}")

    async def state_keys(self, inv: EndpointInvocation) -> list[str]:
        return sorted(await cast("Any", inv.restate).state_keys())

    def set_state(self, inv: EndpointInvocation, name: str, value: object) -> None:
        if not isinstance(name, str) or not name:
            raise BadArgumentError("a state name is a non-empty str")
        check_name(name, "state name")
        data = encode_value(value, ANY, f"state {name!r}")
        cast("Any", inv.restate).set(name, data, serde=_BYTES)

    def clear_state(self, inv: EndpointInvocation, name: str) -> None:
        cast("Any", inv.restate).clear(name)

    def clear_all_state(self, inv: EndpointInvocation) -> None:
        cast("Any", inv.restate).clear_all()

    # --- time, randomness, the request ------------------------------------------------------

    async def time(self, inv: EndpointInvocation) -> float:
        return float(await inv.restate.time())

    def random(self, inv: EndpointInvocation) -> random.Random:
        return inv.restate.random()

    def uuid(self, inv: EndpointInvocation) -> uuid.UUID:
        return inv.restate.uuid()

    def request(self, inv: EndpointInvocation) -> Request:
        req = inv.restate.request()
        # Restate does not tell a handler its attempt number: 0 says "unknown".
        return Request._create(req.id, dict(req.headers), bytes(req.body), 0, req.idempotency_key)

    # --- steps ---------------------------------------------------------------------------

    def run(
        self,
        inv: EndpointInvocation,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: RetryPolicy | None,
        result_type: Any,
        blocking: bool = True,
    ) -> DurableFuture[Any]:
        if not isinstance(name, str) or not name:
            raise BadArgumentError("ctx.run needs a non-empty str name")
        check_blocking(name, blocking)
        options, is_async = _step_options(fn, name, result_type)
        if retry is not None:
            options = copy.copy(options)
            options.max_attempts = retry.max_attempts
            if retry.max_duration is not None:
                options.max_duration = timedelta(seconds=retry.max_duration)
            options.initial_retry_interval = timedelta(seconds=retry.initial_interval)
            options.max_retry_interval = timedelta(seconds=retry.max_interval)
            options.retry_interval_factor = retry.factor

        async def body() -> Any:
            try:
                if is_async:
                    return await fn(*args)
                if not blocking:  # declared non-blocking: on the loop, as embedded
                    return fn(*args)
                return await anyio.to_thread.run_sync(lambda: fn(*args))
            except BaseException as exc:
                terminal = to_restate_error(exc)
                if terminal is None:
                    raise
                raise terminal from exc

        return inv.future(inv.restate.run_typed(name, body, options))

    # --- calls and sends ------------------------------------------------------------------

    def call(
        self,
        inv: EndpointInvocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        idempotency_key: str | None = None,
        headers: object = None,
    ) -> DurableFuture[Any]:
        spec, actor, key = _target_of(target, key)
        _check_self_call(inv, spec, actor, key)
        data = _payload(spec, arg)
        idem, hdrs = _options(idempotency_key, headers)
        backing = inv.restate.generic_call(
            actor, spec.name, data, key=key, idempotency_key=idem, headers=hdrs
        )
        serde = ConverterSerde[Any](spec.output_type, f"output of {spec.qualname}")
        return call_future(inv, backing, serde.deserialize)  # type: ignore[no-any-return]

    def send(
        self,
        inv: EndpointInvocation,
        target: Handler[Any, Any],
        arg: object,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None = None,
        headers: object = None,
    ) -> InvocationHandle:
        spec, actor, key = _target_of(target, key)
        data = _payload(spec, arg)
        idem, hdrs = _options(idempotency_key, headers)
        handle = inv.restate.generic_send(
            actor,
            spec.name,
            data,
            key=key,
            send_delay=_delay(delay, "ctx.send(delay=)"),
            idempotency_key=idem,
            headers=hdrs,
        )
        return send_handle(inv, handle, spec)

    def generic_call(
        self,
        inv: EndpointInvocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        idempotency_key: str | None,
        headers: object,
    ) -> DurableFuture[Any]:
        if not isinstance(payload, bytes | bytearray):
            raise TerminalError("generic_call takes the payload as bytes", 400)
        idem, hdrs = _options(idempotency_key, headers)
        backing = inv.restate.generic_call(
            actor, handler, bytes(payload), key=key, idempotency_key=idem, headers=hdrs
        )
        return call_future(inv, backing, bytes)  # type: ignore[no-any-return]

    def generic_send(
        self,
        inv: EndpointInvocation,
        actor: str,
        handler: str,
        payload: bytes,
        key: str | None,
        delay: timedelta | float | None,
        idempotency_key: str | None,
        headers: object,
    ) -> InvocationHandle:
        if not isinstance(payload, bytes | bytearray):
            raise TerminalError("generic_send takes the payload as bytes", 400)
        idem, hdrs = _options(idempotency_key, headers)
        handle = inv.restate.generic_send(
            actor,
            handler,
            bytes(payload),
            key=key,
            send_delay=_delay(delay, "ctx.generic_send(delay=)"),
            idempotency_key=idem,
            headers=hdrs,
        )
        return send_handle(inv, handle, None, raw=True)

    # --- durable waits --------------------------------------------------------------------

    def sleep(self, inv: EndpointInvocation, duration: timedelta | float) -> DurableFuture[Any]:
        delta = _delay(duration, "ctx.sleep()")
        assert delta is not None
        return inv.future(inv.restate.sleep(delta), lambda _: None)

    # --- awakeables, signals and promises -----------------------------------------------------

    def awakeable(self, inv: EndpointInvocation, annotation: Any) -> tuple[str, DurableFuture[Any]]:
        awakeable_id, backing = inv.restate.awakeable(serde=_BYTES)
        serde = ConverterSerde[Any](annotation, "awakeable value")
        return awakeable_id, inv.future(backing, serde.deserialize)

    def complete_awakeable(
        self,
        inv: EndpointInvocation,
        awakeable_id: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]:
        if reason is None:
            data = encode_value(value, ANY, "awakeable value")
            inv.restate.resolve_awakeable(awakeable_id, data, serde=_BYTES)
        else:
            inv.restate.reject_awakeable(awakeable_id, reason, _code(code))
        return DONE  # journaled by Restate at the call

    def signal(self, inv: EndpointInvocation, name: str, annotation: Any) -> DurableFuture[Any]:
        if not isinstance(name, str) or not name:
            raise BadArgumentError("a signal needs a non-empty str name")
        backing = inv.restate.signal(name, serde=_BYTES)
        return inv.future(backing, ConverterSerde[Any](annotation, f"signal {name!r}").deserialize)

    def complete_signal(
        self,
        inv: EndpointInvocation,
        invocation_id: str,
        name: str,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]:
        if reason is None:
            data = encode_value(value, ANY, f"signal {name!r}")
            inv.restate.resolve_signal(invocation_id, name, data, serde=_BYTES)
        else:
            inv.restate.reject_signal(invocation_id, name, reason, _code(code))
        return DONE

    def promise_value(
        self, inv: EndpointInvocation, name: str, annotation: Any
    ) -> DurableFuture[Any]:
        backing = _promise(inv, name).value()
        serde = ConverterSerde[Any](annotation, f"promise {name!r}")
        return inv.future(backing, serde.deserialize)

    async def promise_peek(self, inv: EndpointInvocation, name: str, annotation: Any) -> Any:
        try:
            data = await _promise(inv, name).peek()
        except restate.TerminalError as exc:
            raise to_actors_error(exc) from None
        if data is None:
            return None
        return ConverterSerde[Any](annotation, f"promise {name!r}").deserialize(data)

    def complete_promise(
        self,
        inv: EndpointInvocation,
        name: str,
        annotation: Any,
        value: object,
        reason: str | None,
        code: int = 500,
    ) -> Awaitable[None]:
        promise = _promise(inv, name)
        if reason is None:
            data, _ = check_value(value, annotation, f"value of promise {name!r}")
            pending = promise.resolve(data)  # journaled now, whether or not awaited
        else:
            pending = promise.reject(reason, _code(code))

        async def answer() -> None:
            try:
                await pending
            except restate.TerminalError as exc:
                raise to_actors_error(exc) from None

        return Later(answer)

    # --- other invocations ----------------------------------------------------------------

    def cancel_invocation(self, inv: EndpointInvocation, invocation_id: str) -> Awaitable[None]:
        if not isinstance(invocation_id, str) or not invocation_id:
            raise BadArgumentError("ctx.cancel_invocation takes an invocation id (a str)")
        inv.restate.cancel_invocation(invocation_id)
        return DONE

    async def settle_cancels(self, inv: EndpointInvocation) -> None:
        return None  # Restate journals a cancel when it is made

    def attach_invocation(
        self, inv: EndpointInvocation, invocation_id: str, annotation: Any
    ) -> DurableFuture[Any]:
        if not isinstance(invocation_id, str) or not invocation_id:
            raise BadArgumentError("ctx.attach_invocation takes an invocation id (a str)")
        backing = inv.restate.attach_invocation(invocation_id, serde=_BYTES)
        serde = ConverterSerde[Any](ANY if annotation is None else annotation, "attached output")
        return inv.future(backing, serde.deserialize)


def _promise(inv: EndpointInvocation, name: str) -> Any:
    return cast("Any", inv.restate).promise(name, serde=_BYTES)


def _code(code: object) -> int:
    if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 999:
        raise TerminalError(f"a rejection code is an int from 100 to 999, not {code!r}", 400)
    return code
