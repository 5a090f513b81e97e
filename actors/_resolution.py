"""From what a caller names to what runs: the registered actor, the handler, the target
and the checked input of an invocation. Pure lookups over the registered actors; nothing
here touches storage or the event loop.

Outside handlers a malformed request is the caller's programming mistake (``TypeError``,
``UnknownHandlerError``, ``SerializationError``, raised before anything is stored);
inside a handler it is deterministic, so it fails the invocation instead of retrying it
(``TerminalError`` 400).
"""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from actors.storage import Target

from ._definitions import Actor, Handler
from ._errors import SerializationError, TerminalError, UnknownHandlerError
from ._invocation import HOLDS_KEY_KINDS, Invocation
from ._lifecycle import Lifecycle
from ._limits import MAX_KEY_BYTES, MAX_VALUE_BYTES, check_key, utf8_size
from ._limits import check_value as check_value_size
from ._serde import check_value, decode_input
from ._types import RAW_BYTES
from ._util import NO_ARG, new_invocation_id

if TYPE_CHECKING:
    from actors.storage import InvocationRecord

    from ._clock import Clock
    from ._definitions import ActorEntry


#: A key this short and ASCII is within ``MAX_KEY_BYTES`` (``check_key``'s fast path).
_SHORT_KEY: Final = MAX_KEY_BYTES // 2


def check_invocation_id(invocation_id: object) -> None:
    """An invocation id from a caller: a str (``TypeError``) of valid Unicode (a 400
    ``TerminalError``); an id that names nothing is the lookup's to report."""
    if not isinstance(invocation_id, str):
        raise TypeError(f"invocation ids are str, not {type(invocation_id).__name__}")
    if not invocation_id.isascii():
        utf8_size(invocation_id, "invocation id")


def delay_seconds(delay: timedelta | float | None) -> float:
    """A delay or duration in seconds; ``TypeError`` unless a ``timedelta`` or a number
    (not a str such as ``"5"``, which ``float()`` would take), ``ValueError`` unless
    finite and non-negative."""
    if delay is None:
        return 0.0
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TypeError(
            f"a duration is a timedelta or a number of seconds, not {type(delay).__name__} "
            f"{delay!r}"
        )
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"delay must be a finite, non-negative duration, not {delay!r}")
    return seconds


