"""Restate's ingress client: ``RestateClient``, ``create_client`` and what they return.

``RestateClient`` calls handlers by their decorated functions, as Restate's does, over
one of two transports: HTTP to a running ingress (``create_client(url)``, through
``httpx``, which the real SDK's client needs too) or the embedded runtime itself
(``EmbeddedClient``, what the harness hands out). Inputs and outputs go through the
handlers' serdes either way; a failed call raises ``HttpError`` with the status code and
message the ingress answers (embedded: the runtime's ``TerminalError``, same code).
"""

from __future__ import annotations

import abc
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import actors

from ._handlers import handler_info

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from datetime import timedelta

    from ._unavailable import JournalValueCodec

__all__ = ["HttpError", "RestateClient", "RestateClientSendHandle", "create_client"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
Target = Any  # a decorated Restate handler function


class RestateClientSendHandle:
    """The invocation a client's send started, and the status code it was answered."""

    def __init__(self, invocation_id: str, status_code: int) -> None:
        self.invocation_id = invocation_id
        self.status_code = status_code


class HttpError(Exception):
    """A call or send the ingress (or the embedded runtime) refused or that failed."""

    def __init__(self, status_code: int, message: str, body: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


def _no_scope(scope: str | None, limit_key: str | None) -> None:
    if scope is not None or limit_key is not None:
        raise TypeError(
            "scope= and limit_key= are Restate server features the embedded runtime lacks"
        )


class RestateClient(abc.ABC):
    """Calls and sends to Restate handlers from outside them."""

    @abc.abstractmethod
    async def _call(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> bytes: ...

    @abc.abstractmethod
    async def _send(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateClientSendHandle: ...

    def scope(self, scope: str) -> Any:
        """Not available: scopes are a Restate server feature (``TypeError``)."""
        _no_scope(scope, None)

    async def _typed_call(
        self,
        tpe: Target,
        key: str | None,
        arg: Any,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> Any:
        info = handler_info(tpe)
        payload = info.input_serde.serialize(arg) if info.has_input else b""
        raw = await self._call(info.service.name, info.name, key, payload, idempotency_key, headers)
        return info.output_serde.deserialize(raw)

    async def _typed_send(
        self,
        tpe: Target,
        key: str | None,
        arg: Any,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateClientSendHandle:
        info = handler_info(tpe)
        payload = info.input_serde.serialize(arg) if info.has_input else b""
        return await self._send(
            info.service.name, info.name, key, payload, delay, idempotency_key, headers
        )

    async def service_call(
        self,
        tpe: Target,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Call a service handler and return its decoded result."""
        result: O = await self._typed_call(tpe, None, arg, idempotency_key, headers)
        return result

    async def service_send(
        self,
        tpe: Target,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        """Send to a service handler (durably accepted before this returns)."""
        return await self._typed_send(tpe, None, arg, send_delay, idempotency_key, headers)

    async def object_call(
        self,
        tpe: Target,
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Call a virtual object's handler on ``key``."""
        result: O = await self._typed_call(tpe, key, arg, idempotency_key, headers)
        return result

    async def object_send(
        self,
        tpe: Target,
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        """Send to a virtual object's handler on ``key``."""
        return await self._typed_send(tpe, key, arg, send_delay, idempotency_key, headers)

    async def workflow_call(
        self,
        tpe: Target,
        key: str,
        arg: I,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> O:
        """Call a workflow's handler on workflow id ``key``."""
        result: O = await self._typed_call(tpe, key, arg, idempotency_key, headers)
        return result

    async def workflow_send(
        self,
        tpe: Target,
        key: str,
        arg: I,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RestateClientSendHandle:
        """Submit a workflow's handler on workflow id ``key`` (``main`` once per id)."""
        return await self._typed_send(tpe, key, arg, send_delay, idempotency_key, headers)

    async def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> bytes:
        """Call by names with the input as bytes; returns the output bytes."""
        _no_scope(scope, limit_key)
        return await self._call(service, handler, key, arg, idempotency_key, headers)

    async def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        scope: str | None = None,
        limit_key: str | None = None,
    ) -> RestateClientSendHandle:
        """Send by names with the input as bytes."""
        _no_scope(scope, limit_key)
        return await self._send(service, handler, key, arg, send_delay, idempotency_key, headers)


def _http_error(exc: actors.ActorsError | TypeError) -> HttpError:
    """What the ingress would have answered for ``exc``: its status code (400 for a
    ``TypeError``: a key where none belongs...) and message."""
    if isinstance(exc, actors.TerminalError):
        return HttpError(exc.status_code, exc.message)
    return HttpError(getattr(exc, "status_code", 400), str(exc))


class EmbeddedClient(RestateClient):
    """A ``RestateClient`` over an open runtime (no HTTP): what the harness hands out."""

    def __init__(self, runtime: actors.Runtime) -> None:
        self.runtime = runtime

    async def _call(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> bytes:
        try:
            return await self.runtime.generic_call(
                service, handler, arg, key=key, idempotency_key=idempotency_key, headers=headers
            )
        except (actors.ActorsError, TypeError) as exc:
            raise _http_error(exc) from exc

    async def _send(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateClientSendHandle:
        try:
            handle = await self.runtime.generic_send(
                service,
                handler,
                arg,
                key=key,
                delay=delay,
                idempotency_key=idempotency_key,
                headers=headers,
            )
        except (actors.ActorsError, TypeError) as exc:
            raise _http_error(exc) from exc
        return RestateClientSendHandle(
            handle.invocation_id, 200 if handle.status == "PreviouslyAccepted" else 202
        )


class HttpClient(RestateClient):
    """A ``RestateClient`` over HTTP to a Restate-compatible ingress (``actors serve``)."""

    def __init__(self, http: Any, headers: dict[str, str]) -> None:
        self._http = http
        self._headers = headers

    @staticmethod
    def _path(service: str, handler: str, key: str | None) -> str:
        from urllib.parse import quote

        parts = [service, *([key] if key is not None else []), handler]
        return "/" + "/".join(quote(p, safe="") for p in parts)

    async def _post(
        self,
        path: str,
        arg: bytes,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
        params: dict[str, str] | None = None,
    ) -> Any:
        sent = {"content-type": "application/json", **self._headers, **(headers or {})}
        if idempotency_key is not None:
            sent["idempotency-key"] = idempotency_key
        response = await self._http.post(path, content=arg, headers=sent, params=params)
        if response.status_code >= 300:
            text = response.text
            try:
                message = str(json.loads(text).get("message", text))
            except (ValueError, AttributeError):
                message = text
            raise HttpError(response.status_code, message, text)
        return response

    async def _call(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> bytes:
        response = await self._post(
            self._path(service, handler, key), arg, idempotency_key, headers
        )
        content: bytes = response.content
        return content

    async def _send(
        self,
        service: str,
        handler: str,
        key: str | None,
        arg: bytes,
        delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> RestateClientSendHandle:
        params = {"delay": f"{int(delay.total_seconds() * 1000)}ms"} if delay is not None else None
        response = await self._post(
            self._path(service, handler, key) + "/send", arg, idempotency_key, headers, params
        )
        return RestateClientSendHandle(response.json()["invocationId"], response.status_code)


@asynccontextmanager
async def create_client(
    ingress: str | None = None,
    headers: dict[str, Any] | None = None,
    journal_value_codec: JournalValueCodec | None = None,
) -> AsyncGenerator[RestateClient, None]:
    """A client of the ingress at ``ingress`` (e.g. ``actors serve``'s URL). Needs
    ``httpx``. ``journal_value_codec`` is refused (``TypeError``), as in ``app``."""
    if journal_value_codec is not None:
        raise TypeError("journal_value_codec is not supported embedded")
    if ingress is None:
        raise TypeError("create_client() needs the ingress URL (e.g. http://127.0.0.1:8080)")
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx is in the dev extra
        raise ImportError("restate.create_client needs httpx (pip install httpx)") from exc
    async with httpx.AsyncClient(base_url=ingress, timeout=None) as http:
        yield HttpClient(http, dict(headers or {}))
