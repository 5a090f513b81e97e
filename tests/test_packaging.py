"""The folder mapping of pyproject.toml works both ways it is used (DESIGN.md section 1):
a built wheel installs ``actors``, ``actors.mailbox`` and ``actors.storage`` into a fresh
virtual environment, and the editable install maps them onto this checkout's folders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"actors": "actors", "actors.mailbox": "mailbox", "actors.storage": "storage"}

# Prints where each package was imported from, and the interpreter's site-packages.
REPORT = textwrap.dedent(
    """
    import importlib, json, sysconfig
    modules = {name: importlib.import_module(name) for name in %r}
    print(json.dumps({
        "files": {name: module.__file__ for name, module in modules.items()},
        "purelib": sysconfig.get_paths()["purelib"],
        "has_store": hasattr(modules["actors.storage"], "Store"),
    }))
    """
) % (list(PACKAGES),)


def clean_env() -> dict[str, str]:
    """This environment without anything that would point Python at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return env


def run(args: list[str | Path], *, cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_sources(dst: Path) -> Path:
    """A copy of the project to build from, so the build leaves this checkout alone
    (setuptools writes build/ and *.egg-info next to the sources)."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "*.egg-info",
        "build",
        "dist",
        "__pycache__",
        ".*_cache",
        ".hypothesis",
        ".peers",  # the benchmarks' peers: virtualenvs, servers' data (sockets too)
    )
    shutil.copytree(REPO, dst, symlinks=True, ignore=ignore)
    return dst


@pytest.mark.packaging
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "src")
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", dist, source],
        cwd=tmp_path,
        timeout=120,
    )
    (wheel,) = dist.glob("*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    # Only the actors package and the metadata: no stray top-level storage/ or mailbox/.
    (metadata,) = {name.split("/", 1)[0] for name in names} - {"actors"}
    assert metadata.endswith(".dist-info")
    assert "actors/py.typed" in names
    for package, folder in PACKAGES.items():
        inside = package.replace(".", "/")
        shipped = {Path(n).name for n in names if Path(n).parent.as_posix() == inside}
        assert {p.name for p in (REPO / folder).glob("*.py")} <= shipped, package

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path, timeout=120)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    python = venv / "bin" / "python"
    run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
        cwd=tmp_path,
        timeout=180,
    )
    # -I: ignore PYTHON* variables and keep the working directory off sys.path.
    report = json.loads(run([python, "-I", "-c", REPORT], cwd=tmp_path, timeout=60))
    purelib = Path(report["purelib"]).resolve()
    assert purelib.is_relative_to(venv.resolve())
    for name, file in report["files"].items():
        assert Path(file).resolve().is_relative_to(purelib), (name, file)
        assert Path(file).resolve().parent.name == name.rsplit(".", 1)[-1], (name, file)
    assert report["has_store"] is True
    # The console script is installed and runs from the wheel.
    usage = run([venv / "bin" / "actors", "--help"], cwd=tmp_path, timeout=60)
    assert "Inspect and steer a virtual-actors data directory" in usage


def test_editable_install_maps_the_folders() -> None:
    # From a neutral directory, so the import comes from the installed mapping and not
    # from the checkout happening to be the working directory.
    report = json.loads(run([sys.executable, "-I", "-c", REPORT], cwd=Path("/"), timeout=60))
    for name, folder in PACKAGES.items():
        origin = Path(report["files"][name]).resolve()
        assert origin == (REPO / folder / "__init__.py").resolve(), (name, origin)
    assert report["has_store"] is True


def test_this_process_imports_the_checkout() -> None:
    import importlib.util

    for name, folder in PACKAGES.items():
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        assert Path(spec.origin).resolve() == (REPO / folder / "__init__.py").resolve(), name
