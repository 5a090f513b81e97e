"""The command line's hostile inputs: ids that are not ids, directories that do not
exist, an ``ingress.json`` that is a link to somewhere else.

Requests the CLI sends go to a recording HTTP server on 127.0.0.1 (a thread that serves
until the test's ``with`` ends), so a test sees exactly which paths were asked for.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import threading
from typing import TYPE_CHECKING

import anyio
import pytest

import actors
from actors._cli import main
from actors._util import derived_invocation_id, new_invocation_id
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Greeter(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering every PATCH with 200 ``{}``; yields its URL and the list
    of raw request targets it received."""
    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            received.append(self.path)
            body = b"{}"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


# --- invocation ids ------------------------------------------------------------------------

NOT_IDS = [
    "inv_x/kill?",  # would have become PATCH .../inv_x/kill?/cancel
    "inv_a b",
    "inv_a\nb",
    "inv_a%2Fb",
    "../restate/health",
    "inv_",
    "",
    "abc",
    "inv_" + "a" * 200,
]


@pytest.mark.parametrize("operation", ["cancel", "kill", "resume"])
def test_an_id_that_is_not_one_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str
) -> None:
    with recording_server() as (url, received):
        for bad in NOT_IDS:
            status, out, err = run_cli(capsys, operation, "-d", str(tmp_path), "--url", url, bad)
            assert status == 2, (bad, err)
            assert f"argument id: not an invocation id: {bad!r}" in err, (bad, err)
            assert "Traceback" not in err
            assert out == ""
    assert received == []


def test_journal_refuses_an_id_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "journal", "-d", str(tmp_path), "inv_x/../y")
    assert status == 2
    assert "argument id: not an invocation id: 'inv_x/../y'" in err


def test_ids_of_every_release_are_accepted_and_sent_as_one_path_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    minted = new_invocation_id()
    ids = [
        minted,
        derived_invocation_id(minted, 3),
        # The first releases minted 15 random bytes in base32.
        "inv_" + base64.b32encode(os.urandom(15)).decode().rstrip("=").lower(),
        "inv_nope",
    ]
    with recording_server() as (url, received):
        for invocation_id in ids:
            status, out, err = run_cli(
                capsys, "kill", "-d", str(tmp_path), "--url", url, invocation_id
            )
            assert (status, err) == (0, "")
            assert out == f"kill of {invocation_id}: done by the runtime at {url}\n"
    assert received == [f"/restate/invocation/{i}/kill" for i in ids]


def test_a_url_that_is_not_http_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in ["file:///etc/passwd", "127.0.0.1:8080", "http://bad host:1"]:
        status, _, err = run_cli(capsys, "cancel", "-d", str(tmp_path), "--url", url, "inv_ab")
        assert status == 1, url
        assert err.startswith("actors: error: "), err
        assert "Traceback" not in err
        assert err.count("\n") == 1


# --- missing directories -------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["cancel", "kill", "resume"])
def test_steering_a_missing_directory_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str
) -> None:
    missing = tmp_path / "missing" / "data"
    status, out, err = run_cli(capsys, operation, "-d", str(missing), "inv_ab")
    assert (status, out) == (1, "")
    assert err == f"actors: error: data directory {missing} does not exist\n"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("operation", ["cancel", "kill", "resume"])
def test_steering_a_directory_without_a_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_cli(capsys, operation, "-d", str(empty), "inv_ab")
    assert status == 1
    assert err == f"actors: error: no virtual-actors store in {empty} (no data.mdb)\n"
    assert list(empty.iterdir()) == []


# --- ingress.json ----------------------------------------------------------------------------


async def serve_briefly(rt: actors.Runtime) -> dict[str, object]:
    """Serve on a free port, read ingress.json while serving, stop."""
    async with anyio.create_task_group() as tg:
        await tg.start(rt.serve_http, "127.0.0.1", 0)
        announced: dict[str, object] = json.loads((rt.path / "ingress.json").read_text())
        tg.cancel_scope.cancel()
    return announced


async def test_serving_never_writes_through_a_hard_link_to_ingress_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    async with open_test_runtime([Greeter], path=data) as rt:
        os.link(victim, data / "ingress.json")
        announced = await serve_briefly(rt)
        assert announced["pid"] == os.getpid()
    assert victim.read_text() == "precious"
    assert not (data / "ingress.json").exists()


