"""``install()``: make ``import restate`` resolve to this package.

Entries in ``sys.modules`` map ``restate`` and each submodule Restate code imports
(``restate.context``, ``restate.exceptions``, ``restate.serde``...) to the modules of
``actors.restate`` that implement them; a meta-path finder answers any other
``restate.*`` with a ``ModuleNotFoundError`` that says it is not available embedded,
instead of letting Python find the real SDK's file of that name (which would mix the
two). It refuses when the real ``restate`` is already imported: code holding the real
classes would not run here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["install"]

#: ``restate`` submodule -> the module of this package that implements it.
SUBMODULES: dict[str, str] = {
    "context": "actors.restate.context",
    "exceptions": "actors.restate.exceptions",
    "serde": "actors.restate.serde",
    "retry_policy": "actors.restate.retry_policy",
    "endpoint": "actors.restate.endpoint",
    "harness": "actors.restate.harness",
    "logging": "actors.restate.logging",
    "service": "actors.restate._definitions",
    "object": "actors.restate._definitions",
    "workflow": "actors.restate._definitions",
    "asyncio": "actors.restate._combinators",
    "client": "actors.restate._client",
    "client_types": "actors.restate._client",
    "connection": "actors.restate._unavailable",
    "entry_codec": "actors.restate._unavailable",
    "types": "actors.restate.harness",
}


class _Finder(importlib.abc.MetaPathFinder):
    """Refuses ``restate.*`` modules that ``SUBMODULES`` does not map."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.startswith("restate.") and fullname not in sys.modules:
            raise ModuleNotFoundError(
                f"{fullname} is part of Restate's SDK that needs a Restate server; "
                "actors.restate (installed as restate) provides: restate, "
                + ", ".join(f"restate.{name}" for name in SUBMODULES),
                name=fullname,
            )
        return None


def install() -> None:
    """Make ``import restate`` (and ``restate.context``, ``restate.exceptions``,
    ``restate.serde`` and the other submodules Restate code imports) resolve to
    ``actors.restate`` in this process, so unmodified Restate service code runs on the
    embedded runtime. Call it before importing that code; calling it again is a no-op.

    Raises:
      ImportError: the real ``restate`` package is already imported (its classes are
        not this package's; import the service code only after ``install()``).
    """
    package = importlib.import_module("actors.restate")
    present = sys.modules.get("restate")
    if present is package:
        return
    if present is not None:
        raise ImportError(
            "the real restate package (restate-sdk) is already imported, from "
            f"{getattr(present, '__file__', '?')}; call actors.restate.install() before "
            "anything imports restate"
        )
    stale = [name for name in sys.modules if name.startswith("restate.")]
    if stale:
        raise ImportError(f"restate submodules are already imported: {', '.join(sorted(stale))}")
    sys.modules["restate"] = package
    for name, target in SUBMODULES.items():
        module = importlib.import_module(target)
        sys.modules[f"restate.{name}"] = module
        if not hasattr(package, name):
            # ``import restate.asyncio`` then ``restate.asyncio.gather``: the attribute
            # the import system would set on a package it had loaded the submodule of.
            setattr(package, name, module)
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
