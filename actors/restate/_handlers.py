"""What a declared Restate handler is, for those who run it and those who call it.

A leaf module (it imports only ``exceptions``), so that the context (which finds
a call's target by its function) and the adapter (which runs handlers) can both use it
without importing the declarations (``_definitions``), which build the adapter lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from .exceptions import TerminalError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .serde import Serde

__all__ = [
    "INFO_ATTR",
    "DeclaredService",
    "HandlerInfo",
    "RestateKind",
    "ServiceKind",
    "handler_info",
]

ServiceKind = Literal["service", "object", "workflow"]
#: "exclusive"/"shared" on objects; "workflow" (main) / "shared" on workflows; None on services.
RestateKind = Literal["exclusive", "shared", "workflow"] | None


class DeclaredService(Protocol):
    """A ``Service``, ``VirtualObject`` or ``Workflow`` (``_definitions``)."""

    name: str
    handlers: dict[str, HandlerInfo]
    options: dict[str, Any]

    @property
    def service_kind(self) -> ServiceKind: ...


#: The attribute a decorated function carries its declaration in.
INFO_ATTR = "__actors_restate_handler__"


@attrs.define(eq=False)
class HandlerInfo:
    """One declared handler: what the adapter needs to run it and callers to call it."""

    service: DeclaredService
    name: str
    kind: RestateKind
    fn: Callable[..., Any]
    has_input: bool
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    options: dict[str, Any]

    @property
    def qualname(self) -> str:
        return f"{self.service.name}/{self.name}"


class NotAHandlerError(TerminalError, TypeError):
    """Raised where a Restate handler function was expected (``ctx.service_call(x)``,
    a client's call) and something else was given: a ``TypeError``, and in a handler a
    400 ``TerminalError`` that ends the invocation at once (no retry fixes the code)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


def handler_info(target: object) -> HandlerInfo:
    """The declaration of a Restate handler function; ``NotAHandlerError`` (a
    ``TypeError``) for anything else."""
    info = getattr(target, INFO_ATTR, None)
    if not isinstance(info, HandlerInfo):
        raise NotAHandlerError(
            f"{target!r} is not a Restate handler: declare it with @service.handler() "
            "(or @workflow.main()) and pass the decorated function"
        )
    return info
