"""The endpoint's overhead: W1-W4 of ``bench/peers`` through one Restate server, served
by our classes on ``actors endpoint`` and, beside it, by the same logic written with
Restate's own SDK (``bench/peers/services/restate_service.py``), both under hypercorn.

    .venv/bin/python bench/endpoint_overhead.py [--runs 3] [--seconds 3]

Each run starts a fresh server (a new base directory) and one deployment; runs alternate
between the two so drift on a shared machine hits both. The figure per metric is the
median over runs; the overhead is how much worse the endpoint is (lower rate, higher
latency), in percent. Beside the wall-clock figures, each workload runs as its own
driver call with the CPU time (user + system, from ``/proc``, child processes included)
of the deployment (``*_cpu_us``: the endpoint, or the SDK's hypercorn and its worker)
and of the Restate server (``*_server_cpu_us``) read before and after it, divided by the
invocations the driver made (warm-up included): CPU per invocation, steadier than calls/s
and latencies on a shared machine. It still moves with the machine's load (the server,
the same binary doing the same work, varies by 1.5x between runs), so the steadiest
figure is the deployment's CPU over the server's in the same run
(``*_cpu_per_server_cpu``); ``--instructions`` counts instructions instead. Writes ``bench/results/endpoint.json`` and ``endpoint.md``. As
root, everything runs in a network namespace with only a loopback interface.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.peers.common import METRICS, Settings
from bench.peers.restate_server import RESTATE_VERSION, restate_server_binary
from bench.peers.run import HERE, PROCS, PY, ROOT, http_post, retry_until, run_driver

RESULTS: Final = ROOT / "bench" / "results"
WORKLOADS: Final = ("w1", "w2", "w3", "w4")
SYSTEMS: Final = {
    "restate-sdk": "Restate server + its Python SDK (restate_service.py), hypercorn",
    "va-endpoint": "Restate server + our classes on `actors endpoint`, hypercorn",
}
#: Metrics where higher is better (rates); the others are latencies.
HIGHER_IS_BETTER: Final = {name: spec[3] for name, spec in METRICS.items()}
CPU_METRICS: Final = {
    **{
        f"{w}_cpu_us": (w.upper(), "deployment's CPU per invocation", "us", False)
        for w in WORKLOADS
    },
    **{
        f"{w}_server_cpu_us": (w.upper(), "Restate server's CPU per invocation", "us", False)
        for w in WORKLOADS
    },
    **{
        f"{w}_cpu_per_server_cpu": (w.upper(), "deployment's CPU / server's CPU", "ratio", False)
        for w in WORKLOADS
    },
}
TICKS: Final = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (hypercorn's CLI
    serves from a spawned worker process), from ``/proc``."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        child = int(entry.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def deployment(system: str, port: int) -> list[str]:
    if system == "restate-sdk":
        hypercorn = str(Path(PY).parent / "hypercorn")
        return [hypercorn, "--bind", f"127.0.0.1:{port}", "restate_service:app"]
    return [PY, "-m", "actors._cli", "endpoint", "bench.peers.va_endpoint:ACTORS",
            "--port", str(port)]  # fmt: skip


def group_pids(leader: int) -> list[int]:
    """The processes of ``leader``'s process group (the deployment and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == leader:
                    pids.append(int(entry.name))
    return pids


def callgrind_total(directory: Path, pids: list[int]) -> int:
    """Instructions counted since the last zeroing: the newest dump of each of ``pids``."""
    total = 0
    for pid in pids:
        dumps = sorted(directory.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
        if dumps:
            for line in dumps[-1].read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total


def one_run(
    system: str,
    settings: Settings,
    in_ns: list[str],
    work: Path,
    callgrind: Path | None = None,
) -> dict[str, float]:
    """One server and one deployment through the workloads. With ``callgrind`` (a fresh
    directory), the deployment runs under ``valgrind --tool=callgrind`` and the figures
    are instructions per invocation of W1 and W2 (each after a warm-up driver run)."""
    log_path = work / f"{system}.log"
    env = {
        **os.environ,
        "RESTATE_BIND_ADDRESS": "127.0.0.1:5122",
        "RESTATE_ADMIN__BIND_ADDRESS": "127.0.0.1:9070",
        "RESTATE_INGRESS__BIND_ADDRESS": "127.0.0.1:8080",
        "RESTATE_LOG_FILTER": "warn",
    }
    base = work / f"restate-{system}-{time.monotonic_ns()}"
    server = PROCS.start(
        [*in_ns, str(restate_server_binary()), "--base-dir", str(base), "--node-name", "bench"],
        log_path,
        env=env,
    )
    cwd = HERE / "services" if system == "restate-sdk" else ROOT
    command = deployment(system, 9080)
    if callgrind is not None:
        callgrind.mkdir(parents=True)
        command = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                   f"--callgrind-out-file={callgrind}/cg.%p", *command]  # fmt: skip
    service = PROCS.start([*in_ns, *command], log_path, cwd=cwd)
    try:
        retry_until(
            lambda: http_post(in_ns, "http://127.0.0.1:9070", "/deployments",
                              '{"uri": "http://127.0.0.1:9080", "force": true}', log_path),
            60 if callgrind is None else 600,
            "deployment registration",
        )  # fmt: skip
        retry_until(
            lambda: http_post(in_ns, "http://127.0.0.1:8080", "/Counter/warm/value", "", log_path),
            60,
            "ingress",
        )
        cmd = [*in_ns, PY, str(HERE / "http_client.py"), "http://127.0.0.1:8080", "workloads"]
        metrics: dict[str, float] = {}
        if callgrind is not None:
            for workload in ("w1", "w2"):
                only = ["--only", workload, "--settings", settings.to_json()]
                run_driver([*cmd, *only], log_path)  # warm: every key seen, code paths hot
                pids = group_pids(service.pid)
                for pid in pids:
                    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True,
                                   check=False)  # fmt: skip
                result = run_driver([*cmd, *only], log_path)
                for pid in pids:
                    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True,
                                   check=False)  # fmt: skip
                calls = max(1, result["calls"][workload])
                metrics[f"{workload}_instructions"] = callgrind_total(callgrind, pids) / calls
            return metrics
        for workload in WORKLOADS:
            before = tree_cpu(service.pid), tree_cpu(server.pid)
            result = run_driver(
                [*cmd, "--only", workload, "--settings", settings.to_json()], log_path
            )
            cpu = tree_cpu(service.pid) - before[0], tree_cpu(server.pid) - before[1]
            calls = max(1, result["calls"][workload])
            metrics.update(result["metrics"])
            metrics[f"{workload}_cpu_us"] = 1e6 * cpu[0] / calls
            metrics[f"{workload}_server_cpu_us"] = 1e6 * cpu[1] / calls
            metrics[f"{workload}_cpu_per_server_cpu"] = cpu[0] / cpu[1] if cpu[1] else 0.0
        return metrics
    finally:
        PROCS.kill(service)
        PROCS.kill(server)
        # Throwaway: a fresh one per run (and its unix sockets would trip a copy of the
        # tree, as tests/test_packaging.py makes).
        shutil.rmtree(base, ignore_errors=True)
        if callgrind is not None:
            shutil.rmtree(callgrind, ignore_errors=True)


