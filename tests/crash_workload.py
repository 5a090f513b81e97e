"""A crash-recovery workload for SIGKILL tests, and the checks that go with it.

Run as a script (one *life*; the parent kills it and starts it again until it prints
``DONE``)::

    python tests/crash_workload.py DATA_DIR LOG_FILE N_INVOCATIONS N_KEYS \\
        [--durability process|fsync] [--summary FILE] [--stderr FILE]

It opens ``actors.open_runtime(DATA_DIR, [Ledger])`` under trio and submits operation
``i`` for ``i`` in ``range(N_INVOCATIONS)`` one after the other, as
``rt.send(Ledger.apply, make_ops(N)[i], key=key_of(i, N_KEYS), idempotency_key=f"op-{i}")``.
After a restart the same sends answer ``PreviouslyAccepted`` with the first life's
invocation id, so re-submitting everything is safe. ``Ledger.apply`` runs three
``ctx.run`` steps (``reserve``, ``charge``, ``notify``), adds ``amount`` to the key's
``balance`` between the first two and appends ``i`` to the key's ``applied`` list at the
end. Each step body appends ``"{invocation_id} {step} {nonce}\\n"`` to LOG_FILE (flushed
and fsync'd) with a fresh random nonce, and returns the nonce; the handler returns the
new balance and the three nonces it got, so a result names the executions whose results
became durable.

Progress lines on stdout (flushed), printed only for progress made durable in this
life, so that every life killed after ``k >= 1`` lines got somewhere:

* ``accepted I ID``: ``send`` answered ``Accepted`` (the acceptance is durable);
* ``completed I ID BALANCE NONCE NONCE NONCE``: the result of an invocation that had not
  completed before this life started (those are read from the ``applied`` state first);
* ``DONE``: every result is in and the summary (``DATA_DIR.summary.json`` unless
  ``--summary``) is written; the runtime is closed.

The parent side is here too: ``Observed`` collects what the lives printed and
``verify`` checks the data directory, the summary, the log and those observations, and
returns the violations it found (an empty list when all is well). Used by
``tests/actors/test_crash_recovery.py`` and ``bench/crash_soak.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import secrets
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # Run as a script, tests/ comes first on sys.path, and the test folder tests/actors/
    # would shadow the actors package.
    del sys.path[0]

import trio

import actors
from actors.storage import Table

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Durability = Literal["fsync", "process"]

#: The ``ctx.run`` steps of ``Ledger.apply``, in order.
STEPS: tuple[str, ...] = ("reserve", "charge", "notify")


@dataclass(frozen=True)
class Op:
    """Operation ``index``: add ``amount`` to the balance of its key."""

    index: int
    amount: int


@dataclass(frozen=True)
class Applied:
    """The result of ``Ledger.apply``: the key's balance after the operation and the
    nonce each step returned (in ``STEPS`` order)."""

    index: int
    balance: int
    nonces: list[str]


def key_of(index: int, n_keys: int) -> str:
    return f"k{index % n_keys}"


def make_ops(n_invocations: int) -> list[Op]:
    """The workload's operations: deterministic, with amounts of both signs."""
    return [Op(i, (i * 37) % 101 - 50) for i in range(n_invocations)]


