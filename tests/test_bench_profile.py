"""``bench/profile.py``: how py-spy's samples are charged to functions, and one real
sampled run written to ``--out``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.profile import LOOP, OTHER, RUNTIME, WORKLOAD, attribute, classify, group_of  # noqa: E402

SITE = "/repo/.venv/lib/python3.11/site-packages"


def test_frames_are_classified_by_the_package_that_holds_them() -> None:
    assert classify("/work/main/actors/_gate.py", "OutputGate.flush") == (
        RUNTIME,
        "actors._gate.OutputGate.flush",
    )
    # The lower layers, by their own paths and through the actors symlinks.
    assert classify("storage/_writer.py", "Writer._apply") == (
        RUNTIME,
        "actors.storage._writer.Writer._apply",
    )
    assert classify("/work/main/actors/mailbox/_state.py", "step") == (
        RUNTIME,
        "actors.mailbox._state.step",
    )
    assert classify(f"{SITE}/trio/_core/_run.py", "unrolled_run") == (LOOP, "trio: unrolled_run")
    assert classify(f"{SITE}/anyio/_core/_synchronization.py", "Event.wait") == (
        LOOP,
        "anyio: Event.wait",
    )
    assert classify("/work/main/bench/objects.py", "adder") == (WORKLOAD, "bench: adder")
    # Charged to their caller: the standard library, generated code, other packages, and
    # a package called "actors" installed elsewhere.
    assert classify("contextlib.py", "__exit__") is None
    assert classify("<attrs generated init actors._x.Y>", "__init__") is None
    assert classify(f"{SITE}/cattrs/converters.py", "structure") is None
    assert classify(f"{SITE}/actors/_gate.py", "flush") is None


def test_a_sample_is_charged_to_its_innermost_named_frame() -> None:
    lines = [
        # A standard-library leaf: charged to the runtime function that called it.
        "run (trio/_core/_run.py:2000);call (actors/_runtime.py:10);"
        "__enter__ (contextlib.py:137) 5",
        # A trio leaf under the runtime: the loop's.
        "call (actors/_runtime.py:10);__enter__ (trio/_core/_run.py:500) 3",
        # The same stack again adds up.
        "call (actors/_runtime.py:10);__enter__ (trio/_core/_run.py:500) 2",
        "adder (bench/profile.py:80) 4",
        "_bootstrap (threading.py:995) 1",
        " 7",  # py-spy's line for a sample with no Python frame
        "",
    ]
    tally = attribute(lines)
    assert tally == {
        (RUNTIME, "actors._runtime.call"): 5,
        (LOOP, "trio: __enter__"): 5,
        (WORKLOAD, "bench: adder"): 4,
        (OTHER, "_bootstrap (threading.py:995)"): 1,
        (OTHER, "(no Python frame)"): 7,
    }


def test_output_that_is_not_py_spys_raw_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a line of py-spy's raw output"):
        attribute(["run (trio/_core/_run.py:1) many"])


def test_a_few_unreadable_lines_are_skipped() -> None:
    """Sampling a running process now and then reads a frame's name as it changes: a
    fragment with no count (seen in a ``make bench`` run). One in 200 lines is skipped;
    one in 50 is more than ``MAX_UNREADABLE`` allows."""
    good = "call (actors/_runtime.py:10) 1"
    tally = attribute([good] * 199 + [" (\x8bG0"])
    assert tally == {(RUNTIME, "actors._runtime.call"): 199}
    with pytest.raises(ValueError, match="not a line of py-spy's raw output"):
        attribute([good] * 49 + ["call (actors/_runt"])


def test_runtime_labels_group_by_module() -> None:
    assert group_of("actors._gate.OutputGate.flush") == "actors._gate"
    assert group_of("actors.storage._writer._apply_ops") == "actors.storage._writer"
    assert group_of("actors.testing.crash") == "actors.testing"


def test_a_sampled_run_writes_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "profile.py"), "--workloads", "w2"),
            *("--seconds", "1", "--rate", "200", "--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0 and "py-spy could not sample" in proc.stderr:
        pytest.skip(f"this machine does not let py-spy read a process: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads((out / "profile.json").read_text())
    w2 = document["workloads"]["w2"]
    assert w2["ops"] > 0
    assert w2["cpu_us_per_op"] > 0
    kinds = {key.split("|", 1)[0] for key in w2["samples"]}
    assert RUNTIME in kinds, w2["samples"]
    assert LOOP in kinds, w2["samples"]
    markdown = (out / "profile.md").read_text()
    assert "| the runtime (actors, storage, mailbox) | " in markdown
    assert "| w2: top functions, self | kind | us per call | share |" in markdown
