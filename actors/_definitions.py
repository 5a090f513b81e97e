"""Actor classes and handler decorators: how users declare what the runtime runs.

A handler is an ``async def`` method taking ``self``, a context and at most one input,
with annotated input and return types. The decorators (``exclusive``, ``shared``,
``handler``, ``main``) replace it with a ``Handler`` object: ``Counter.add`` is the
reference users pass to ``call``/``send``, and it keeps the function in ``fn``.

Validation happens as early as it can: the signature when the decorator runs, the
class-level rules (which kinds an actor may have, duplicate names, a workflow's single
``main``) when the class statement finishes, and annotations that name types not yet
defined (forward references) when the class is registered with a runtime. Every problem
is a ``TypeError`` that names the actor and handler.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, overload

import attrs

from ._handler_options import NO_OPTIONS, HandlerOptions, handler_options
from ._types import payload_type

if TYPE_CHECKING:
    from ._handler_options import Duration
    from ._retry import RetryPolicy

InT = TypeVar("InT")
OutT = TypeVar("OutT")
InT_contra = TypeVar("InT_contra", contravariant=True)
OutT_co = TypeVar("OutT_co", covariant=True)
CtxT = TypeVar("CtxT", contravariant=True)

#: How a handler was declared. ``handler`` becomes ``exclusive`` on a VirtualObject and
#: ``shared`` on a Workflow; on a Service it is a plain concurrent handler.
DeclaredKind = Literal["exclusive", "shared", "handler", "main"]
HandlerKind = Literal["exclusive", "shared", "service", "main"]
ActorKind = Literal["object", "service", "workflow"]

_NO_INPUT: Any = inspect.Parameter.empty


class Handler(Generic[InT_contra, OutT_co]):
    """A declared handler. ``Counter.add`` is this object; pass it to ``rt.call`` or
    ``ctx.call``. Created by the decorators only. The runtime calls the wrapped function
    itself (``fn``) with the actor instance, a context and the input."""

    __slots__ = (
        "_annotations_resolved",
        "_input_param",
        "_qualname",
        "declared_kind",
        "fn",
        "has_input",
        "inactivity_timeout",
        "ingress_private",
        "input_type",
        "kind",
        "name",
        "options",
        "output_type",
        "owner",
        "retention",
        "retry",
    )

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        declared_kind: DeclaredKind,
        name: str | None,
        retry: RetryPolicy | None,
        options: HandlerOptions = NO_OPTIONS,
    ) -> None:
        where = getattr(fn, "__qualname__", repr(fn))
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {where} must be declared with 'async def'")
        params = list(inspect.signature(fn).parameters.values())
        for param in params:
            if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                raise TypeError(
                    f"handler {where} takes self, a context and at most one input; "
                    f"'{param.name}' is not a plain positional parameter"
                )
        if len(params) < 2:
            raise TypeError(
                f"handler {where} must take self and a context (and optionally one input)"
            )
        if len(params) > 3:
            extra = ", ".join(p.name for p in params[2:])
            raise TypeError(f"handler {where} takes at most one input, but declares {extra}")
        self.fn = fn
        self.declared_kind: DeclaredKind = declared_kind
        self.name = name if name is not None else fn.__name__
        if not self.name or "/" in self.name:
            raise TypeError(f"handler name {self.name!r} of {where} must be non-empty, without '/'")
        self.retry = retry
        #: The options given on the decorator; the three below are what applies, the
        #: actor's class keywords filled in when the class statement finishes
        #: (``_handler_options``). None: the runtime's ``retention`` / ``suspend_after``.
        self.options = options
        self.retention: float | None = options.retention
        self.inactivity_timeout: float | None = options.inactivity_timeout
        self.ingress_private: bool = bool(options.ingress_private)
        #: Whether the handler takes an input argument. (A plain attribute, not a
        #: property: read twice on every call.)
        self.has_input: bool = len(params) == 3
        self._input_param = params[2] if self.has_input else None
        if self._input_param is not None and self._input_param.annotation is _NO_INPUT:
            raise TypeError(
                f"handler {where}: input '{self._input_param.name}' has no type annotation"
            )
        if inspect.signature(fn).return_annotation is inspect.Signature.empty:
            raise TypeError(f"handler {where} has no return type annotation (use '-> None')")
        self.kind: HandlerKind | None = None  # set when the owning class is checked
        self.owner: type[Actor] | None = None
        self._qualname: str | None = None
        self.input_type: Any = None
        self.output_type: Any = None
        self._annotations_resolved = False

    def __set_name__(self, owner: type, attr: str) -> None:
        if self.owner is None:
            self.owner = owner

    def copy_for(self, owner: type[Actor]) -> Handler[InT_contra, OutT_co]:
        """This handler, as inherited by ``owner``."""
        clone: Handler[InT_contra, OutT_co] = Handler(
            self.fn, self.declared_kind, self.name, self.retry, self.options
        )
        clone.owner = owner
        return clone

    def resolve_annotations(self, localns: dict[str, Any] | None = None) -> None:
        """Evaluate the input and output annotations (forward references included)."""
        if self._annotations_resolved:
            return
        where = self.qualname
        try:
            hints = typing.get_type_hints(self.fn, localns=localns)
        except NameError as exc:
            raise TypeError(
                f"handler {where}: cannot resolve its type annotations ({exc}); define the "
                "types before registering the actor"
            ) from exc
        # ``bytes`` becomes the raw-payload annotation (``_types.RAW_BYTES``): no JSON.
        if self._input_param is not None:
            self.input_type = payload_type(hints[self._input_param.name])
        output_type = hints.get("return", type(None))
        self.output_type = type(None) if output_type is None else payload_type(output_type)
        self._annotations_resolved = True

    @property
    def qualname(self) -> str:
        """``Actor.handler`` for messages (kept once the actor has its name: every call
        formats it into the messages its input and output checks may raise)."""
        if self._qualname is not None:
            return self._qualname
        if self.owner is None or not hasattr(self.owner, "actor_name"):
            return f"?.{self.name}"
        self._qualname = f"{self.owner.actor_name}.{self.name}"
        return self._qualname

    def apply_actor_options(self, actor: HandlerOptions) -> None:
        """Fill in what the decorator left unset from the actor's class keywords."""
        effective = self.options.over(actor)
        self.retention = effective.retention
        self.inactivity_timeout = effective.inactivity_timeout
        self.ingress_private = bool(effective.ingress_private)

    def __repr__(self) -> str:
        return f"<handler {self.qualname} ({self.kind or self.declared_kind})>"


