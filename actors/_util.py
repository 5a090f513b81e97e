"""Small shared helpers: no-public-constructor classes, invocation ids."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
from typing import Any, Final, TypeVar

T = TypeVar("T")


class NoPublicConstructor(type):
    """Metaclass for runtime-created objects (contexts, handles): ``Cls(...)`` raises
    ``TypeError``; the runtime builds them with ``Cls._create(...)``. As in trio."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} has no public constructor")

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


_id_prefix = ""
_id_counter = itertools.count()


def new_invocation_id() -> str:
    """A unique, URL-safe invocation id: a random 60-bit prefix drawn once per process
    plus a counter. Cheaper than 15 random bytes per id (this is on every call's path),
    and unique across restarts but for a 2**-60 chance per pair of processes."""
    global _id_prefix
    if not _id_prefix:
        _id_prefix = _b32(os.urandom(8))[:12]
    return f"inv_{_id_prefix}{next(_id_counter):x}"


#: The shape of every invocation id a release has minted: ``inv_`` and base32 (lower
#: case, the random and derived ids) or hex (the counter) characters; 15 random bytes
#: in the first releases. Upper case is accepted too (Restate's own ids are base62).
#: Nothing in it needs escaping in a URL path or a terminal.
_INVOCATION_ID: Final = re.compile(r"inv_[A-Za-z0-9]{1,64}")


def is_invocation_id(text: str) -> bool:
    """Whether ``text`` has the shape of an invocation id (not whether one exists)."""
    return _INVOCATION_ID.fullmatch(text) is not None


def derived_invocation_id(parent_id: str, index: int) -> str:
    """The id of the ``index``-th call or send made by invocation ``parent_id``. The same
    inputs give the same id, so a re-executed caller never delivers twice."""
    digest = hashlib.blake2b(f"{parent_id}:{index}".encode(), digest_size=15).digest()
    return "inv_" + _b32(digest)


#: The default of an omitted handler input (a handler may take ``None`` as its input).
NO_ARG: Any = object()