def overhead(name: str, sdk: float, ours: float) -> float:
    """How much worse ``ours`` is than ``sdk``, in percent (negative: better)."""
    if HIGHER_IS_BETTER.get(name, False):
        return 100.0 * (sdk - ours) / sdk
    return 100.0 * (ours - sdk) / sdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count the deployment's instructions per invocation of W1 and W2 under "
        "callgrind instead (user space only; one run per system; prints, writes nothing)",
    )
    args = parser.parse_args()
    settings = Settings(seconds=args.seconds)
    work = ROOT / "bench" / ".peers" / "endpoint"
    work.mkdir(parents=True, exist_ok=True)
    in_ns: list[str] = []
    if os.geteuid() == 0:
        ns = f"vaendpoint{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)

        def delete_ns() -> None:
            subprocess.run(["ip", "netns", "del", ns], check=False)

        PROCS.cleanups.append(delete_ns)
        in_ns = ["ip", "netns", "exec", ns]
        subprocess.run([*in_ns, "ip", "link", "set", "lo", "up"], check=True)
    runs: dict[str, list[dict[str, float]]] = {system: [] for system in SYSTEMS}
    if args.instructions:
        try:
            for system in SYSTEMS:
                print(f"callgrind: {system}", file=sys.stderr, flush=True)
                directory = work / f"callgrind-{system}-{time.monotonic_ns()}"
                runs[system].append(one_run(system, settings, in_ns, work, directory))
        finally:
            PROCS.stop_all()
        counted = runs["restate-sdk"][0], runs["va-endpoint"][0]
        for name in counted[0]:
            print(f"{name}: Restate SDK {counted[0][name]:,.0f}, actors endpoint "
                  f"{counted[1][name]:,.0f} per invocation: "
                  f"{counted[1][name] / counted[0][name]:.3f}x")  # fmt: skip
        return
    try:
        for r in range(args.runs):
            order = list(SYSTEMS) if r % 2 == 0 else list(reversed(SYSTEMS))
            for system in order:
                print(f"run {r + 1}/{args.runs}: {system}", file=sys.stderr, flush=True)
                runs[system].append(one_run(system, settings, in_ns, work))
    finally:
        PROCS.stop_all()
    medians = {
        system: {m: statistics.median(run[m] for run in results) for m in results[0]}
        for system, results in runs.items()
    }
    rows: list[dict[str, Any]] = []
    for metric in medians["restate-sdk"]:
        sdk, ours = medians["restate-sdk"][metric], medians["va-endpoint"][metric]
        rows.append({"metric": metric, "restate_sdk": sdk, "va_endpoint": ours,
                     "overhead_percent": overhead(metric, sdk, ours)})  # fmt: skip
    document: dict[str, Any] = {
        "what": "actors endpoint vs Restate's own Python SDK, same Restate server, W1-W4",
        "systems": SYSTEMS,
        "restate_server": RESTATE_VERSION,
        "settings": settings.__dict__,
        "runs": runs,
        "median": medians,
        "overhead": rows,
        "max_overhead_percent": max(row["overhead_percent"] for row in rows),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "endpoint.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        "# actors endpoint vs Restate's Python SDK (same Restate server)",
        "",
        f"Restate server {RESTATE_VERSION}; {args.runs} runs per system, alternating; "
        f"medians; {settings.seconds} s per phase; {os.cpu_count()} CPUs (shared).",
        "",
        "| metric | what | Restate SDK | actors endpoint | overhead |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        metric = str(row["metric"])
        label, what, unit, _ = {**METRICS, **CPU_METRICS}.get(metric, (metric, "", "", True))
        lines.append(
            f"| {label} `{row['metric']}` | {what} ({unit}) | {row['restate_sdk']:.2f} | "
            f"{row['va_endpoint']:.2f} | {row['overhead_percent']:+.1f}% |"
        )
    lines += ["", f"Largest overhead: {document['max_overhead_percent']:+.1f}%.", ""]
    (RESULTS / "endpoint.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
