"""What Restate's ingress clients expect on the wire, beyond routing (``_ingress`` routes
and ``_http`` reads requests): the bodies of results and send answers, execution times,
health, and attach/output by idempotency key.

Each rule is what Restate's ingress answers (``crates/ingress-http`` of restatedev/restate)
and what its clients rely on (``@restatedev/restate-sdk-clients``, ``restate.client``):

* A ``None`` result is a 200 with an **empty body and no content type**. A client that
  declares a void output (``serde.empty``) refuses any body ("Expected empty data"), and
  Restate's own SDKs serialize ``None`` as empty bytes; JSON serdes read empty as
  undefined/None.
* A send answers ``{"invocationId", "status"}``, plus ``"executionTime"`` when it was
  delayed: RFC 3339 in UTC with millisecond precision, the fraction left out when it is
  zero (``2023-11-14T22:13:20Z``, ``...:20.250Z``), as Restate's ``humantime`` prints it.
  Only a new acceptance has one (``InvocationHandle.execution_time``).
* Errors carry ``x-restate-error-source`` (``_http``): ``invocation`` on an invocation's
  outcome, whose body also says ``"source": "invocation"``, so a client with retries
  enabled never repeats it; ``ingress`` on the ingress's own refusals. (Restate's
  ingress errors also say ``"source": "ingress"`` in the body; ours keep the documented
  ``{"code", "message"}``, and no client reads that field.)
* A ``TerminalError`` raised with ``metadata`` answers it in the error body as a JSON
  object of strings (``"metadata": {"reason": "card_declined"}``), beside ``code`` and
  ``message``, as Restate's ingress carries a failure's metadata; it is left out when
  empty, so a body without metadata is exactly what it was before.
* ``GET /restate/health`` answers ``{"services": [names]}``, the actors it serves.
* Ingress-private handlers (``ingress_private=True``) are not served: every route
  answers for them exactly what it answers for a handler that does not exist, and an
  actor with no other handler is not served at all (``PublicActors``). Restate's
  ingress refuses them too; they stay reachable from actors and the embedded runtime.
* ``GET /restate/invocation/{service}/{handler}/{idempotency key}/attach|output`` and
  ``/restate/invocation/{object}/{key}/{handler}/{idempotency key}/attach|output``: the
  invocation an idempotency key was accepted for (``Runtime.attach_idempotent``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import UnknownHandlerError
from ._http import OCTET_STREAM, HttpError, Response, json_response, require
from ._serde import ANY, encode_value
from ._types import RAW_BYTES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._definitions import ActorEntry, Handler
    from ._results import InvocationHandle


class IdempotentLookups(Protocol):
    """What the idempotency-key routes ask of the runtime (``actors.Runtime``)."""

    async def attach_idempotent(
        self, target: Handler[Any, Any], /, idempotency_key: str, *, key: str | None = None
    ) -> Any: ...
    async def idempotent_output(
        self, target: Handler[Any, Any], /, idempotency_key: str, *, key: str | None = None
    ) -> Any: ...


def result_response(value: object, annotation: Any, what: str) -> Response:
    """The 200 answer for a result: empty for None; the bytes as they are for a handler
    annotated ``bytes`` (a result read back by id has no annotation here, ``ANY``: it is
    raw when it is ``bytes``, which JSON decoding never gives); else its JSON."""
    if value is None:
        return Response(200)
    if annotation is RAW_BYTES or (annotation is ANY and type(value) is bytes):
        return Response(200, encode_value(value, RAW_BYTES, what), content_type=OCTET_STREAM)
    return Response(200, encode_value(value, annotation, what))


def execution_time_text(when: datetime) -> str:
    """``when`` as Restate's ingress writes an execution time (module docstring)."""
    millis = int(when.timestamp() * 1000)  # Restate keeps milliseconds since the epoch
    seconds, fraction = divmod(millis, 1000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{fraction:03d}Z" if fraction else f"{whole}Z"


def send_response(handle: InvocationHandle) -> Response:
    """The 202 answer for an accepted send."""
    answer = {"invocationId": handle.invocation_id, "status": handle.status}
    if handle.execution_time is not None:
        answer["executionTime"] = execution_time_text(handle.execution_time)
    return json_response(202, answer)


class PublicActors:
    """What the ingress serves of a runtime's registered actors: each actor's handlers
    that are not ingress-private, and only actors that keep at least one. Lookups of
    anything else raise the unknown actor's or handler's ``UnknownHandlerError``, with
    the same message, so an answer never tells a private handler from a missing one."""

    __slots__ = ("_actors",)

    def __init__(self, entries: Mapping[str, ActorEntry]) -> None:
        self._actors: dict[str, tuple[ActorEntry, dict[str, Handler[Any, Any]]]] = {}
        for name, entry in entries.items():
            public = {n: h for n, h in entry.cls.handlers.items() if not h.ingress_private}
            if public:
                self._actors[name] = (entry, public)

    def names(self) -> list[str]:
        return sorted(self._actors)

    def get(self, name: str) -> tuple[ActorEntry, Mapping[str, Handler[Any, Any]]] | None:
        """The served actor ``name`` and its served handlers, or None."""
        return self._actors.get(name)

    def actor(self, name: str) -> tuple[ActorEntry, Mapping[str, Handler[Any, Any]]]:
        found = self._actors.get(name)
        if found is None:
            raise UnknownHandlerError(f"actor {name!r} is not registered with this runtime")
        return found

    @staticmethod
    def handler(
        entry: ActorEntry, handlers: Mapping[str, Handler[Any, Any]], name: str
    ) -> Handler[Any, Any]:
        spec = handlers.get(name)
        if spec is None:
            raise UnknownHandlerError(f"actor {entry.name!r} has no handler {name!r}")
        return spec


def health_response(served: PublicActors) -> Response:
    """Restate's health answer: the names of the services (actors) served."""
    return json_response(200, {"services": served.names()})


async def by_idempotency_key(
    runtime: IdempotentLookups,
    served: PublicActors,
    method: str,
    path: list[str],
) -> Response:
    """``/restate/invocation/{actor}[/{key}]/{handler}/{idempotency key}/{what}``;
    ``path`` is the segments after ``invocation``, four or five of them."""
    require(method, "GET")
    name, *target, idempotency_key, what = path
    entry, handlers = served.actor(name)
    kind = entry.cls.actor_kind
    keyed = kind != "service"
    shape = f"/restate/invocation/{name}/{{key}}/{{handler}}/{{idempotency key}}/{what}"
    if keyed and len(target) != 2:
        raise HttpError(400, f"{name} is a keyed {kind}: use {shape}")
    if not keyed and len(target) != 1:
        shape = shape.replace("{key}/", "")
        raise HttpError(400, f"{name} is a service: its handlers take no key; use {shape}")
    key = target[0] if keyed else None
    spec = served.handler(entry, handlers, target[-1])
    lookup = runtime.attach_idempotent if what == "attach" else runtime.idempotent_output
    try:
        value = await lookup(spec, idempotency_key, key=key)
    except TypeError as exc:  # a workflow's main: it takes no idempotency key
        raise HttpError(400, str(exc)) from None
    return result_response(value, spec.output_type, f"output of {spec.qualname}")
