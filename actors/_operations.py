"""``Operations``: the handler port (``_port.HandlerPort``) over the runtime's parts.

This class only decides who answers what, so a reader finds every context operation's
implementation from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

from ._ops_handles import HandleOps

if TYPE_CHECKING:
    from ._ops_calls import CallOps
    from ._ops_invocation_signals import InvocationSignals
    from ._ops_signals import SignalOps
    from ._ops_state import StateOps
    from ._ops_steps import StepOps
    from ._waits import Waits


@final
class Operations:
    """Implements ``HandlerPort`` with the operation families' own methods: each port
    operation *is* its family's method (bound here once), so a context operation costs
    no forwarding call."""

    __slots__ = (
        "attach_invocation",
        "awakeable",
        "call",
        "cancel_invocation",
        "clear_all_state",
        "clear_state",
        "complete_awakeable",
        "complete_promise",
        "complete_signal",
        "generic_call",
        "generic_send",
        "get_state",
        "promise_peek",
        "promise_value",
        "random",
        "request",
        "run",
        "send",
        "set_state",
        "settle_cancels",
        "signal",
        "sleep",
        "state_keys",
        "time",
        "uuid",
    )

    def __init__(
        self,
        state: StateOps,
        steps: StepOps,
        calls: CallOps,
        waits: Waits,
        signals: SignalOps,
        invocation_signals: InvocationSignals,
    ) -> None:
        handles = HandleOps(calls, waits, signals)  # ctx.cancel_invocation, attach_invocation
        self.get_state = state.get
        self.state_keys = state.keys
        self.set_state = state.set
        self.clear_state = state.clear
        self.clear_all_state = state.clear_all
        self.time = state.time
        self.random = state.rng
        self.uuid = state.new_uuid
        self.run = steps.run
        self.call = calls.call
        self.send = calls.send
        self.generic_call = calls.generic_call
        self.generic_send = calls.generic_send
        self.request = calls.request
        self.sleep = waits.sleep
        self.awakeable = signals.awakeable
        self.complete_awakeable = signals.ctx_complete_awakeable
        self.promise_value = signals.promise_value
        self.promise_peek = signals.promise_peek
        self.complete_promise = signals.promise_complete
        self.cancel_invocation = handles.cancel_invocation
        self.attach_invocation = handles.attach_invocation
        self.settle_cancels = handles.settle_cancels
        self.signal = invocation_signals.signal
        self.complete_signal = invocation_signals.ctx_complete
