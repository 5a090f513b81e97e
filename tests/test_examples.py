"""Every examples/*.py runs to completion and prints what it promises.

Each example runs as a user would run it: ``python examples/NN_topic.py`` in a
subprocess, from an empty working directory. A new example is picked up by itself; give
it its key output lines in ``EXPECTED`` (test_every_example_has_expected_output fails
until then).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Example file name -> regular expressions, each of which must match a whole output line.
EXPECTED: dict[str, list[str]] = {
    "00_storage.py": [
        r"data directory: .+",
        r"child acknowledged \d+ records, then was killed with SIGKILL",
        r"reopened: \d+ records on disk, 0 acknowledged ones missing",
        r"wrote after the crash and read back: b'still writable'",
        r"every acknowledged record survived the crash",
    ],
    "01_counter.py": [
        r"add 5 to alice -> 5",
        r"1000 concurrent add\(1\) on bob -> 1000",
        r"DeadlockError \(409\): .+",
        r"after reopening: \{'alice': 0, 'bob': 1000, 'carol': 15\}",
        r"state survived the restart",
    ],
    "02_signup.py": [
        r"submitted workflow pete123: Accepted",
        r"submitted again: PreviouslyAccepted \(same invocation: True\)",
        r"  created user entry for Pete",
        r"  mail to pete@example\.com: click https://example\.com/verify\?secret=[0-9a-f-]{36}",
        r"stage: Email verification",
        r"output not ready yet \(470\)",
        r"approved the email with the mailed secret",
        r"workflow result: True",
        r"stage: Email verified",
        r"after reopening, output: True",
    ],
    "03_saga.py": [
        r"  -> \['flight-ada-Lisbon', 'hotel-ada-Lisbon', 'car-ada-Lisbon'\]",
        r"  booked hotel-bob-Venice",
        r"  car for bob in Venice: none available",
        r"  cancelled hotel-bob-Venice",
        r"  cancelled flight-bob-Venice",
        r"caller got TerminalError \(409\): no car available in Venice",
    ],
    "04_reminder.py": [
        r"\[\+0:30\] closing the runtime \(both still pending\)",
        r"\[\+1:30\] reopened the runtime",
        r"\[\+1:30\] reminder: stretch",  # overdue at reopen: fires at once
        r"\[\+2:00\] note: drink water",  # still ahead at reopen: fires on time
        r"\[\+2:00\] both delivered, once each",
    ],
    "06_http_ingress.py": [
        r"serving Restate's ingress at http://127\.0\.0\.1:\d+",
        r"  \[client\] POST signupWorkflow/myUser123/run/send -> \(202, \{'invocationId': "
        r"'(inv_\w+)', 'status': 'Accepted'\}\)",
        r"  \[client\] POST signupWorkflow/myUser123/run/send -> \(202, \{'invocationId': "
        r"'(inv_\w+)', 'status': 'PreviouslyAccepted'\}\)",
        r"  \[client\] POST signupWorkflow/other/run/send -> \(400, \{'code': 400, 'message': "
        r"'input of signupWorkflow.run does not convert to User: .*\}\)",
        r"  \[client\] POST signupWorkflow/myUser123/getStage -> \(200, 'Email verification'\)",
        r"  \[client\] GET restate/workflow/signupWorkflow/myUser123/output -> \(470, .*",
        r"  \[client\] POST signupWorkflow/myUser123/approveEmail -> \(200, None\)",
        r"  \[client\] GET restate/workflow/signupWorkflow/myUser123/attach -> \(200, True\)",
        r"  \[client\] POST signupWorkflow/myUser123/getStage -> \(200, 'Email verified'\)",
        r"server stopped",
    ],
    "07_restate_signup.py": [
        r"submitted workflow pete123: Accepted",
        r"  created user entry for Pete",
        r"  mail to pete@example\.com: click https://example\.com/verify\?secret=[0-9a-f-]{36}",
        r"stage: Email verification",
        r"workflow result: True",
        r"stage: Email verified",
        r"actors serve --restate: serving at http://127\.0\.0\.1:\d+",
        r"  \[requests\] submitted: 202 \{'invocationId': 'inv_\w+', 'status': 'Accepted'\}",
        r"  \[server\] mail to user@user\.com: click https://example\.com/verify\?secret=[0-9a-f-]{36}",
        r"  \[user\] clicks the mailed link \(approveEmail\)",
        r"  \[requests\] attached: 200 true",
        r"server stopped",
    ],
    "05_crash_recovery.py": [
        r"  \[worker\] submitted order-42: Accepted",
        r"life 1: SIGKILLed the worker inside step 3 \(step 2's result was durable\)",
        r"  \[worker\] submitted order-42: PreviouslyAccepted",
        r"  \[worker\] result: \['reserve stock', .*, 'email receipt'\]",
        r"side-effect log: step 1 x1, step 2 x1, step 3 x1, step 4 x1, step 5 x1",
        r"every step's side effect happened exactly once",
    ],
}


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.py"))


def test_examples_exist() -> None:
    assert example_files(), f"no examples found in {EXAMPLES}"


def test_every_example_has_expected_output() -> None:
    assert sorted(p.name for p in example_files()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_runs(path: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.splitlines()
    for pattern in EXPECTED.get(path.name, []):
        assert any(re.fullmatch(pattern, line) for line in lines), (
            f"{path.name}: no output line matches {pattern!r}\n{result.stdout}"
        )
    assert list(tmp_path.iterdir()) == [], "examples keep their data out of the working dir"
