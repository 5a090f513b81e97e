"""The ``actors`` command line against real data directories.

Reading commands run in-process on closed directories and in a subprocess beside an
open runtime (LMDB forbids opening one environment twice in one process). Steering
commands on a closed directory record the request durably; the tests reopen the
directory and check that the runtime carried it out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

import actors
from actors._cli import CommandError, load_actors, main
from actors.storage import InvocationRecord, InvocationStatus, StoreReader, Table, loads
from actors.testing import open_test_runtime

if TYPE_CHECKING:
    from pathlib import Path


class Account(actors.VirtualObject):
    @actors.exclusive
    async def deposit(self, ctx: actors.ObjectContext, amount: int) -> int:
        balance = (await ctx.get("balance", int)) or 0
        await ctx.run("audit", lambda: f"deposit {amount}")
        if amount < 0:
            raise actors.TerminalError("negative deposit", 422)
        ctx.set("balance", balance + amount)
        ctx.set("owner", {"name": ctx.key})
        return balance + amount


class Approval(actors.Workflow):
    def __init__(self) -> None:
        self.compensated: list[str] = []

    @actors.main
    async def run(self, ctx: actors.WorkflowContext, request: str) -> str:
        ctx.set("stage", "waiting")
        try:
            return await ctx.promise("decision", str).value()
        except actors.TerminalError:
            self.compensated.append(ctx.key or "")
            raise


class Flaky(actors.VirtualObject):
    def __init__(self) -> None:
        self.broken = True

    @actors.exclusive(retry=actors.RetryPolicy(initial_interval=1, max_attempts=2))
    async def work(self, ctx: actors.ObjectContext) -> str:
        if self.broken:
            raise RuntimeError("still broken")
        return "fixed"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def stored_record(data: Path, invocation_id: str) -> InvocationRecord:
    with StoreReader.open(data) as reader, reader.read() as view:
        raw = view.get(Table.INVOCATIONS, invocation_id.encode())
    assert raw is not None
    return loads(InvocationRecord, raw)


async def make_history(data: Path) -> dict[str, str]:
    """Two deposits, a failed one, and a workflow left waiting on its promise."""
    async with open_test_runtime([Account, Approval()], path=data) as rt:
        first = await rt.send(Account.deposit, 5, key="alice")
        second = await rt.send(Account.deposit, 2, key="alice")
        assert await second.result() == 7
        failed = await rt.send(Account.deposit, -1, key="bob")
        with pytest.raises(actors.TerminalError):
            await failed.result()
        waiting = await rt.send(Approval.run, "r", key="w1")
        await trio.testing.wait_all_tasks_blocked()
    return {
        "first": first.invocation_id,
        "second": second.invocation_id,
        "failed": failed.invocation_id,
        "waiting": waiting.invocation_id,
    }


# --- reading -----------------------------------------------------------------------------


@pytest.mark.trio_only
async def test_invocations_lists_every_invocation_with_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await make_history(tmp_path / "data")
    status, out, _ = run_cli(capsys, "invocations", "--data", str(tmp_path / "data"))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "TARGET", "ATTEMPT", "ACCEPTED", "RESULT"]
    by_id = {line.split()[0]: line for line in lines[1:]}
    assert set(by_id) == set(ids.values())
    assert by_id[ids["first"]].split()[1:3] == ["completed", "Account/alice/deposit"]
    assert by_id[ids["second"]].endswith("  7")
    assert by_id[ids["failed"]].endswith("error 422: negative deposit")
    assert by_id[ids["waiting"]].split()[1:3] == ["running", "Approval/w1/run"]


@pytest.mark.trio_only
async def test_invocations_filters_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await make_history(tmp_path / "data")
    data = str(tmp_path / "data")
    _, out, _ = run_cli(capsys, "invocations", "-d", data, "--json", "--status", "running")
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [ids["waiting"]]
    assert rows[0]["input"] == "r"
    assert rows[0]["outcome"] is None
    _, out, _ = run_cli(capsys, "invocations", "-d", data, "--json", "--actor", "Account")
    rows = json.loads(out)
    assert [row["id"] for row in rows] == [ids["first"], ids["second"], ids["failed"]]
    assert rows[1]["outcome"] == {"value": 7}
    assert rows[2]["outcome"] == {"error": "negative deposit", "code": 422}
    _, out, _ = run_cli(capsys, "invocations", "-d", data, "--json", "--limit", "1")
    assert [row["id"] for row in json.loads(out)] == [ids["waiting"]]
    _, out, _ = run_cli(capsys, "invocations", "-d", data, "--actor", "Nobody")
    assert out == "no invocations\n"


@pytest.mark.trio_only
async def test_journal_shows_every_entry_with_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await make_history(tmp_path / "data")
    data = str(tmp_path / "data")
    status, out, _ = run_cli(capsys, "journal", "-d", data, ids["second"], "--json")
    assert status == 0
    journal = json.loads(out)
    assert journal["invocation"]["target"] == "Account/alice/deposit"
    kinds = [entry["kind"] for entry in journal["entries"]]
    assert kinds[:2] == ["get", "run"]
    assert journal["entries"][0]["value"] == 5  # the balance the read observed
    assert journal["entries"][1]["name"] == "audit"
    assert journal["entries"][1]["outcome"] == {"value": "deposit 2"}
    status, out, _ = run_cli(capsys, "journal", "-d", data, ids["second"])
    assert status == 0
    assert out.splitlines()[0].startswith(f"{ids['second']}  Account/alice/deposit  completed")
    assert "result: 7" in out
    assert "audit" in out


@pytest.mark.trio_only
async def test_state_of_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await make_history(tmp_path / "data")
    data = str(tmp_path / "data")
    _, out, _ = run_cli(capsys, "state", "-d", data, "Account", "alice", "--json")
    assert json.loads(out) == {"balance": 7, "owner": {"name": "alice"}}
    _, out, _ = run_cli(capsys, "state", "-d", data, "Account", "alice")
    assert out.splitlines() == ["NAME     VALUE", "balance  7", 'owner    {"name":"alice"}']
    _, out, _ = run_cli(capsys, "state", "-d", data, "Approval", "w1", "--json")
    assert json.loads(out) == {"stage": "waiting"}
    _, out, _ = run_cli(capsys, "state", "-d", data, "Account", "carol")
    assert out == "no state for Account/carol\n"


@pytest.mark.trio_only
async def test_reading_while_a_runtime_has_the_directory_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with open_test_runtime([Account], path=data) as rt:
        assert await rt.call(Account.deposit, 3, key="alice", idempotency_key="k") == 3
        done = await trio.run_process(
            [sys.executable, "-m", "actors._cli", "state", "-d", str(data), "Account", "alice"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "balance  3" in done.stdout.decode()
        assert await rt.call(Account.deposit, 1, key="alice") == 4  # still the owner


def test_reading_a_directory_without_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "invocations", "-d", str(tmp_path / "missing"))
    assert status == 1
    assert (
        err == f"actors: error: no virtual-actors store in {tmp_path / 'missing'} (no data.mdb)\n"
    )
    assert not (tmp_path / "missing").exists()  # reading creates nothing


def test_unknown_invocation_in_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trio.run(make_history, tmp_path / "data")
    status, _, err = run_cli(capsys, "journal", "-d", str(tmp_path / "data"), "inv_nope")
    assert status == 1
    assert err == f"actors: error: no invocation 'inv_nope' in {tmp_path / 'data'}\n"


def test_data_directory_is_required(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACTORS_DATA", raising=False)
    status, _, err = run_cli(capsys, "invocations")
    assert status == 2
    assert "the data directory is required: pass --data DIR or set $ACTORS_DATA" in err


def test_data_directory_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trio.run(make_history, tmp_path / "data")
    monkeypatch.setenv("ACTORS_DATA", str(tmp_path / "data"))
    status, out, _ = run_cli(capsys, "state", "Account", "alice", "--json")
    assert status == 0
    assert json.loads(out)["balance"] == 7


def test_bad_status_filter_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "invocations", "-d", str(tmp_path), "--status", "odd")
    assert status == 2
    assert "invalid choice: 'odd'" in err


# --- steering a closed directory ---------------------------------------------------------


@pytest.mark.trio_only
async def test_cancel_recorded_offline_runs_the_compensation_at_the_next_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], autojump_clock: trio.testing.MockClock
) -> None:
    data = tmp_path / "data"
    ids = await make_history(data)
    status, out, _ = run_cli(capsys, "cancel", "-d", str(data), ids["waiting"])
    assert status == 0
    assert out == (
        f"cancel of {ids['waiting']} recorded; nobody has {data} open, "
        "so it takes effect when a runtime next opens it\n"
    )
    assert stored_record(data, ids["waiting"]).cancel_requested
    approval = Approval()
    async with open_test_runtime([Account, approval], path=data) as rt:
        with pytest.raises(actors.TerminalError) as caught:
            await rt.attach(ids["waiting"])
        assert caught.value.status_code == 409
    assert approval.compensated == ["w1"]


@pytest.mark.trio_only
async def test_kill_recorded_offline_ends_it_without_compensation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], autojump_clock: trio.testing.MockClock
) -> None:
    data = tmp_path / "data"
    ids = await make_history(data)
    status, _, _ = run_cli(capsys, "kill", "-d", str(data), ids["waiting"])
    assert status == 0
    assert stored_record(data, ids["waiting"]).kill_requested
    approval = Approval()
    async with open_test_runtime([Account, approval], path=data) as rt:
        with pytest.raises(actors.TerminalError, match="killed") as caught:
            await rt.attach(ids["waiting"])
        assert caught.value.status_code == 409
    assert approval.compensated == []
    status, out, _ = run_cli(
        capsys, "invocations", "-d", str(data), "--json", "--actor", "Approval"
    )
    assert json.loads(out)[0]["status"] == "killed"


@pytest.mark.trio_only
async def test_resume_recorded_offline_runs_a_paused_invocation_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], autojump_clock: trio.testing.MockClock
) -> None:
    data = tmp_path / "data"
    flaky = Flaky()
    async with open_test_runtime([flaky], path=data) as rt:
        handle = await rt.send(Flaky.work, key="f")
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(10)
        assert rt.statistics().paused == 1
    assert stored_record(data, handle.invocation_id).status is InvocationStatus.PAUSED
    status, out, _ = run_cli(capsys, "invocations", "-d", str(data), "--status", "paused")
    assert handle.invocation_id in out
    assert "still broken" in out
    status, _, _ = run_cli(capsys, "resume", "-d", str(data), handle.invocation_id)
    assert status == 0
    flaky.broken = False
    async with open_test_runtime([flaky], path=data) as rt:
        assert await rt.attach(handle.invocation_id) == "fixed"


@pytest.mark.trio_only
async def test_steering_errors_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    ids = await make_history(data)
    before = stored_record(data, ids["waiting"])
    for operation in ("cancel", "kill", "resume"):
        status, _, err = run_cli(capsys, operation, "-d", str(data), "inv_nope")
        assert (status, err) == (1, f"actors: error: no invocation 'inv_nope' in {data}\n")
        status, _, err = run_cli(capsys, operation, "-d", str(data), ids["first"])
        assert (status, err) == (
            1,
            f"actors: error: invocation {ids['first']} has already completed\n",
        )
    status, _, err = run_cli(capsys, "resume", "-d", str(data), ids["waiting"])
    assert (status, err) == (
        1,
        f"actors: error: invocation {ids['waiting']} is not paused (it is pending)\n",
    )
    assert stored_record(data, ids["waiting"]) == before


@pytest.mark.trio_only
async def test_steering_a_directory_open_without_http_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    ids = await make_history(data)
    async with open_test_runtime([Account, Approval()], path=data):
        status, _, err = run_cli(capsys, "cancel", "-d", str(data), ids["waiting"])
    assert status == 1
    assert err.startswith(f"actors: error: {data} is open by process ")
    assert "which serves no HTTP ingress: cancel it from that program (rt.cancel)" in err
    assert not stored_record(data, ids["waiting"]).cancel_requested


def test_steering_an_unreachable_ingress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A port nobody listens on: bind one, close it, and point --url at it.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    status, _, err = run_cli(
        capsys, "kill", "-d", str(tmp_path), "--url", url, "--timeout", "5", "inv_x"
    )
    assert status == 1
    assert err.startswith(f"actors: error: cannot reach the runtime serving {tmp_path} at {url}")


# --- serve: loading the actors -----------------------------------------------------------

APP = """
import actors

