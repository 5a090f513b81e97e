"""``__all__`` is the API: sorted, complete, and no lower-layer name leaks into ``actors``.

"Sorted" is plain string order, ``sorted(__all__) == __all__`` (ruff's RUF022 isort-style
order, which puts constants first, is switched off in pyproject.toml).
"""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

import actors
import actors.mailbox
import actors.storage

MODULES = ["actors", "actors.storage", "actors.mailbox"]


def public_definitions(module: types.ModuleType) -> set[str]:
    """Public classes and functions in the module namespace (no submodules)."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and (inspect.isclass(obj) or inspect.isfunction(obj))
    }


def exported(name: str) -> list[str]:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{name} has no __all__ list"
    assert all(isinstance(n, str) for n in names)
    return names


@pytest.mark.parametrize(
    "name",
    [
        "actors",
        pytest.param(
            "actors.storage",
        ),
        "actors.mailbox",
    ],
)
def test_all_is_sorted(name: str) -> None:
    names = exported(name)
    assert sorted(names) == names


@pytest.mark.parametrize("name", MODULES)
def test_all_has_no_duplicates(name: str) -> None:
    names = exported(name)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in exported(name) if not hasattr(module, n)]
    assert missing == []
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(exported(name))


@pytest.mark.parametrize("name", MODULES)
def test_all_is_complete(name: str) -> None:
    module = importlib.import_module(name)
    assert public_definitions(module) - set(exported(name)) == set()


def test_no_lower_layer_name_leaks_into_actors() -> None:
    lower = set(exported("actors.storage")) | set(exported("actors.mailbox"))
    assert set(actors.__all__) & lower == set()
    for name in actors.__all__:
        origin = getattr(getattr(actors, name), "__module__", "") or ""
        assert not origin.startswith(("actors.storage", "actors.mailbox")), (name, origin)
    # Not re-exported under another name either.
    lower_objects = {
        id(getattr(module, n))
        for module in (actors.storage, actors.mailbox)
        for n in module.__all__
        if inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n))
    }
    assert [n for n in actors.__all__ if id(getattr(actors, n)) in lower_objects] == []


def test_public_definitions_sees_classes_and_functions() -> None:
    # The completeness check must be able to fail: it sees what a module defines.
    module = types.ModuleType("fake")
    exec("import os\nclass Thing: pass\ndef helper(): pass\n_private = 1\nCONST = 2", vars(module))
    assert public_definitions(module) == {"Thing", "helper"}
