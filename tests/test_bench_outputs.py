"""The results files of ``make bench``: each benchmark's ``--out DIR`` writes
``DIR/<name>.md`` and ``DIR/<name>.json``; the README's generated sections are rewritten
between their markers and nowhere else.

The scripts run in their quickest modes (a fraction of a second per measurement, one
run) into a temporary directory; the assertions are about which rows and lines the files
hold, never about a timing. The peers benchmark is not run (it takes long and needs
Restate and DBOS): its README table is rendered from the stored
``bench/results/peers.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._common import markdown_from_printed, replace_section, update_readme  # noqa: E402
from bench.peers.readme import peers_readme_section  # noqa: E402
from bench.targets import TARGETS, load, section, table  # noqa: E402

QUICK = ["--runs", "1", "--seconds", "0.1", "--warmup", "0"]
SCRIPTS = {
    "storage": QUICK,
    "objects": QUICK,
    "steps": QUICK,
    "workflows": ["--quick"],
}
README_TEXT = (
    "# Title\n\nSome text before, with trailing spaces   \n"
    """<!-- bench:peers:begin -->
old table
<!-- bench:peers:end -->
middle\r\nwith a CRLF
<!-- bench:targets:begin -->
<!-- bench:targets:end -->
after, no newline at the end"""
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four scripts, run side by side into one ``--out`` directory."""
    out = tmp_path_factory.mktemp("results")
    work = tmp_path_factory.mktemp("work")
    procs = {
        name: subprocess.Popen(
            [sys.executable, ROOT / "bench" / f"{name}.py", *args, "--dir", work, "--out", out],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in SCRIPTS.items()
    }
    failed = {}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=100)
        if proc.returncode != 0:
            failed[name] = output
    assert not failed, failed
    return out


def rows_of(name: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    if name == "storage":
        return list(document["fsync"]["rows"])
    return list(document.get("rows", []))


def checks_of(name: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    if name == "storage":
        return list(document["fsync"]["checks"])
    if name == "workflows":
        return [c for r in document["results"].values() for c in r["checks"]]
    return list(document["checks"])


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_out_writes_markdown_and_json(results: Path, name: str) -> None:
    document = json.loads((results / f"{name}.json").read_text())
    markdown = (results / f"{name}.md").read_text()
    assert markdown.startswith(f"# bench/{name}.py\n\n* command: `python bench/{name}.py ")
    for heading in ("* date: ", "* machine: ", "* versions: python "):
        assert f"\n{heading}" in markdown
    assert f"\nbench/{name}.py: " in markdown  # the first printed line
    assert "\n|---|" in markdown  # a table
    for row in rows_of(name, document):
        assert f"\n| {row['label']} | " in markdown
    checks = checks_of(name, document)
    assert checks
    for check in checks:
        assert f"** {check['text']}" in markdown
    assert document["meta"]["argv"][-2:] == ["--out", str(results)]


def test_workflows_markdown_keeps_sub_rows_and_the_ok_line(results: Path) -> None:
    markdown = (results / "workflows.md").read_text()
    assert "\n| &nbsp;&nbsp;of which anonymous (RssAnon) | MB | " in markdown
    assert "\n- **OK** process: 0 wrong results" in markdown


def test_without_out_nothing_is_written(tmp_path: Path) -> None:
    results = ROOT / "bench" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "storage.py"), *QUICK, "--dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "results written" not in done.stdout
    assert "\n| " not in done.stdout  # stdout keeps its fixed-width table
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
    assert list(tmp_path.iterdir()) == []


def test_markdown_from_printed() -> None:
    printed = (
        "bench/x.py: 1 runs; python 3\n"
        "  run 1/1 ... done\n"
        "\n"
        "title of the table\n"
        "config        | rate   | note\n"
        "------------------------------\n"
        "raw           |  1,234 | \n"
        "  sub row     |    nan | n\n"
        "OK    right after the table\n"
        "\n"
        "PASS  a target (target >= 1x)\n"
        "info  shown for information\n"
        "      (a continuation)\n"
        "\n"
        "results saved to x.json\n"
    )
    assert markdown_from_printed(printed) == [
        "bench/x.py: 1 runs; python 3",
        "",
        "run 1/1 ... done",
        "",
        "title of the table",
        "",
        "| config | rate | note |",
        "|---|--:|---|",
        "| raw | 1,234 |  |",
        "| &nbsp;&nbsp;sub row | nan | n |",
        "",
        "- **OK** right after the table",
        "",
        "- **PASS** a target (target >= 1x)",
        "- **info** shown for information (a continuation)",
    ]


def outside(text: str, name: str) -> tuple[str, str]:
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    return text[: text.index(begin) + len(begin)], text[text.index(end) :]


def test_replace_section_is_idempotent_and_keeps_the_rest() -> None:
    once = replace_section(README_TEXT, "peers", "| new | table |\n")
    assert once == replace_section(once, "peers", "| new | table |\n")
    assert outside(once, "peers") == outside(README_TEXT, "peers")
    assert "<!-- bench:peers:begin -->\n| new | table |\n<!-- bench:peers:end -->" in once
    both = replace_section(once, "targets", "\n\ntargets\n\n")
    assert "<!-- bench:targets:begin -->\ntargets\n<!-- bench:targets:end -->" in both
    assert outside(both, "targets") == outside(once, "targets")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers", r"^need exactly one <!-- bench:peers:begin --> and one "),
        (
            "<!-- bench:peers:begin --><!-- bench:peers:begin --><!-- bench:peers:end -->",
            r"^need exactly one ",
        ),
        (
            "<!-- bench:peers:end -->\n<!-- bench:peers:begin -->",
            r"^<!-- bench:peers:end --> comes before <!-- bench:peers:begin -->$",
        ),
    ],
)
def test_replace_section_refuses_bad_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace_section(text, "peers", "body")