class Ledger(actors.VirtualObject):
    """A keyed ledger whose steps leave a trace in an external log file."""

    def __init__(self, log_file: str | os.PathLike[str]) -> None:
        self.log_file = Path(log_file)

    def _effect(self, invocation_id: str, step: str) -> str:
        """The side effect of a step: one fsync'd log line naming this execution."""
        nonce = secrets.token_hex(8)
        with self.log_file.open("a", encoding="utf-8") as log:
            log.write(f"{invocation_id} {step} {nonce}\n")
            log.flush()
            os.fsync(log.fileno())
        return nonce

    @actors.exclusive
    async def apply(self, ctx: actors.ObjectContext, op: Op) -> Applied:
        reserve = await ctx.run("reserve", self._effect, ctx.invocation_id, "reserve")
        balance = ((await ctx.get("balance", int)) or 0) + op.amount
        ctx.set("balance", balance)
        charge = await ctx.run("charge", self._effect, ctx.invocation_id, "charge")
        notify = await ctx.run("notify", self._effect, ctx.invocation_id, "notify")
        applied = (await ctx.get("applied", list[int])) or []
        ctx.set("applied", [*applied, op.index])  # lands with the completion only
        return Applied(op.index, balance, [reserve, charge, notify])

    @actors.shared
    async def balance(self, ctx: actors.ObjectSharedContext) -> int:
        return (await ctx.get("balance", int)) or 0

    @actors.shared
    async def applied(self, ctx: actors.ObjectSharedContext) -> list[int]:
        return (await ctx.get("applied", list[int])) or []


# --- one life of the workload (the child) -------------------------------------------------------


def summary_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the final life writes its summary unless told otherwise: next to DATA_DIR."""
    return Path(f"{os.fspath(data_dir)}.summary.json")


def _result_line(result: Applied, invocation_id: str) -> str:
    return f"completed {result.index} {invocation_id} {result.balance} {' '.join(result.nonces)}"


async def run_life(
    data_dir: Path,
    log_file: Path,
    n_invocations: int,
    n_keys: int,
    *,
    durability: Durability,
    summary: Path,
) -> None:
    ops = make_ops(n_invocations)
    keys = sorted({key_of(op.index, n_keys) for op in ops})
    entries: dict[int, dict[str, object]] = {}
    async with actors.open_runtime(data_dir, [Ledger(log_file)], durability=durability) as rt:
        completed_before: set[int] = set()
        for key in keys:
            completed_before.update(await rt.call(Ledger.applied, key=key))

        async def wait_for(op: Op, handle: actors.InvocationHandle) -> None:
            result: Applied = await handle.result()
            entries[op.index] = {
                "id": handle.invocation_id,
                "key": key_of(op.index, n_keys),
                "result": asdict(result),
            }
            if op.index not in completed_before:
                print(_result_line(result, handle.invocation_id), flush=True)

        async with trio.open_nursery() as nursery:
            for op in ops:
                handle = await rt.send(
                    Ledger.apply,
                    op,
                    key=key_of(op.index, n_keys),
                    idempotency_key=f"op-{op.index}",
                )
                if handle.status == "Accepted":
                    print(f"accepted {op.index} {handle.invocation_id}", flush=True)
                nursery.start_soon(wait_for, op, handle)
        balances = {key: await rt.call(Ledger.balance, key=key) for key in keys}
    document = {
        "invocations": {str(i): entries[i] for i in sorted(entries)},
        "balances": balances,
    }
    _write_atomically(summary, json.dumps(document, indent=1, sort_keys=True))
    print("DONE", flush=True)


def _write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One life of the crash-recovery workload.")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("log_file", type=Path)
    parser.add_argument("n_invocations", type=int)
    parser.add_argument("n_keys", type=int)
    parser.add_argument("--durability", choices=["process", "fsync"], default="process")
    parser.add_argument("--summary", type=Path, default=None)
    parser.add_argument(
        "--stderr", type=Path, default=None, help="append this process's stderr to FILE"
    )
    args = parser.parse_args(argv)
    if args.stderr is not None:
        # The parent reads stdout only: a stderr pipe nobody drains could block us, and
        # what we wrote there would be lost with the pipe.
        fd = os.open(args.stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    trio.run(
        functools.partial(
            run_life,
            args.data_dir,
            args.log_file,
            args.n_invocations,
            args.n_keys,
            durability=args.durability,
            summary=args.summary or summary_path(args.data_dir),
        )
    )


def workload_argv(
    data_dir: str | os.PathLike[str],
    log_file: str | os.PathLike[str],
    n_invocations: int,
    n_keys: int,
    *,
    durability: Durability = "process",
    stderr: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The command line of one life, run with this interpreter."""
    argv = [
        sys.executable,
        os.fspath(Path(__file__).resolve()),
        os.fspath(data_dir),
        os.fspath(log_file),
        str(n_invocations),
        str(n_keys),
        "--durability",
        durability,
    ]
    if stderr is not None:
        argv += ["--stderr", os.fspath(stderr)]
    return argv


