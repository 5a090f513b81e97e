"""Restate's ``Service``, ``VirtualObject`` and ``Workflow``: declaring handlers.

A Restate handler is a module-level ``async def`` taking a context and at most one
input; the decorator (``svc.handler()``, ``wf.main()``) records a ``HandlerInfo`` on the
function and returns the function itself, so ``ctx.service_call(greet, ...)`` finds its
target by the function, as in Restate. Nothing runs until the service is registered:
``open_runtime(path, restate.app([...]))`` (or a list of services) asks each service for
its actor class (``__actors__``, the registration hook of ``actors``), which
``_adapter`` builds once.

Options: ``name``, ``kind``, ``input_serde``/``output_serde``, ``inactivity_timeout``,
``ingress_private``, ``invocation_retry_policy``, the retentions (journal, idempotency,
workflow: the longest given becomes the handler's ``retention``) and
``invocation_context_managers`` (entered around every attempt) act as in Restate. The
rest (``description``, ``metadata``, ``accept``, ``content_type``, ``abort_timeout``,
``enable_lazy_state``, ``state_preload``) are kept and change nothing embedded: there is
no discovery manifest, no abort of a stuck attempt, and state is always read lazily.
Mistakes are a ``TypeError`` (``ValueError`` for a bad value) when the decorator runs.
"""

from __future__ import annotations

import inspect
import typing
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._handlers import INFO_ATTR, HandlerInfo, RestateKind, ServiceKind
from .serde import DefaultSerde, Serde, with_hint

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from .retry_policy import InvocationRetryPolicy

__all__ = ["Service", "VirtualObject", "Workflow"]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


def _seconds(value: timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"{what} must be a timedelta, not {type(value).__name__}")
    return value.total_seconds()


class _Declared:
    """What the three declarations share."""

    service_kind: typing.ClassVar[ServiceKind]

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
        **more: Any,
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise TypeError(f"a service name must be a non-empty str without '/', not {name!r}")
        self.name = name
        self.description = description
        self.metadata = metadata
        self.handlers: dict[str, HandlerInfo] = {}
        self.options: dict[str, Any] = {
            "inactivity_timeout": _seconds(inactivity_timeout, "inactivity_timeout"),
            "abort_timeout": abort_timeout,
            "journal_retention": _seconds(journal_retention, "journal_retention"),
            "idempotency_retention": _seconds(idempotency_retention, "idempotency_retention"),
            "ingress_private": ingress_private,
            "invocation_retry_policy": invocation_retry_policy,
            "invocation_context_managers": list(invocation_context_managers or ()),
            **more,
        }
        self._actor: Any = None  # the actor class, built at the first registration

    def _declare(
        self,
        fn: Any,
        name: str | None,
        kind: RestateKind,
        input_serde: Serde[Any],
        output_serde: Serde[Any],
        options: dict[str, Any],
    ) -> Any:
        where = f"{self.name}.{getattr(fn, '__name__', repr(fn))}"
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"Restate handler {where} must be declared with 'async def'")
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2 or any(
            p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        ):
            raise TypeError(f"Restate handler {where} takes a context and at most one input")
        public = name if name is not None else fn.__name__
        if not isinstance(public, str) or not public or "/" in public:
            raise TypeError(f"handler name {public!r} of {where} must be non-empty, without '/'")
        if public in self.handlers:
            raise TypeError(f"{self.name} declares two handlers named {public!r}")
        if self._actor is not None:
            raise TypeError(
                f"{self.name} is already registered with a runtime; declare {where} before"
            )
        try:
            hints = typing.get_type_hints(fn)
        except NameError:
            hints = {}  # a forward reference: no hint, plain JSON (as Restate without one)
        arg_hint = hints.get(params[1].name) if len(params) == 2 else None
        info = HandlerInfo(
            service=self,
            name=public,
            kind=kind,
            fn=fn,
            has_input=len(params) == 2,
            input_serde=with_hint(input_serde, arg_hint),
            output_serde=with_hint(output_serde, hints.get("return")),
            options={
                "inactivity_timeout": _seconds(
                    options.pop("inactivity_timeout"), "inactivity_timeout"
                ),
                "journal_retention": _seconds(
                    options.pop("journal_retention"), "journal_retention"
                ),
                "idempotency_retention": _seconds(
                    options.pop("idempotency_retention"), "idempotency_retention"
                ),
                "workflow_retention": _seconds(
                    options.pop("workflow_retention", None), "workflow_retention"
                ),
                **options,
            },
        )
        setattr(fn, INFO_ATTR, info)
        self.handlers[public] = info
        return fn

    def __actors__(self) -> list[Any]:
        """The registration hook of ``actors``: this service's actor class (built once,
        at the first registration; no handler may be added afterwards)."""
        if self._actor is None:
            from ._adapter import actor_class

            self._actor = actor_class(self)
        return [self._actor]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {', '.join(self.handlers) or 'no handlers'}>"