class Resolver:
    """Resolves targets against the actors registered with one runtime."""

    __slots__ = ("_clock", "_entries", "_last_targets", "_raw_views", "_resolved")

    def __init__(self, entries: dict[str, ActorEntry], clock: Clock) -> None:
        self._entries = entries
        self._clock = clock
        self._raw_views: dict[Handler[Any, Any], Handler[Any, Any]] = {}
        #: Handlers resolved before, with their entry, registered handler and actor
        #: name (None for a service: its calls take no key). The registered actors
        #: never change while a runtime is open, nor does a handler's owner or name once
        #: its class exists, so a lookup that succeeded once succeeds again the same way
        #: (one dict read on every call instead of the checks). Failures are not kept:
        #: they raise anew.
        self._resolved: dict[
            Handler[Any, Any], tuple[ActorEntry, Handler[Any, Any], str | None]
        ] = {}
        #: The target of each keyed handler's last call, shared by the next call on the
        #: same key (a ``Target`` is immutable): one dict read instead of a frozen record
        #: built per call. One per handler: a cache of many keys cost each parked
        #: workflow its own entry.
        self._last_targets: dict[Handler[Any, Any], Target] = {}

    def resolve(
        self, target: Handler[Any, Any], key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        try:
            known, handler, keyed_actor = self._resolved[target]
        except (KeyError, TypeError):  # (TypeError: not hashable, so not a handler)
            pass
        else:
            if keyed_actor is None or key is None or not isinstance(key, str):
                return known, handler, self.target(known, handler, key)  # raises what is wrong
            if len(key) > _SHORT_KEY or not key.isascii():
                check_key(key)  # (its fast path is the condition above, without a call)
            last = self._last_targets.get(handler)
            if last is not None and last.key == key:
                return known, handler, last
            resolved = self._last_targets[handler] = Target(keyed_actor, handler.name, key)
            return known, handler, resolved
        if not isinstance(target, Handler):
            raise TypeError(f"call target must be a handler such as Counter.add, not {target!r}")
        owner = target.owner
        actor_name = owner.actor_name if owner is not None and issubclass(owner, Actor) else "?"
        entry = self._entries.get(actor_name)
        if entry is None or owner is None:
            raise UnknownHandlerError(f"actor {actor_name!r} is not registered with this runtime")
        if not issubclass(entry.cls, owner):
            raise UnknownHandlerError(
                f"{target.qualname} belongs to {owner.__qualname__}, but the actor named "
                f"{actor_name!r} in this runtime is {entry.cls.__qualname__}"
            )
        spec = entry.cls.handlers.get(target.name)
        if spec is None:
            raise UnknownHandlerError(f"actor {actor_name!r} has no handler {target.name!r}")
        resolved = self.target(entry, spec, key)
        if key is not None:
            # A request's key, checked before anything is stored (400 bad text, 413
            # too long). Not in ``target``: keys read back from storage need no check.
            check_key(key)
        keyed = None if entry.cls.actor_kind == "service" else entry.name
        self._resolved[target] = (entry, spec, keyed)
        return entry, spec, resolved

    def resolve_name(
        self, actor: str, handler: str, key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        """Resolve a target by names (HTTP ingress, CLI, recovery)."""
        entry, spec = self._named(actor, handler)
        return entry, spec, self.target(entry, spec, key)

    def resolve_generic(
        self, actor: object, handler: object, key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        """``resolve_name`` for ``generic_call``/``generic_send``: ``TypeError`` for names
        that are not str, or a key where none belongs (or missing), and the key checked
        like ``resolve``'s."""
        if not isinstance(actor, str) or not isinstance(handler, str):
            raise TypeError(
                f"a generic call names its actor and handler as str, not "
                f"{type(actor).__name__} and {type(handler).__name__}"
            )
        resolved = self.resolve_name(actor, handler, key)
        if key is not None:
            check_key(key)
        return resolved

    @staticmethod
    def check_raw_input(spec: Handler[Any, Any], payload: object) -> tuple[bytes, Any]:
        """The bytes to store and the value ``spec`` receives for a generic call's
        ``payload``, which must be what the callee's input decoder reads: ``TypeError``
        for a payload that is not bytes, or bytes for a handler without input (empty or
        ``null`` means none), ``SerializationError`` for bytes the decoder refuses. The
        bytes are kept as given (the callee's ``ctx.request().body``)."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"a generic call's input is bytes, not {type(payload).__name__}")
        data = bytes(payload)
        if len(data) > MAX_VALUE_BYTES:
            check_value_size(len(data), f"input of {spec.qualname}")
        if not spec.has_input:
            if data.strip() not in (b"", b"null"):
                raise TypeError(f"{spec.qualname} takes no input, but bytes were given")
            return b"null", NO_ARG
        what = f"input of {spec.qualname}"
        try:
            return data, decode_input(data, spec.input_type, what)
        except RecursionError:
            raise SerializationError(f"{what} is nested too deeply") from None

    def raw_view(self, spec: Handler[Any, Any]) -> Handler[Any, Any]:
        """``spec`` with its output read as the bytes it was stored as (``RAW_BYTES``):
        what a generic call answers. One per handler, made on first use."""
        view = self._raw_views.get(spec)
        if view is None:
            view = copy.copy(spec)
            view.output_type = RAW_BYTES
            self._raw_views[spec] = view
        return view

    def _named(self, actor: str, handler: str) -> tuple[ActorEntry, Handler[Any, Any]]:
        entry = self._entries.get(actor)
        if entry is None:
            raise UnknownHandlerError(f"actor {actor!r} is not registered with this runtime")
        spec = entry.cls.handlers.get(handler)
        if spec is None:
            raise UnknownHandlerError(f"actor {actor!r} has no handler {handler!r}")
        return entry, spec

    @staticmethod
    def target(entry: ActorEntry, spec: Handler[Any, Any], key: str | None) -> Target:
        if entry.cls.actor_kind == "service":
            if key is not None:
                raise TypeError(
                    f"{entry.name} is a service: its handlers take no key (got key={key!r})"
                )
            return Target(entry.name, spec.name, None)
        if key is None:
            what = "object" if entry.cls.actor_kind == "object" else "workflow"
            raise TypeError(f"{entry.name} is a keyed {what}: {entry.name}.{spec.name} needs key=")
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        return Target(entry.name, spec.name, key)

    def new_invocation(
        self,
        entry: ActorEntry,
        spec: Handler[Any, Any],
        target: Target,
        payload: bytes,
        value: Any,
        *,
        invocation_id: str | None = None,
        caller_id: str | None = None,
        caller_index: int | None = None,
        idempotency_key: str | None = None,
        holds_slot: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Invocation:
        """A new invocation accepted now (a fresh id unless a derived one is given)."""
        # Positional, and the optional fields set only when given: each keyword the
        # 50-field ``__init__`` matches costs more than the assignment it saves.
        inv = Invocation(
            invocation_id or new_invocation_id(),
            target,
            entry,
            spec,
            payload,
            value,
            self._clock.now(),
            spec.kind in HOLDS_KEY_KINDS,
            life=Lifecycle(holds_slot=holds_slot),
        )
        if caller_id is not None:
            inv.caller_id = caller_id
        if caller_index is not None:
            inv.caller_index = caller_index
        if idempotency_key is not None:
            inv.idempotency_key = idempotency_key
        if headers is not None:
            inv.headers = headers
        return inv

    @staticmethod
    def check_input(spec: Handler[Any, Any], arg: object) -> tuple[bytes, Any]:
        if not spec.has_input:
            if arg is not NO_ARG:
                raise TypeError(f"{spec.qualname} takes no input, but one was given")
            return b"null", NO_ARG
        if arg is NO_ARG:
            raise TypeError(
                f"{spec.qualname} takes an input of type {spec.input_type!r}; none was given"
            )
        try:
            payload, value = check_value(arg, spec.input_type, "")
        except SerializationError:  # again, named in its message (not formatted per call)
            payload, value = check_value(arg, spec.input_type, f"input of {spec.qualname}")
        if len(payload) > MAX_VALUE_BYTES:
            check_value_size(len(payload), f"input of {spec.qualname}")
        return payload, value

    def resolve_in_handler(
        self, target: Handler[Any, Any], key: str | None
    ) -> tuple[ActorEntry, Handler[Any, Any], Target]:
        # Inside a handler a malformed call is deterministic: fail it, do not retry it.
        try:
            return self.resolve(target, key)
        except TypeError as exc:
            raise TerminalError(str(exc), 400) from exc

    def check_input_in_handler(self, spec: Handler[Any, Any], arg: object) -> tuple[bytes, Any]:
        try:
            return self.check_input(spec, arg)
        except TypeError as exc:
            raise TerminalError(str(exc), 400) from exc

    def spec_of(self, record: InvocationRecord) -> Handler[Any, Any]:
        """The handler of a stored invocation. Its key is not checked: it was checked at
        acceptance, and a record damaged in a way that still decodes must still answer."""
        return self._named(record.target.actor, record.target.handler)[1]