class Hello(actors.Service):
    @actors.handler
    async def greet(self, ctx: actors.Context, name: str) -> str:
        return f"hello {name}"

class Approval(actors.Workflow):
    @actors.main
    async def run(self, ctx: actors.WorkflowContext, request: str) -> str:
        return await ctx.promise("decision", str).value()

ACTORS = [Hello, Approval]
NOT_ACTORS = [int]
EMPTY = []

def make_actors():
    return [Hello()]
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of actors in the current directory, as ``actors serve``
    finds it; unique per test so that imports do not leak between tests."""
    name = f"cli_app_{abs(hash(tmp_path)):x}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_load_actors_from_a_list_a_factory_or_a_class(app_module: str) -> None:
    loaded = load_actors(f"{app_module}:ACTORS")
    assert [item.__name__ for item in loaded] == ["Hello", "Approval"]
    assert [type(item).__name__ for item in load_actors(f"{app_module}:make_actors")] == ["Hello"]
    assert load_actors(f"{app_module}:Hello") == loaded[:1]


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("", r"^expected MODULE:ATTR \(e\.g\. myapp:ACTORS\), not '{m}'$"),
        (":NOPE", r"^module '{m}' has no attribute 'NOPE'$"),
        (":EMPTY", r"^{m}:EMPTY must be a non-empty list of actor classes or instances"),
        (":__doc__", r"must be a non-empty list of actor classes or instances"),
    ],
)
def test_load_actors_errors(app_module: str, attr: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.format(m=app_module)):
        load_actors(app_module + attr)


def test_load_actors_from_a_missing_module() -> None:
    with pytest.raises(CommandError, match=r"^cannot import 'no_such_module_x': "):
        load_actors("no_such_module_x:A")


def test_serve_rejects_what_is_not_an_actor(
    app_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "serve", "-d", str(tmp_path / "d"), f"{app_module}:NOT_ACTORS")
    assert status == 1
    assert err.startswith(f"actors: error: {app_module}:NOT_ACTORS: ")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--max-connections", "0"], "max-connections must be at least 1, not 0"),
        (["--read-timeout", "-1"], "read-timeout must be a positive number"),
        (["--max-body", "100", "--max-body-bytes-in-flight", "10"], "must be at least max-body"),
    ],
)
def test_serve_refuses_limits_out_of_range(
    app_module: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: list[str],
    expected: str,
) -> None:
    status, _, err = run_cli(
        capsys, "serve", "-d", str(tmp_path / "d"), f"{app_module}:ACTORS", *option
    )
    assert status == 1
    assert expected in err
    assert not (tmp_path / "d").exists()


def http(method: str, url: str, body: bytes = b"", token: str | None = None) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body or None, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_serve_then_steer_it_from_the_command_line(
    app_module: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
) -> None:
    data = tmp_path / "data"
    command = [sys.executable, "-m", "actors._cli", "serve", f"{app_module}:ACTORS"]
    command += ["-d", str(data), "--port", "0", "--durability", "process", "--max-body", "100"]
    command += ["--token", token] if token else []
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            banner = server.stdout.readline()  # printed once the socket listens
            assert banner.startswith(f"serving Approval, Hello from {data} at http://127.0.0.1:")
            url = banner.split()[-1]
            announced = json.loads((data / "ingress.json").read_text())
            assert announced == {"url": url, "pid": server.pid, "token_required": bool(token)}

            assert http("POST", f"{url}/Hello/greet", b'"bob"', token) == (200, "hello bob")
            status, too_large = http("POST", f"{url}/Hello/greet", b'"' + b"b" * 99 + b'"', token)
            assert (status, too_large) == (
                413,
                {"code": 413, "message": "the request body (101 bytes) is over 100 bytes"},
            )
            status, accepted = http("POST", f"{url}/Approval/a1/run/send", b'"r"', token)
            assert status == 202
            assert isinstance(accepted, dict)
            invocation_id = accepted["invocationId"]

            monkeypatch.delenv("ACTORS_TOKEN", raising=False)
            if token:  # without the token the server refuses, and nothing changes
                status, _, err = run_cli(capsys, "cancel", "-d", str(data), invocation_id)
                assert status == 1
                assert err.endswith("(HTTP 401)\n")
                monkeypatch.setenv("ACTORS_TOKEN", token)
            status, out, _ = run_cli(capsys, "cancel", "-d", str(data), invocation_id)
            assert (status, out) == (
                0,
                f"cancel of {invocation_id}: done by the runtime at {url}\n",
            )
            status, answer = http(
                "GET", f"{url}/restate/invocation/{invocation_id}/attach", token=token
            )
            assert status == 409
            assert answer == {
                "code": 409,
                "message": f"invocation {invocation_id} was cancelled",
                "source": "invocation",  # the invocation's outcome, not the ingress's refusal
            }

            status, _, err = run_cli(capsys, "kill", "-d", str(data), invocation_id)
            assert status == 1
            assert err == (
                f"actors: error: invocation {invocation_id} has already completed (HTTP 409)\n"
            )
            status, _, err = run_cli(capsys, "resume", "-d", str(data), "inv_nope")
            assert status == 1
            assert err == "actors: error: no invocation 'inv_nope' (HTTP 404)\n"
            # Reading goes straight to the data directory, beside the server. (The plain
            # greet call recorded nothing: a call that journals nothing leaves no history.)
            status, out, _ = run_cli(capsys, "invocations", "-d", str(data), "--json")
            rows = json.loads(out)
            assert [(row["id"], row["status"]) for row in rows] == [(invocation_id, "completed")]

            server.send_signal(signal.SIGTERM)
            assert server.stdout.readline() == "stopping (SIGTERM)\n"
            assert server.wait(timeout=30) == 0
            assert not (data / "ingress.json").exists()
        finally:
            if server.poll() is None:
                server.kill()
