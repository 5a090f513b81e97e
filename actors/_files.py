"""The files the actors layer keeps in a data directory, beside the store's own.

The storage layer refuses a directory holding files it does not know (it would
otherwise take a photo folder for a store), but it must not know this layer's files:
each opener of a ``Store`` passes ``DATA_DIR_FILES`` as ``extra_files``. A name is
defined here once; add any new file of this layer here, or a restart after a crash
that left it behind would find the directory "foreign".
"""

from __future__ import annotations

from typing import Final

#: ``<data dir>/ingress.json``: the address of a runtime serving HTTP (``_ingress``
#: writes it, ``actors`` commands read it). A stale one left by a SIGKILL is harmless:
#: the next server overwrites it.
INGRESS_FILE: Final = "ingress.json"

#: Every file name this layer may leave in a data directory.
DATA_DIR_FILES: Final = frozenset({INGRESS_FILE})
