"""A Restate service as an actor class of the runtime, and one invocation of a handler.

Each Restate handler becomes a runtime handler with a raw-bytes input and output
(``bytes`` annotations: the runtime stores and hands over the payload as given), so
Restate's serdes decide the encoding, in both directions: the input is decoded with the
handler's ``input_serde`` (a payload that does not decode is a 400 ``TerminalError``,
and nothing runs), the result encoded with its ``output_serde`` (None is the empty
body). The idempotency payload check compares these bytes.

Kinds: a ``Service`` handler is a service handler, a ``VirtualObject``'s ``exclusive``
and ``shared`` the same kinds, a ``Workflow``'s ``main`` the workflow's ``main`` and its
other handlers shared ones. Options are mapped once, when the class is built
(``_definitions`` lists what they mean embedded).
"""

from __future__ import annotations

import contextlib
import types
from typing import TYPE_CHECKING, Any

import actors

from ._request import AttemptFinishedEvent
from .context import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from .exceptions import TerminalError
from .retry_policy import policy_of

if TYPE_CHECKING:
    from ._handlers import DeclaredService, HandlerInfo

_BASES: dict[str, type[actors.Service] | type[actors.VirtualObject] | type[actors.Workflow]] = {
    "service": actors.Service,
    "object": actors.VirtualObject,
    "workflow": actors.Workflow,
}

#: (service kind, handler kind) -> (actors decorator, Restate context class).
_KINDS: dict[tuple[str, str | None], tuple[Any, type[Context]]] = {
    ("service", None): (actors.handler, Context),
    ("object", "exclusive"): (actors.exclusive, ObjectContext),
    ("object", "shared"): (actors.shared, ObjectSharedContext),
    ("workflow", "workflow"): (actors.main, WorkflowContext),
    ("workflow", "shared"): (actors.shared, WorkflowSharedContext),
}


def _longest(*values: float | None) -> float | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


def _option(info: HandlerInfo, name: str) -> Any:
    """The handler's own value of option ``name``, else its service's."""
    value = info.options.get(name)
    return value if value is not None else info.service.options.get(name)


async def invoke(
    info: HandlerInfo, context_class: type[Context], actx: Any, payload: bytes
) -> bytes:
    """Run one attempt of ``info``'s handler on the runtime context ``actx``."""
    if info.has_input:
        try:
            arg = info.input_serde.deserialize(payload)
        except Exception as exc:
            raise TerminalError(
                f"input of {info.qualname} does not decode: {type(exc).__name__}: {exc}", 400
            ) from None
    attempt = AttemptFinishedEvent()
    ctx = context_class(actx, info, attempt)
    managers = [
        *info.service.options["invocation_context_managers"],
        *(info.options.get("invocation_context_managers") or ()),
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for manager in managers:
                await stack.enter_async_context(manager())
            result = await (info.fn(ctx, arg) if info.has_input else info.fn(ctx))
    finally:
        attempt._set()
    try:
        return info.output_serde.serialize(result)
    except Exception as exc:
        raise TerminalError(
            f"output of {info.qualname} does not encode: {type(exc).__name__}: {exc}", 500
        ) from None


def _entry(info: HandlerInfo, context_class: type[Context]) -> Any:
    async def entry(self: object, ctx: Any, payload: bytes) -> bytes:
        return await invoke(info, context_class, ctx, payload)

    entry.__name__ = getattr(info.fn, "__name__", info.name)
    entry.__qualname__ = f"{info.service.name}.{entry.__name__}"
    entry.__doc__ = getattr(info.fn, "__doc__", None)
    return entry


def actor_class(
    service: DeclaredService,
) -> type[actors.Service | actors.VirtualObject | actors.Workflow]:
    """The runtime's actor class for ``service``. Raises ``TypeError`` for a service the
    runtime cannot run (a workflow without ``main``, a service without handlers)."""
    kind = service.service_kind
    if not service.handlers:
        raise TypeError(f"Restate {kind} {service.name!r} has no handlers")
    if kind == "workflow" and not any(i.kind == "workflow" for i in service.handlers.values()):
        raise TypeError(f"Restate workflow {service.name!r} has no @main() handler")
    namespace: dict[str, Any] = {}
    for index, info in enumerate(service.handlers.values()):
        decorator, context_class = _KINDS[kind, info.kind]
        retention = _longest(
            _option(info, "journal_retention"),
            _option(info, "idempotency_retention"),
            info.options.get("workflow_retention"),
        )
        namespace[f"handler_{index}"] = decorator(
            name=info.name,
            retry=policy_of(_option(info, "invocation_retry_policy")),
            retention=retention,
            inactivity_timeout=_option(info, "inactivity_timeout"),
            ingress_private=_option(info, "ingress_private"),
        )(_entry(info, context_class))
    return types.new_class(
        service.name, (_BASES[kind],), {"name": service.name}, lambda ns: ns.update(namespace)
    )
