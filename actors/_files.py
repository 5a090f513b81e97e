"""The files the actors layer keeps in a data directory, beside the store's own.

The storage layer refuses a directory holding files it does not know (it would
otherwise take a photo folder for a store), but it must not know this layer's files:
each opener of a ``Store`` passes ``DATA_DIR_FILES`` as ``extra_files``. A name is
defined here once; add any new file of this layer here, or a restart after a crash
that left it behind would find the directory "foreign".

``ingress.json`` is written and read only here, and never through a link: whoever can
write into the data directory could otherwise point it at a file elsewhere and have
the server overwrite it, or have the command line send an operator's token to a
server of their choosing. Writing goes to ``ingress.json.tmp`` (created afresh, never
followed), is fsync'd and renamed over ``ingress.json``, so a reader sees the old file
or the new one, never half of one, and a rename replaces a link instead of writing
through it. A symbolic link already at ``ingress.json`` is refused: nothing of ours
put it there. Reading opens with ``O_NOFOLLOW`` and takes only a regular file.

Rejected: ``Path.write_bytes`` (truncates and writes whatever the name points to,
hard links included) and checking with ``lstat`` before opening (the name can change
between the check and the open; the flags cannot).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING, Final

from ._errors import PersistenceError

if TYPE_CHECKING:
    from pathlib import Path

#: ``<data dir>/ingress.json``: the address of a runtime serving HTTP (``_ingress``
#: writes it, ``actors`` commands read it). A stale one left by a SIGKILL is harmless:
#: the next server overwrites it.
INGRESS_FILE: Final = "ingress.json"
#: Where ``ingress.json`` is written before it is renamed into place; a SIGKILL between
#: the two leaves it behind, and the next server replaces it.
INGRESS_TEMP_FILE: Final = "ingress.json.tmp"

#: Every file name this layer may leave in a data directory.
DATA_DIR_FILES: Final = frozenset({INGRESS_FILE, INGRESS_TEMP_FILE})

#: More than any address ``ingress.json`` holds; a larger file is not ours.
MAX_INGRESS_FILE_BYTES: Final = 64 * 1024
_NO_FOLLOW: Final = os.O_NOFOLLOW | os.O_CLOEXEC


def write_ingress_file(directory: Path, content: bytes) -> None:
    """Replace ``directory/ingress.json`` with ``content``, atomically and durably.

    Raises ``PersistenceError`` when ``ingress.json`` is a symbolic link (it is left as
    it is) or the directory cannot be written; nothing outside ``directory`` is written.
    """
    target = directory / INGRESS_FILE
    temporary = directory / INGRESS_TEMP_FILE
    if _is_symlink(target):
        raise PersistenceError(
            f"refusing to write {target}: it is a symbolic link (remove it; the runtime "
            "writes its own)"
        )
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # a stale one (even a link): removed, never followed
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o644)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)  # replaces a hard link too, never writes into it
        _fsync_directory(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PersistenceError(f"cannot write {target}: {exc.strerror or exc}") from exc


def read_ingress_file(directory: Path) -> bytes | None:
    """The bytes of ``directory/ingress.json``; None when there is none (or it cannot be
    read). Raises ``PersistenceError`` when it is a symbolic link or not a regular file:
    it is never followed."""
    target = directory / INGRESS_FILE
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the reader in open().
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | _NO_FOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if _is_symlink(target):
            raise PersistenceError(f"refusing to read {target}: it is a symbolic link") from None
        if exc.errno in (errno.EACCES, errno.EPERM):  # say so rather than "no ingress"
            raise PersistenceError(f"cannot read {target}: {exc.strerror}") from exc
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PersistenceError(f"refusing to read {target}: it is not a regular file")
        return os.read(fd, MAX_INGRESS_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def remove_ingress_file(directory: Path, content: bytes) -> None:
    """Remove ``directory/ingress.json`` if it still holds ``content`` (no other
    server's since). Never raises: the file is only a hint."""
    with contextlib.suppress(OSError, PersistenceError):
        if read_ingress_file(directory) == content:
            os.unlink(directory / INGRESS_FILE)


def _is_symlink(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