async def test_serving_refuses_a_symlinked_ingress_json(tmp_path: Path) -> None:
    data = tmp_path / "data"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    async with open_test_runtime([Greeter], path=data) as rt:
        (data / "ingress.json").symlink_to(victim)
        with pytest.raises(actors.PersistenceError) as caught:
            await rt.serve_http("127.0.0.1", 0)  # fails before it listens
        assert str(caught.value) == (
            f"refusing to write {data / 'ingress.json'}: it is a symbolic link "
            "(remove it; the runtime writes its own)"
        )
    assert victim.read_text() == "precious"
    assert (data / "ingress.json").is_symlink()  # left as it was


async def test_a_stale_temporary_ingress_file_is_replaced(tmp_path: Path) -> None:
    """A server killed between writing the temporary file and renaming it leaves
    ``ingress.json.tmp`` behind (even a link): the directory still opens, and the next
    server writes through neither."""
    data = tmp_path / "data"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    async with open_test_runtime([Greeter], path=data):
        pass
    (data / "ingress.json.tmp").symlink_to(victim)
    async with open_test_runtime([Greeter], path=data) as rt:
        announced = await serve_briefly(rt)
        assert announced["pid"] == os.getpid()
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in data.iterdir()) == ["actors.lock", "data.mdb", "lock.mdb"]


@pytest.mark.trio_only
async def test_the_command_line_never_reads_ingress_json_through_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    with recording_server() as (url, received):
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(json.dumps({"url": url, "pid": 1, "token_required": False}))
        async with open_test_runtime([Greeter], path=data):
            (data / "ingress.json").symlink_to(elsewhere)
            status, _, err = run_cli(capsys, "cancel", "-d", str(data), "inv_ab")
    assert status == 1
    assert err == (
        f"actors: error: refusing to read {data / 'ingress.json'}: it is a symbolic link\n"
    )
    assert received == []


async def test_serving_where_ingress_json_cannot_be_written_is_a_clean_error(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with open_test_runtime([Greeter], path=data) as rt:
        (data / "ingress.json.tmp").mkdir()  # the temporary file cannot be made
        with pytest.raises(actors.PersistenceError) as caught:
            await rt.serve_http("127.0.0.1", 0)
        assert str(caught.value).startswith(f"cannot write {data / 'ingress.json'}: ")
        assert not (data / "ingress.json").exists()
        (data / "ingress.json.tmp").rmdir()
        announced = await serve_briefly(rt)  # once it can be written, serving works
        assert announced["pid"] == os.getpid()


@pytest.mark.trio_only
async def test_the_command_line_refuses_an_ingress_json_that_is_not_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO in its place: before, reading it blocked the command forever."""
    data = tmp_path / "data"
    async with open_test_runtime([Greeter], path=data):
        os.mkfifo(data / "ingress.json")
        status, _, err = run_cli(capsys, "cancel", "-d", str(data), "inv_ab")
    assert status == 1
    assert err == (
        f"actors: error: refusing to read {data / 'ingress.json'}: it is not a regular file\n"
    )


@pytest.mark.parametrize("command", ["invocations", "journal"])
def test_a_stored_time_out_of_range_is_reported_as_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """Changed bytes in a record's float (a time past year 9999) are damage, reported
    cleanly by every command that shows it, not an OverflowError escaping main."""
    from actors.storage import (
        InvocationRecord,
        InvocationStatus,
        Store,
        Table,
        Target,
        WriteBatch,
        dumps,
    )

    async def accept() -> None:
        async with open_test_runtime([Greeter()], path=tmp_path) as rt:
            await rt.call(Greeter.greet, "ada")

    anyio.run(accept)
    invocation_id = new_invocation_id()
    record = InvocationRecord(
        invocation_id, Target("Greeter", "greet"), b'"x"', InvocationStatus.PENDING, 1e300
    )
    with Store.open(tmp_path) as store:
        batch = WriteBatch()
        batch.put(Table.INVOCATIONS, invocation_id.encode(), dumps(record))
        store.commit_blocking(batch)
    argv = [command, "-d", str(tmp_path)] + ([invocation_id] if command == "journal" else [])
    status, _, err = run_cli(capsys, *argv)
    assert status == 1
    assert err.startswith(f"actors: error: store {tmp_path} is damaged: a stored time (1e+300)")
    assert err.count("\n") == 1
