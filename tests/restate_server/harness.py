"""Processes for the tests against a real Restate server: the network namespace, Restate
nodes, the endpoint (``actors endpoint``), and HTTP helpers with bounded waits.

Every process is started through ``Processes`` and stopped by its ``close()`` (SIGTERM,
then SIGKILL after a few seconds), which the fixtures call in their teardown, so nothing
outlives a test session, also when it fails. Every wait has a deadline.

Isolation: run as root (with ``ip``), the session enters a fresh network namespace that
has only a loopback interface (``setns`` on the test's thread; every process it starts
inherits it), so the servers cannot reach or be reached from any network. Otherwise
everything binds 127.0.0.1 on free ports. Nothing inside the namespace can reach npm
either, so the fixtures install the pinned binary before they enter it and hand its path
to ``RestateNode``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import httpx

REPO: Final = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.peers.restate_server import restate_server_binary  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")
_CLONE_NEWNET: Final = 0x40000000


def eventually(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """``check()``'s first result that is not None and raises nothing, polled until
    ``timeout`` seconds pass (then ``AssertionError`` with the last problem)."""
    deadline = time.monotonic() + timeout
    problem: object = None
    while True:
        try:
            result = check()
            if result is not None:
                return result
            problem = "no result yet"
        except Exception as exc:
            problem = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s ({problem})")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def installed_restate_server() -> Path:
    """The pinned ``restate-server`` binary, installed from npm into the cache the first
    time. Call it before ``loopback_namespace``: npm cannot reach the registry from inside."""
    return restate_server_binary(log=lambda _: None)


@contextlib.contextmanager
def loopback_namespace() -> Iterator[str | None]:
    """Enter a new network namespace with only ``lo`` (root only); yields its name, or
    None when not root (then nothing changes)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        yield None
        return
    name = f"vatest{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        links = subprocess.run(
            ["ip", "netns", "exec", name, "ip", "-o", "link"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        assert len(links) == 1, links
        assert ": lo:" in links[0], links
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the test namespace")
        finally:
            os.close(target)
        try:
            yield name
        finally:
            if libc.setns(original, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the test process dies, so not even a
    SIGKILLed pytest leaves servers behind (Linux ``PR_SET_PDEATHSIG``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    """The processes a test session started, each with its log file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                **kw,
            )
        self.started.append((proc, log))
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL if it is still running after 5 s."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def close(self) -> None:
        for proc, _ in reversed(self.started):
            self.stop(proc)

    def tails(self, lines: int = 30) -> str:
        parts = []
        for proc, log in self.started:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name} (exit {proc.poll()}) ---\n" + "\n".join(text))
        return "\n".join(parts)


class RestateNode:
    """One ``restate-server`` process: its ports and how to (re)start it."""

    def __init__(
        self,
        procs: Processes,
        binary: Path,
        base: Path,
        name: str,
        *,
        cluster: list[RestateNode] | None = None,
        provision: bool = True,
        replication: int = 1,
    ) -> None:
        self.procs = procs
        self.binary = binary
        self.base = base
        self.name = name
        self.node_port, self.admin_port, self.ingress_port = free_port(), free_port(), free_port()
        self.cluster = cluster
        self.provision = provision
        self.replication = replication
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "RESTATE_NODE_NAME": self.name,
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{self.node_port}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{self.node_port}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "RESTATE_ADMIN__ADVERTISED_ADMIN_ENDPOINT": self.admin,
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.ingress_port}",
            "RESTATE_INGRESS__ADVERTISED_INGRESS_ENDPOINT": self.ingress,
            "RESTATE_LOG_FORMAT": "compact",
            "RESTATE_LOG_FILTER": "warn",
            "RESTATE_AUTO_PROVISION": "true" if self.provision else "false",
            "RESTATE_DEFAULT_REPLICATION": str(self.replication),
            "DO_NOT_TRACK": "true",
        }
        if self.cluster is not None:
            peers = ",".join(f'"http://127.0.0.1:{n.node_port}"' for n in self.cluster)
            env |= {
                "RESTATE_CLUSTER_NAME": "va-test",
                "RESTATE_METADATA_CLIENT__ADDRESSES": f"[{peers}]",
            }
        return env

    def start(self) -> None:
        self.proc = self.procs.start(
            f"restate-{self.name}",
            [str(self.binary), "--base-dir", str(self.base / self.name), "--node-name", self.name],
            env=self.env(),
        )

    def kill(self) -> None:
        assert self.proc is not None
        Processes.kill(self.proc)

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool | None:
            assert self.proc is not None
            assert self.proc.poll() is None, "restate-server exited"
            return True if httpx.get(f"{self.admin}/health", timeout=2).is_success else None

        eventually(healthy, timeout, f"restate node {self.name} admin /health")


class Endpoint:
    """``actors endpoint tests.restate_server.restate_app:ACTORS`` in a subprocess."""

    def __init__(self, procs: Processes, effects: Path) -> None:
        self.procs = procs
        self.effects = effects
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "ACTORS_RESTATE_EFFECTS": str(self.effects)}
        cmd = [sys.executable, "-m", "actors._cli", "endpoint"]
        cmd += ["tests.restate_server.restate_app:ACTORS", "--port", str(self.port)]
        self.proc = self.procs.start("endpoint", cmd, cwd=REPO, env=env)

        def up() -> bool | None:
            assert self.proc is not None
            assert self.proc.poll() is None, "the endpoint exited"
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        eventually(up, 30, "actors endpoint listening")

    def kill(self) -> None:
        assert self.proc is not None
        Processes.kill(self.proc)

    def register(self, admin: str) -> dict[str, Any]:
        def post() -> dict[str, Any]:
            response = httpx.post(
                f"{admin}/deployments", json={"uri": self.uri, "force": True}, timeout=30
            )
            assert response.is_success, f"{response.status_code} {response.text}"
            body: dict[str, Any] = response.json()
            return body

        return eventually(post, 60, "registering the endpoint", every=0.5)
