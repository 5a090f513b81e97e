"""The parent side of the mixed crash workload (``tests/crash_mixed.py`` is the child):
``run_round`` drives the lives (kills after k lines, timed kills, bursts of early kills
that land during recovery), ``Observed`` collects their lines, ``collect`` reads the
evidence from the data directory, and ``verify`` checks it (a pure function of the
evidence, so its checks are unit-tested with injected faults). Used by
``tests/actors/test_crash_mixed.py`` and ``bench/crash_soak.py --workload mixed``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import actors
from actors.testing import run_until_killed

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Sequence

from crash_mixed import (
    PLAIN,
    Approve,
    Chain,
    ChainResult,
    Config,
    Counter,
    Durability,
    Fanned,
    History,
    Incr,
    Job,
    Relay,
    SlowIncr,
    StepOut,
    actor_set,
    chain_spec,
    fan_of,
    key_names,
    make_plan,
)

# --- the parent side: driving the lives ---------------------------------------------------------


@dataclass(frozen=True)
class KillPlan:
    """Where lives die. Each life draws one of: a kill after 1..``max_lines`` progress
    lines (it made progress), a kill after a random delay up to ``max_delay`` seconds
    (``timed_fraction``), or the start of a burst of 2..``burst_length`` lives each
    killed ``burst_min_delay``..``burst_delay`` seconds after starting
    (``burst_fraction``): those land while the runtime opens and recovers (importing
    takes ~0.25 s of a life that has nothing to do, ~0.35 s in all, on 2 cores), and
    the next life recovers an interrupted recovery."""

    max_kills: int = 30
    max_seconds: float = 40.0
    max_lines: int = 12
    timed_fraction: float = 0.2
    max_delay: float = 1.2
    burst_fraction: float = 0.15
    burst_length: int = 4
    burst_min_delay: float = 0.15
    burst_delay: float = 0.6
    max_lives: int = 400
    life_timeout: float = 120.0


@dataclass
class RoundStats:
    lives: int = 0
    kills: int = 0
    line_kills: int = 0
    timed_kills: int = 0
    burst_kills: int = 0
    seconds: float = 0.0


def run_until_timed_kill(
    argv: Sequence[str], delay: float, stdout_file: Path, timeout: float = 120.0
) -> tuple[list[str], int]:
    """Run ``argv`` and SIGKILL it after ``delay`` seconds unless it exited before.
    Returns its complete stdout lines (newline removed) and its exit status. Stdout goes
    to a file, so the kill moment does not depend on the parent reading it."""
    with stdout_file.open("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.DEVNULL, text=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        out.seek(0)
        text = out.read()
    return [line for line in text.split("\n")[:-1]], status


def stderr_tail(workdir: Path, lines: int = 40) -> str:
    path = workdir / "stderr"
    if not path.exists():
        return "(no stderr)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def run_round(
    workdir: Path,
    config: Config,
    rng: random.Random,
    kills: KillPlan,
    *,
    durability: Durability = "process",
) -> tuple[Observed, RoundStats, list[str]]:
    """Kill and restart the workload in ``workdir`` until a life prints DONE. Kills stop
    after ``kills.max_kills`` kills or ``kills.max_seconds``; the last life then runs to
    the end. Returns what the lives printed, the counts, and
    the problems that prevent verification (a life that failed or hung)."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = config.argv(workdir, durability)
    observed = Observed()
    stats = RoundStats()
    started = time.monotonic()
    burst_left = 0
    problems: list[str] = []
    for _ in range(kills.max_lives):
        stats.lives += 1
        killing = stats.kills < kills.max_kills and time.monotonic() - started < kills.max_seconds
        mode = "final"
        try:
            if not killing:
                lines, status = run_until_killed(
                    argv, kill_after_lines=10**9, timeout=kills.life_timeout
                )
            elif burst_left > 0 or rng.random() < kills.burst_fraction:
                if burst_left == 0:
                    burst_left = rng.randint(2, kills.burst_length)
                burst_left -= 1
                mode = "burst"
                delay = rng.uniform(kills.burst_min_delay, kills.burst_delay)
                lines, status = run_until_timed_kill(argv, delay, workdir / "stdout")
            elif rng.random() < kills.timed_fraction:
                mode = "timed"
                delay = rng.uniform(0.0, kills.max_delay)
                lines, status = run_until_timed_kill(argv, delay, workdir / "stdout")
            else:
                mode = "lines"
                lines, status = run_until_killed(
                    argv,
                    kill_after_lines=rng.randint(1, kills.max_lines),
                    timeout=kills.life_timeout,
                )
        except (TimeoutError, subprocess.TimeoutExpired):
            problems.append(
                f"life {stats.lives} ({mode}) hung for {kills.life_timeout:.0f}s; "
                f"stderr:\n{stderr_tail(workdir)}"
            )
            break
        observed.feed(lines)
        if observed.done:
            break
        if status != -signal.SIGKILL:
            problems.append(
                f"life {stats.lives} ({mode}) exited with status {status} before DONE; "
                f"stderr:\n{stderr_tail(workdir)}"
            )
            break
        stats.kills += 1
        stats.line_kills += mode == "lines"
        stats.timed_kills += mode == "timed"
        stats.burst_kills += mode == "burst"
    else:
        problems.append(f"no DONE after {kills.max_lives} lives")
    stats.seconds = time.monotonic() - started
    return observed, stats, problems


