"""The pinned Restate server binary, from npm, installed once into a cache.

One place for the pin and the install, shared by ``bench/peers/run.py`` (the peer
benchmarks) and ``tests/restate`` (the endpoint's tests against a real server).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

RESTATE_NPM: Final = "@restatedev/restate-server@1.7.12"
RESTATE_VERSION: Final = RESTATE_NPM.rsplit("@", 1)[1]
_BINARY_GLOB: Final = "node_modules/@restatedev/restate-server-linux-*/bin/restate-server"


def default_npm_dir() -> Path:
    """``~/.cache/virtual-actors/npm/restate-server-<version>`` ($XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "virtual-actors" / "npm" / f"restate-server-{RESTATE_VERSION}"


def restate_server_binary(npm_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The ``restate-server`` binary of the pinned version under ``npm_dir``, installed
    there with npm (``--ignore-scripts``) the first time. Raises ``RuntimeError`` when
    npm is missing or installs no binary for this platform."""
    npm_dir = npm_dir or default_npm_dir()
    found = sorted(npm_dir.glob(_BINARY_GLOB))
    if not found:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm is needed to install {RESTATE_NPM}")
        log(f"npm install {RESTATE_NPM} into {npm_dir}")
        npm_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(npm_dir),
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
                RESTATE_NPM,
            ],
            check=True,
            timeout=600,
        )
        found = sorted(npm_dir.glob(_BINARY_GLOB))
    if not found:
        raise RuntimeError(f"npm installed no restate-server binary for this platform in {npm_dir}")
    return found[0]
