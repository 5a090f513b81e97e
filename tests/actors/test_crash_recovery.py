"""SIGKILL a real runtime at random moments until its work is done; then check that every
invocation ran exactly once (invariants 4-6 and 10 of DESIGN.md section 3).

The workload (``tests/crash_workload.py``) submits 200 ``Ledger.apply`` invocations over
20 keys with idempotency keys, each with three ``ctx.run`` steps that append
``(invocation, step, nonce)`` to an external log, and a balance update. It prints a line
for each acceptance and each completion it makes durable; the test kills it with SIGKILL
after a random number of those lines and starts it again, until a life prints ``DONE``.
Kill points come from a seeded ``random.Random``, so the run is reproducible. The checks
(``crash_workload.verify``) are shared with the long version, ``bench/crash_soak.py``.
"""

from __future__ import annotations

import random
import signal
import time
from typing import TYPE_CHECKING

import pytest
from crash_workload import Observed, verify, workload_argv

from actors.testing import run_until_killed

if TYPE_CHECKING:
    from pathlib import Path

N_INVOCATIONS = 200
N_KEYS = 20
SEED = 20240611
MAX_LINES_PER_LIFE = 15  # a life is killed after 1..15 progress lines
#: That the run crashed often enough to mean something. A loaded machine lets a life run
#: on past the line it is killed at (the reader is slow to send the signal), so it makes
#: more progress per life and the workload needs fewer: 44 kills on a quiet machine, 17
#: seen with other test suites running beside it. The oracle is ``verify``, not the count.
MIN_KILLS = 12
MAX_LIVES = 200  # each killed life made >= 1 acceptance or completion durable: ~50 suffice


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no stderr)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def test_SIGKILLed_workload_completes_every_invocation_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data, log, stderr = tmp_path / "data", tmp_path / "effects.log", tmp_path / "stderr"
    argv = workload_argv(data, log, N_INVOCATIONS, N_KEYS, durability="process", stderr=stderr)
    observed = Observed()
    kills = 0
    killed_while_accepting = 0
    started = time.monotonic()
    for _life in range(MAX_LIVES):
        lines, status = run_until_killed(
            argv, kill_after_lines=rng.randint(1, MAX_LINES_PER_LIFE), timeout=60
        )
        observed.feed(lines)
        if observed.done:
            break
        assert status == -signal.SIGKILL, (
            f"a life exited with status {status} before DONE; last lines {lines[-3:]}; "
            f"stderr:\n{_tail(stderr)}"
        )
        kills += 1
        killed_while_accepting += any(line.startswith("accepted") for line in lines)
    else:
        pytest.fail(f"no DONE after {MAX_LIVES} lives ({kills} kills); stderr:\n{_tail(stderr)}")
    elapsed = time.monotonic() - started

    assert kills >= MIN_KILLS, f"only {kills} kills in {elapsed:.1f}s"
    assert killed_while_accepting > 0  # kills landed while sends were still going on
    print(f"{kills} kills ({killed_while_accepting} while accepting) in {elapsed:.1f}s")
    violations = verify(data, log, N_INVOCATIONS, N_KEYS, observed=observed)
    assert not violations, f"{len(violations)} violations after {kills} kills:\n" + "\n".join(
        violations[:30]
    )