# --- decorators ------------------------------------------------------------------------

_HandlerFn = Callable[..., Awaitable[OutT]]


class _Decorator(typing.Protocol):
    def __call__(self, fn: Callable[..., Awaitable[OutT]], /) -> Handler[Any, OutT]: ...


def _decorator(kind: DeclaredKind) -> Callable[..., Any]:
    def decorate(
        fn: Callable[..., Awaitable[Any]] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        retention: Duration | None = None,
        inactivity_timeout: Duration | None = None,
        ingress_private: bool | None = None,
    ) -> Any:
        def apply(f: Callable[..., Awaitable[Any]]) -> Handler[Any, Any]:
            where = f"handler {getattr(f, '__qualname__', repr(f))}"
            options = handler_options(
                where,
                retention=retention,
                inactivity_timeout=inactivity_timeout,
                ingress_private=ingress_private,
            )
            return Handler(f, kind, name, retry, options)

        return apply(fn) if fn is not None else apply

    return decorate


_OPTIONS_DOC = """

    Keywords (all optional): ``name=`` (the public handler name), ``retry=`` (its
    ``RetryPolicy``), ``retention=`` (how long a finished invocation's result, journal,
    idempotency key and, for ``main``, the workflow's run-once record and state are
    kept; overrides ``open_runtime(retention=)``), ``inactivity_timeout=`` (how long it
    may block in a durable wait before it is suspended; overrides
    ``open_runtime(suspend_after=)``) and ``ingress_private=True`` (the HTTP ingress
    answers 404 for it, as for a handler that does not exist; actors and the embedded
    ``rt`` still call it). Durations are a ``timedelta`` or seconds. Raises
    ``TypeError`` or ``ValueError`` for a bad value, when the decorator runs."""