# --- the parent side: what the lives printed, and the checks ------------------------------------


@dataclass
class Observed:
    """What the lives printed, accumulated over every life."""

    #: operation index -> the invocation ids printed as newly ``accepted``, one per life.
    accepted: dict[int, list[str]] = field(default_factory=dict)
    #: operation index -> every ``completed`` line's (id, balance, nonces).
    completed: dict[int, list[tuple[str, int, list[str]]]] = field(default_factory=dict)
    #: lines that are none of the above.
    unknown: list[str] = field(default_factory=list)
    done: bool = False

    def feed(self, lines: Iterable[str]) -> None:
        for line in lines:
            words = line.split()
            try:
                if words == ["DONE"]:
                    self.done = True
                elif words[0] == "accepted" and len(words) == 3:
                    self.accepted.setdefault(int(words[1]), []).append(words[2])
                elif words[0] == "completed" and len(words) == 4 + len(STEPS):
                    entry = (words[2], int(words[3]), words[4:])
                    self.completed.setdefault(int(words[1]), []).append(entry)
                else:
                    self.unknown.append(line)
            except (IndexError, ValueError):
                self.unknown.append(line)


_RECORD = re.compile(r"(inv_[0-9a-z]+) (" + "|".join(STEPS) + r") ([0-9a-f]{16})")
_RECORD_AT_END = re.compile(_RECORD.pattern + "$")
_TORN = re.compile(r"inv_[0-9a-z]*( [a-z]*( [0-9a-f]*)?)?")
_TORN_NAMED = re.compile(r"(inv_[0-9a-z]+) (" + "|".join(STEPS) + r")( [0-9a-f]*)?")


@dataclass
class EffectLog:
    """The side effects recorded in the log file.

    A life killed inside a step body's ``write`` can leave a *torn* record: Linux may cut
    a write that crosses a page boundary when SIGKILL arrives. The next record written
    then follows the fragment on the same line. A torn record is an execution whose body
    never returned (so its result cannot be the durable one); when the fragment names its
    invocation and step it is kept in ``executions`` as ``"torn:<fragment>"``, in order.
    """

    #: (invocation id, step) -> nonces of its executions, in execution order.
    executions: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: fragments of torn records (an execution killed in its write).
    torn: list[str] = field(default_factory=list)
    #: lines that are neither records nor a torn fragment followed by a record.
    malformed: list[str] = field(default_factory=list)


def read_log(log_file: Path) -> EffectLog:
    """Parse the side-effect log (see ``EffectLog``)."""
    log = EffectLog()
    text = log_file.read_text(encoding="utf-8") if log_file.exists() else ""

    def tear(fragment: str) -> None:
        log.torn.append(fragment)
        named = _TORN_NAMED.fullmatch(fragment)
        if named is not None:
            log.executions.setdefault((named[1], named[2]), []).append(f"torn:{fragment}")

    for line in text.splitlines(keepends=True):
        body = line.removesuffix("\n")
        if not line.endswith("\n"):  # the last write of a killed life, cut short
            if _TORN.fullmatch(body):
                tear(body)
            else:
                log.malformed.append(line)
            continue
        record = _RECORD.fullmatch(body)
        if record is None:  # a torn fragment, then a whole record
            record = _RECORD_AT_END.search(body)
            if record is None or not _TORN.fullmatch(body[: record.start()]):
                log.malformed.append(line)
                continue
            tear(body[: record.start()])
        log.executions.setdefault((record[1], record[2]), []).append(record[3])
    return log