def _handler_decorator(
    owner: _Declared,
    name: str | None,
    kind: RestateKind,
    input_serde: Serde[Any],
    output_serde: Serde[Any],
    options: dict[str, Any],
) -> Callable[[T], T]:
    def decorate(fn: T) -> T:
        declared: T = owner._declare(fn, name, kind, input_serde, output_serde, dict(options))
        return declared

    return decorate


_SERDE: Any = DefaultSerde()


class Service(_Declared):
    """A stateless Restate service: its handlers run concurrently, without a key."""

    service_kind = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = _SERDE,
        output_serde: Serde[O] = _SERDE,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> Callable[[T], T]:
        """Declare a handler of this service (a decorator; returns the function)."""
        return _handler_decorator(
            self,
            name,
            None,
            input_serde,
            output_serde,
            {
                "accept": accept,
                "content_type": content_type,
                "metadata": metadata,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "journal_retention": journal_retention,
                "idempotency_retention": idempotency_retention,
                "ingress_private": ingress_private,
                "invocation_retry_policy": invocation_retry_policy,
                "invocation_context_managers": invocation_context_managers,
            },
        )


class VirtualObject(_Declared):
    """A keyed Restate virtual object: per key, ``exclusive`` handlers (the default
    kind) run one at a time in acceptance order and write state; ``shared`` ones run
    concurrently and read committed state."""

    service_kind = "object"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
            enable_lazy_state=enable_lazy_state,
            state_preload=state_preload,
        )

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = _SERDE,
        output_serde: Serde[O] = _SERDE,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> Callable[[T], T]:
        """Declare a handler; ``kind`` is ``"exclusive"`` (default) or ``"shared"``."""
        if kind not in ("exclusive", "shared", None):
            raise ValueError(f"kind must be 'exclusive' or 'shared', not {kind!r}")
        return _handler_decorator(
            self,
            name,
            kind or "exclusive",
            input_serde,
            output_serde,
            {
                "accept": accept,
                "content_type": content_type,
                "metadata": metadata,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "journal_retention": journal_retention,
                "idempotency_retention": idempotency_retention,
                "ingress_private": ingress_private,
                "invocation_retry_policy": invocation_retry_policy,
                "invocation_context_managers": invocation_context_managers,
                "enable_lazy_state": enable_lazy_state,
                "state_preload": state_preload,
            },
        )


class Workflow(_Declared):
    """A Restate workflow: one ``main`` handler that runs once per workflow id, and
    shared handlers (``handler()``) to query it and complete its promises."""

    service_kind = "workflow"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
            enable_lazy_state=enable_lazy_state,
            state_preload=state_preload,
        )

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = _SERDE,
        output_serde: Serde[O] = _SERDE,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> Callable[[T], T]:
        """Declare the workflow's one ``main`` handler (its public name is ``run``
        unless ``name`` says otherwise): it runs at most once per workflow id within
        ``workflow_retention``."""
        if any(info.kind == "workflow" for info in self.handlers.values()):
            raise TypeError(f"workflow {self.name} already has a main handler")
        return _handler_decorator(
            self,
            name,
            "workflow",
            input_serde,
            output_serde,
            {
                "accept": accept,
                "content_type": content_type,
                "metadata": metadata,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "journal_retention": journal_retention,
                "idempotency_retention": None,
                "workflow_retention": workflow_retention,
                "ingress_private": ingress_private,
                "invocation_retry_policy": invocation_retry_policy,
                "invocation_context_managers": invocation_context_managers,
                "enable_lazy_state": enable_lazy_state,
                "state_preload": state_preload,
            },
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[I] = _SERDE,
        output_serde: Serde[O] = _SERDE,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: list[Callable[[], AbstractAsyncContextManager[None]]]
        | None = None,
    ) -> Callable[[T], T]:
        """Declare a shared handler of the workflow (queries, promise completions)."""
        return _handler_decorator(
            self,
            name,
            "shared",
            input_serde,
            output_serde,
            {
                "accept": accept,
                "content_type": content_type,
                "metadata": metadata,
                "inactivity_timeout": inactivity_timeout,
                "abort_timeout": abort_timeout,
                "journal_retention": journal_retention,
                "idempotency_retention": idempotency_retention,
                "ingress_private": ingress_private,
                "invocation_retry_policy": invocation_retry_policy,
                "invocation_context_managers": invocation_context_managers,
                "enable_lazy_state": enable_lazy_state,
                "state_preload": state_preload,
            },
        )