@overload
def exclusive(fn: Callable[..., Awaitable[OutT]], /) -> Handler[Any, OutT]: ...
@overload
def exclusive(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> _Decorator: ...
def exclusive(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> Any:
    """Declare an exclusive handler of a ``VirtualObject``: per key, exclusive handlers
    run one at a time, in the order their invocations were accepted, and may write state.
    Use bare or with keywords."""
    return _decorator("exclusive")(
        fn,
        name=name,
        retry=retry,
        retention=retention,
        inactivity_timeout=inactivity_timeout,
        ingress_private=ingress_private,
    )


@overload
def shared(fn: Callable[..., Awaitable[OutT]], /) -> Handler[Any, OutT]: ...
@overload
def shared(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> _Decorator: ...
def shared(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> Any:
    """Declare a shared handler of a ``VirtualObject`` or ``Workflow``: it starts at once,
    runs concurrently with every other handler of the key (the exclusive one included),
    never waits for them, and reads only committed state. It cannot write state."""
    return _decorator("shared")(
        fn,
        name=name,
        retry=retry,
        retention=retention,
        inactivity_timeout=inactivity_timeout,
        ingress_private=ingress_private,
    )


@overload
def handler(fn: Callable[..., Awaitable[OutT]], /) -> Handler[Any, OutT]: ...
@overload
def handler(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> _Decorator: ...
def handler(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> Any:
    """Declare a handler: on a ``Service`` a stateless, fully concurrent handler; on a
    ``VirtualObject`` the same as ``exclusive``; on a ``Workflow`` the same as ``shared``."""
    return _decorator("handler")(
        fn,
        name=name,
        retry=retry,
        retention=retention,
        inactivity_timeout=inactivity_timeout,
        ingress_private=ingress_private,
    )


@overload
def main(fn: Callable[..., Awaitable[OutT]], /) -> Handler[Any, OutT]: ...
@overload
def main(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> _Decorator: ...
def main(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    retention: Duration | None = None,
    inactivity_timeout: Duration | None = None,
    ingress_private: bool | None = None,
) -> Any:
    """Declare the one ``main`` handler of a ``Workflow``: it runs at most once per
    workflow id within its retention (``retention=`` here is Restate's
    ``workflow_retention``)."""
    return _decorator("main")(
        fn,
        name=name,
        retry=retry,
        retention=retention,
        inactivity_timeout=inactivity_timeout,
        ingress_private=ingress_private,
    )


for _fn in (exclusive, shared, handler, main):
    _fn.__doc__ = (_fn.__doc__ or "") + _OPTIONS_DOC
del _fn


# --- actor base classes ------------------------------------------------------------------

_ALLOWED: dict[ActorKind, dict[DeclaredKind, HandlerKind]] = {
    "object": {"exclusive": "exclusive", "handler": "exclusive", "shared": "shared"},
    "service": {"handler": "service"},
    "workflow": {"main": "main", "shared": "shared", "handler": "shared"},
}

_KIND_ADVICE: dict[ActorKind, str] = {
    "object": "a VirtualObject has @exclusive and @shared handlers (@handler means exclusive)",
    "service": "a Service is stateless and fully concurrent: use @actors.handler",
    "workflow": "a Workflow has one @main handler and @shared handlers",
}


class Actor:
    """Common base of ``VirtualObject``, ``Service`` and ``Workflow``. Not used directly.

    Subclasses take the class keywords ``name=`` (the actor name; the class name by
    default) and ``retention=``, ``inactivity_timeout=``, ``ingress_private=``: the
    defaults of every handler of the class, which a decorator's own value overrides
    (see the decorators). Those three are inherited by subclasses unless they give
    their own; a bad value raises ``TypeError`` or ``ValueError`` in the class
    statement."""

    actor_name: ClassVar[str]
    actor_kind: ClassVar[ActorKind]
    handlers: ClassVar[dict[str, Handler[Any, Any]]]
    _localns: ClassVar[dict[str, Any]]
    #: The class keywords ``retention=``, ``inactivity_timeout=``, ``ingress_private=``
    #: (inherited unless a subclass gives its own): defaults for every handler.
    actor_options: ClassVar[HandlerOptions] = NO_OPTIONS

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        retention: Duration | None = None,
        inactivity_timeout: Duration | None = None,
        ingress_private: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if "actor_kind" in cls.__dict__:
            return  # one of the three bases below
        cls.actor_name = name if name is not None else cls.__name__
        if not cls.actor_name or "/" in cls.actor_name:
            raise TypeError(f"actor name {cls.actor_name!r} must be non-empty, without '/'")
        cls.actor_options = handler_options(
            f"actor {cls.actor_name}",
            retention=retention,
            inactivity_timeout=inactivity_timeout,
            ingress_private=ingress_private,
        ).over(cls.actor_options)  # the base class's, inherited
        # The scope running the class statement: lets annotations name local classes.
        frame = sys._getframe(1)
        cls._localns = {**frame.f_locals, cls.__name__: cls}
        handlers: dict[str, Handler[Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Handler):
                    handlers[attr] = value
        for attr, value in list(handlers.items()):
            if value.owner is not cls:
                # An inherited handler: give this class its own copy, so that
                # ``Derived.add`` addresses Derived's state, not its base class's.
                own = value.copy_for(cls)
                setattr(cls, attr, own)
                handlers[attr] = own
        by_name: dict[str, Handler[Any, Any]] = {}
        for h in handlers.values():
            allowed = _ALLOWED[cls.actor_kind]
            if h.declared_kind not in allowed:
                raise TypeError(
                    f"{cls.actor_name}.{h.name} is declared @{h.declared_kind}, but "
                    f"{_KIND_ADVICE[cls.actor_kind]}"
                )
            if h.name in by_name:
                raise TypeError(f"{cls.actor_name} declares two handlers named {h.name!r}")
            if h.kind is None:
                h.kind = allowed[h.declared_kind]
            h.apply_actor_options(cls.actor_options)
            by_name[h.name] = h
        if cls.actor_kind == "workflow":
            mains = [h.name for h in by_name.values() if h.kind == "main"]
            if len(mains) != 1:
                found = ", ".join(mains) if mains else "none"
                raise TypeError(
                    f"workflow {cls.actor_name} must have exactly one @actors.main handler "
                    f"(found {found})"
                )
        cls.handlers = by_name
        for h in by_name.values():
            try:
                h.resolve_annotations(cls._localns)
            except TypeError:
                pass  # a forward reference; retried when the class is registered

    @classmethod
    def check_registration(cls) -> None:
        """Resolve every annotation; raises ``TypeError`` for one that names an unknown
        type. Called by ``open_runtime``."""
        if "actor_kind" in cls.__dict__:
            raise TypeError(f"{cls.__name__} is a base class; register a subclass of it")
        for h in cls.handlers.values():
            h.resolve_annotations(cls._localns)


class VirtualObject(Actor):
    """Base class of keyed virtual objects. Each key has its own state and mailbox:
    exclusive handlers run one at a time per key in acceptance order; shared handlers
    run concurrently and read committed state. Subclass with ``name=`` to override the
    actor name: ``class Counter(actors.VirtualObject, name="counter")``."""

    actor_kind: ClassVar[ActorKind] = "object"


class Service(Actor):
    """Base class of stateless services: handlers run concurrently, with no key."""

    actor_kind: ClassVar[ActorKind] = "service"


class Workflow(Actor):
    """Base class of workflows: one ``@main`` handler that runs once per workflow id,
    and ``@shared`` handlers to query and signal it."""

    actor_kind: ClassVar[ActorKind] = "workflow"


@attrs.frozen
class ActorEntry:
    """A registered actor: its class and the one instance serving all keys."""

    cls: type[Actor]
    instance: Actor

    @property
    def name(self) -> str:
        return self.cls.actor_name


class ActorProvider(typing.Protocol):
    """Something that stands for actors in ``open_runtime``'s list (or as the whole
    list): it answers the actor classes or instances it provides. The registration hook
    of layers built on ``actors`` (``actors.restate``'s services and app), which this
    module never imports."""

    def __actors__(self) -> Sequence[type[Actor] | Actor]: ...


def expand_registrations(items: object) -> list[type[Actor] | Actor]:
    """``open_runtime``'s ``actors`` argument as a flat list: an ``ActorProvider`` (the
    whole argument, or an item of the list) is replaced by what it provides. Anything
    else is kept, for ``registration_entry`` to check."""
    if hasattr(items, "__actors__") and not isinstance(items, type):
        items = [items]
    if not isinstance(items, list | tuple):
        raise TypeError(
            "actors must be a list of actor classes or instances (or what restate.app() "
            f"returns), not {type(items).__name__}"
        )
    flat: list[type[Actor] | Actor] = []
    for item in items:
        provide = getattr(item, "__actors__", None)
        if provide is not None and not isinstance(item, type):
            flat.extend(provide())
        else:
            flat.append(item)
    return flat


def registration_entry(item: type[Actor] | Actor) -> ActorEntry:
    """Turn an item of ``open_runtime``'s actor list into an entry, checking it."""
    if isinstance(item, type):
        if not issubclass(item, Actor):
            raise TypeError(
                f"{item.__name__} is not an actor class (subclass actors.VirtualObject, Service or Workflow)"
            )
        cls = item
        item.check_registration()
        try:
            instance = cls()
        except TypeError as exc:
            raise TypeError(
                f"cannot create {cls.__name__}() for registration ({exc}); pass an instance "
                f"instead, e.g. {cls.__name__}(dependency=...)"
            ) from exc
        return ActorEntry(cls, instance)
    if isinstance(item, Actor):
        type(item).check_registration()
        return ActorEntry(type(item), item)
    raise TypeError(f"{item!r} is not an actor class or instance")
