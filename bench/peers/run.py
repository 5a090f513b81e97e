"""Benchmarks against the peers, side by side in one run (issue 7).

Runs the same workloads (``bench/peers/common.py``: W1-W6) on

* virtual-actors embedded (in-process ``rt.call``), ``"fsync"`` and ``"process"``;
* virtual-actors through its HTTP ingress (``rt.serve_http``, Restate's paths);
* DBOS Transact on SQLite (WAL) and on a throwaway PostgreSQL cluster on 127.0.0.1;
* Restate (server from npm ``@restatedev/restate-server``, Python SDK under hypercorn),
  all of it inside a network namespace with only a loopback interface;
* the floors and ceilings: raw LMDB commits (1 and 64 records per commit) and a raw
  trio ping-pong.

The peers live in their own virtual environments under ``bench/.peers/`` (git-ignored),
created here on first use with pinned versions. Every server binds to loopback and is
stopped by this script, also when a run fails (process groups, ``finally``, ``atexit``).
Prints the report; with ``--out DIR`` (``make bench``: ``bench/results``) it also writes
``DIR/peers.md`` (medians with [min-max] over ``--runs``, ratios to virtual-actors fsync),
``DIR/peers.json`` (every raw number), two charts, and README.md's table between
``<!-- bench:peers:begin/end -->`` (``bench/peers/readme.py``; not with ``--no-readme`` or
``--quick``). ``bench/targets.py`` reads issue 14's HTTP targets from ``peers.json``.

    .venv/bin/python bench/peers/run.py --out bench/results   # 3 runs, everything
    .venv/bin/python bench/peers/run.py --quick --only va-fsync,dbos-sqlite   # print only
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench._common import json_meta, update_readme
from bench.peers.common import METRICS, Settings
from bench.peers.readme import peers_readme_section
from bench.peers.report import PINS, SYSTEMS, Outcome, machine, report, versions
from bench.peers.restate_server import restate_server_binary

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ROOT: Final = Path(__file__).resolve().parents[2]
HERE: Final = ROOT / "bench" / "peers"
PEERS: Final = ROOT / "bench" / ".peers"
RESULTS: Final = ROOT / "bench" / "results"
PY: Final = sys.executable  # the project's .venv python
PG_BIN: Final = Path("/usr/lib/postgresql/15/bin")
DRIVER_TIMEOUT: Final = 1800.0


def log(text: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- processes we start, always stopped ---------------------------------------------------


class Processes:
    """Every long-lived child (servers), each in its own process group."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.cleanups: list[Callable[[], None]] = []

    def start(self, cmd: Sequence[str], log_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
        out = log_path.open("ab")
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )
        out.close()
        self.children.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.children)):
            try:
                self.kill(proc)
            except Exception as e:  # keep stopping the others
                log(f"could not stop pid {proc.pid}: {e}")
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as e:
                log(f"cleanup failed: {e}")


PROCS: Final = Processes()
atexit.register(PROCS.stop_all)


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


# --- environments ---------------------------------------------------------------------------


def ensure_venv(name: str) -> Path:
    """``bench/.peers/<name>`` with the pinned packages; returns its bin directory."""
    venv = PEERS / name
    stamp = venv / ".installed"
    want = " ".join(PINS[name])
    if stamp.exists() and stamp.read_text() == want:
        return venv / "bin"
    log(f"creating {venv} ({want})")
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PINS[name]], check=True)
    stamp.write_text(want)
    return venv / "bin"


