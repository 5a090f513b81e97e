"""Helpers for testing actors: a temporary runtime, a clock that follows
``trio.testing.MockClock``, crash injection, and SIGKILL of a real subprocess.

Example::

    async def test_counter_survives_a_crash(tmp_path, autojump_clock) -> None:
        with pytest.raises(actors.testing.SimulatedCrash):
            async with actors.testing.open_test_runtime(
                [Counter], path=tmp_path, crash=actors.testing.CrashPlan(in_run="charge")
            ) as rt:
                await rt.call(Counter.checkout, 10, key="alice")
        async with actors.testing.open_test_runtime([Counter], path=tmp_path) as rt:
            ...  # the accepted invocation resumed from its journal
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, final

import attrs

from ._clock import LoopClock
from ._control_flow import ControlFlow
from ._errors import PersistenceError
from ._open import open_runtime

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from actors.storage import WriteBatch

    from ._clock import Clock
    from ._definitions import Actor, ActorProvider
    from ._retry import RetryPolicy
    from ._runtime import Runtime

__all__ = [
    "CrashPlan",
    "LoopClock",
    "SimulatedCrash",
    "open_test_runtime",
    "run_until_killed",
]


@final
class SimulatedCrash(ControlFlow):
    """Raised out of ``open_test_runtime`` when its ``CrashPlan`` fires. From that point
    no commit of the runtime succeeds, exactly as if the process had died there. It is a
    BaseException so that handler code catching ``Exception`` cannot swallow it, and one
    of the runtime's own signals, so that the runtime lets it end the runtime (any other
    BaseException raised in handler code is recorded as that attempt's failure)."""


@final
@attrs.frozen
class CrashPlan:
    """Where a test runtime dies.

    Args:
      after_commits: the runtime dies when it attempts commit number
        ``after_commits + 1``: the first ``after_commits`` commits land, nothing after.
      in_run: the runtime dies just before the body of ``ctx.run(in_run)`` executes
        (the body never runs in this life).
      after_run: the runtime dies just after the body of ``ctx.run(after_run)``
        executed, before its result is durable (the body's effect happened; the next
        life runs it again, as a real crash would).
    """

    after_commits: int | None = None
    in_run: str | None = None
    after_run: str | None = None


class _Crasher:
    def __init__(self, plan: CrashPlan) -> None:
        self.plan = plan
        self.commits = 0
        self.dead = False
        self.pending_after_run = False

    def die(self, where: str) -> None:
        self.dead = True
        raise SimulatedCrash(where)

    def before_commit(self, batches: Sequence[WriteBatch]) -> None:
        if self.dead:
            raise SimulatedCrash("the runtime already crashed")
        if self.pending_after_run:
            self.die(f"crashed after the body of ctx.run({self.plan.after_run!r})")
        limit = self.plan.after_commits
        if limit is not None and self.commits >= limit:
            self.die(f"crashed after {limit} commits")
        self.commits += 1

    def before_run_body(self, name: str) -> None:
        if self.dead:
            raise SimulatedCrash("the runtime already crashed")
        if name == self.plan.in_run:
            self.die(f"crashed before the body of ctx.run({name!r})")
        if name == self.plan.after_run:
            # The body runs; the next commit (its result) never lands.
            self.pending_after_run = True


@asynccontextmanager
async def open_test_runtime(
    actors: Sequence[type[Actor] | Actor | ActorProvider] | ActorProvider,
    *,
    path: str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    crash: CrashPlan | None = None,
    retry: RetryPolicy | None = None,
    idle_timeout: float = 60.0,
    suspend_after: float = 60.0,
    max_in_flight: int = 10_000,
    retention: timedelta | float = timedelta(days=1),
    commit_mode: Literal["thread", "inline"] = "inline",
) -> AsyncIterator[Runtime]:
    """A runtime for tests: data in ``path`` (a temporary directory when None, removed
    afterwards), inline commits and a ``LoopClock`` by default, so it runs under
    ``trio.testing.MockClock(autojump_threshold=0)`` with no false timeouts and sleeps
    for days finish at once. With ``crash``, the runtime dies where the plan says and
    the block raises ``SimulatedCrash``; reopen the same ``path`` to check recovery.
    With ``commit_mode="thread"`` a commit crash kills the writer thread, which stops the
    runtime; the block raises ``SimulatedCrash`` all the same."""
    crasher = _Crasher(crash) if crash is not None else None
    with tempfile.TemporaryDirectory(prefix="actors-test-") as scratch:
        data = Path(path) if path is not None else Path(scratch) / "data"
        try:
            async with open_runtime(
                data,
                actors,
                clock=clock or LoopClock(),
                retry=retry,
                idle_timeout=idle_timeout,
                suspend_after=suspend_after,
                max_in_flight=max_in_flight,
                retention=retention,
                commit_mode=commit_mode,
                _fault_hook=crasher.before_commit if crasher else None,
                _before_run_body=crasher.before_run_body if crasher else None,
            ) as runtime:
                yield runtime
        except BaseExceptionGroup as group:
            crashed, _rest = group.split(SimulatedCrash)
            if crashed is not None:
                raise SimulatedCrash(str(crashed.exceptions[0])) from None
            raise
        except PersistenceError:
            # With commit_mode="thread" the crash kills the writer thread: the store
            # takes no more writes and the runtime stops. That is the crash, as planned.
            if crasher is not None and crasher.dead:
                raise SimulatedCrash("the runtime crashed (its writer thread died)") from None
            raise
        if crasher is not None and crasher.dead:
            raise SimulatedCrash("the runtime crashed")


def run_until_killed(
    argv: Sequence[str],
    *,
    kill_after_lines: int,
    timeout: float = 120.0,
    cwd: str | os.PathLike[str] | None = None,
) -> tuple[list[str], int]:
    """Run ``argv`` as a subprocess, read its stdout line by line, and SIGKILL it right
    after line number ``kill_after_lines`` (no cleanup, no final commit: a real crash).

    The child's stderr goes to this process's stderr. Returns the lines read and the
    exit status (negative ``SIGKILL`` when it was killed,
    the process's own status when it finished first). Raises ``TimeoutError`` if the
    process neither prints enough nor exits within ``timeout`` seconds.
    """
    # stderr is inherited, not piped: an unread pipe would block a chatty child.
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, text=True, cwd=cwd)
    assert proc.stdout is not None
    lines: list[str] = []
    import threading

    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if len(lines) >= kill_after_lines:
                os.kill(proc.pid, signal.SIGKILL)
                break
        status = proc.wait()
    finally:
        timed_out = not timer.is_alive() and proc.returncode == -signal.SIGKILL
        timer.cancel()
        if proc.stdout:
            proc.stdout.close()
    if timed_out and len(lines) < kill_after_lines:
        raise TimeoutError(f"{argv[0]} did not print {kill_after_lines} lines in {timeout}s")
    return lines, status
