"""Workload driver: DBOS Transact, in-process (a library, like virtual-actors embedded).
Runs in bench/.peers/dbos, not in .venv: excluded from mypy/ruff.

DBOS has no keyed objects. The closest equivalent of ``Counter.add`` is a workflow whose
one step is a datasource transaction ``UPDATE counters SET n = n + 1 WHERE k = ?``
(the row lock serialises writers of one key; the step's output is checkpointed in the
same transaction). ``Counter.value`` is a read-only datasource transaction. W4 is a
workflow of 10 ``@DBOS.step`` steps. Callers are threads (DBOS' sync API).

    python dbos_driver.py --db sqlite|postgresql://... --settings JSON [--w6-submit N]
"""

import argparse
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.peers.common import (  # noqa: E402
    CALLERS,
    HANG_MARGIN,
    KEYS,
    READERS,
    STEPS,
    W4_CONCURRENCY,
    WRITERS,
    Phase,
    Settings,
    emit,
    perf_counter,
    thread_phase,
)
from dbos import DBOS, SQLAlchemyDatasource  # noqa: E402

ds = None  # the datasource, set in setup()


def setup(sys_url: str, app_url: str, pool: int) -> None:
    global ds
    if sys_url.startswith("sqlite:///"):
        for url in {sys_url, app_url}:
            path = url.removeprefix("sqlite:///")
            if not os.path.exists(path):
                con = sqlite3.connect(path)
                con.execute("PRAGMA journal_mode=WAL")  # persistent in the file
                con.close()
    kwargs = {"pool_size": pool, "max_overflow": 0, "pool_timeout": 300}
    DBOS(
        config={
            "name": "bench",
            "system_database_url": sys_url,
            "sys_db_pool_size": pool,
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    ds = SQLAlchemyDatasource.create(app_url, engine_kwargs=kwargs)
    with ds.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS counters (k TEXT PRIMARY KEY, n BIGINT NOT NULL)"))
        for k in [f"k{i}" for i in range(KEYS)] + ["one"]:
            conn.execute(
                sa.text("INSERT INTO counters (k, n) VALUES (:k, 0) ON CONFLICT (k) DO NOTHING"),
                {"k": k},
            )
    register("SERIALIZABLE" if app_url.startswith("sqlite") else "READ COMMITTED")
    DBOS.launch()


def register(iso: str) -> None:
    global add, value, steps_wf, incr

    @ds.transaction(isolation_level=iso)
    def incr(k: str) -> int:
        row = ds.sql_session().execute(
            sa.text("UPDATE counters SET n = n + 1 WHERE k = :k RETURNING n"), {"k": k}
        ).one()
        return int(row[0])

    @DBOS.workflow(name="add")
    def add(k: str) -> int:
        return incr(k)

    @ds.transaction(isolation_level=iso, name="value")
    def value(k: str) -> int:
        return int(ds.sql_session().execute(sa.text("SELECT n FROM counters WHERE k = :k"), {"k": k}).one()[0])

    @DBOS.step()
    def step_fn(i: int) -> int:
        return i

    @DBOS.workflow(name="steps")
    def steps_wf(start: int) -> int:
        total = start
        for i in range(STEPS):
            total += step_fn(i)
        return total


def measure(s: Settings) -> dict:
    metrics: dict[str, float] = {}
    ids = itertools.count()
    prefix = f"b{os.getpid()}-"

    def add_key(i: int) -> int:
        return add(f"k{i}")

    def add_one(i: int) -> int:
        return add("one")

    def read_one(i: int) -> int:
        return value("one")

    def workflow(i: int) -> int:
        from dbos import SetWorkflowID

        with SetWorkflowID(f"{prefix}{next(ids)}"):
            return steps_wf(0)

    def phase(groups):
        thread_phase([(Phase(), n, c) for n, c in groups], s.warmup, s.cap)
        phases = [Phase() for _ in groups]
        thread_phase([(p, n, c) for p, (n, c) in zip(phases, groups)], s.seconds, s.cap)
        return phases

    (w1,) = phase([(1, add_one)])
    metrics["w1_p50_ms"], metrics["w1_p99_ms"] = w1.percentile_ms(0.5), w1.percentile_ms(0.99)
    (w2,) = phase([(KEYS, add_key)])
    metrics["w2_rate"] = w2.rate
    (w3,) = phase([(CALLERS, add_one)])
    metrics["w3_rate"] = w3.rate
    reads, writes = phase([(READERS, read_one), (WRITERS, add_one)])
    metrics["w5_reads"], metrics["w5_writes"] = reads.rate, writes.rate
    (w4,) = phase([(1, workflow)])
    metrics["w4_p50_ms"] = w4.percentile_ms(0.5)
    for c in W4_CONCURRENCY:
        (wc,) = phase([(c, workflow)])
        metrics[f"w4_rate_{c}"] = wc.rate
    return metrics


def w6_submit(count: int) -> None:
    """Start ``count`` workflows (each recorded before start_workflow returns), SIGKILL."""
    from dbos import SetWorkflowID

    for i in range(count):
        with SetWorkflowID(f"r{i}"):
            DBOS.start_workflow(steps_wf, 0)
    os.kill(os.getpid(), signal.SIGKILL)


def w6_recover(count: int) -> float:
    """After relaunch (recovery of this executor's pending workflows starts in launch):
    seconds until every workflow has its result."""
    deadline = perf_counter() + HANG_MARGIN * 5
    for i in range(count):
        handle = DBOS.retrieve_workflow(f"r{i}")
        if handle.get_result() != sum(range(STEPS)):
            raise RuntimeError(f"r{i}: wrong output")
        if perf_counter() > deadline:
            raise RuntimeError("W6 did not finish")
    return perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--settings", default=Settings().to_json())
    parser.add_argument("--dir", default=None)
    parser.add_argument("--w6", choices=["submit", "recover"], default=None)
    parser.add_argument("--count", type=int, default=0)
    a = parser.parse_args()
    s = Settings.from_json(a.settings)
    pool = max(W4_CONCURRENCY) + READERS + WRITERS + 8
    if a.w6:
        sys_url, app_url = urls(a.db, a.dir, "w6")
        start = perf_counter()
        setup(sys_url, app_url, pool)
        if a.w6 == "submit":
            w6_submit(a.count)
        else:
            end = w6_recover(a.count)
            emit({"w6_seconds": end - start}, {})
            DBOS.destroy()
        return
    with tempfile.TemporaryDirectory(prefix="peers-dbos-") as tmp:
        sys_url, app_url = urls(a.db, tmp, "w")
        setup(sys_url, app_url, pool)
        metrics = measure(s)
        DBOS.destroy()
        notes = {}
        if s.w6_count:
            args = [sys.executable, __file__, "--db", a.db, "--dir", tmp, "--count", str(s.w6_count)]
            sub = subprocess.run(args + ["--w6", "submit"], timeout=HANG_MARGIN * 5)
            if sub.returncode != -signal.SIGKILL:
                raise RuntimeError(f"W6 submitter exited with {sub.returncode}")
            rec = subprocess.run(args + ["--w6", "recover"], timeout=HANG_MARGIN * 10, capture_output=True, text=True)
            if rec.returncode != 0:
                raise RuntimeError(f"W6 recovery failed: {rec.stderr[-2000:]}")
            import json

            metrics["w6_seconds"] = json.loads(rec.stdout.strip().splitlines()[-1])["metrics"]["w6_seconds"]
            notes["w6_seconds"] = f"N={s.w6_count}, DBOS.launch() recovers the executor's pending workflows"
    emit(metrics, notes)


def urls(db: str, tmp: str, tag: str) -> tuple[str, str]:
    if db == "sqlite":
        return f"sqlite:///{tmp}/{tag}-sys.sqlite", f"sqlite:///{tmp}/{tag}-app.sqlite"
    # postgresql://user@127.0.0.1:port/ : one database per tag, created by run.py's helper
    base = db.rstrip("/")
    return f"{base}/{tag}_sys", f"{base}/{tag}_app"


if __name__ == "__main__":
    main()