def test_update_readme_writes_only_on_change(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_bytes(README_TEXT.encode())
    assert update_readme(readme, "peers", "body")
    first = readme.read_bytes()
    assert first == replace_section(README_TEXT, "peers", "body").encode()  # CRLF kept
    assert not update_readme(readme, "peers", "body")
    assert readme.read_bytes() == first


def test_peers_table_from_the_stored_json() -> None:
    document = json.loads((ROOT / "bench" / "results" / "peers.json").read_text())
    rendered = peers_readme_section(document)
    lines = rendered.splitlines()
    assert lines[0].startswith(f"Medians of {document['runs']} runs of `bench/peers/run.py`")
    assert lines[2].startswith("| workload | virtual-actors | Restate ")
    labels = [line.split(" | ")[0] for line in lines[4:]]
    assert labels == [
        "| W1 one increment, p50",
        "| W2 64 keys, 64 callers",
        "| W3 one key, 64 callers",
        "| W4 10-step workflow, p50",
        "| W4 16 / 256 concurrent",
        "| W5 shared reads during writes",
        "| W6 restart, in-flight workflows",
    ]
    assert all(line.count(" |") == 5 for line in lines[4:]), rendered
    readme = (ROOT / "README.md").read_text()
    rewritten = replace_section(readme, "peers", rendered)
    assert replace_section(rewritten, "peers", rendered) == rewritten
    assert outside(rewritten, "peers") == outside(readme, "peers")


def test_peers_table_without_a_system() -> None:
    document = json.loads((ROOT / "bench" / "results" / "peers.json").read_text())
    document["systems"]["restate"] = {"runs": [], "error": "not available: no npm"}
    del document["systems"]["dbos-sqlite"]
    for line in peers_readme_section(document).splitlines()[4:]:
        assert line.split(" | ")[2:4] == ["n/a", "n/a"], line


def test_targets_from_the_quick_results(results: Path, tmp_path: Path) -> None:
    documents = load(results)
    lines = table(documents)
    assert len(lines) == 2 + len(TARGETS)
    for target, line in zip(TARGETS, lines[2:], strict=True):
        assert line.startswith(f"| {target.text} | {target.bound_text()} | ")
        if target.source in ("scaling", "parked", "peers"):  # not among the quick scripts
            assert "| not measured | not measured |" in line
        elif target.source == "workflows":
            assert line.endswith("| info (process) | `workflows.json` |")  # --quick: process
        else:
            assert line.split(" | ")[3] in ("PASS", "FAIL"), line
    readme = tmp_path / "README.md"
    readme.write_bytes(README_TEXT.encode())
    done = subprocess.run(
        [sys.executable, ROOT / "bench" / "targets.py", "--results", results, "--readme", readme],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("\n".join(lines) + "\n")
    text = readme.read_bytes().decode()
    assert outside(text, "targets") == outside(README_TEXT, "targets")
    assert section(documents) in text
    assert replace_section(text, "targets", section(documents)) == text


def test_parked_writes_its_figures_and_targets_reads_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "parked.py"),
            *("--low", "200", "--high", "400", "--resolve", "50", "--durability", "process"),
            *("--dir", str(tmp_path), "--out", str(out)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((out / "parked.json").read_text())
    assert {"per_VmRSS", "per_RssAnon", "per_RssFile"} <= set(document["memory"])
    assert document["resolve"]["ratio"] > 0
    assert [c["name"] for c in document["checks"]] == ["rss_per_parked", "resolve_rate"]
    assert "RSS per parked workflow, 200 to 400" in (out / "parked.md").read_text()
    lines = [line for line in table(load(out)) if "`parked.json`" in line]
    assert len(lines) == 2
    assert " | not measured | " not in lines[0]  # memory: measured, whatever the durability
    assert "info (process)" in lines[1]  # the resolve target is defined for fsync


def _peers_document(rates: dict[str, list[float]]) -> dict[str, Any]:
    """A peers.json with one metric per system, a run per value."""
    return {
        "systems": {
            system: {
                "runs": [{"metrics": {"w2_rate": v}, "notes": {}} for v in values],
                "error": "",
            }
            for system, values in rates.items()
        }
    }


def test_http_targets_are_ratios_of_the_peers_medians() -> None:
    w2 = next(t for t in TARGETS if t.source == "peers" and "(W2)" in t.text)
    measured = w2.measure(
        _peers_document({"va-http": [900.0, 1200.0, 3000.0], "restate": [400.0, 300.0]})
    )
    assert measured is not None
    assert measured.value == pytest.approx(1200.0 / 350.0)  # medians, not means
    assert (measured.shown, measured.durability) == ("3.43x", "fsync")
    assert w2.measure(_peers_document({"va-http": [900.0], "restate": []})) is None
    assert w2.measure(_peers_document({"va-http": [900.0]})) is None
    assert w2.measure(_peers_document({"va-http": [900.0], "restate": [0.0]})) is None


def test_http_targets_from_the_stored_peers_json(tmp_path: Path) -> None:
    (tmp_path / "peers.json").write_text((ROOT / "bench" / "results" / "peers.json").read_text())
    lines = [line for line in table(load(tmp_path)) if "`peers.json`" in line]
    assert len(lines) == 3
    for line in lines:
        assert line.split(" | ")[3] in ("PASS", "FAIL"), line


def test_peers_without_out_writes_nothing(tmp_path: Path) -> None:
    results = ROOT / "bench" / "results"
    before = {path.name: path.stat().st_mtime_ns for path in results.glob("peers*")}
    readme = (ROOT / "README.md").read_bytes()
    done = subprocess.run(
        [sys.executable, ROOT / "bench" / "peers" / "run.py", "--quick", "--only", "raw-pingpong"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| raw-pingpong | " in done.stdout  # the report is printed
    assert {path.name: path.stat().st_mtime_ns for path in results.glob("peers*")} == before
    assert (ROOT / "README.md").read_bytes() == readme


def test_targets_with_no_results(tmp_path: Path) -> None:
    for line in table(load(tmp_path))[2:]:
        assert " | not measured | not measured | " in line, line


def test_floors_writes_the_primitives_beside_the_calls(tmp_path: Path) -> None:
    out = tmp_path / "out"
    quick = ["--runs", "1", "--n", "2000", "--calls", "640"]
    proc = subprocess.run(
        [sys.executable, ROOT / "bench" / "floors.py", *quick, "--out", out],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads((out / "floors.json").read_text())
    assert [row["workload"] for row in document["rows"]] == ["w5r", "w2", "w1"]
    for row in document["rows"]:
        # A call uses its primitives and does more besides: its CPU is above their sum.
        assert 0 < row["floor_us"] < row["cpu_us"]
    markdown = (out / "floors.md").read_text()
    assert "| trio cancel scope, entered and left | " in markdown
    assert "| W2 exclusive add, 64 keys x 1 caller | " in markdown
