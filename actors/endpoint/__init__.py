# The Restate deployment endpoint: the actor classes a user wrote with `import actors`,
# served to a Restate server or cluster by the real Restate SDK (`restate-sdk`, the extra
# `virtual-actors[restate]`). This package sits above `actors`: it imports the actors API
# and `restate`, and `actors` never imports it (the CLI does, lazily, for `endpoint`).
"""Serve actor classes as a Restate deployment endpoint (DESIGN.md section 7).

``app(ACTORS)`` is the ASGI application; ``actors endpoint MODULE:ATTR`` serves it under
hypercorn. Register it with the Restate server's admin API
(``POST /deployments {"uri": "http://host:9080"}``) and call the handlers through
Restate's ingress, exactly as the embedded runtime's HTTP ingress answers them.

Every context operation becomes Restate's: state, ``ctx.run`` (with its retry policy),
sleeps, calls and sends (delay, idempotency key, headers), awakeables, signals, workflow
promises with ``peek``, ``actors.gather``/``select``/``wait_completed`` (on Restate's
futures), ``time``/``random``/``uuid``, ``ctx.request()``. Inputs, outputs and values go
through virtual-actors' converter, so a dataclass arrives as the dataclass. Restate
partitions keys, journals, retries and suspends; what only the embedded runtime does
(deadlock detection, the idempotency payload check, the attempt number in
``ctx.request()``) is listed in the README ("Outgrowing one machine").
"""

from __future__ import annotations

from typing import Any

import restate

from ._build import build_services

__all__ = ["app", "services"]


def services(actors: object) -> list[restate.Service | restate.VirtualObject | restate.Workflow]:
    """One Restate service per actor: ``actors`` is what ``actors serve`` takes (a list
    or tuple of actor classes or instances, one of them, or a function returning those).

    Raises:
      TypeError: something that is not an actor class or instance, an annotation that
        names an unknown type, a class that needs constructor arguments, or two actors
        with one name.
    """
    return build_services(actors)


def app(actors: object, *, protocol: str | None = None) -> Any:
    """The ASGI application serving ``actors`` as a Restate deployment endpoint (mount it
    under any ASGI server; Restate needs HTTP/2 for the default bidirectional protocol,
    or ``protocol="request_response"`` over HTTP/1.1). Raises like ``services``."""
    if protocol not in (None, "bidi", "request_response"):
        raise ValueError(f"protocol is 'bidi' or 'request_response', not {protocol!r}")
    return restate.app(services(actors), protocol=protocol)  # type: ignore[arg-type]
