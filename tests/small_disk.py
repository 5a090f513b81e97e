"""A real filesystem that fills up: run a script in a private mount namespace where
``/mnt`` is a fresh tmpfs of a few MiB (``unshare -Urm``, no root needed where user
namespaces are allowed). Tests that need it skip where it is not available."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

#: Take every free block of the filesystem holding ``path``, but ``leave`` bytes. Python
#: source, for the scripts run in the namespace.
FILL = """
def fill(path, leave=0):
    import errno
    with open(path, "wb") as f:
        try:
            while True:
                f.write(bytes(65536))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        f.truncate(max(0, f.tell() - leave))
"""


def run_in_small_tmpfs(
    script: str, *args: str, size: str = "4m"
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c script /mnt *args`` where ``/mnt`` is a new tmpfs of ``size``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare(1) to mount a small filesystem")
    probe = subprocess.run(
        [unshare, "-Urm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace: {probe.stderr.decode().strip()}")
    mount = f'mount -t tmpfs -o size={size} tmpfs /mnt && exec "$0" "$@"'
    return subprocess.run(
        [unshare, "-Urm", "sh", "-c", mount, sys.executable, "-c", script, "/mnt", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
