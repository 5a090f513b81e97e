"""Restate's ``restate.app``: the services of one program, registered together.

In Restate, ``app([...])`` builds the ASGI endpoint a Restate server calls. Embedded
there is no server: what it returns is handed to ``actors.open_runtime(path, app)`` or
``actors serve --restate MODULE:ATTR``, which run the services in-process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._definitions import Service, VirtualObject, Workflow
    from ._unavailable import JournalValueCodec

__all__ = ["RestateApp", "app"]


class RestateApp:
    """What ``app()`` returns: the services, for ``open_runtime`` and ``actors serve``
    (the ``ActorProvider`` hook of ``actors``). Not an ASGI application: to deploy the
    same services on a Restate server, run them with the real ``restate-sdk``."""

    def __init__(self, services: list[Service | VirtualObject | Workflow]) -> None:
        self.services = services

    def __actors__(self) -> list[Any]:
        """The actor classes of every service, in order."""
        return [actor for service in self.services for actor in service.__actors__()]

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        raise TypeError(
            "an embedded restate.app() is not an ASGI application: pass it to "
            "actors.open_runtime(path, app) or serve it with `actors serve --restate "
            "MODULE:ATTR`; a Restate server needs the real restate-sdk"
        )

    def __repr__(self) -> str:
        return f"<restate app: {', '.join(s.name for s in self.services)}>"


def app(
    services: Iterable[Service | VirtualObject | Workflow],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: list[str] | None = None,
    journal_value_codec: JournalValueCodec
    | Callable[[], Awaitable[JournalValueCodec]]
    | None = None,
) -> RestateApp:
    """The services of this program, to run embedded. ``protocol`` and
    ``identity_keys`` concern a Restate server's connection and are ignored; a
    ``journal_value_codec`` (journal encryption or compression) is refused with
    ``TypeError``: the embedded journal stores values as given.

    Raises ``TypeError`` for an item that is not a ``Service``, ``VirtualObject`` or
    ``Workflow``, or a name used twice."""
    from ._definitions import _Declared

    listed = list(services)
    for service in listed:
        if not isinstance(service, _Declared):
            raise TypeError(
                f"restate.app() takes Service, VirtualObject and Workflow objects, not {service!r}"
            )
    names = [s.name for s in listed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"services named twice in restate.app(): {', '.join(twice)}")
    if journal_value_codec is not None:
        raise TypeError(
            "journal_value_codec is not supported embedded: the journal stores values as given"
        )
    return RestateApp(listed)
