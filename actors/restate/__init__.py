# Restate's Python SDK (restate-sdk), on the embedded runtime. This layer sits on top of
# the public ``actors`` API and imports only it (and its own modules); ``actors`` never
# imports it, except the CLI's ``serve --restate``, which calls ``install()``. Its names
# and signatures are those of the ``restate`` package (tests/restate compares them with
# the installed SDK); README "Already on Restate?" lists what differs and why.
"""Restate's Python SDK, embedded: run unmodified Restate services in-process.

``actors.restate.install()`` makes ``import restate`` resolve to this package; then
``actors.open_runtime(path, restate.app([...]))`` or ``actors serve --restate
MODULE:ATTR`` runs the services, with no Restate server.
"""

from . import context, exceptions, logging, serde
from ._client import HttpError, RestateClient, RestateClientSendHandle, create_client
from ._combinators import as_completed, gather, select, wait_completed
from ._definitions import Service, VirtualObject, Workflow
from ._install import install
from ._unavailable import (
    ConnectError,
    JournalValueCodec,
    JournalValueCodecProvider,
    connect,
    with_connection,
)
from .context import (
    Context,
    DurablePromise,
    ObjectContext,
    ObjectSharedContext,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    RunOptions,
    ScopedContext,
    SendHandle,
    WorkflowContext,
    WorkflowSharedContext,
)
from .endpoint import app
from .exceptions import SdkInternalBaseException, TerminalError, is_internal_exception
from .harness import HarnessEnvironment, create_test_harness, test_harness
from .logging import RestateLoggingFilter, getLogger
from .retry_policy import InvocationRetryPolicy

__all__ = [
    "ConnectError",
    "Context",
    "DurablePromise",
    "HarnessEnvironment",
    "HttpError",
    "InvocationRetryPolicy",
    "JournalValueCodec",
    "JournalValueCodecProvider",
    "ObjectContext",
    "ObjectSharedContext",
    "RestateClient",
    "RestateClientSendHandle",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RunOptions",
    "ScopedContext",
    "SdkInternalBaseException",
    "SendHandle",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "connect",
    "context",
    "create_client",
    "create_test_harness",
    "exceptions",
    "gather",
    "getLogger",
    "install",
    "is_internal_exception",
    "logging",
    "select",
    "serde",
    "test_harness",
    "wait_completed",
    "with_connection",
]
