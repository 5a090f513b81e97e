"""Restate's ``ScopedContext`` (``ctx.scope(name)``): calls routed within a scope of a
Restate cluster, with concurrency-limit keys. Scopes are a Restate server feature
(flow control), so the embedded ``ctx.scope()`` raises a 400 ``TerminalError`` and no
``ScopedContext`` is ever made; the class keeps Restate's methods so that code naming
them type-checks and imports."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ._steps import no_scope

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = ["ScopedContext"]

I = TypeVar("I")  # noqa: E741

_WHY = "unavailable"


def _refuse() -> NoReturn:
    no_scope(_WHY, None)
    raise AssertionError("unreachable")


class ScopedContext(abc.ABC):  # noqa: B024  (never made; see the module docstring)
    """Calls within a scope; never made embedded (``ctx.scope`` raises)."""

    def service_call(
        self,
        tpe: Any,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()

    def service_send(
        self,
        tpe: Any,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()

    def object_call(
        self,
        tpe: Any,
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()

    def object_send(
        self,
        tpe: Any,
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()

    def workflow_call(
        self,
        tpe: Any,
        key: str,
        arg: I,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()

    def workflow_send(
        self,
        tpe: Any,
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        limit_key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Refused: scopes need a Restate server."""
        _refuse()
