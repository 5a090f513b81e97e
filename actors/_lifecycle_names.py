"""The names of an invocation's life: its phases, cancel states, events and actions
(``_lifecycle`` holds the table that relates them, and the machine that runs it)."""

from __future__ import annotations

import enum


class _Member(enum.Enum):
    """Enum members hashed by identity (they are singletons, compared by identity):
    ``Enum.__hash__`` is a Python-level call, which would double the cost of ``apply``."""

    __hash__ = object.__hash__


class Phase(_Member):
    """Where an invocation is in its life (the two-letter codes of the drawn table)."""

    ACCEPTED = "AC"
    QUEUED = "QU"
    REVIVED = "RV"
    READY = "RD"
    RUNNING = "RU"
    BLOCKED = "BL"
    UNWINDING = "UW"
    WOKEN_UNWINDING = "WU"
    BACKING_OFF = "BO"
    PAUSED = "PA"
    SUSPENDED = "SU"
    PARKED = "PK"
    COMPLETING = "CG"
    KILLING = "KG"
    KILL_COMPLETING = "KC"
    COMPLETED = "CD"
    KILLED = "KD"
    ABANDONED = "AB"


class Cancel(_Member):
    """Whether a cancellation was asked for, and raised in the current attempt."""

    NONE = "none"
    REQUESTED = "requested"
    RAISED = "raised"


class Event(_Member):
    """What the runtime reports. One line each: where it comes from."""

    DELIVER = "deliver"  # handed to its key's mailbox (now, or when a delayed send is due)
    ADMIT = "admit"  # the mailbox gave it the key (a service or shared handler: at once)
    START = "start"  # its task starts an attempt
    BLOCK = "block"  # a live durable await begins
    UNBLOCK = "unblock"  # that await ended (returned, or raised anything but those below)
    RAISE_CANCEL = "raise_cancel"  # the cancellation is raised live at this await
    REPLAY_CANCEL = "replay_cancel"  # replay reached the journaled cancellation
    WAKE = "wake"  # something it may wait for happened (timer, promise, callee, ...)
    EVICT = "evict"  # memory pressure: its waits should give the coroutine up now
    UNWIND = "unwind"  # a wait gives the coroutine up: ``Suspended`` unwinds the handler
    SUSPEND = "suspend"  # unwound; an exclusive object handler keeps its key
    PARK = "park"  # unwound; anything else is dropped from memory
    REVIVE = "revive"  # rebuilt from storage after it had started
    RECOVER = "recover"  # rebuilt from storage at open, before it ever made a durable step
    CANCEL = "cancel"  # ``cancel()`` asked
    KILL = "kill"  # ``kill()`` asked
    FAIL = "fail"  # the handler raised a retryable error
    STEP_FAILED = "step_failed"  # a batch of the attempt (or one it builds on) failed
    COMMIT_FAILED = "commit_failed"  # its completion (or killed record) failed to commit
    RETRY = "retry"  # the backoff is over
    PAUSE = "pause"  # attempts exhausted, non-determinism, or a record that says paused
    RESUME = "resume"  # ``resume()`` asked
    COMPLETE = "complete"  # its completion (or killed record) batch was queued
    DURABLE = "durable"  # that batch is durable
    DETACH = "detach"  # the task running it went away (a ``call``'s caller gave up)
    ABANDON = "abandon"  # its life in memory ends without a durable end (see ABANDONED)
    CRASH = "crash"  # the process died: memory is gone, storage decides


class Action(enum.Enum):
    """What the runtime does now, in the order given. The last five are bookkeeping
    that ``apply`` has already done on the ``Lifecycle``'s own fields."""

    ENQUEUE = "enqueue"  # deliver to its key's mailbox (a service: admit and run it)
    UNQUEUE = "unqueue"  # take it out of its key's queue
    RUN_ATTEMPT = "run_attempt"  # load the journal and run the handler from the start
    RESPAWN = "respawn"  # run it again in a new task; it keeps its key (mailbox.resume)
    WAKE_TASK = "wake_task"  # wake its task that waits for resume
    SIGNAL_WAIT = "signal_wait"  # set its wake event: its wait re-checks what it awaits
    INTERRUPT_WAITS = "interrupt_waits"  # cancel the scopes of its waits (and backoff)
    UNWIND = "unwind"  # raise ``Suspended`` in the wait (its journal is flushed first)
    PARK = "park"  # keep only its completion and inbox row (``Parked``)
    PERSIST_CANCEL_REQUEST = "persist_cancel_request"  # write the request in its record
    RAISE_CANCEL = "raise_cancel"  # journal a CancelledEntry; raise the 409 here
    PROPAGATE_CANCEL = "propagate_cancel"  # cancel the invocations it waits on
    PROPAGATE_KILL = "propagate_kill"  # kill the invocations it waits on (journal: calls)
    CANCEL_RUN = "cancel_run"  # cancel its run scope and its ctx.run bodies' scopes
    SCHEDULE_RETRY = "schedule_retry"  # sleep the policy's backoff, then ``retry``
    PERSIST_PAUSE = "persist_pause"  # write the PAUSED record
    PERSIST_RESUME = "persist_resume"  # write the RUNNING record
    END_CANCELLED = "end_cancelled"  # queue its completion with the cancellation now
    END_KILLED = "end_killed"  # queue its killed record now
    REJECT_COMPLETED = "reject_completed"  # answer the request: 409, already completed
    RELEASE_KEY = "release_key"  # hand its key on (its mailbox release)
    RELEASE_SLOT = "release_slot"  # give its in-flight slot back
    WATCH_COMPLETION = "watch_completion"  # await its batch elsewhere: durable/abandon
    RECOMMIT = "recommit"  # commit its completion batch again, in its key's order
    WAKE_CALLERS = "wake_callers"  # set its Completion, deliver its pending calls,
    #                                schedule its expiry, wake its caller
    FAIL_CALLERS = "fail_callers"  # set its Completion with the error
    FORGET = "forget"  # drop it from the runtime's maps
    NEW_ATTEMPT = "new_attempt"  # attempt += 1; evicting = False
    COUNT_FAILURE = "count_failure"  # failures += 1
    COUNT_COMMIT_FAILURE = "count_commit_failure"  # commit_failures += 1
    RESET_FAILURES = "reset_failures"  # failures = 0
    MARK_EVICTING = "mark_evicting"  # evicting = True
    MARK_REVIVED = "mark_revived"  # revived = True
