# The public API of virtual-actors. Everything a user writes is imported here and listed
# in `__all__`; every other module is private (`_name.py`). This layer sits on top of
# `actors.mailbox` (per-key scheduling) and `actors.storage` (LMDB); it may import both,
# and neither may import it. Storage errors are translated here into PersistenceError.
"""virtual-actors: embedded, durable virtual actors for trio and asyncio."""

from ._context import (
    Context,
    DurablePromise,
    ObjectContext,
    ObjectSharedContext,
    WorkflowContext,
    WorkflowSharedContext,
)
from ._definitions import (
    Handler,
    Service,
    VirtualObject,
    Workflow,
    exclusive,
    handler,
    main,
    shared,
)
from ._errors import (
    ActorsError,
    DeadlockError,
    InvocationPausedError,
    NonDeterminismError,
    NotReadyError,
    PersistenceError,
    RuntimeClosedError,
    SerializationError,
    TerminalError,
    UnknownHandlerError,
)
from ._futures import DurableCallFuture, DurableFuture, as_completed, gather, select, wait_completed
from ._open import open_runtime
from ._request import Request
from ._retry import RetryPolicy
from ._runtime import InvocationHandle, Runtime, RuntimeStatistics
from ._types import allow_extra_fields

__all__ = [
    "ActorsError",
    "Context",
    "DeadlockError",
    "DurableCallFuture",
    "DurableFuture",
    "DurablePromise",
    "Handler",
    "InvocationHandle",
    "InvocationPausedError",
    "NonDeterminismError",
    "NotReadyError",
    "ObjectContext",
    "ObjectSharedContext",
    "PersistenceError",
    "Request",
    "RetryPolicy",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeStatistics",
    "SerializationError",
    "Service",
    "TerminalError",
    "UnknownHandlerError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "allow_extra_fields",
    "as_completed",
    "exclusive",
    "gather",
    "handler",
    "main",
    "open_runtime",
    "select",
    "shared",
    "wait_completed",
]
