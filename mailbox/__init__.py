# The mailbox layer: per-key scheduling of invocations. A pure state machine (`_state`)
# decides what may start (exclusive work FIFO and one at a time, shared work at once) and
# a thin driver (`_driver`) spawns what it admits. It knows nothing of handlers, contexts
# or journals. It may import `actors.storage`; it never imports `actors` itself.
"""Per-key scheduling for virtual-actors."""

from ._driver import HOLD, MAX_RELAYS, NO_RELEASE, Mailbox, Release, Runner, Spawn
from ._state import Envelope, MailboxCore, MailboxStateError, MailboxStatistics

__all__ = [
    "Envelope",
    "HOLD",
    "MAX_RELAYS",
    "Mailbox",
    "MailboxCore",
    "MailboxStateError",
    "MailboxStatistics",
    "NO_RELEASE",
    "Release",
    "Runner",
    "Spawn",
]