@dataclass
class Observed:
    """What the lives printed, accumulated over every life."""

    #: tag -> the invocation ids printed as newly ``accepted`` (one per life that did).
    accepted: dict[str, list[str]] = field(default_factory=dict)
    #: tag -> every ``done`` line's (key, value).
    done_lines: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: tag -> every ``failed`` line's message.
    failed: dict[str, list[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    done: bool = False

    def feed(self, lines: Iterable[str]) -> None:
        for line in lines:
            words = line.split()
            try:
                if words == ["DONE"]:
                    self.done = True
                elif words[0] == "accepted" and len(words) == 3:
                    self.accepted.setdefault(words[1], []).append(words[2])
                elif words[0] == "done" and len(words) == 4:
                    self.done_lines.setdefault(words[1], []).append((words[2], int(words[3])))
                elif words[0] == "failed" and len(words) >= 2:
                    self.failed.setdefault(words[1], []).append(" ".join(words[2:]))
                else:
                    self.unknown.append(line)
            except (IndexError, ValueError):
                self.unknown.append(line)


# --- the parent side: the evidence in the data directory ----------------------------------------


@dataclass
class Evidence:
    """Everything ``verify`` judges, read after the last life (``collect``)."""

    #: counter key -> its stored state, read first on reopen (before anything can run).
    histories: dict[str, History] = field(default_factory=dict)
    #: increment tag of the plan -> (key, value) its stored result says.
    results: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: submitted tag -> the stored invocation id.
    ids: dict[str, str] = field(default_factory=dict)
    #: submitted tag -> the status a re-submission answered (should be PreviouslyAccepted).
    statuses: dict[str, str] = field(default_factory=dict)
    #: workflow id -> its stored result.
    chains: dict[str, ChainResult] = field(default_factory=dict)
    #: tag -> why no result could be read.
    errors: dict[str, str] = field(default_factory=dict)
    #: (workflow id, step) -> every logged execution's (nonce, input), in order.
    chain_log: dict[tuple[str, int], list[tuple[str, str]]] = field(default_factory=dict)
    chain_log_malformed: list[str] = field(default_factory=list)
    #: problems seen on reopening: work left unfinished, side effects run again.
    reopen: list[str] = field(default_factory=list)
    #: the final life's summary: tag -> (key, value), and its workflow results.
    final_values: dict[str, tuple[str, int]] | None = None
    final_chains: dict[str, ChainResult] | None = None


_CHAIN_RECORD = re.compile(r"(w\d+) (\d+) ([0-9a-f]{16}) ([0-9a-f]{16}|seed-w\d+)")


def read_chain_log(path: Path, evidence: Evidence) -> None:
    """Parse the chain steps' log into ``evidence``. A kill inside a body's ``write``
    may leave a torn fragment (then the next record follows it on the same line): a
    torn record is an execution whose body never returned, so it is skipped."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    for line in text.splitlines(keepends=True):
        body = line.removesuffix("\n")
        if not line.endswith("\n"):
            continue  # the last write of a killed life, cut short
        record = _CHAIN_RECORD.fullmatch(body)
        if record is None:
            tail = re.search(_CHAIN_RECORD.pattern + "$", body)
            if tail is None or tail.start() == 0:
                evidence.chain_log_malformed.append(line)
                continue
            record = tail
        runs = evidence.chain_log.setdefault((record[1], int(record[2])), [])
        runs.append((record[3], record[4]))


def _chain_result(raw: dict[str, Any]) -> ChainResult:
    return ChainResult(
        [StepOut(**step) for step in raw["steps"]], raw["token"], list(raw["values"])
    )


def collect(
    workdir: Path, config: Config, durability: Durability = "process", timeout: float = 120.0
) -> Evidence:
    """Reopen the data directory of a finished round and gather the evidence. The
    directory must not be open elsewhere (the workload has exited)."""
    evidence = Evidence()
    read_chain_log(workdir / "chain.log", evidence)
    try:
        summary = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
        evidence.final_values = {tag: (kv[0], int(kv[1])) for tag, kv in summary["values"].items()}
        evidence.final_chains = {tag: _chain_result(r) for tag, r in summary["chains"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        evidence.reopen.append(f"no usable summary from the final life: {exc!r}")
    with tempfile.TemporaryDirectory(prefix="crash-mixed-verify-") as scratch:
        rerun = Path(scratch)
        try:
            trio.run(_collect, workdir, rerun, config, durability, timeout, evidence)
        except trio.TooSlowError:
            evidence.reopen.append(f"reading the results took over {timeout:.0f}s (a hang?)")
        for log in ("counter.log", "chain.log"):
            path = rerun / log
            if path.exists():
                ran = path.read_text(encoding="utf-8").splitlines()
                evidence.reopen.append(f"reopening ran {len(ran)} more side effects: {ran[:5]}")
    return evidence


async def _collect(
    workdir: Path,
    rerun: Path,
    config: Config,
    durability: Durability,
    seconds: float,
    evidence: Evidence,
) -> None:
    with trio.fail_after(seconds):
        async with actors.open_runtime(
            workdir / "data", actor_set(rerun, 0.0), durability=durability
        ) as rt:
            statistics = rt.statistics()  # before anything recovered can finish
            if statistics.in_flight:
                evidence.reopen.append(
                    f"{statistics.in_flight} accepted invocations unfinished on reopen"
                )
            for key in key_names(config.keys):  # before any re-submission can run anything
                evidence.histories[key] = await rt.call(Counter.history, key=key)
            for job in make_plan(config):
                try:
                    await _collect_job(rt, job, evidence)
                except actors.ActorsError as exc:
                    evidence.errors[job.tag] = repr(exc)


async def _collect_job(rt: actors.Runtime, job: Job, evidence: Evidence) -> None:
    """Re-submit ``job`` exactly as the lives did (every submission is idempotent) and
    record the stored outcome."""
    tag = job.tag

    def note(name: str, handle: actors.InvocationHandle) -> None:
        evidence.ids[name] = handle.invocation_id
        evidence.statuses[name] = handle.status

    if job.kind in ("send", "delayed", "slow"):
        target: actors.Handler[Any, int] = Counter.slow_incr if job.kind == "slow" else Counter.incr
        arg = SlowIncr(tag, job.seconds) if job.kind == "slow" else Incr(tag)
        handle = await rt.send(
            target, arg, key=job.key, delay=job.delay or None, idempotency_key=tag
        )
        note(tag, handle)
        evidence.results[tag] = (job.key, await handle.result())
    elif job.kind == "icall":
        value = await rt.call(Counter.incr, Incr(tag), key=job.key, idempotency_key=tag)
        evidence.results[tag] = (job.key, value)
    elif job.kind == "relay":
        (call_tag, call_key), (send_tag, send_key) = job.increments()
        handle = await rt.send(Relay.fan, fan_of(job), idempotency_key=tag)
        note(tag, handle)
        fanned: Fanned = await handle.result()
        evidence.results[call_tag] = (call_key, fanned.called)
        evidence.ids[send_tag] = fanned.sent_id
        try:
            evidence.results[send_tag] = (send_key, await rt.attach(fanned.sent_id))
        except actors.ActorsError as exc:
            evidence.errors[send_tag] = repr(exc)
    elif job.kind == "chain":
        approve_tag = f"a{job.index}"
        approval = await rt.send(
            Relay.approve, Approve(tag, job.token), idempotency_key=approve_tag
        )
        note(approve_tag, approval)
        handle = await rt.send(Chain.run, chain_spec(job), key=tag)
        note(tag, handle)
        result: ChainResult = await handle.result()
        evidence.chains[tag] = result
        for (inc_tag, key), value in zip(job.increments(), result.values, strict=False):
            evidence.results[inc_tag] = (key, value)
        try:
            await approval.result()
        except actors.ActorsError as exc:
            evidence.errors[approve_tag] = repr(exc)


# --- the oracle ---------------------------------------------------------------------------------


def verify(config: Config, evidence: Evidence, observed: Observed) -> list[str]:
    """Check a finished round; returns the violations found (empty when all is well).

    * **No lost update** (DESIGN.md section 3, invariants 1, 2, 5): per counter key the
      values returned by completed increments are exactly 1..n, each once, where n is
      the stored counter, and the key's history (``by{v}``: the tag that wrote v) names,
      for each value, the increment that returned it. Completed increments are the
      plan's (every one was accepted durably and must complete), plain calls whose
      ``done`` line was printed, and plain calls the history names that no life lived
      to print (their caller died; they still happened, once). A duplicate value
      ("11, 11") is the signature of a replayed stale read.
    * **Exactly once** (invariant 4): every submission of the plan was durably accepted
      (a re-submission answers PreviouslyAccepted, and no two lives were answered
      Accepted), has a result, agrees with every ``done`` line and the final life's
      summary, and appears once in its key's history; no job failed.
    * **Chained steps** (invariants 5, 6): each workflow's steps form a chain (step k's
      input is step k-1's durable nonce, step 0's the seed), its promise carried the
      approval's token, and in the log every execution of step k had that same input
      and the durable nonce is the last execution (nothing ran after it was durable).
    * **Nothing left over**: nothing in flight on reopen, reopening ran no side effect,
      no unexpected output.
    """
    plan = make_plan(config)
    violations = [f"unexpected output line {line!r}" for line in observed.unknown]
    violations += evidence.reopen
    for tag, messages in sorted(observed.failed.items()):
        violations.append(f"{tag} failed in {len(messages)} lives: {messages[0]}")
    for tag, why in sorted(evidence.errors.items()):
        violations.append(f"{tag}: no result: {why}")
    violations += [f"malformed chain log line {line!r}" for line in evidence.chain_log_malformed]

    expected: dict[str, str] = {}  # increment tag of the plan -> its key
    submitted: list[str] = []  # tags whose submission answers a status
    for job in plan:
        expected.update(job.increments())
        if job.kind != "icall":
            submitted.append(job.tag)
        if job.kind == "chain":
            submitted.append(f"a{job.index}")
    violations += _check_acceptance(submitted, evidence, observed)
    violations += _check_results(expected, evidence, observed)
    for key in key_names(config.keys):
        violations += _check_key(key, expected, evidence, observed)
    for job in plan:
        if job.kind == "chain":
            violations += _check_chain(job, evidence)
    return violations


def _check_acceptance(submitted: list[str], evidence: Evidence, observed: Observed) -> list[str]:
    violations: list[str] = []
    for tag in submitted:
        status = evidence.statuses.get(tag)
        if status is not None and status != "PreviouslyAccepted":
            violations.append(f"{tag} was not durably accepted (re-submission: {status})")
        accepted = observed.accepted.get(tag, [])
        if len(accepted) > 1:
            violations.append(f"{tag}: answered Accepted in {len(accepted)} lives: {accepted}")
        stored = evidence.ids.get(tag)
        if stored is not None and any(a != stored for a in accepted):
            violations.append(f"{tag}: accepted as {accepted}, stored as {stored}")
    for tag in sorted(set(observed.accepted) - set(submitted)):
        violations.append(f"accepted line for {tag}, which is no submission of the plan")
    return violations


def _check_results(expected: dict[str, str], evidence: Evidence, observed: Observed) -> list[str]:
    violations: list[str] = []
    for tag, key in expected.items():
        stored = evidence.results.get(tag)
        if stored is None:
            if tag not in evidence.errors:
                violations.append(f"{tag}: accepted, but no completion is stored")
            continue
        if stored[0] != key:
            violations.append(f"{tag}: completed on key {stored[0]}, the plan says {key}")
        for seen in observed.done_lines.get(tag, []):
            if seen != stored:
                violations.append(
                    f"{tag}: a life was answered {seen}, the stored result is {stored}"
                )
        final = (evidence.final_values or {}).get(tag)
        if evidence.final_values is not None and final != stored:
            violations.append(f"{tag}: the final life saw {final}, the stored result is {stored}")
    for tag, lines in sorted(observed.done_lines.items()):
        if tag in expected:
            continue
        if not PLAIN.fullmatch(tag):
            violations.append(f"done line for {tag}, which is no increment of the workload")
        elif len(set(lines)) > 1:
            violations.append(f"plain call {tag} was answered differently: {lines}")
    return violations


def _check_key(
    key: str, expected: dict[str, str], evidence: Evidence, observed: Observed
) -> list[str]:
    """Values 1..n, each returned by exactly one completed increment, matching history."""
    violations: list[str] = []
    history = evidence.histories.get(key)
    if history is None:
        return [f"key {key}: no stored state"]
    n = history.n
    by_value: dict[int, str] = {}
    for entry in history.entries:
        if entry.value in by_value:
            violations.append(f"key {key}: history has two entries for value {entry.value}")
        by_value[entry.value] = entry.tag
    # Completed increments with a known returned value: the plan's, and printed plain calls.
    known: dict[str, int] = {
        tag: value
        for tag, (k, value) in evidence.results.items()
        if k == key and expected.get(tag) == key
    }
    for tag, lines in observed.done_lines.items():
        if PLAIN.fullmatch(tag) and lines and lines[0][0] == key:
            known[tag] = lines[0][1]
    returned: dict[int, list[str]] = {}
    for tag, value in known.items():
        returned.setdefault(value, []).append(tag)
    for value, tags in sorted(returned.items()):
        if len(tags) > 1:
            violations.append(
                f"key {key}: value {value} returned by {len(tags)} completed increments "
                f"{sorted(tags)} (a lost update: a replayed read saw a stale n)"
            )
        if not 1 <= value <= n:
            violations.append(
                f"key {key}: {sorted(tags)} returned {value}, outside 1..{n} (the counter)"
            )
    unprinted: list[str] = []
    writers: dict[str, list[int]] = {}
    for value, tag in sorted(by_value.items()):
        writers.setdefault(tag, []).append(value)
        if tag not in known and PLAIN.fullmatch(tag):
            unprinted.append(tag)  # a plain call that completed after its caller died
        if not 1 <= value <= n:
            violations.append(f"key {key}: history names {tag} for {value}, beyond the counter {n}")
        elif tag not in known and not PLAIN.fullmatch(tag):
            violations.append(
                f"key {key}: history names {tag} for value {value}, which no completed "
                "increment of this key returned"
            )
    for tag, values in sorted(writers.items()):
        if len(values) > 1:
            violations.append(f"key {key}: {tag} incremented {len(values)} times: {values}")
    for tag, value in sorted(known.items()):
        writer = by_value.get(value)
        if writer != tag and 1 <= value <= n:
            violations.append(
                f"key {key}: {tag} returned {value}, but the history says {writer} set {value} "
                f"({tag}'s increment was overwritten or never stored)"
            )
    missing = sorted(set(range(1, n + 1)) - set(by_value))
    if missing:
        violations.append(f"key {key}: no history entry for values {missing[:10]}")
    completions = len(known) + len(unprinted)
    if n != completions:
        violations.append(
            f"key {key}: counter is {n}, but {completions} increments completed "
            f"({len(known) - _plain_count(known)} of the plan, {_plain_count(known)} printed "
            f"plain calls, {len(unprinted)} plain calls found in the history only)"
        )
    return violations


def _plain_count(tags: Iterable[str]) -> int:
    return sum(1 for tag in tags if PLAIN.fullmatch(tag))


def _check_chain(job: Job, evidence: Evidence) -> list[str]:
    tag = job.tag
    result = evidence.chains.get(tag)
    if result is None:
        return [] if tag in evidence.errors else [f"workflow {tag}: no result stored"]
    violations: list[str] = []
    if evidence.final_chains is not None and evidence.final_chains.get(tag) != result:
        violations.append(f"workflow {tag}: the final life saw {evidence.final_chains.get(tag)}")
    if result.token != job.token:
        violations.append(f"workflow {tag}: promise carried {result.token!r}, not {job.token!r}")
    if len(result.steps) != job.steps or len(result.values) != 2:
        violations.append(
            f"workflow {tag}: {len(result.steps)} steps and {len(result.values)} increments, "
            f"expected {job.steps} and 2"
        )
    prev = job.seed
    for k, step in enumerate(result.steps):
        where = f"workflow {tag} step {k}"
        if step.k != k or step.prev != prev:
            violations.append(f"{where}: result {step}, but its input should be {prev!r}")
        runs = evidence.chain_log.get((tag, k), [])
        nonces = [nonce for nonce, _ in runs]
        if step.nonce not in nonces:
            violations.append(f"{where}: result {step.nonce} comes from no logged execution")
        elif nonces[-1] != step.nonce:
            later = len(nonces) - 1 - nonces.index(step.nonce)
            violations.append(f"{where}: ran {later} more times after its result was durable")
        for nonce, seen in runs:
            if seen != prev:
                violations.append(
                    f"{where}: an execution ({nonce}) ran on input {seen!r}, not the durable "
                    f"output {prev!r} of the step before"
                )
        prev = step.nonce
    return violations