def ensure_restate_server() -> Path:
    return restate_server_binary(PEERS / "npm", log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- running a driver -----------------------------------------------------------------------


class NotAvailable(Exception):
    pass


def run_driver(cmd: Sequence[str], log_path: Path, **kw: Any) -> dict[str, Any]:
    """Run a driver to completion; its last stdout line is the result."""
    with log_path.open("ab") as err:
        done = subprocess.run(
            list(cmd), stdout=subprocess.PIPE, stderr=err, timeout=DRIVER_TIMEOUT, check=False, **kw
        )
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{cmd[0]} ... exited {done.returncode}; see {log_path}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def retry_until(action: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except Exception as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not ready after {timeout} s ({e})") from e
            time.sleep(0.3)


def http_post(prefix: Sequence[str], base: str, path: str, body: str, log_path: Path) -> str:
    with log_path.open("ab") as err:
        done = subprocess.run(
            [*prefix, PY, str(HERE / "http_client.py"), base, "post", path, body],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=60,
            check=True,
        )
    return done.stdout.decode()


# --- the systems ------------------------------------------------------------------------------


@dataclass
class Context:
    settings: Settings
    runs: int
    logs: Path
    workdir: Path
    peer_w6: int  # W6 size for the peers (scaled down)


def va_embedded(durability: str) -> Callable[[Context], list[dict[str, Any]]]:
    def run(ctx: Context) -> list[dict[str, Any]]:
        cmd = [PY, str(HERE / "va_embedded.py"), "--durability", durability]
        cmd += ["--settings", ctx.settings.to_json()]
        return [run_driver(cmd, ctx.logs / f"va-{durability}.log") for _ in range(ctx.runs)]

    return run


def baseline(which: str) -> Callable[[Context], list[dict[str, Any]]]:
    def run(ctx: Context) -> list[dict[str, Any]]:
        cmd = [PY, str(HERE / "baselines.py"), which, "--settings", ctx.settings.to_json()]
        return [run_driver(cmd, ctx.logs / f"raw-{which}.log") for _ in range(ctx.runs)]

    return run


def va_http(ctx: Context) -> list[dict[str, Any]]:
    results = []
    log_path = ctx.logs / "va-http.log"
    for r in range(ctx.runs):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        data = ctx.workdir / f"va-http-{r}"
        server = PROCS.start(
            [PY, str(HERE / "va_http_server.py"), "--port", str(port), "--dir", str(data)],
            log_path,
        )
        try:

            def probe(server: subprocess.Popen[bytes] = server, base: str = base) -> None:
                if server.poll() == 3:
                    raise NotAvailable("rt.serve_http is not in this checkout yet")
                if server.poll() is not None:
                    raise NotAvailable(f"the server exited with {server.returncode}")
                http_post([], base, "/Counter/warm/value", "", log_path)

            deadline = time.monotonic() + 30
            while True:
                try:
                    probe()
                    break
                except NotAvailable:
                    raise
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            cmd = [PY, str(HERE / "http_client.py"), base, "workloads"]
            result = run_driver([*cmd, "--settings", ctx.settings.to_json()], log_path)
            result["notes"]["w6_seconds"] = "not run over HTTP: the engine's restart is va-fsync's"
            results.append(result)
        finally:
            PROCS.kill(server)
    return results


def dbos_sqlite(ctx: Context) -> list[dict[str, Any]]:
    bin_dir = ensure_venv("dbos")
    s = Settings(**{**ctx.settings.__dict__, "w6_count": ctx.peer_w6})
    cmd = [str(bin_dir / "python"), str(HERE / "services" / "dbos_driver.py"), "--db", "sqlite"]
    return [
        run_driver([*cmd, "--settings", s.to_json()], ctx.logs / "dbos-sqlite.log")
        for _ in range(ctx.runs)
    ]


def ensure_postgres() -> None:
    """PostgreSQL 15's server binaries, installed from Debian's packages when missing
    and this process may (root with apt-get); else the system is not available."""
    if (PG_BIN / "initdb").exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NotAvailable(f"no PostgreSQL in {PG_BIN} (apt-get install postgresql-15)")
    log("installing postgresql-15 (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql-15"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NotAvailable(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")
    if not (PG_BIN / "initdb").exists():
        raise NotAvailable(f"postgresql-15 installed no {PG_BIN / 'initdb'}")


def dbos_postgres(ctx: Context) -> list[dict[str, Any]]:
    bin_dir = ensure_venv("dbos")
    ensure_postgres()
    log_path = ctx.logs / "dbos-postgres.log"
    pg_dir = Path(tempfile.mkdtemp(prefix="peers-pg-", dir=ctx.workdir))
    shutil.chown(pg_dir, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = pg_dir / "data"
    subprocess.run(
        [
            *as_pg,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "bench",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {pg_dir} -c max_connections=1000 "
        "-c fsync=on -c synchronous_commit=on"
    )
    ctl = [*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(pg_dir / "pg.log")]

    def stop() -> None:
        subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)

    PROCS.cleanups.append(stop)
    try:
        subprocess.run([*ctl, "-o", options, "-w", "start"], check=True, capture_output=True)
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-d", "postgres", "-q"]
        results = []
        for _ in range(ctx.runs):
            for db in ("w_sys", "w_app", "w6_sys", "w6_app"):
                subprocess.run([*psql, "-c", f"DROP DATABASE IF EXISTS {db}"], check=True)
                subprocess.run([*psql, "-c", f"CREATE DATABASE {db}"], check=True)
            s = Settings(**{**ctx.settings.__dict__, "w6_count": ctx.peer_w6})
            cmd = [str(bin_dir / "python"), str(HERE / "services" / "dbos_driver.py")]
            cmd += [
                "--db",
                f"postgresql+psycopg://bench@127.0.0.1:{port}",
                "--settings",
                s.to_json(),
            ]
            results.append(run_driver(cmd, log_path))
        return results
    finally:
        stop()
        PROCS.cleanups.remove(stop)


def restate(ctx: Context) -> list[dict[str, Any]]:
    bin_dir = ensure_venv("restate")
    server_bin = ensure_restate_server()
    log_path = ctx.logs / "restate.log"
    ns = f"vabench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)

    def delete_ns() -> None:
        subprocess.run(["ip", "netns", "del", ns], check=False)

    PROCS.cleanups.append(delete_ns)
    in_ns = ["ip", "netns", "exec", ns]
    try:
        subprocess.run([*in_ns, "ip", "link", "set", "lo", "up"], check=True)
        addrs = subprocess.run([*in_ns, "ip", "-o", "link"], check=True, capture_output=True)
        if addrs.stdout.decode().count("\n") != 1:
            raise RuntimeError(f"netns {ns} has more than a loopback interface")
        env = {
            **os.environ,
            "RESTATE_BIND_ADDRESS": "127.0.0.1:5122",
            "RESTATE_ADMIN__BIND_ADDRESS": "127.0.0.1:9070",
            "RESTATE_INGRESS__BIND_ADDRESS": "127.0.0.1:8080",
            "RESTATE_LOG_FORMAT": "compact",
            "RESTATE_LOG_FILTER": "warn",
        }
        results = []
        ingress = "http://127.0.0.1:8080"
        for r in range(ctx.runs):
            base_dir = ctx.workdir / f"restate-{r}"

            def start(base_dir: Path = base_dir) -> list[subprocess.Popen[bytes]]:
                server = PROCS.start(
                    [*in_ns, str(server_bin), "--base-dir", str(base_dir), "--node-name", "bench"],
                    log_path,
                    env=env,
                )
                sdk = PROCS.start(
                    [
                        *in_ns,
                        str(bin_dir / "hypercorn"),
                        "--bind",
                        "127.0.0.1:9080",
                        "restate_service:app",
                    ],
                    log_path,
                    cwd=HERE / "services",
                )
                return [server, sdk]

            procs = start()
            try:
                retry_until(
                    lambda: http_post(
                        in_ns,
                        "http://127.0.0.1:9070",
                        "/deployments",
                        '{"uri": "http://127.0.0.1:9080"}',
                        log_path,
                    ),
                    60,
                    "restate admin / deployment registration",
                )
                retry_until(
                    lambda: http_post(in_ns, ingress, "/Counter/warm/value", "", log_path),
                    60,
                    "restate ingress",
                )
                cmd = [*in_ns, PY, str(HERE / "http_client.py"), ingress, "workloads"]
                result = run_driver([*cmd, "--settings", ctx.settings.to_json()], log_path)
                if ctx.peer_w6:
                    client = [*in_ns, PY, str(HERE / "http_client.py"), ingress]
                    run_driver_plain([*client, "submit", str(ctx.peer_w6)], log_path)
                    for p in procs:
                        PROCS.kill(p, signal.SIGKILL)
                    t0 = time.perf_counter()
                    procs = start()
                    retry_until(
                        lambda: http_post(in_ns, ingress, "/Counter/warm/value", "", log_path),
                        60,
                        "restate ingress after the restart",
                    )
                    run_driver([*client, "attach", str(ctx.peer_w6)], log_path)
                    result["metrics"]["w6_seconds"] = time.perf_counter() - t0
                    result["notes"]["w6_seconds"] = (
                        f"N={ctx.peer_w6}; SIGKILL of server and SDK service, both restarted"
                    )
                results.append(result)
            finally:
                for p in procs:
                    PROCS.kill(p)
        return results
    finally:
        delete_ns()
        PROCS.cleanups.remove(delete_ns)


def run_driver_plain(cmd: Sequence[str], log_path: Path) -> None:
    with log_path.open("ab") as err:
        subprocess.run(list(cmd), stdout=err, stderr=err, timeout=DRIVER_TIMEOUT, check=True)


RUNNERS: Final[dict[str, Callable[[Context], list[dict[str, Any]]]]] = {
    "va-fsync": va_embedded("fsync"),
    "va-process": va_embedded("process"),
    "va-http": va_http,
    "dbos-sqlite": dbos_sqlite,
    "dbos-postgres": dbos_postgres,
    "restate": restate,
    "raw-lmdb-1": baseline("lmdb1"),
    "raw-lmdb-64": baseline("lmdbgroup"),
    "raw-pingpong": baseline("pingpong"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, short phases, small W6")
    parser.add_argument("--seconds", type=float, default=2.0, help="per phase (2)")
    parser.add_argument("--w6", type=int, default=10_000, help="W6 workflows (virtual-actors)")
    parser.add_argument("--peer-w6", type=int, default=1_000, help="W6 workflows (peers)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write peers.md, peers.json and the charts here (make bench: {RESULTS}); "
        "without it nothing is written",
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="leave README.md's table alone (--quick does)"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.w6, args.peer_w6 = 1, 1.0, 1_000, 200
    settings = Settings(seconds=args.seconds, warmup=0.5, cap=200_000, w6_count=args.w6)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    signal.signal(signal.SIGTERM, _on_signal)
    PEERS.mkdir(parents=True, exist_ok=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    logs = PEERS / "logs"
    logs.mkdir(exist_ok=True)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="peers-") as workdir:
        os.chmod(workdir, 0o755)  # the PostgreSQL cluster's user walks into it
        ctx = Context(settings, args.runs, logs, Path(workdir), args.peer_w6)
        try:
            for system in only:
                log(f"{system}: {args.runs} run(s)")
                outcome = Outcome(system)
                try:
                    outcome.runs = RUNNERS[system](ctx)
                except NotAvailable as e:
                    outcome.error = f"not available: {e}"
                except Exception as e:
                    outcome.error = f"failed: {type(e).__name__}: {e}"
                log(f"{system}: {outcome.error or 'done'}")
                outcomes.append(outcome)
        finally:
            PROCS.stop_all()
    result = {
        "meta": json_meta(sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
        "settings": settings.__dict__,
        "peer_w6": args.peer_w6,
        "runs": args.runs,
        "metrics": {k: list(v) for k, v in METRICS.items()},
        "systems": {o.system: {"runs": o.runs, "error": o.error} for o in outcomes},
    }
    text = report(outcomes, args, settings)
    print(text)
    if args.out is None:
        return
    (args.out / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    if not (args.no_readme or args.quick):  # a quick run's figures are not the README's
        update_readme(ROOT / "README.md", "peers", peers_readme_section(result))
    (args.out / "peers.md").write_text(text)
    try:
        plot_bin = ensure_venv("plot")
        subprocess.run(
            [str(plot_bin / "python"), str(HERE / "services" / "charts.py"), str(args.out)],
            check=True,
        )
    except Exception as e:
        log(f"charts not drawn: {e}")


if __name__ == "__main__":
    main()
