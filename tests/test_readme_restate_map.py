"""The README's Restate name map names only what exists.

Every ``ctx.NAME``, ``rt.NAME``, ``actors.NAME`` and ``Class.NAME`` in the
virtual-actors column of "Coming from Restate: the names" must resolve: a renamed or
removed method fails here instead of misleading a user porting Restate code. The
Restate column is checked against the real SDK where it is installed (the dev extra).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import actors
import actors.testing

README = Path(__file__).resolve().parents[1] / "README.md"
CONTEXTS = (
    actors.Context,
    actors.ObjectContext,
    actors.ObjectSharedContext,
    actors.WorkflowContext,
    actors.WorkflowSharedContext,
)
OWNERS: dict[str, list[object]] = {
    "actors": [actors],
    "ctx": list(CONTEXTS),
    "rt": [actors.Runtime],
    "DurableCallFuture": [actors.DurableCallFuture],
    "InvocationHandle": [actors.InvocationHandle],
    "RetryPolicy": [actors.RetryPolicy],
}
DOTTED = re.compile(r"\b(actors|ctx|rt|DurableCallFuture|InvocationHandle)\.([a-z_][A-Za-z_]*)")


def table_rows() -> list[list[str]]:
    text = README.read_text()
    start = text.index("## Coming from Restate: the names")
    section = text[start : text.index("\n## ", start + 1)]
    rows = [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| Restate")
    ]
    assert len(rows) > 20, "the table was not found"
    return rows


def ours(rows: list[list[str]]) -> set[tuple[str, str]]:
    names = set()
    for row in rows:
        for code in re.findall(r"`([^`]+)`", row[1]):
            names.update(DOTTED.findall(code))
    return names


def test_every_name_in_our_column_exists() -> None:
    names = ours(table_rows())
    assert ("ctx", "attach_invocation") in names
    missing = [
        f"{owner}.{name}"
        for owner, name in sorted(names)
        if not any(hasattr(target, name) for target in OWNERS[owner])
    ]
    assert not missing, f"README names what does not exist: {missing}"


def test_retry_policy_fields_are_as_the_map_says() -> None:
    import attrs

    fields = [field.name for field in attrs.fields(actors.RetryPolicy)]
    row = next(row for row in table_rows() if "actors.RetryPolicy(" in row[1])
    listed = re.search(r"actors\.RetryPolicy\(([^)]*)\)", row[1])
    assert listed is not None
    assert [name.strip() for name in listed.group(1).split(",")] == fields


def test_every_restate_context_method_in_the_map_exists_in_the_sdk() -> None:
    context = pytest.importorskip("restate.context")
    named = set()
    for row in table_rows():
        for code in re.findall(r"`([^`]+)`", row[0]):
            named.update(re.findall(r"\bctx\.([a-z_]+)", code))
    assert "attach_invocation" in named
    classes = [
        getattr(context, name)
        for name in ("Context", "ObjectContext", "ObjectSharedContext", "WorkflowContext")
    ]
    missing = [name for name in sorted(named) if not any(hasattr(c, name) for c in classes)]
    assert not missing, f"the README names Restate methods the SDK does not have: {missing}"
