# The mailbox layer: per-key scheduling of invocations. A pure state machine decides what
# may start (exclusive FIFO one at a time, shared at once) and a thin anyio driver runs
# it. It may import `actors.storage`, never `actors` itself.
"""Per-key scheduling for virtual-actors."""