def expected_state(
    ops: Sequence[Op], n_keys: int
) -> tuple[dict[int, int], dict[str, int], dict[str, list[int]]]:
    """What an uninterrupted run gives: the balance after each operation, the final
    balance of each key and the order operations were applied in per key (acceptance
    order, which is index order: the sends are sequential)."""
    after: dict[int, int] = {}
    balances: dict[str, int] = {}
    applied: dict[str, list[int]] = {}
    for op in ops:
        key = key_of(op.index, n_keys)
        balances[key] = balances.get(key, 0) + op.amount
        after[op.index] = balances[key]
        applied.setdefault(key, []).append(op.index)
    return after, balances, applied


def verify(
    data_dir: str | os.PathLike[str],
    log_file: str | os.PathLike[str],
    n_invocations: int,
    n_keys: int,
    *,
    observed: Observed | None = None,
    summary: str | os.PathLike[str] | None = None,
    durability: Durability = "process",
) -> list[str]:
    """Check a finished workload; returns the violations found (empty when none).

    * every operation was accepted once (a repeated idempotent send answers
      ``PreviouslyAccepted`` with the summary's id; no life printed ``accepted`` twice)
      and completed exactly once with the right result: the balance an uninterrupted
      run gives after it, the same as the summary and as every ``completed`` line;
    * the state equals an uninterrupted run's: per key the balance and the list of
      applied operations, each once and in acceptance order;
    * no side effect whose result was durable ran again: for each (invocation, step)
      the result's nonce is that of the LAST execution in the log (a later line would
      be a run after the durable result), every step ran, and no other invocation ran;
    * every accepted invocation finished: nothing in flight or in the inbox on reopen,
      and reopening runs no side effect.

    The data directory must not be open elsewhere (the workload has exited).
    """
    observed = observed or Observed()
    summary_file = Path(summary) if summary is not None else summary_path(data_dir)
    violations = [f"unexpected output line {line!r}" for line in observed.unknown]
    effects = read_log(Path(log_file))
    executions = effects.executions
    violations += [f"malformed side-effect log line {line!r}" for line in effects.malformed]
    try:
        document = json.loads(summary_file.read_text(encoding="utf-8"))
        final = {
            int(i): (e["id"], Applied(**e["result"])) for i, e in document["invocations"].items()
        }
        summary_balances: dict[str, int] = document["balances"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        violations.append(f"no usable summary {summary_file}: {exc!r}")
        final, summary_balances = {}, {}
    _, balances, _ = expected_state(make_ops(n_invocations), n_keys)
    if summary_balances and summary_balances != balances:
        violations.append(f"summary balances {summary_balances} != expected {balances}")

    with tempfile.TemporaryDirectory(prefix="crash-verify-") as scratch:
        verify_log = Path(scratch) / "effects.log"
        violations += trio.run(
            functools.partial(
                _verify_store,
                Path(data_dir),
                verify_log,
                n_invocations,
                n_keys,
                durability,
                executions,
                final,
                observed,
            )
        )
        if verify_log.exists():
            reran = verify_log.read_text(encoding="utf-8").splitlines()
            violations.append(f"reopening ran {len(reran)} more side effects: {reran[:5]}")
    return violations


async def _verify_store(
    data_dir: Path,
    verify_log: Path,
    n_invocations: int,
    n_keys: int,
    durability: Durability,
    executions: dict[tuple[str, str], list[str]],
    final: dict[int, tuple[str, Applied]],
    observed: Observed,
) -> list[str]:
    """The checks against the reopened data directory (see ``verify``)."""
    violations: list[str] = []
    ops = make_ops(n_invocations)
    balance_after, balances, applied = expected_state(ops, n_keys)
    async with actors.open_runtime(data_dir, [Ledger(verify_log)], durability=durability) as rt:
        statistics = rt.statistics()  # before anything recovered can finish
        if statistics.in_flight:
            violations.append(f"{statistics.in_flight} accepted invocations unfinished on reopen")
        inbox = rt._store.scan(Table.INBOX)
        if inbox:
            left = sorted(raw.decode() for _, raw in inbox)
            violations.append(f"{len(inbox)} inbox entries left on reopen: {left[:10]}")

        ids: dict[int, str] = {}
        for op in ops:
            i = op.index
            handle = await rt.send(
                Ledger.apply, op, key=key_of(i, n_keys), idempotency_key=f"op-{i}"
            )
            ids[i] = handle.invocation_id
            if handle.status != "PreviouslyAccepted":
                violations.append(f"op {i} was not durably accepted (re-send: {handle})")
            try:
                result: Applied = await rt.attach(handle.invocation_id)
            except actors.ActorsError as exc:
                violations.append(f"op {i} ({handle.invocation_id}) has no result: {exc!r}")
                continue
            violations += _check_result(i, handle.invocation_id, result, balance_after[i])
            if i not in final:
                violations.append(f"op {i}: missing from the summary")
            elif final[i] != (handle.invocation_id, result):
                violations.append(
                    f"op {i}: the final life saw {final[i]}, stored: {handle.invocation_id} {result}"
                )
            violations += _check_effects(i, handle.invocation_id, result, executions)
            violations += _check_observed(i, handle.invocation_id, result, observed)

        for key in sorted(applied):
            got_applied = await rt.call(Ledger.applied, key=key)
            if got_applied != applied[key]:
                violations.append(
                    f"key {key}: applied {got_applied}, uninterrupted run gives {applied[key]}"
                )
            got_balance = await rt.call(Ledger.balance, key=key)
            if got_balance != balances[key]:
                violations.append(
                    f"key {key}: balance {got_balance}, uninterrupted run gives {balances[key]}"
                )

    strays = sorted({inv for inv, _ in executions} - set(ids.values()))
    if strays:
        violations.append(f"side effects of {len(strays)} unknown invocations: {strays[:5]}")
    return violations


def _check_result(i: int, invocation_id: str, result: Applied, balance: int) -> list[str]:
    if result.index != i or result.balance != balance or len(result.nonces) != len(STEPS):
        return [
            f"op {i} ({invocation_id}): result {result}, expected index {i} and balance "
            f"{balance} with {len(STEPS)} nonces"
        ]
    return []


def _check_effects(
    i: int,
    invocation_id: str,
    result: Applied,
    executions: dict[tuple[str, str], list[str]],
) -> list[str]:
    violations: list[str] = []
    for step, nonce in zip(STEPS, result.nonces, strict=False):
        runs = executions.get((invocation_id, step), [])
        where = f"op {i} ({invocation_id}) step {step!r}"
        if not runs:
            violations.append(f"{where}: never ran, yet its result is {nonce}")
        elif nonce not in runs:
            violations.append(f"{where}: result {nonce} comes from no execution {runs}")
        elif runs[-1] != nonce:
            later = runs[runs.index(nonce) + 1 :]
            violations.append(
                f"{where}: ran {len(later)} more times after its result {nonce} was durable"
            )
        whole = [run for run in runs if not run.startswith("torn:")]
        if len(set(whole)) != len(whole):
            violations.append(f"{where}: repeated nonces {runs}")
    return violations


def _check_observed(i: int, invocation_id: str, result: Applied, observed: Observed) -> list[str]:
    violations: list[str] = []
    accepted = observed.accepted.get(i, [])
    if len(accepted) > 1:
        violations.append(f"op {i}: send answered Accepted in {len(accepted)} lives: {accepted}")
    if any(a != invocation_id for a in accepted):
        violations.append(f"op {i}: accepted as {accepted}, stored as {invocation_id}")
    for seen in observed.completed.get(i, []):
        if seen != (invocation_id, result.balance, result.nonces):
            violations.append(
                f"op {i}: a life was answered {seen}, the stored result is "
                f"{(invocation_id, result.balance, result.nonces)}"
            )
    return violations


if __name__ == "__main__":
    main()
