"""Declaring actors: base classes, handler decorators, names, and the TypeErrors that
malformed definitions raise (at class definition, or at registration with a runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import actors

if TYPE_CHECKING:
    from fractions import Fraction  # only for type checkers: unresolvable at runtime
    from pathlib import Path


# --- well-formed definitions ----------------------------------------------------------------


class Counter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0

    @actors.handler
    async def reset(self, ctx: actors.ObjectContext) -> bool:
        ctx.clear("n")
        return True


class Named(actors.VirtualObject, name="named-object"):
    @actors.exclusive(name="incr")
    async def increment(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta

    @actors.shared(name="peek")
    async def peek_value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"

    @actors.handler(name="shout")
    async def greet_loudly(self, ctx: actors.Context, name: str) -> str:
        return f"HELLO {name.upper()}"


class Signup(actors.Workflow, name="signupWorkflow"):
    @actors.main
    async def run(self, ctx: actors.ObjectContext, user: str) -> bool:
        return True

    @actors.shared(name="getStage")
    async def get_stage(self, ctx: actors.ObjectSharedContext) -> str:
        return "unknown"

    @actors.handler
    async def status(self, ctx: actors.ObjectSharedContext) -> str:
        return "status"


class EarlyForwardRef(actors.VirtualObject):
    # `LaterPayload` is defined below this class: resolved when the class is registered.
    @actors.exclusive
    async def echo(self, ctx: actors.ObjectContext, payload: LaterPayload) -> LaterPayload:
        return payload


class LaterPayload:
    pass


def test_Handler_attributes_of_bare_decorators() -> None:
    assert isinstance(Counter.add, actors.Handler)
    assert Counter.add.name == "add"
    assert Counter.add.kind == "exclusive"
    assert Counter.add.owner is Counter
    assert Counter.add.has_input
    assert Counter.add.input_type is int
    assert Counter.add.output_type is int
    assert Counter.value.kind == "shared"
    assert not Counter.value.has_input
    assert Counter.reset.kind == "exclusive"  # @handler on a VirtualObject means exclusive
    assert Greeter.greet.kind == "service"
    assert Signup.run.kind == "main"
    assert Signup.status.kind == "shared"  # @handler on a Workflow means shared


def test_Handler_name_from_keyword() -> None:
    assert Named.increment.name == "incr"
    assert Named.peek_value.name == "peek"
    assert Greeter.greet_loudly.name == "shout"
    assert Signup.get_stage.name == "getStage"
    assert set(Named.handlers) == {"incr", "peek"}
    assert set(Greeter.handlers) == {"greet", "shout"}
    assert set(Signup.handlers) == {"run", "getStage", "status"}


def test_actor_name_from_class_or_keyword() -> None:
    assert Counter.actor_name == "Counter"
    assert Greeter.actor_name == "Greeter"
    assert Named.actor_name == "named-object"
    assert Signup.actor_name == "signupWorkflow"
    assert Counter.add.qualname == "Counter.add"
    assert Named.increment.qualname == "named-object.incr"


def test_actor_kind_from_base_class() -> None:
    assert Counter.actor_kind == "object"
    assert Greeter.actor_kind == "service"
    assert Signup.actor_kind == "workflow"


async def test_handlers_run_by_their_declared_names(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [Named, Greeter]) as rt:
        assert await rt.call(Named.increment, 2, key="k") == 2
        assert await rt.call(Named.increment, 3, key="k") == 5
        assert await rt.call(Named.peek_value, key="k") == 5
        assert await rt.call(Greeter.greet, "ann") == "hello ann"
        assert await rt.call(Greeter.greet_loudly, "ann") == "HELLO ANN"


async def test_forward_reference_resolves_at_registration(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [EarlyForwardRef]):
        pass
    assert EarlyForwardRef.echo.input_type is LaterPayload
    assert EarlyForwardRef.echo.output_type is LaterPayload


# --- malformed definitions: TypeError at class definition --------------------------------


def test_shared_handler_on_service_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^BadService\.peek is declared @shared, but a Service"):

        class BadService(actors.Service):
            @actors.shared
            async def peek(self, ctx: actors.Context) -> int:
                return 0


def test_exclusive_handler_on_service_is_rejected() -> None:
    with pytest.raises(
        TypeError,
        match=r"^BadService\.write is declared @exclusive, but a Service is stateless",
    ):

        class BadService(actors.Service):
            @actors.exclusive
            async def write(self, ctx: actors.Context) -> int:
                return 0


def test_main_handler_on_virtual_object_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^BadObject\.run is declared @main, but a VirtualObject"):

        class BadObject(actors.VirtualObject):
            @actors.main
            async def run(self, ctx: actors.ObjectContext) -> int:
                return 0


def test_two_inputs_are_rejected() -> None:
    with pytest.raises(TypeError, match=r"takes at most one input, but declares a, b$"):

        class TwoInputs(actors.VirtualObject):
            @actors.exclusive
            async def add(self, ctx: actors.ObjectContext, a: int, b: int) -> int:
                return a + b


def test_keyword_only_input_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"'delta' is not a plain positional parameter$"):

        class KeywordInput(actors.VirtualObject):
            @actors.exclusive
            async def add(self, ctx: actors.ObjectContext, *, delta: int) -> int:
                return delta


def test_missing_context_parameter_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"must take self and a context"):

        class NoContext(actors.VirtualObject):
            @actors.exclusive
            async def add(self) -> int:
                return 0


def test_missing_input_annotation_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"input 'delta' has no type annotation$"):

        class Unannotated(actors.VirtualObject):
            @actors.exclusive
            async def add(self, ctx: actors.ObjectContext, delta) -> int:  # type: ignore[no-untyped-def]
                return 0


def test_missing_return_annotation_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"has no return type annotation \(use '-> None'\)$"):

        class NoReturn(actors.VirtualObject):
            @actors.exclusive
            async def add(self, ctx: actors.ObjectContext, delta: int):  # type: ignore[no-untyped-def]
                return delta


def test_duplicate_handler_name_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^Twice declares two handlers named 'add'$"):

        class Twice(actors.VirtualObject):
            @actors.exclusive(name="add")
            async def add_one(self, ctx: actors.ObjectContext) -> int:
                return 1

            @actors.exclusive(name="add")
            async def add_two(self, ctx: actors.ObjectContext) -> int:
                return 2


def test_non_async_handler_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"must be declared with 'async def'$"):

        class Sync(actors.VirtualObject):
            @actors.exclusive  # type: ignore[arg-type]
            def add(self, ctx: actors.ObjectContext, delta: int) -> int:
                return delta


def test_workflow_without_main_is_rejected() -> None:
    with pytest.raises(
        TypeError,
        match=r"^workflow NoMain must have exactly one @actors.main handler \(found none\)$",
    ):

        class NoMain(actors.Workflow):
            @actors.shared
            async def peek(self, ctx: actors.ObjectSharedContext) -> int:
                return 0


def test_workflow_with_two_mains_is_rejected() -> None:
    with pytest.raises(
        TypeError,
        match=r"^workflow TwoMains must have exactly one @actors.main handler \(found one, two\)$",
    ):

        class TwoMains(actors.Workflow):
            @actors.main
            async def one(self, ctx: actors.ObjectContext) -> int:
                return 1

            @actors.main
            async def two(self, ctx: actors.ObjectContext) -> int:
                return 2


@pytest.mark.parametrize("bad_name", ["", "a/b"])
def test_bad_actor_name_is_rejected(bad_name: str) -> None:
    with pytest.raises(TypeError, match=r"must be non-empty, without '/'$"):

        class BadName(actors.VirtualObject, name=bad_name):
            @actors.exclusive
            async def add(self, ctx: actors.ObjectContext) -> int:
                return 0


def test_bad_handler_name_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^handler name 'a/b' of .* must be non-empty"):

        class BadHandlerName(actors.VirtualObject):
            @actors.exclusive(name="a/b")
            async def add(self, ctx: actors.ObjectContext) -> int:
                return 0


# --- malformed definitions: TypeError at registration -------------------------------------


class UsesTypeCheckingOnlyType(actors.VirtualObject):
    # `Fraction` is imported only under TYPE_CHECKING: the annotation cannot be resolved.
    @actors.exclusive
    async def half(self, ctx: actors.ObjectContext, value: Fraction) -> Fraction:
        return value / 2


async def test_unresolvable_forward_reference_fails_at_open_runtime(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError,
        match=r"^handler UsesTypeCheckingOnlyType\.half: cannot resolve its type annotations "
        r"\(name 'Fraction' is not defined\)",
    ):
        async with actors.open_runtime(tmp_path / "db", [UsesTypeCheckingOnlyType]):
            pytest.fail("the runtime must not open")  # pragma: no cover
    assert not (tmp_path / "db").exists()


async def test_same_actor_registered_twice_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^actor names registered twice: Counter$"):
        async with actors.open_runtime(tmp_path / "db", [Counter, Counter()]):
            pytest.fail("the runtime must not open")  # pragma: no cover


async def test_two_classes_with_one_actor_name_are_rejected(tmp_path: Path) -> None:
    class Impostor(actors.VirtualObject, name="Counter"):
        @actors.exclusive
        async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
            return delta

    with pytest.raises(TypeError, match=r"^actor names registered twice: Counter$"):
        async with actors.open_runtime(tmp_path / "db", [Counter, Impostor]):
            pytest.fail("the runtime must not open")  # pragma: no cover


class NotAnActor:
    pass


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (NotAnActor, r"^NotAnActor is not an actor class \(subclass actors.VirtualObject"),
        (NotAnActor(), r"^<.*NotAnActor object at .*> is not an actor class or instance$"),
        (int, r"^int is not an actor class"),
        (actors.VirtualObject, r"^VirtualObject is a base class; register a subclass of it$"),
        (actors.Service, r"^Service is a base class; register a subclass of it$"),
    ],
)
async def test_registering_a_non_actor_is_rejected(tmp_path: Path, item: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        async with actors.open_runtime(tmp_path / "db", [item]):
            pytest.fail("the runtime must not open")  # pragma: no cover


async def test_class_needing_dependencies_must_be_registered_as_instance(tmp_path: Path) -> None:
    class NeedsGate(actors.VirtualObject):
        def __init__(self, gate: anyio.Event) -> None:
            self.gate = gate

        @actors.exclusive
        async def wait(self, ctx: actors.ObjectContext) -> bool:
            await self.gate.wait()
            return True

    with pytest.raises(TypeError, match=r"^cannot create NeedsGate\(\) for registration"):
        async with actors.open_runtime(tmp_path / "db", [NeedsGate]):
            pytest.fail("the runtime must not open")  # pragma: no cover
    gate = anyio.Event()
    gate.set()
    async with actors.open_runtime(tmp_path / "db", [NeedsGate(gate)]) as rt:
        assert await rt.call(NeedsGate.wait, key="k")


# --- inheritance ---------------------------------------------------------------------------


class BaseCounter(actors.VirtualObject):
    @actors.exclusive
    async def add(self, ctx: actors.ObjectContext, delta: int) -> int:
        n = (await ctx.get("n", int)) or 0
        ctx.set("n", n + delta)
        return n + delta


class DerivedCounter(BaseCounter):
    @actors.shared
    async def value(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("n", int)) or 0


def test_subclass_inherits_handlers() -> None:
    assert DerivedCounter.actor_name == "DerivedCounter"
    assert set(DerivedCounter.handlers) == {"add", "value"}


async def test_inherited_handler_runs_on_the_subclass(tmp_path: Path) -> None:
    async with actors.open_runtime(tmp_path / "db", [DerivedCounter]) as rt:
        assert await rt.call(DerivedCounter.add, 2, key="k") == 2
        assert await rt.call(DerivedCounter.value, key="k") == 2
