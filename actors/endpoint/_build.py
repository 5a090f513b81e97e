"""Actor classes -> Restate services, one Restate handler per handler of ours.

``Counter(actors.VirtualObject)`` becomes ``restate.VirtualObject("Counter")`` with the
same handler names and kinds (exclusive/shared; a workflow's ``main`` is Restate's
``main``), and per-handler options carried over (retention, inactivity timeout,
ingress-private, the invocation retry policy). Each Restate handler decodes its input
with our converter, builds our context on the Restate one (``_port``), runs our handler
with the actor's single instance, and encodes the output with our converter. Our
terminal errors become Restate's, so Restate does not retry them; anything else is
left to Restate's retries, as the embedded runtime retries it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import restate
from restate.serde import BytesSerde

from actors import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from actors._context import context_misuse
from actors._definitions import Actor, ActorEntry, Handler, registration_entry
from actors._types import RAW_BYTES

from ._driver import EndpointInvocation, to_restate_error
from ._port import RestatePort
from ._serde import ConverterSerde

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

_PORT: Final = RestatePort()
_BYTES: Any = BytesSerde()

_CONTEXTS: Final[dict[tuple[str, str], Any]] = {
    ("service", "service"): Context,
    ("object", "exclusive"): ObjectContext,
    ("object", "shared"): ObjectSharedContext,
    ("workflow", "main"): WorkflowContext,
    ("workflow", "shared"): WorkflowSharedContext,
}

RestateService = restate.Service | restate.VirtualObject | restate.Workflow


def entries(actors: object) -> list[ActorEntry]:
    """The actors ``actors serve`` takes: a list or tuple of actor classes or instances,
    one of them, or a function returning those. Raises ``TypeError`` naming what is wrong."""
    value = actors
    if callable(value) and not isinstance(value, type) and not isinstance(value, Actor):
        value = value()
    if isinstance(value, type | Actor):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(
            "expected a non-empty list of actor classes or instances (or a function "
            f"returning one), not {type(value).__name__}"
        )
    found = [registration_entry(item) for item in value]
    names = [entry.name for entry in found]
    for name in names:
        if names.count(name) > 1:
            raise TypeError(f"two actors are named {name!r}")
    return found


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _retry_policy(spec: Handler[Any, Any]) -> restate.InvocationRetryPolicy | None:
    policy = spec.retry
    if policy is None:
        return None
    return restate.InvocationRetryPolicy(
        initial_interval=timedelta(seconds=policy.initial_interval),
        exponentiation_factor=policy.factor,
        max_interval=timedelta(seconds=policy.max_interval),
        max_attempts=policy.max_attempts,
        on_max_attempts=policy.on_max_attempts,
    )


def _wrapper(instance: Actor, spec: Handler[Any, Any]) -> Callable[..., Coroutine[Any, Any, bytes]]:
    """The Restate handler function for ``spec``: ``(ctx)`` or ``(ctx, input bytes)``."""
    owner = type(instance)
    context_class = _CONTEXTS[(owner.actor_kind, spec.kind or "")]
    keyed = owner.actor_kind != "service"
    qualname = spec.qualname
    input_serde = ConverterSerde[Any](spec.input_type, f"input of {qualname}", strict=True)
    output_serde = ConverterSerde[Any](spec.output_type, f"output of {qualname}")

    async def run(ctx: restate.Context, data: bytes | None) -> bytes:
        key = ctx.key() if keyed else None  # type: ignore[attr-defined]
        inv = EndpointInvocation(ctx, spec, key)
        try:
            ours = context_class._create(_PORT, inv)
            if data is None:
                result = await spec.fn(instance, ours)
            else:
                result = await spec.fn(instance, ours, input_serde.deserialize(data))
            return output_serde.serialize(result)
        except BaseException as exc:
            if restate.is_internal_exception(exc):
                raise  # Restate's own control flow (suspension...): never ours to touch
            misuse = context_misuse(exc)
            terminal = to_restate_error(misuse if misuse is not None else exc)
            if terminal is None:
                raise  # retried by Restate, as our runtime retries it
            raise terminal from exc

    if spec.has_input:

        async def with_input(ctx: restate.Context, data: bytes) -> bytes:
            return await run(ctx, data)

        fn: Callable[..., Coroutine[Any, Any, bytes]] = with_input
    else:

        async def without_input(ctx: restate.Context) -> bytes:
            return await run(ctx, None)

        fn = without_input
    # Name and docstring for Restate's discovery, but no ``__wrapped__``: Restate counts
    # the parameters of the signature (``inspect`` would follow it to ours, with self).
    fn.__name__, fn.__qualname__, fn.__doc__ = spec.name, spec.fn.__qualname__, spec.fn.__doc__
    return fn


def build_service(entry: ActorEntry) -> RestateService:
    """The Restate service, virtual object or workflow serving ``entry``'s handlers."""
    cls, name = entry.cls, entry.name
    service: RestateService
    if cls.actor_kind == "service":
        service = restate.Service(name, description=cls.__doc__)
    elif cls.actor_kind == "object":
        service = restate.VirtualObject(name, description=cls.__doc__)
    else:
        service = restate.Workflow(name, description=cls.__doc__)
    for spec in cls.handlers.values():
        options: dict[str, Any] = {
            "name": spec.name,
            "input_serde": _BYTES,
            "output_serde": _BYTES,
            "inactivity_timeout": _seconds(spec.inactivity_timeout),
            "invocation_retry_policy": _retry_policy(spec),
        }
        if spec.input_type is RAW_BYTES:
            options["accept"] = "*/*"
        if spec.output_type is RAW_BYTES:
            options["content_type"] = "application/octet-stream"
        if spec.ingress_private:
            options["ingress_private"] = True
        fn = _wrapper(entry.instance, spec)
        if isinstance(service, restate.Workflow):
            if spec.kind == "main":
                options["workflow_retention"] = _seconds(spec.retention)
                service.main(**options)(fn)
            else:
                options["idempotency_retention"] = _seconds(spec.retention)
                service.handler(**options)(fn)
        elif isinstance(service, restate.VirtualObject):
            options["idempotency_retention"] = _seconds(spec.retention)
            service.handler(kind=spec.kind, **options)(fn)  # type: ignore[arg-type]
        else:
            options["idempotency_retention"] = _seconds(spec.retention)
            service.handler(**options)(fn)
    return service


def build_services(actors: object) -> list[RestateService]:
    """One Restate service per actor of ``actors`` (see ``entries``)."""
    return [build_service(entry) for entry in entries(actors)]
