"""Every public name of Restate's SDK (the installed ``restate-sdk``, the dev extra)
exists in ``actors.restate`` with the same signature, or is listed in README's
"Already on Restate?" with the reason it cannot exist embedded.

Compared: the names of ``restate.__all__``; the classes and functions that
``restate.context``, ``restate.exceptions`` and ``restate.serde`` define; for every
class, each public method (parameter names, kinds, defaults, and whether it is a
coroutine function) and the constructor of the classes users construct; dataclass
fields. Annotations are not compared (they name each package's own classes).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

import actors.restate as ours

if typing.TYPE_CHECKING:
    import types

real = pytest.importorskip("restate")  # the real SDK: the dev extra installs it

README = Path(__file__).resolve().parents[2] / "README.md"

#: Names of the real modules that actors.restate does not provide, each listed (with its
#: reason) in README's "Already on Restate?".
NOT_PROVIDED = {
    "restate.serde.DaciteFromDict",
    "restate.serde.DaciteToDict",
    "restate.serde.Msgspec",
    "restate.serde.MsgspecJsonAPI",
    "restate.serde.try_import_from_dacite",
    "restate.serde.try_import_msgspec_api",
    "restate.serde.try_import_pydantic_base_model",
}

#: Classes whose constructor user code calls (the others are made by the runtime).
CONSTRUCTED = {
    "Service",
    "VirtualObject",
    "Workflow",
    "RunOptions",
    "TerminalError",
    "RetryableError",
    "InvocationRetryPolicy",
    "DurablePromise",
    "BytesSerde",
    "JsonSerde",
    "DefaultSerde",
    "PydanticJsonSerde",
    "MsgspecJsonSerde",
    "RestateClientSendHandle",
    "HttpError",
    "HarnessEnvironment",
    "Request",
    "SdkInternalBaseException",
    "SuspendedException",
    "SdkInternalException",
    "RestateLoggingFilter",
}


def defined_names(module: types.ModuleType) -> list[str]:
    """The public classes and functions ``module`` itself defines."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, typing.TypeVar | typing.ParamSpec)
        and getattr(value, "__module__", None) == module.__name__
        and (inspect.isclass(value) or inspect.isfunction(value))
    )


def shape(fn: Any) -> list[tuple[str, Any, str]]:
    def default(value: Any) -> str:
        if value is inspect.Parameter.empty:
            return "<required>"
        if isinstance(value, real.serde.DefaultSerde | ours.serde.DefaultSerde):
            return "DefaultSerde()"
        if isinstance(value, real.RunOptions | ours.RunOptions):
            return "RunOptions()"
        return repr(value)

    signature = inspect.signature(fn)
    return [(p.name, p.kind, default(p.default)) for p in signature.parameters.values()]


def is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)


def compare(theirs: Any, mine: Any, where: str) -> list[str]:
    """What differs between the real object ``theirs`` and ``mine``."""
    problems: list[str] = []
    if inspect.isclass(theirs):
        if not inspect.isclass(mine):
            return [f"{where}: a class in restate, not here"]
        if dataclasses.is_dataclass(theirs):
            names = [f.name for f in dataclasses.fields(theirs)]
            if (
                not dataclasses.is_dataclass(mine)
                or [f.name for f in dataclasses.fields(mine)] != names
            ):
                problems.append(f"{where}: dataclass fields differ from {names}")
        elif theirs.__name__ in CONSTRUCTED and shape(theirs.__init__) != shape(mine.__init__):
            problems.append(f"{where}.__init__{inspect.signature(theirs.__init__)} differs")
        for name, member in inspect.getmembers(theirs):
            if name.startswith("_") or not callable(member):
                continue
            if inspect.isbuiltin(member) or inspect.ismethoddescriptor(member):
                continue  # inherited from a builtin base (BaseException.add_note...)
            if not hasattr(mine, name):
                problems.append(f"{where}.{name} is missing")
                continue
            other = getattr(mine, name)
            if shape(member) != shape(other):
                problems.append(
                    f"{where}.{name}: {inspect.signature(member)} != {inspect.signature(other)}"
                )
            if is_async(member) != is_async(other):
                problems.append(f"{where}.{name}: async in one and not the other")
        return problems
    if typing.get_origin(theirs) is not None:  # a type alias (JournalValueCodecProvider)
        if typing.get_origin(mine) is not typing.get_origin(theirs):
            problems.append(f"{where}: not the same kind of type alias")
        return problems
    if callable(theirs):
        if shape(theirs) != shape(mine):
            problems.append(f"{where}: {inspect.signature(theirs)} != {inspect.signature(mine)}")
        if is_async(theirs) != is_async(mine) and not _both_context_managers(theirs, mine):
            problems.append(f"{where}: async in one and not the other")
    return problems


def _both_context_managers(a: Any, b: Any) -> bool:
    return hasattr(a, "__wrapped__") and hasattr(b, "__wrapped__")


def test_every_name_of_restate_all_exists_here() -> None:
    missing = [name for name in real.__all__ if not hasattr(ours, name)]
    assert missing == []
    assert set(real.__all__) <= set(ours.__all__)


@pytest.mark.parametrize("name", sorted(real.__all__))
def test_same_signature_as_restate(name: str) -> None:
    theirs, mine = getattr(real, name), getattr(ours, name)
    if inspect.ismodule(theirs):  # restate.logging
        assert inspect.ismodule(mine)
        assert defined_names(theirs) == defined_names(mine)
        for member in defined_names(theirs):
            assert compare(getattr(theirs, member), getattr(mine, member), member) == []
        return
    assert compare(theirs, mine, name) == []


@pytest.mark.parametrize("module", ["context", "exceptions", "serde"])
def test_submodule_names_and_signatures(module: str) -> None:
    theirs = getattr(real, module)
    mine = getattr(ours, module)
    problems = []
    for name in defined_names(theirs):
        if f"restate.{module}.{name}" in NOT_PROVIDED:
            assert not hasattr(mine, name), f"{name} is provided now: drop it from NOT_PROVIDED"
            continue
        if not hasattr(mine, name):
            problems.append(f"restate.{module}.{name} is missing")
            continue
        problems += compare(getattr(theirs, name), getattr(mine, name), f"{module}.{name}")
    assert problems == []


def test_what_is_not_provided_is_in_the_readme() -> None:
    section = README.read_text().split("## Already on Restate?", 1)[1].split("\n## ", 1)[0]
    prose = re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    named = {
        word for code in re.findall(r"`([^`\n]+)`", prose) for word in re.findall(r"\w+", code)
    }
    for dotted in NOT_PROVIDED:
        assert dotted.rsplit(".", 1)[1] in named, dotted
    for name in ("connect", "with_connection", "JournalValueCodec", "scope", "ScopedContext"):
        assert name in named, name


def test_the_comparison_sees_differences() -> None:
    # The checker itself: a changed default, a renamed parameter, a missing method.
    def a(x: int, y: int = 1) -> None: ...
    def b(x: int, y: int = 2) -> None: ...
    def c(x: int, z: int = 1) -> None: ...

    assert compare(a, b, "f")
    assert compare(a, c, "f")
    assert compare(real.Service, type("Service", (), {}), "Service")
    assert compare(real.Context, ours.Context, "Context") == []
